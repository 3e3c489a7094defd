package fsm

import (
	"context"
	"errors"
	"strings"
	"testing"

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
