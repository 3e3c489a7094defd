package dispatcher_test

import (
	"context"
	"slices"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/test/testutil"
)

func heartbeat(conds ...*apiv1.NodeCondition) *apiv1.WorkerMessage {
	return &apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Heartbeat{Heartbeat: &apiv1.Heartbeat{Conditions: conds}}}
}

func condition(typ, msg string) *apiv1.NodeCondition {
	return &apiv1.NodeCondition{Type: typ, Message: msg}
}

// conditionsOf returns a node's conditions as "type: message".
func conditionsOf(m *dispatchertest.Manager, id string) []string {
	n, _ := m.State.Node(id)
	var out []string
	for _, c := range n.GetConditions() {
		out = append(out, c.GetType()+": "+c.GetMessage())
	}
	slices.Sort(out)
	return out
}

// TestHeartbeatConditions: the conditions a worker reports on its
// heartbeats reach the node, are committed only when they change (never
// once per heartbeat), clear when the worker stops reporting them, and
// leave the conditions that are not the worker's alone.
func TestHeartbeatConditions(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	c := connect(t, m, "w1")
	// A leader-side condition, set before the worker reports anything.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := fsm.UpdateNode(ctx, m.Raft.Apply, m.State, "w1", func(n *apiv1.Node) (bool, error) {
		n.Conditions = append(n.Conditions, condition("assignment", "cannot take task x"))
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	writes := 0
	sub := m.Events.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "node" && ev.GetId() == "w1" }, 1024)
	t.Cleanup(sub.Close)
	// waitFor waits until the node's conditions are want, counting the
	// node writes on the way.
	waitFor := func(want ...string) {
		t.Helper()
		slices.Sort(want)
		deadline := time.After(20 * time.Second)
		for !slices.Equal(conditionsOf(m, "w1"), want) {
			select {
			case <-sub.C:
				writes++
			case <-deadline:
				t.Fatalf("node conditions = %q, want %q", conditionsOf(m, "w1"), want)
			}
		}
		for {
			select {
			case <-sub.C:
				writes++
				continue
			default:
			}
			return
		}
	}

	hung := condition(dispatcher.ConditionRuntime, "containerd does not answer")
	for range 5 {
		c.send(heartbeat(hung, condition("assignment", "a worker may not set this")))
	}
	// Heartbeats are handled in order: once a later change shows, the
	// repeats before it have been handled.
	c.send(heartbeat(condition(dispatcher.ConditionRuntime, "containerd still does not answer")))
	waitFor("assignment: cannot take task x", "runtime: containerd still does not answer")
	if writes != 2 {
		t.Errorf("6 heartbeats with 2 different sets of conditions made %d node writes, want 2", writes)
	}
	n, _ := m.State.Node("w1")
	for _, cond := range n.GetConditions() {
		if cond.GetType() == dispatcher.ConditionRuntime && cond.GetSince() == nil {
			t.Errorf("condition %v has no since", cond)
		}
	}

	writes = 0
	for range 5 {
		c.send(heartbeat())
	}
	c.send(heartbeat(hung))
	waitFor("assignment: cannot take task x", "runtime: containerd does not answer")
	if writes != 2 {
		t.Errorf("clearing and setting the runtime condition again made %d node writes, want 2", writes)
	}
}

// TestHeartbeatsAreNoRaftWrites: heartbeats that change nothing append
// nothing to the Raft log; only the one that brings a new condition does.
func TestHeartbeatsAreNoRaftWrites(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	c := connect(t, m, "w1")
	c.send(heartbeat())
	testutil.Eventually(t, 20*time.Second, "w1 READY", func() bool {
		n, ok := m.State.Node("w1")
		return ok && n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY
	})
	before := m.Raft.LastIndex()
	for range 50 {
		c.send(heartbeat())
	}
	// Heartbeats are handled in order: once this one's condition shows,
	// the 50 before it have been handled.
	c.send(heartbeat(condition(dispatcher.ConditionRuntime, "containerd does not answer")))
	testutil.Eventually(t, 20*time.Second, "the runtime condition", func() bool {
		return slices.Equal(conditionsOf(m, "w1"), []string{"runtime: containerd does not answer"})
	})
	if got := m.Raft.LastIndex() - before; got != 1 {
		t.Errorf("51 heartbeats, one with a new condition, appended %d Raft entries, want 1", got)
	}
}
