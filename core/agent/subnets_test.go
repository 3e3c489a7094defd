package agent

import (
	"context"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// TestAllocateSubnets runs the allocator loop on a real single-manager
// Raft: workers that join get distinct subnets, a manager-only node none;
// with the range full a worker waits, and gets the subnet another worker
// freed when that worker is removed (the node event wakes the loop).
func TestAllocateSubnets(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	// Two /24 subnets in this range.
	m.Apply(&fsmpb.SetClusterInfo{ClusterId: "c", Network: &apiv1.ClusterNetwork{OverlayRange: "10.80.0.0/23", NodePrefix: 24, Domain: "warren"}})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := allocateSubnets(ctx, m.Raft, m.State, m.Events, hclog.NewNullLogger()); err != nil {
			t.Errorf("allocateSubnets: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })

	subnet := func(id string) string { n, _ := m.State.Node(id); return n.GetNetwork().GetSubnet() }
	join := func(id string, worker bool) {
		m.Apply(&fsmpb.UpsertNode{Node: &apiv1.Node{Id: id, Name: id, Worker: worker, Status: apiv1.NodeStatus_NODE_STATUS_READY}})
	}
	join("a", true)
	join("m", false)
	join("b", true)
	dispatchertest.Eventually(t, "workers a and b to get subnets", func() bool { return subnet("a") != "" && subnet("b") != "" })
	if subnet("a") == subnet("b") {
		t.Fatalf("a and b share subnet %s", subnet("a"))
	}
	if s := subnet("m"); s != "" {
		t.Errorf("manager-only node got subnet %s", s)
	}

	join("c", true) // the range is full: c waits
	freed := subnet("b")
	m.Apply(&fsmpb.RemoveNode{Id: "b"})
	dispatchertest.Eventually(t, "worker c to get b's freed subnet", func() bool { return subnet("c") == freed })
	if subnet("a") == freed {
		t.Errorf("a moved to %s", freed)
	}
}
