package discovery

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// listenBoth listens on one loopback port for both UDP and TCP. The kernel
// picks a free TCP port, which another process may hold for UDP (or the
// other way round): then it tries another.
func listenBoth(t testing.TB) (net.PacketConn, net.Listener) {
	t.Helper()
	var last error
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", l.Addr().String())
		if err == nil {
			return pc, l
		}
		l.Close()
		last = err
	}
	t.Fatalf("no loopback port free for both UDP and TCP: %v", last)
	return nil, nil
}

// serve starts s on loopback (UDP and TCP on the same port) and returns its
// address; the test's end stops it.
func serve(t testing.TB, s *Server) string {
	t.Helper()
	pc, l := listenBoth(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, pc, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	// Serve returns from its start once both servers listen; a first
	// query that is answered proves it.
	waitAnswering(t, l.Addr().String())
	return l.Addr().String()
}

func waitAnswering(t testing.TB, addr string) {
	t.Helper()
	c := &mdns.Client{Timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := new(mdns.Msg)
		// Under the cluster domain: answered here, never forwarded.
		m.SetQuestion("probe.warren.", mdns.TypeA)
		if _, _, err := c.Exchange(m, addr); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the DNS server at %s does not answer", addr)
		}
	}
}

func query(t testing.TB, network, addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	c := &mdns.Client{Net: network, Timeout: 3 * time.Second}
	m := new(mdns.Msg)
	m.SetQuestion(mdns.Fqdn(name), qtype)
	resp, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, mdns.TypeToString[qtype], network, err)
	}
	return resp
}

func answers(m *mdns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *mdns.A:
			out = append(out, r.A.String())
		case *mdns.AAAA:
			out = append(out, r.AAAA.String())
		default:
			out = append(out, rr.String())
		}
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

func newServer(t testing.TB, upstream ...string) *Server {
	t.Helper()
	s, err := New(Config{Domain: "warren", Upstream: upstream})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAnswers(t *testing.T) {
	s := newServer(t)
	s.Set(Table{
		"web":  addrs("10.88.1.2", "10.88.2.7", "10.88.3.4"),
		"DB":   addrs("10.88.1.9"),
		"v6":   addrs("fd00::5"),
		"idle": nil, // a service with no running task
	})
	addr := serve(t, s)
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string // sorted
	}{
		{"web", mdns.TypeA, mdns.RcodeSuccess, []string{"10.88.1.2", "10.88.2.7", "10.88.3.4"}},
		{"web.warren", mdns.TypeA, mdns.RcodeSuccess, []string{"10.88.1.2", "10.88.2.7", "10.88.3.4"}},
		{"tasks.web", mdns.TypeA, mdns.RcodeSuccess, []string{"10.88.1.2", "10.88.2.7", "10.88.3.4"}},
		{"tasks.web.warren", mdns.TypeA, mdns.RcodeSuccess, []string{"10.88.1.2", "10.88.2.7", "10.88.3.4"}},
		{"WEB.Warren", mdns.TypeA, mdns.RcodeSuccess, []string{"10.88.1.2", "10.88.2.7", "10.88.3.4"}},
		{"db", mdns.TypeA, mdns.RcodeSuccess, []string{"10.88.1.9"}},
		// Known, but no address of that family: an empty NOERROR.
		{"web", mdns.TypeAAAA, mdns.RcodeSuccess, nil},
		{"v6.warren", mdns.TypeAAAA, mdns.RcodeSuccess, []string{"fd00::5"}},
		{"v6", mdns.TypeA, mdns.RcodeSuccess, nil},
		{"idle", mdns.TypeA, mdns.RcodeSuccess, nil},
		{"web", mdns.TypeMX, mdns.RcodeSuccess, nil},
		// Under the cluster domain but no such service: NXDOMAIN, not forwarded.
		{"nosuch.warren", mdns.TypeA, mdns.RcodeNameError, nil},
		{"tasks.nosuch.warren", mdns.TypeA, mdns.RcodeNameError, nil},
		{"warren", mdns.TypeA, mdns.RcodeNameError, nil},
		// Anything else goes upstream; with none, SERVFAIL.
		{"example.test", mdns.TypeA, mdns.RcodeServerFailure, nil},
		{"nosuch", mdns.TypeA, mdns.RcodeServerFailure, nil},
	} {
		for _, network := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+mdns.TypeToString[tc.qtype]+"/"+network, func(t *testing.T) {
				resp := query(t, network, addr, tc.name, tc.qtype)
				got := answers(resp)
				slices.Sort(got)
				if resp.Rcode != tc.rcode || !slices.Equal(got, tc.want) {
					t.Fatalf("%s: rcode %s, answers %v; want %s, %v", tc.name, mdns.RcodeToString[resp.Rcode], got, mdns.RcodeToString[tc.rcode], tc.want)
				}
				for _, rr := range resp.Answer {
					if rr.Header().Ttl != TTL || rr.Header().Name != mdns.Fqdn(tc.name) {
						t.Errorf("answer %s: want TTL %d and the asked name", rr, TTL)
					}
				}
				if tc.rcode != mdns.RcodeServerFailure && !resp.Authoritative {
					t.Errorf("%s: answer not authoritative", tc.name)
				}
			})
		}
	}
}

func TestRoundRobin(t *testing.T) {
	s := newServer(t)
	s.Set(Table{"web": addrs("10.88.1.2", "10.88.2.7", "10.88.3.4")})
	addr := serve(t, s)
	firsts := map[string]int{}
	for range 30 {
		got := answers(query(t, "udp", addr, "web", mdns.TypeA))
		if len(got) != 3 {
			t.Fatalf("answers %v, want all 3", got)
		}
		firsts[got[0]]++
	}
	for _, a := range []string{"10.88.1.2", "10.88.2.7", "10.88.3.4"} {
		if firsts[a] != 10 {
			t.Fatalf("first answers over 30 queries %v, want each address first 10 times", firsts)
		}
	}
}

// TestSetReplacesTheTable: an update is seen by the next query; a service
// that is gone answers NXDOMAIN under the domain.
func TestSetReplacesTheTable(t *testing.T) {
	s := newServer(t)
	s.Set(Table{"web": addrs("10.88.1.2")})
	addr := serve(t, s)
	if got := answers(query(t, "udp", addr, "web.warren", mdns.TypeA)); !slices.Equal(got, []string{"10.88.1.2"}) {
		t.Fatalf("before: %v", got)
	}
	s.Set(Table{"api": addrs("10.88.4.4")})
	if resp := query(t, "udp", addr, "web.warren", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
		t.Fatalf("web after it was removed: %v", resp)
	}
	if got := answers(query(t, "udp", addr, "api", mdns.TypeA)); !slices.Equal(got, []string{"10.88.4.4"}) {
		t.Fatalf("api after the update: %v", got)
	}
}

// upstream is a real DNS server on loopback answering example.test.
func upstream(t testing.TB) string {
	t.Helper()
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		if r.Question[0].Name == "example.test." {
			rr, _ := mdns.NewRR("example.test. 60 IN A 192.0.2.10")
			m.Answer = append(m.Answer, rr)
		} else {
			m.Rcode = mdns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	pc, l := listenBoth(t)
	var wg sync.WaitGroup
	servers := []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}}
	for _, srv := range servers {
		wg.Add(1)
		go func() { defer wg.Done(); _ = srv.ActivateAndServe() }()
	}
	t.Cleanup(func() {
		for _, srv := range servers {
			_ = srv.Shutdown()
		}
		wg.Wait()
	})
	waitAnswering(t, pc.LocalAddr().String())
	return pc.LocalAddr().String()
}

func TestForwarding(t *testing.T) {
	// A dead resolver first: it is skipped after its timeout.
	dead, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	s := newServer(t, dead.LocalAddr().String(), upstream(t))
	s.Set(Table{"web": addrs("10.88.1.2")})
	addr := serve(t, s)
	for _, network := range []string{"udp", "tcp"} {
		resp := query(t, network, addr, "example.test", mdns.TypeA)
		if got := answers(resp); resp.Rcode != mdns.RcodeSuccess || !slices.Equal(got, []string{"192.0.2.10"}) {
			t.Fatalf("%s: forwarded example.test: rcode %s, answers %v", network, mdns.RcodeToString[resp.Rcode], got)
		}
		if resp := query(t, network, addr, "nosuch.test", mdns.TypeA); resp.Rcode != mdns.RcodeNameError {
			t.Fatalf("%s: the upstream's NXDOMAIN is relayed: got %s", network, mdns.RcodeToString[resp.Rcode])
		}
	}
	// Service names are still answered locally, never forwarded.
	if got := answers(query(t, "udp", addr, "web", mdns.TypeA)); !slices.Equal(got, []string{"10.88.1.2"}) {
		t.Fatalf("web: %v", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{Domain: "bad domain"},
		{Domain: "a..b"},
		{Upstream: []string{"10.0.0.1"}},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) = nil error, want one", cfg)
		}
	}
}

func TestHostUpstream(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(p, []byte("# comment\nnameserver 127.0.0.53\nnameserver 2001:db8::1\nsearch example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := HostUpstream(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.53:53", "[2001:db8::1]:53"}; !slices.Equal(got, want) {
		t.Fatalf("HostUpstream = %v, want %v", got, want)
	}
	if _, err := HostUpstream(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("HostUpstream of a missing file: no error")
	}
}

// TestConcurrentSetAndQueries runs under -race: table swaps while queries
// are answered.
func TestConcurrentSetAndQueries(t *testing.T) {
	s := newServer(t)
	addr := serve(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil && i < 2000; i++ {
			s.Set(Table{"web": addrs("10.88.1.2", netip.AddrFrom4([4]byte{10, 88, 2, byte(i)}).String())})
		}
	}()
	for range 200 {
		resp := query(t, "udp", addr, "web", mdns.TypeA)
		if resp.Rcode != mdns.RcodeSuccess && resp.Rcode != mdns.RcodeServerFailure {
			t.Fatalf("rcode %s", mdns.RcodeToString[resp.Rcode])
		}
	}
	cancel()
	wg.Wait()
}
