package fsm

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/sdk"
)

// UpsertNode with an expected version refuses a stale write, and
// UpdateNode re-reads and retries so that neither change is lost.
func TestUpdateNodeLosesNoConcurrentChange(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n1", Name: "edge-1", Status: apiv1.NodeStatus_NODE_STATUS_READY}})
	stale, _ := h.state.Node("n1")

	// A change committed after the read...
	h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n1", Name: "edge-1", Status: apiv1.NodeStatus_NODE_STATUS_DOWN}, ExpectedVersion: stale.GetVersion()})
	// ...makes a second write based on the same read fail.
	res := h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n1", Name: "edge-1", Availability: apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN}, ExpectedVersion: stale.GetVersion()})
	if err, ok := res.(error); !ok || !errors.Is(err, sdk.ErrConflict) {
		t.Fatalf("stale write: %v, want a conflict", res)
	}

	// UpdateNode: the first attempt meets a concurrent change, the retry
	// keeps both.
	raced := false
	apply := func(ctx context.Context, cmd Command) (any, error) {
		if !raced {
			raced = true
			h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n1", Name: "edge-1", Status: apiv1.NodeStatus_NODE_STATUS_READY}})
		}
		if err, ok := h.apply(t, cmd).(error); ok {
			return nil, err
		}
		n, _ := h.state.Node("n1")
		return n, nil
	}
	out, err := UpdateNode(context.Background(), apply, h.state, "n1", func(n *apiv1.Node) (bool, error) {
		n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if out.GetAvailability() != apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN || out.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
		t.Fatalf("node after the retried update: %v", out)
	}
	if _, err := UpdateNode(context.Background(), apply, h.state, "nope", func(*apiv1.Node) (bool, error) { return true, nil }); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("missing node: %v", err)
	}
}

// TestUpdateNodeWithoutNodeResult: an apply that returns no node (an entry
// that was not applied) is an error, not a panic on the type assertion.
func TestUpdateNodeWithoutNodeResult(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n1", Name: "edge-1"}})
	apply := func(context.Context, Command) (any, error) { return nil, nil }
	_, err := UpdateNode(context.Background(), apply, h.state, "n1", func(n *apiv1.Node) (bool, error) {
		n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
		return true, nil
	})
	if err == nil || !strings.Contains(err.Error(), "n1") {
		t.Fatalf("UpdateNode with an apply that returned nil: %v, want an error naming node n1", err)
	}
}

// TestMarkNodesDown: one entry marks every node of a sweep DOWN, changing
// only status, message and updated_at, and skips the nodes that are gone,
// DOWN already or changed since the sweep read them.
func TestMarkNodesDown(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	ready := apiv1.NodeStatus_NODE_STATUS_READY
	for _, id := range []string{"a", "b", "moved-on", "down"} {
		h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: id, Name: "node-" + id, Status: ready, Worker: true,
			Availability: apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN, Labels: map[string]string{"zone": "z"}}})
	}
	h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "down", Name: "node-down", Status: apiv1.NodeStatus_NODE_STATUS_DOWN, Message: "before"}})
	read, _ := h.state.Node("moved-on")
	h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "moved-on", Name: "node-moved-on", Status: ready}}) // registered again since
	a, _ := h.state.Node("a")
	now := timestamppb.Now()

	sub := h.bus.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "node" }, 16)
	defer sub.Close()
	res := h.apply(t, &fsmpb.MarkNodesDown{UpdatedAt: now, Nodes: []*fsmpb.NodeDown{
		{NodeId: "a", Reason: "silent", ExpectedVersion: a.GetVersion()},
		{NodeId: "b", Reason: "silent"},
		{NodeId: "moved-on", Reason: "silent", ExpectedVersion: read.GetVersion()},
		{NodeId: "down", Reason: "silent"},
		{NodeId: "gone", Reason: "silent"},
	}})
	changed, ok := res.([]*apiv1.Node)
	if !ok || len(changed) != 2 || changed[0].GetId() != "a" || changed[1].GetId() != "b" {
		t.Fatalf("result = %v, want nodes a and b", res)
	}
	for _, id := range []string{"a", "b"} {
		n, _ := h.state.Node(id)
		if n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_DOWN || n.GetMessage() != "silent" || !n.GetUpdatedAt().AsTime().Equal(now.AsTime()) ||
			n.GetVersion() != h.index || n.GetAvailability() != apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN || n.GetLabels()["zone"] != "z" || !n.GetWorker() {
			t.Errorf("node %s after MarkNodesDown: %v", id, n)
		}
		if ev := <-sub.C; ev.GetId() != id || ev.GetIndex() != h.index || ev.GetNode().GetStatus() != apiv1.NodeStatus_NODE_STATUS_DOWN {
			t.Errorf("event %v, want node %s down at index %d", ev, id, h.index)
		}
	}
	if n, _ := h.state.Node("moved-on"); n.GetStatus() != ready {
		t.Errorf("a node that changed since the sweep read it was marked %v", n.GetStatus())
	}
	if n, _ := h.state.Node("down"); n.GetMessage() != "before" {
		t.Errorf("a node DOWN already was changed: %v", n)
	}
	if _, ok := h.state.Node("gone"); ok {
		t.Error("a node that is gone was created")
	}
	select {
	case ev := <-sub.C:
		t.Errorf("an event for a skipped node: %v", ev)
	default:
	}

	// A node without an ID refuses the whole command.
	before, _ := h.state.Node("moved-on")
	res = h.apply(t, &fsmpb.MarkNodesDown{Nodes: []*fsmpb.NodeDown{{NodeId: "moved-on"}, {Reason: "no id"}}})
	if err, ok := res.(error); !ok || !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "node 2 of 2 has no id") {
		t.Fatalf("a node without an id: %v, want an invalid-argument error naming it", res)
	}
	if after, _ := h.state.Node("moved-on"); after.GetVersion() != before.GetVersion() {
		t.Fatal("a refused command changed a node")
	}
}
