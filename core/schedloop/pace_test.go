package schedloop

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// pacedRaft records the placement entries a loop commits, and the waits
// on the sessions' backlog between them, in order.
type pacedRaft struct {
	Proposer
	mu  sync.Mutex
	log []string // "wait", or "entry N1 N2 ..." (the entry's nodes in order)
}

func (r *pacedRaft) Apply(ctx context.Context, cmd fsm.Command) (any, error) {
	if a, ok := cmd.(*fsmpb.AssignTasks); ok {
		line := fmt.Sprintf("entry %d", len(a.GetAssignments()))
		for _, as := range a.GetAssignments() {
			line += " " + as.GetNodeId()
		}
		r.mu.Lock()
		r.log = append(r.log, line)
		r.mu.Unlock()
	}
	return r.Proposer.Apply(ctx, cmd)
}

func (r *pacedRaft) awaitDelivered(ctx context.Context, limit int) error {
	if limit != PaceBacklog {
		return fmt.Errorf("AwaitDelivered(%d), want PaceBacklog", limit)
	}
	r.mu.Lock()
	r.log = append(r.log, "wait")
	r.mu.Unlock()
	return nil
}

// TestRoundIsCommittedPaced: a round of more than PaceTasks placements is
// committed in entries of at most PaceTasks, each after a wait on the
// sessions' backlog, and ordered by node so that a node's tasks of the
// round go out together.
func TestRoundIsCommittedPaced(t *testing.T) {
	r := &pacedRaft{}
	h := newHarnessWith(t, func(d *Deps) {
		r.Proposer = d.Raft
		d.Raft = r
		d.AwaitDelivered = r.awaitDelivered
	})
	for _, id := range []string{"w1", "w2", "w3"} {
		h.apply(t, &fsmpb.UpsertNode{Node: worker(id, ready, 0)})
	}
	const n = 2*PaceTasks + 7
	var tasks []*apiv1.Task
	for i := range n {
		tasks = append(tasks, unplaced(fmt.Sprintf("t%04d", i), uint64(i+1)))
	}
	h.apply(t, &fsmpb.UpsertTasks{Tasks: tasks})
	h.waitFor(t, "every task assigned", func() bool {
		for _, tk := range tasks {
			if h.task(tk.GetId()).GetState() != tsAssigned {
				return false
			}
		}
		return true
	})

	r.mu.Lock()
	defer r.mu.Unlock()
	placed, entries := 0, 0
	for i, line := range r.log {
		if line == "wait" {
			continue
		}
		entries++
		if i == 0 || r.log[i-1] != "wait" {
			t.Errorf("entry %d was not preceded by a wait on the backlog: %.60s", entries, line)
		}
		var k int
		fmt.Sscanf(line, "entry %d", &k)
		if k > PaceTasks {
			t.Errorf("entry %d holds %d placements; at most PaceTasks (%d)", entries, k, PaceTasks)
		}
		nodes := strings.Fields(line)[2:]
		if !slices.IsSorted(nodes) {
			t.Errorf("entry %d is not ordered by node", entries)
		}
		placed += k
	}
	if placed != n || entries < 3 {
		t.Fatalf("%d placements in %d entries; want %d in at least 3", placed, entries, n)
	}
}
