package networktest

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/warrenorch/warren/sdk/network"
)

func TestFakeNetwork(t *testing.T) {
	Run(t, func(*testing.T) network.Network { return NewFakeNetwork() }, FakeOptions())
}

// TestFakeNetworkPublished runs the suite with the Published hook, reading
// the fake's ports as a plugin's test reads the host.
func TestFakeNetworkPublished(t *testing.T) {
	var cur *FakeNetwork
	opts := FakeOptions()
	opts.Published = func(*testing.T) []network.PublishedPort { return cur.Published() }
	Run(t, func(*testing.T) network.Network { cur = NewFakeNetwork(); return cur }, opts)
}

func TestFakeNetworkWithoutNetns(t *testing.T) {
	Run(t, func(*testing.T) network.Network { return NewFakeNetwork() }, Options{})
}

func TestFakeNetworkIPv6(t *testing.T) {
	opts := FakeOptions()
	opts.Node = network.NodeConfig{
		NodeID:      "v6",
		Subnet:      netip.MustParsePrefix("fd42:0:0:3::/64"),
		OverlayCIDR: netip.MustParsePrefix("fd42::/48"),
	}
	Run(t, func(*testing.T) network.Network { return NewFakeNetwork() }, opts)
}

// TestFakeNetworkPeers checks what the suite cannot see through the
// interface: SetPeers replaces the whole set.
func TestFakeNetworkPeers(t *testing.T) {
	ctx := context.Background()
	f := NewFakeNetwork()
	if _, err := f.SetupNode(ctx, DefaultNode); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, opts: Options{Node: DefaultNode}}
	p1, p2, p3 := e.peer(1), e.peer(2), e.peer(3)
	for _, tc := range []struct {
		set  []network.Peer
		want []string
	}{
		{[]network.Peer{p2, p1}, []string{p1.NodeID, p2.NodeID}},
		{[]network.Peer{p3, p2}, []string{p2.NodeID, p3.NodeID}},
		{[]network.Peer{{NodeID: DefaultNode.NodeID}, p1}, []string{p1.NodeID}},
		{nil, nil},
	} {
		if err := f.SetPeers(ctx, tc.set); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range f.Peers() {
			got = append(got, p.NodeID)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("after SetPeers(%v): peers %v, want %v", tc.set, got, tc.want)
		}
	}
}

// TestFakeNetworkReusesReleasedAddresses fills a small subnet, then checks
// that released addresses come back least recently released first.
func TestFakeNetworkReusesReleasedAddresses(t *testing.T) {
	ctx := context.Background()
	f := NewFakeNetwork()
	cfg := network.NodeConfig{NodeID: "n", Subnet: netip.MustParsePrefix("10.0.0.0/29"), OverlayCIDR: netip.MustParsePrefix("10.0.0.0/16")}
	if _, err := f.SetupNode(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// A /29 has 8 addresses: network, gateway, 5 for tasks, broadcast.
	var got []string
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		a, err := f.Attach(ctx, id, "/ns/"+id)
		if err != nil {
			t.Fatalf("Attach(%q): %v", id, err)
		}
		got = append(got, a.Address.String())
	}
	want := []string{"10.0.0.2/29", "10.0.0.3/29", "10.0.0.4/29", "10.0.0.5/29", "10.0.0.6/29"}
	if !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	if _, err := f.Attach(ctx, "f", "/ns/f"); err == nil {
		t.Error("Attach to a full subnet succeeded")
	}
	for _, id := range []string{"d", "b"} {
		if err := f.Detach(ctx, id, "/ns/"+id); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ id, want string }{{"f", "10.0.0.5/29"}, {"g", "10.0.0.3/29"}} {
		a, err := f.Attach(ctx, tc.id, "/ns/"+tc.id)
		if err != nil || a.Address.String() != tc.want {
			t.Errorf("Attach(%q) = %v, %v; want %s", tc.id, a.Address, err, tc.want)
		}
	}
}
