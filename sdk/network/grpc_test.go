package network_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/sdk/networktest"
	networkv1 "github.com/warrenorch/warren/sdk/proto/network/v1"
)

func wire(t *testing.T, impl network.Network) (network.Network, networkv1.NetworkClient) {
	t.Helper()
	conn := sdk.TestConn(t, impl, network.Register(impl))
	// Closed before TestConn's own cleanup stops the server, so that the two
	// do not stop it concurrently (see networktest.Run).
	t.Cleanup(func() { conn.Close() })
	return network.NewClient(conn), networkv1.NewNetworkClient(conn)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestErrorsCrossTheWire(t *testing.T) {
	nw, _ := wire(t, networktest.NewFakeNetwork())
	ctx := testCtx(t)
	node := networktest.DefaultNode

	_, err := nw.Attach(ctx, "t1", "/ns/t1")
	if !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Attach before SetupNode = %v, want ErrFailedPrecondition", err)
	}
	if _, err := nw.SetupNode(ctx, node); err != nil {
		t.Fatal(err)
	}
	if _, err := nw.Attach(ctx, "t1", "/ns/t1"); err != nil {
		t.Fatal(err)
	}
	_, err = nw.Attach(ctx, "t1", "/ns/other")
	if !errors.Is(err, sdk.ErrConflict) || err.Error() != `task "t1": attached to "/ns/t1", not "/ns/other": conflict` {
		t.Errorf("Attach elsewhere = %v, want the plugin's ErrConflict", err)
	}
	bad := node
	bad.NodeID = ""
	if _, err := nw.SetupNode(ctx, bad); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("SetupNode without node ID = %v, want ErrInvalidArgument", err)
	}
}

// TestMalformedRequests sends what the Go client cannot: prefixes that do
// not parse. The server refuses them before the plugin sees them.
func TestMalformedRequests(t *testing.T) {
	_, raw := wire(t, networktest.NewFakeNetwork())
	ctx := testCtx(t)
	_, err := raw.SetupNode(ctx, &networkv1.SetupNodeRequest{NodeId: "n", Subnet: "10.42.1.0", OverlayCidr: "10.42.0.0/16"})
	if !errors.Is(sdk.FromStatus(err), sdk.ErrInvalidArgument) {
		t.Errorf("SetupNode with a bad subnet = %v, want InvalidArgument", err)
	}
	_, err = raw.SetupNode(ctx, &networkv1.SetupNodeRequest{NodeId: "n", Subnet: "10.42.1.0/24", OverlayCidr: "x"})
	if !errors.Is(sdk.FromStatus(err), sdk.ErrInvalidArgument) {
		t.Errorf("SetupNode with a bad overlay = %v, want InvalidArgument", err)
	}
	_, err = raw.SetPeers(ctx, &networkv1.SetPeersRequest{Peers: []*networkv1.Peer{{NodeId: "p", Subnets: []string{"nope"}}}})
	if !errors.Is(sdk.FromStatus(err), sdk.ErrInvalidArgument) {
		t.Errorf("SetPeers with a bad subnet = %v, want InvalidArgument", err)
	}
}

func TestAttachmentCrossesTheWire(t *testing.T) {
	nw, _ := wire(t, networktest.NewFakeNetwork())
	ctx := testCtx(t)
	self, err := nw.SetupNode(ctx, networktest.DefaultNode)
	if err != nil {
		t.Fatal(err)
	}
	if self.NodeID != networktest.DefaultNode.NodeID || len(self.Subnets) != 1 || self.Subnets[0] != networktest.DefaultNode.Subnet {
		t.Errorf("SetupNode = %+v", self)
	}
	a, err := nw.Attach(ctx, "t1", "/ns/t1")
	if err != nil {
		t.Fatal(err)
	}
	want := network.Attachment{Address: netip.MustParsePrefix("10.199.3.2/24"), Gateway: netip.MustParseAddr("10.199.3.1")}
	if a != want {
		t.Errorf("Attach = %+v, want %+v", a, want)
	}
}
