package clusternet_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/credentials"

	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pki/pkitest"
)

// h2Preface is the HTTP/2 client preface followed by an empty SETTINGS
// frame: all the reported flood sent on each connection.
var h2Preface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// h2WindowUpdate is an HTTP/2 WINDOW_UPDATE frame (connection, +1 byte):
// traffic that keeps a connection busy and that gRPC, unlike a PING flood,
// does not end by itself.
var h2WindowUpdate = []byte{0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0, 0, 1}

// loopback returns the i-th test source address, 127.0.0.(2+i): Linux
// answers all of 127/8 on lo, so each is a distinct source IP.
func loopback(i int) net.IP { return net.IPv4(127, 0, 0, byte(2+i)) }

// strangerClient is a client connection without a certificate.
type strangerClient struct {
	conn   net.Conn
	dialed time.Time
	closed chan time.Time // when the server closed it
}

// dialStranger opens a TLS connection from src to addr with ALPN h2 and no
// client certificate, sends the HTTP/2 preface, and watches for the server
// closing it. The connection is closed at the end of the test.
func dialStranger(t *testing.T, c *pkitest.Cluster, addr string, src net.IP) *strangerClient {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 10 * time.Second}
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, src, err)
	}
	t.Cleanup(func() { raw.Close() })
	conn := tls.Client(raw, pki.JoinConfig(pki.Digest(c.CA.Cert.Raw), nil, "h2"))
	s := &strangerClient{conn: conn, dialed: time.Now(), closed: make(chan time.Time, 1)}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// TLS 1.3: the client's handshake ends before the server's, so a
	// connection the server closes at once may still pass here.
	if err := conn.Handshake(); err == nil {
		_, _ = conn.Write(h2Preface)
	}
	_ = conn.SetDeadline(time.Time{})
	go func() {
		buf := make([]byte, 512)
		for {
			if _, err := conn.Read(buf); err != nil {
				s.closed <- time.Now()
				return
			}
		}
	}()
	return s
}

// waitClosed waits until the server closed s and returns how long after
// the dial that was.
func (s *strangerClient) waitClosed(t *testing.T, within time.Duration) time.Duration {
	t.Helper()
	select {
	case at := <-s.closed:
		return at.Sub(s.dialed)
	case <-time.After(within):
		t.Fatalf("connection from %s still open %v after its dial", s.conn.LocalAddr(), time.Since(s.dialed))
		return 0
	}
}

// pollStrangers waits until m holds want strangers.
func pollStrangers(t *testing.T, m *clusternet.Mux, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Strangers() != want {
		if time.Now().After(deadline) {
			t.Fatalf("the Mux holds %d connections without a certificate, want %d", m.Strangers(), want)
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
}

// memberCheck makes a gRPC call with a worker's certificate from src.
func memberCheck(t *testing.T, c *pkitest.Cluster, addr string, src net.IP) error {
	t.Helper()
	tc := clusternet.ClientCredentials(c.Creds(t, "w1", pki.RoleWorker))
	_, err := healthCheckFrom(t, addr, tc, src)
	return err
}

// TestStrangerCaps floods the cluster port with connections that present no
// certificate and send only the HTTP/2 preface (issue 9, point 3): the caps
// hold, the oldest are closed to make room, the rest are closed at the end
// of their lifetime, and a member (even from a flooding source) still gets
// its calls through meanwhile.
func TestStrangerCaps(t *testing.T) {
	cases := []struct {
		name      string
		perSource int
		total     int
		sources   int
		each      int // connections per source
		wantHeld  int
	}{
		{name: "per source", perSource: 20, total: 1000, sources: 1, each: 300, wantHeld: 20},
		{name: "in total", perSource: 40, total: 50, sources: 10, each: 30, wantHeld: 50},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := pkitest.NewCluster(t, "c1")
			const lifetime = 3 * time.Second
			m, err := clusternet.ListenLimits("127.0.0.1:0", c.Creds(t, "m1", pki.RoleManager), testLogger(t, "mux", hclog.Warn),
				clusternet.Limits{StrangersPerSource: tc.perSource, Strangers: tc.total, StrangerLifetime: lifetime, StrangerIdle: lifetime})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			serveHealth(t, m)
			addr := m.Addr().String()

			var conns []*strangerClient
			for i := range tc.sources * tc.each {
				conns = append(conns, dialStranger(t, c, addr, loopback(i%tc.sources)))
				if n := m.Strangers(); n > min(tc.total, tc.sources*tc.perSource) {
					t.Fatalf("after %d connections the Mux holds %d without a certificate, over the caps (%d per source, %d in total)", i+1, n, tc.perSource, tc.total)
				}
			}
			pollStrangers(t, m, tc.wantHeld)
			// A member, from the first (flooding) source, is not refused.
			if err := memberCheck(t, c, addr, loopback(0)); err != nil {
				t.Fatalf("member call during the flood: %v", err)
			}
			if n := m.Strangers(); n > tc.wantHeld {
				t.Errorf("after the member's call the Mux holds %d strangers, want at most %d", n, tc.wantHeld)
			}

			// The member's connection counted as a stranger for its
			// handshake: it made room by closing the oldest one held.
			held := conns[len(conns)-tc.wantHeld+1:]
			for _, s := range conns[:len(conns)-tc.wantHeld+1] {
				if d := s.waitClosed(t, 5*time.Second); d >= lifetime {
					t.Fatalf("an evicted connection was closed only %v after its dial (lifetime %v)", d, lifetime)
				}
			}
			for _, s := range held {
				d := s.waitClosed(t, lifetime+5*time.Second)
				if d < lifetime-500*time.Millisecond {
					t.Errorf("a held connection was closed %v after its dial, before its lifetime %v", d, lifetime)
				}
			}
			pollStrangers(t, m, 0)
		})
	}
}

// TestStrangerDeadlines checks each deadline a connection without a
// certificate is held to.
func TestStrangerDeadlines(t *testing.T) {
	const short, long = 700 * time.Millisecond, 20 * time.Second
	cases := []struct {
		name string
		lim  clusternet.Limits
		// tls: do the TLS handshake and send the HTTP/2 preface; busy:
		// then keep sending frames.
		tls, busy bool
	}{
		{name: "handshake", lim: clusternet.Limits{HandshakeTimeout: short, StrangerIdle: long, StrangerLifetime: long}},
		{name: "idle", lim: clusternet.Limits{HandshakeTimeout: long, StrangerIdle: short, StrangerLifetime: long}, tls: true},
		{name: "lifetime", lim: clusternet.Limits{HandshakeTimeout: long, StrangerIdle: short, StrangerLifetime: 2 * short}, tls: true, busy: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := pkitest.NewCluster(t, "c1")
			m, err := clusternet.ListenLimits("127.0.0.1:0", c.Creds(t, "m1", pki.RoleManager), testLogger(t, "mux", hclog.Warn), tc.lim)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			serveHealth(t, m)
			want := tc.lim.HandshakeTimeout
			var s *strangerClient
			if tc.tls {
				s = dialStranger(t, c, m.Addr().String(), loopback(0))
				want = tc.lim.StrangerIdle
				if tc.busy { // busy past its idle deadline: the lifetime ends it
					want = tc.lim.StrangerLifetime
				}
			} else {
				raw, err := net.Dial("tcp", m.Addr().String())
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { raw.Close() })
				s = &strangerClient{conn: raw, dialed: time.Now(), closed: make(chan time.Time, 1)}
				go func() {
					_, _ = raw.Read(make([]byte, 1))
					s.closed <- time.Now()
				}()
			}
			if tc.busy {
				done := make(chan struct{})
				t.Cleanup(func() { close(done) })
				go func() {
					tick := time.NewTicker(short / 4)
					defer tick.Stop()
					for {
						select {
						case <-done:
							return
						case <-tick.C:
							if _, err := s.conn.Write(h2WindowUpdate); err != nil {
								return
							}
						}
					}
				}()
			}
			d := s.waitClosed(t, want+5*time.Second)
			if d < want-100*time.Millisecond {
				t.Errorf("closed %v after the dial, want about %v", d, want)
			}
			t.Logf("closed %v after the dial (deadline %v)", d, want)
			pollStrangers(t, m, 0)
		})
	}
}

// healthCheckFrom is healthCheck dialing from the source address src.
func healthCheckFrom(t *testing.T, addr string, tc credentials.TransportCredentials, src net.IP) (any, error) {
	t.Helper()
	dial := func(ctx context.Context, a string) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
		return d.DialContext(ctx, "tcp", a)
	}
	resp, err := healthCheckDial(t, addr, tc, dial)
	if err != nil {
		return nil, fmt.Errorf("from %s: %w", src, err)
	}
	return resp, nil
}
