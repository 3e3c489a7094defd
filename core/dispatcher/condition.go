package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
)

// ConditionAssignment is the type of the node condition the dispatcher
// sets while a node cannot take its assignment: a task too large to send,
// or sessions that keep ending before they held.
const ConditionAssignment = "assignment"

// failedSessionsCondition is how many sessions of a node in a row must end
// before they lasted a heartbeat TTL for the node to get its "assignment"
// condition. A session that lasts a TTL clears it.
const failedSessionsCondition = 3

// updateCondition sets, changes or clears the node's "assignment"
// condition to match what is wrong now: the tasks s could not send, else
// the failures of its sessions. It commits only when that changes.
func (d *Dispatcher) updateCondition(ctx context.Context, e *nodeEntry, s *session) {
	msg := ""
	if len(s.tooLarge) > 0 {
		ids := make([]string, 0, len(s.tooLarge))
		for id := range s.tooLarge {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		msg = fmt.Sprintf("%d task(s) cannot be sent to the node: %s", len(ids), s.tooLarge[ids[0]])
	} else {
		d.mu.Lock()
		msg = e.failMsg
		d.mu.Unlock()
	}
	if err := d.setCondition(ctx, s.nodeID, ConditionAssignment, msg); err != nil && !errors.Is(err, fsm.ErrNodeNotFound) {
		d.log.Error("updating the node's assignment condition", "id", s.nodeID, "error", err)
	}
}

// setCondition gives node nodeID the condition typ with message msg, or
// removes it when msg is empty, with one Raft write only when that changes
// the node. A condition whose message does not change keeps its since.
func (d *Dispatcher) setCondition(ctx context.Context, nodeID, typ, msg string) error {
	return d.changeConditions(ctx, nodeID, func(old []*apiv1.NodeCondition) ([]*apiv1.NodeCondition, bool) {
		i := slices.IndexFunc(old, func(c *apiv1.NodeCondition) bool { return c.GetType() == typ })
		switch {
		case msg == "" && i < 0, i >= 0 && old[i].GetMessage() == msg:
			return old, false
		case msg == "":
			return slices.Delete(slices.Clone(old), i, i+1), true
		case i >= 0:
			next := slices.Clone(old)
			next[i] = &apiv1.NodeCondition{Type: typ, Message: msg, Since: old[i].GetSince()}
			return next, true
		}
		return append(slices.Clone(old), &apiv1.NodeCondition{Type: typ, Message: msg, Since: timestamppb.Now()}), true
	})
}

// changeConditions is the one way the dispatcher writes a node's
// conditions: change returns the node's next conditions from its current
// ones and whether they differ. The node is written (one Raft entry,
// read-modify-write on its version) only when they do, and the change is
// logged.
func (d *Dispatcher) changeConditions(ctx context.Context, nodeID string, change func(old []*apiv1.NodeCondition) ([]*apiv1.NodeCondition, bool)) error {
	if n, ok := d.deps.State.Node(nodeID); !ok {
		return fmt.Errorf("node %s: %w", nodeID, fsm.ErrNodeNotFound)
	} else if _, changed := change(n.GetConditions()); !changed {
		return nil
	}
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	var next []*apiv1.NodeCondition
	_, err := fsm.UpdateNode(cctx, d.deps.Raft.Apply, d.deps.State, nodeID, func(n *apiv1.Node) (bool, error) {
		var changed bool
		next, changed = change(n.GetConditions())
		n.Conditions = next
		return changed, nil
	})
	if err != nil {
		return fmt.Errorf("node %s: conditions: %w", nodeID, err)
	}
	d.log.Info("node conditions changed", "id", nodeID, "conditions", conditionTypes(next))
	return nil
}
