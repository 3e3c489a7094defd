package network

import (
	"errors"
	"net/netip"
	"reflect"
	"testing"

	"github.com/warrenorch/warren/sdk"
)

var testNode = NodeConfig{
	NodeID:      "n1",
	Subnet:      netip.MustParsePrefix("10.42.1.0/24"),
	OverlayCIDR: netip.MustParsePrefix("10.42.0.0/16"),
}

func TestNodeConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*NodeConfig)
		ok     bool
	}{
		{"valid", func(*NodeConfig) {}, true},
		{"subnet is the overlay", func(c *NodeConfig) { c.Subnet = c.OverlayCIDR }, true},
		{"ipv6", func(c *NodeConfig) {
			c.Subnet, c.OverlayCIDR = netip.MustParsePrefix("fd42:0:0:1::/64"), netip.MustParsePrefix("fd42::/48")
		}, true},
		{"no node ID", func(c *NodeConfig) { c.NodeID = "" }, false},
		{"no subnet", func(c *NodeConfig) { c.Subnet = netip.Prefix{} }, false},
		{"no overlay", func(c *NodeConfig) { c.OverlayCIDR = netip.Prefix{} }, false},
		{"host bits", func(c *NodeConfig) { c.Subnet = netip.MustParsePrefix("10.42.1.1/24") }, false},
		{"outside", func(c *NodeConfig) { c.Subnet = netip.MustParsePrefix("10.43.1.0/24") }, false},
		{"wider", func(c *NodeConfig) { c.Subnet = netip.MustParsePrefix("10.0.0.0/8") }, false},
		{"mixed families", func(c *NodeConfig) { c.Subnet = netip.MustParsePrefix("fd42::/64") }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testNode
			tc.modify(&c)
			err := c.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("Validate() = %v, want ErrInvalidArgument", err)
			}
		})
	}
}

func TestCheckPeers(t *testing.T) {
	peer := func(id string, subnets ...string) Peer {
		p := Peer{NodeID: id, PublicKey: "k-" + id}
		for _, s := range subnets {
			p.Subnets = append(p.Subnets, netip.MustParsePrefix(s))
		}
		return p
	}
	for _, tc := range []struct {
		name  string
		peers []Peer
		want  []string // node IDs of the result; nil with ok false means an error
		ok    bool
	}{
		{"empty", nil, nil, true},
		{"sorted, self dropped", []Peer{peer("n3", "10.42.3.0/24"), peer("n1", "10.42.1.0/24"), peer("n2", "10.42.2.0/24")}, []string{"n2", "n3"}, true},
		{"peer without subnets", []Peer{peer("n2")}, []string{"n2"}, true},
		{"duplicate", []Peer{peer("n2", "10.42.2.0/24"), peer("n2", "10.42.3.0/24")}, nil, false},
		{"no ID", []Peer{peer("", "10.42.2.0/24")}, nil, false},
		{"overlap each other", []Peer{peer("n2", "10.42.2.0/24"), peer("n3", "10.42.2.128/25")}, nil, false},
		{"overlap the node", []Peer{peer("n2", "10.42.0.0/23")}, nil, false},
		{"own subnets overlap", []Peer{peer("n2", "10.42.2.0/24", "10.42.2.0/25")}, nil, false},
		{"host bits", []Peer{peer("n2", "10.42.2.1/24")}, nil, false},
		{"invalid subnet", []Peer{{NodeID: "n2", Subnets: []netip.Prefix{{}}}}, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckPeers(testNode, tc.peers)
			if (err == nil) != tc.ok {
				t.Fatalf("CheckPeers() = %v, want ok %v", err, tc.ok)
			}
			if err != nil {
				if !errors.Is(err, sdk.ErrInvalidArgument) {
					t.Errorf("CheckPeers() = %v, want ErrInvalidArgument", err)
				}
				return
			}
			var ids []string
			for _, p := range got {
				ids = append(ids, p.NodeID)
			}
			if !reflect.DeepEqual(ids, tc.want) {
				t.Errorf("CheckPeers() = %v, want %v", ids, tc.want)
			}
		})
	}
}

func TestPeerRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer Peer
	}{
		{"empty", Peer{}},
		{"v4 and v6", Peer{NodeID: "n", PublicKey: "k", Endpoint: "[2001:db8::1]:51820", Subnets: []netip.Prefix{
			netip.MustParsePrefix("10.42.1.0/24"), netip.MustParsePrefix("fd42:0:0:1::/64"),
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := peerFromPB(peerToPB(tc.peer), sdk.ErrInternal)
			if err != nil || !reflect.DeepEqual(got, tc.peer) {
				t.Errorf("round trip = %+v, %v; want %+v", got, err, tc.peer)
			}
		})
	}
}

func TestParsePrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want netip.Prefix
		ok   bool
	}{
		{"", netip.Prefix{}, true},
		{"10.42.3.7/24", netip.MustParsePrefix("10.42.3.7/24"), true}, // host bits kept: task addresses need them
		{"fd42::7/64", netip.MustParsePrefix("fd42::7/64"), true},
		{"10.42.3.7", netip.Prefix{}, false},
		{"garbage", netip.Prefix{}, false},
	} {
		got, err := parsePrefix("test", tc.in, sdk.ErrInvalidArgument)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parsePrefix(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
		if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("parsePrefix(%q) = %v, want ErrInvalidArgument", tc.in, err)
		}
		if tc.ok && prefixString(got) != tc.in {
			t.Errorf("prefixString(%v) = %q, want %q", got, prefixString(got), tc.in)
		}
	}
}
