package dispatcher_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// bigTasks commits count tasks on node, each with an env value of size
// bytes (distinct: each task has a spec of its own; else they share one),
// a few per Raft entry, and returns their IDs.
func bigTasks(m *dispatchertest.Manager, node string, count, size int, distinct bool) []string {
	var ids []string
	var batch []*apiv1.Task
	for i := range count {
		tk := task(fmt.Sprintf("big-%03d", i), node, running, assigned)
		tk.Spec.Env = map[string]string{"BIG": strings.Repeat("x", size)}
		if distinct {
			tk.Spec.Env["I"] = fmt.Sprint(i)
		}
		batch = append(batch, tk)
		ids = append(ids, tk.GetId())
		if len(batch) == 10 || i == count-1 {
			m.Apply(&fsmpb.UpsertTasks{Tasks: batch})
			batch = nil
		}
	}
	return ids
}

// specsOf checks that every task of a comes without its spec and refers
// to one sent in a or before (specs, which it updates), and that a is
// within the bound; it returns the number of specs a holds.
func (c *client) specsOf(a *apiv1.Assignments, specs map[string]bool) int {
	c.t.Helper()
	if n := proto.Size(a); n > dispatcher.MaxAssignmentBytes+64 {
		c.t.Fatalf("an Assignments message of %d bytes, over the %d bound", n, dispatcher.MaxAssignmentBytes)
	}
	for ref := range a.GetSpecs() {
		specs[ref] = true
	}
	for _, tk := range a.GetTasks() {
		if ref := a.GetSpecRefs()[tk.GetId()]; tk.GetSpec() != nil || !specs[ref] {
			c.t.Fatalf("task %s: sent with its spec (%v) or with a reference %q to a spec not sent", tk.GetId(), tk.GetSpec() != nil, ref)
		}
	}
	for _, ref := range a.GetForgetSpecs() {
		delete(specs, ref)
	}
	return len(a.GetSpecs())
}

// fullSet reads the messages of one full set up to its end-of-set message
// and returns its task IDs and how many messages and specs it took,
// failing on a message over the bound or a spec not sent.
func (c *client) fullSet() (ids []string, msgs, specs int) {
	c.t.Helper()
	c.specs = map[string]bool{}
	for {
		m := c.next()
		a := m.GetAssignments()
		if a == nil || !a.GetFull() {
			c.t.Fatalf("message %d of a full set: %v", msgs, m)
		}
		specs += c.specsOf(a, c.specs)
		msgs++
		for _, tk := range a.GetTasks() {
			ids = append(ids, tk.GetId())
		}
		if !a.GetMore() {
			slices.Sort(ids)
			return ids, msgs, specs
		}
	}
}

// TestHugeAssignmentIsSplit: a node whose tasks add up to more than the
// 4 MiB a worker receives gets its full set in bounded messages ending
// with an end-of-set marker, each spec once, and a change to all of them
// (a scale-down) in bounded messages too, without their specs.
func TestHugeAssignmentIsSplit(t *testing.T) {
	tests := []struct {
		name      string
		distinct  bool
		wantMsgs  int // at least
		wantSpecs int
	}{
		{"one spec for all tasks", false, 1, 1},
		{"a spec per task", true, 5, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { hugeAssignment(t, tt.distinct, tt.wantMsgs, tt.wantSpecs) })
	}
}

func hugeAssignment(t *testing.T, distinct bool, wantMsgs, wantSpecs int) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	want := bigTasks(m, "n1", 100, 45_000, distinct)
	c := connect(t, m, "n1") // the test's client keeps gRPC's 4 MiB limit
	got, msgs, specs := c.fullSet()
	if !slices.Equal(got, want) || msgs < wantMsgs || specs != wantSpecs {
		t.Fatalf("full set: %d tasks in %d messages with %d specs, want the %d tasks in at least %d with %d specs", len(got), msgs, specs, len(want), wantMsgs, wantSpecs)
	}

	// Scale down: every task wanted SHUTDOWN in one Raft entry.
	var down []*apiv1.Task
	for _, id := range want {
		cur, _ := m.State.Task(id)
		tk := proto.CloneOf(cur)
		tk.DesiredState = shutdown
		down = append(down, tk)
	}
	m.Apply(&fsmpb.UpsertTasks{Tasks: down})
	seen := map[string]bool{}
	for len(seen) < len(want) {
		msg := c.next()
		a := msg.GetAssignments()
		if a == nil || a.GetFull() {
			t.Fatalf("want incremental assignments, got %v", msg)
		}
		if n := c.specsOf(a, c.specs); n != 0 {
			t.Fatalf("the scale-down sent %d specs again", n)
		}
		for _, tk := range a.GetTasks() {
			if tk.GetDesiredState() != shutdown {
				t.Fatalf("task %s desired %v, want SHUTDOWN", tk.GetId(), tk.GetDesiredState())
			}
			seen[tk.GetId()] = true
		}
	}
}

// TestUnchangedReregisterIsNotARaftWrite: a worker that registers again as
// it was (an agent restart, a reconnect) writes nothing to Raft. (Two
// re-registrations: a third short session in a row would give the node its
// "assignment" condition, one write; TestWorkerThatCannotTakeItsAssignment
// checks that it is the only one.)
func TestUnchangedReregisterIsNotARaftWrite(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	c := connect(t, m, "n1")
	c.cancel()
	c.ended()
	before := m.Raft.LastIndex()
	for range 2 {
		c = connect(t, m, "n1") // SessionInfo comes after the registration
		c.cancel()
		c.ended()
	}
	if after := m.Raft.LastIndex(); after != before {
		t.Fatalf("2 unchanged re-registrations wrote %d Raft entries, want none", after-before)
	}
	if nodeStatus(m, "n1") != ready {
		t.Fatalf("node status %v, want READY", nodeStatus(m, "n1"))
	}
}

// assignmentCondition returns the message of the node's "assignment"
// condition, "" when it has none.
func assignmentCondition(m *dispatchertest.Manager, id string) string {
	n, _ := m.State.Node(id)
	for _, c := range n.GetConditions() {
		if c.GetType() == dispatcher.ConditionAssignment {
			return c.GetMessage()
		}
	}
	return ""
}

// TestTooLargeTaskShowsOnTheNode: a task that alone is too large for a
// message a worker can receive (the API refuses such specs; store-bolt
// still stores one just under 4 MiB) is left out of what it is sent and
// the node shows why; the condition goes when the task does.
func TestTooLargeTaskShowsOnTheNode(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	huge := task("huge", "n1", running, assigned)
	huge.Spec.Env = map[string]string{"BIG": ""}
	huge.Spec.Env["BIG"] = strings.Repeat("x", dispatcher.MaxWorkerMessageBytes-16-proto.Size(huge))
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{huge, task("small", "n1", running, assigned)}})
	c := connect(t, m, "n1")
	if got, _, _ := c.fullSet(); !slices.Equal(got, []string{"small"}) {
		t.Fatalf("full set %v, want [small]", got)
	}
	if msg := assignmentCondition(m, "n1"); !strings.Contains(msg, "task huge is") || !strings.Contains(msg, "4194304") {
		t.Fatalf("assignment condition %q, want one naming the task and the limit", msg)
	}
	m.Apply(&fsmpb.RemoveTasks{Ids: []string{"huge"}})
	dispatchertest.Eventually(t, "the assignment condition to clear", func() bool { return assignmentCondition(m, "n1") == "" })
}
