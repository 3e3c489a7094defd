//go:build linux

package main

import (
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/warrenorch/warren/plugins/network-wireguard/wireguard"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/test/netns"
)

// readPublished decodes the published ports from the rules of the
// plugin's ports table in h, as the kernel holds them.
func readPublished(t testing.TB, h *netns.Host) []network.PublishedPort {
	t.Helper()
	var out []network.PublishedPort
	err := h.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table, err := c.ListTableOfFamily(wireguard.PortsTable, nftables.TableFamilyIPv4)
		if err != nil || table == nil {
			return nil // no table: nothing published
		}
		rules, err := c.GetRules(table, &nftables.Chain{Name: wireguard.PortsChain, Table: table})
		if err != nil {
			return err
		}
		for _, r := range rules {
			p := network.PublishedPort{Mode: network.Host}
			var last expr.Any
			for _, e := range r.Exprs {
				switch e := e.(type) {
				case *expr.Cmp:
					if m, ok := last.(*expr.Meta); ok && m.Key == expr.MetaKeyL4PROTO {
						p.Protocol = map[byte]network.Protocol{unix.IPPROTO_TCP: network.TCP, unix.IPPROTO_UDP: network.UDP}[e.Data[0]]
					}
					if _, ok := last.(*expr.Payload); ok {
						p.Port = binaryutil.BigEndian.Uint16(e.Data)
					}
				case *expr.Meta:
					if e.Key == expr.MetaKeyMARK && e.SourceRegister {
						p.Mode = network.Ingress
					}
				case *expr.Lookup:
					elems, err := c.GetSetElements(&nftables.Set{Table: table, Name: e.SetName, ID: e.SetID})
					if err != nil {
						return err
					}
					for _, el := range elems {
						a, _ := netip.AddrFromSlice(el.Val)
						p.Backends = append(p.Backends, a)
					}
				case *expr.Immediate:
					if e.Register == 2 {
						p.TargetPort = binaryutil.BigEndian.Uint16(e.Data)
					}
				}
				last = e
			}
			if len(p.Backends) == 0 {
				continue // a rule that only marks
			}
			slices.SortFunc(p.Backends, func(a, b netip.Addr) int { return a.Compare(b) })
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read the ports table in %s: %v", h.Name, err)
	}
	return out
}

// ruleHandles returns the kernel's handles of the rules in the ports
// table's chain in h: rebuilt rules get new ones.
func ruleHandles(t testing.TB, h *netns.Host) []uint64 {
	t.Helper()
	var out []uint64
	if err := h.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		table := &nftables.Table{Name: wireguard.PortsTable, Family: nftables.TableFamilyIPv4}
		rules, err := c.GetRules(table, &nftables.Chain{Name: wireguard.PortsChain, Table: table})
		for _, r := range rules {
			out = append(out, r.Handle)
		}
		return err
	}); err != nil {
		t.Fatalf("rules of %s in %s: %v", wireguard.PortsTable, h.Name, err)
	}
	return out
}

// hasPortsTable reports whether h has the plugin's ports table.
func hasPortsTable(t testing.TB, h *netns.Host) bool {
	t.Helper()
	found := false
	if err := h.Do(func() error {
		c, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		for _, tb := range tables {
			found = found || tb.Name == wireguard.PortsTable
		}
		return err
	}); err != nil {
		t.Fatalf("list nftables tables in %s: %v", h.Name, err)
	}
	return found
}

// remoteOf returns the host part of a connection's remote address.
func remoteOf(a net.Addr) string {
	if a == nil {
		return "<none>"
	}
	host, _, _ := net.SplitHostPort(a.String())
	return host
}

// TestPublishedPorts: an ingress port of node A forwards to a task on node
// B, from another host and from A itself (127.0.0.1 and its own address),
// with the connection coming from A's gateway; a host port of B forwards
// to B's task keeping the client's address (but not for the node's own
// connections, nor its tasks': those would be answered past the NAT);
// removing the ports removes the
// table and the forwarding.
func TestPublishedPorts(t *testing.T) {
	m := newMesh(t)
	client := m.tn.AddHost(t, "client")
	lnB := listen(t, m.taskB, m.attB.Address.Addr())
	target := uint16(lnB.Addr().(*net.TCPAddr).Port)
	backB := []netip.Addr{m.attB.Address.Addr()}
	ingress := []network.PublishedPort{{Service: "web", Protocol: network.TCP, Port: 18080, TargetPort: target, Mode: network.Ingress, Backends: backB}}
	host := []network.PublishedPort{{Service: "web-host", Protocol: network.TCP, Port: 18081, TargetPort: target, Mode: network.Host, Backends: backB}}
	var handles []uint64
	for i := range 2 { // the second call changes nothing
		if err := m.a.nw.SetPublished(t.Context(), ingress); err != nil {
			t.Fatalf("SetPublished on a: %v", err)
		}
		if err := m.b.nw.SetPublished(t.Context(), host); err != nil {
			t.Fatalf("SetPublished on b: %v", err)
		}
		h := ruleHandles(t, m.a.host)
		if i == 1 && !slices.Equal(h, handles) {
			t.Errorf("the same SetPublished again rebuilt the rules: handles %v, then %v", handles, h)
		}
		handles = h
	}
	gwA := m.attA.Gateway.String()
	// Another task on B, on the same bridge as the host-mode backend.
	taskB2 := m.tn.AddNamespace(t, "task-b2")
	m.b.attach("task-b2", taskB2)
	for _, tc := range []struct {
		name       string
		from       *netns.Host
		addr       string
		wantSource string
	}{
		{"ingress from another host", client, m.a.host.Addr(18080), gwA},
		{"ingress from the node itself", m.a.host, m.a.host.Addr(18080), gwA},
		{"ingress from the node's loopback", m.a.host, "127.0.0.1:18080", gwA},
		{"host mode from another host", client, m.b.host.Addr(18081), client.IP},
		{"host mode from the node's loopback", m.b.host, "127.0.0.1:18081", m.attB.Gateway.String()},
		{"host mode from a task on the backend's bridge", taskB2, m.b.host.Addr(18081), m.attB.Gateway.String()},
		{"ingress from a task on the node", m.taskA, m.a.host.Addr(18080), gwA},
	} {
		remote := echoOnce(lnB)
		roundTrip(t, tc.from, tc.addr)
		if got := remoteOf(<-remote); got != tc.wantSource {
			t.Errorf("%s: the task saw the connection from %s, want %s", tc.name, got, tc.wantSource)
		}
	}
	// Host mode publishes nothing on A: nothing answers there.
	if c, err := dial(client, m.a.host.Addr(18081)); err == nil {
		c.Close()
		t.Errorf("port 18081 answers on node a, which has no host-mode port")
	}
	for _, n := range []*node{m.a, m.b} {
		if err := n.nw.SetPublished(t.Context(), nil); err != nil {
			t.Fatalf("SetPublished(nil) on %s: %v", n.host.Name, err)
		}
		if hasPortsTable(t, n.host) {
			t.Errorf("after SetPublished(nil), %s still has table %s", n.host.Name, wireguard.PortsTable)
		}
	}
	if c, err := dial(client, m.a.host.Addr(18080)); err == nil {
		c.Close()
		t.Errorf("port 18080 still answers after its port was removed")
	}
}

// sendMiBs connects from inside ns to addr and writes 1 MiB per benchmark
// iteration.
func sendMiBs(b *testing.B, ns *netns.Host, addr string) {
	c, err := dial(ns, addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	chunk := make([]byte, 1<<20)
	b.SetBytes(int64(len(chunk)))
	for b.Loop() {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishedPort compares a request through a published port with
// a direct request to the task, over the same overlay: a task on node B
// answers; "direct" is node A connecting to the task's overlay address,
// "ingress-local" node A connecting to its own published port (127.0.0.1,
// DNAT to the task and SNAT to A's gateway), and "ingress-remote" another
// host connecting to A's published port (one underlay hop more).
// "request" sub-benchmarks time a new connection, a 64-byte request and
// its echo (p50 and p99); "throughput" ones send 1 MiB writes over one
// connection to a task that discards them.
func BenchmarkPublishedPort(b *testing.B) {
	m := newMesh(b)
	client := m.tn.AddHost(b, "client")
	serve := func(handle func(net.Conn)) (net.Listener, uint16) {
		ln := listen(b, m.taskB, m.attB.Address.Addr())
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					handle(c)
				}()
			}
		}()
		return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
	}
	echo, echoPort := serve(func(c net.Conn) { _, _ = io.Copy(c, c) })
	sink, sinkPort := serve(func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
	backend := []netip.Addr{m.attB.Address.Addr()}
	ports := []network.PublishedPort{
		{Service: "echo", Protocol: network.TCP, Port: 18080, TargetPort: echoPort, Mode: network.Ingress, Backends: backend},
		{Service: "sink", Protocol: network.TCP, Port: 18081, TargetPort: sinkPort, Mode: network.Ingress, Backends: backend},
	}
	if err := m.a.nw.SetPublished(b.Context(), ports); err != nil {
		b.Fatal(err)
	}
	type path struct {
		name string
		from *netns.Host
		addr string
	}
	paths := func(direct net.Listener, port int) []path {
		return []path{
			{"direct", m.a.host, direct.Addr().String()},
			{"ingress-local", m.a.host, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))},
			{"ingress-remote", client, m.a.host.Addr(port)},
		}
	}
	for _, p := range paths(echo, 18080) {
		b.Run("request/"+p.name, func(b *testing.B) {
			msg, buf := make([]byte, 64), make([]byte, 64)
			var took []time.Duration
			for b.Loop() {
				start := time.Now()
				c, err := dial(p.from, p.addr)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.Write(msg); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				c.Close()
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
	for _, p := range paths(sink, 18081) {
		b.Run("throughput/"+p.name, func(b *testing.B) { sendMiBs(b, p.from, p.addr) })
	}
}
