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
// the node. A condition whose message changes keeps its since.
func (d *Dispatcher) setCondition(ctx context.Context, nodeID, typ, msg string) error {
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	changed := false
	_, err := fsm.UpdateNode(cctx, d.deps.Raft.Apply, d.deps.State, nodeID, func(n *apiv1.Node) (bool, error) {
		i := slices.IndexFunc(n.Conditions, func(c *apiv1.NodeCondition) bool { return c.GetType() == typ })
		switch {
		case msg == "" && i < 0, i >= 0 && n.Conditions[i].GetMessage() == msg:
			return false, nil
		case msg == "":
			n.Conditions = slices.Delete(n.Conditions, i, i+1)
		case i >= 0:
			n.Conditions[i].Message = msg
		default:
			n.Conditions = append(n.Conditions, &apiv1.NodeCondition{Type: typ, Message: msg, Since: timestamppb.Now()})
		}
		changed = true
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("node %s: condition %q: %w", nodeID, typ, err)
	}
	if changed {
		if msg == "" {
			d.log.Info("node condition cleared", "id", nodeID, "condition", typ)
		} else {
			d.log.Warn("node condition", "id", nodeID, "condition", typ, "message", msg)
		}
	}
	return nil
}
