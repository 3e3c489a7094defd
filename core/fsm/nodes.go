package fsm

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// ApplyFunc commits a command through Raft and returns what the FSM
// returned for it.
type ApplyFunc func(ctx context.Context, cmd Command) (any, error)

// ErrNodeNotFound is UpdateNode's error for a node that is not in the state.
var ErrNodeNotFound = fmt.Errorf("node not found: %w", sdk.ErrNotFound)

// updateNodeAttempts bounds UpdateNode's retries after conflicts.
const updateNodeAttempts = 5

// UpdateNode changes node id by read-modify-write without losing a change
// committed in between (a worker registering while an operator drains its
// node, the leader recording a manager's status...): mutate gets a copy of
// the node as the state holds it and changes it; the change is committed
// with that version as the expected one, and on a conflict the read and
// mutate are done again. mutate returns false to commit nothing; UpdateNode
// then returns the node as it is.
func UpdateNode(ctx context.Context, apply ApplyFunc, view *state.State, id string, mutate func(n *apiv1.Node) (bool, error)) (*apiv1.Node, error) {
	for attempt := 1; ; attempt++ {
		old, ok := view.Node(id)
		if !ok {
			return nil, fmt.Errorf("node %s: %w", id, ErrNodeNotFound)
		}
		n := proto.CloneOf(old)
		change, err := mutate(n)
		if err != nil || !change {
			return old, err
		}
		out, err := apply(ctx, &fsmpb.UpsertNode{Node: n, ExpectedVersion: old.GetVersion()})
		if err == nil {
			if n, ok := out.(*apiv1.Node); ok {
				return n, nil
			}
			return nil, fmt.Errorf("node %s: the update returned %T, not the node: %w", id, out, sdk.ErrInternal)
		}
		if !errors.Is(err, sdk.ErrConflict) || attempt == updateNodeAttempts {
			return nil, err
		}
	}
}

// applyMarkNodesDown marks the nodes of one dispatcher sweep DOWN: their
// status, message and updated_at, nothing else. A node that is gone, DOWN
// already or changed since the sweep read it (expected_version) is
// skipped. It returns the nodes it changed; a node without an ID refuses
// the whole command.
func (f *FSM) applyMarkNodesDown(tx *txn, c *fsmpb.MarkNodesDown) any {
	for i, d := range c.GetNodes() {
		if d.GetNodeId() == "" {
			return invalid("mark nodes down: node %d of %d has no id", i+1, len(c.GetNodes()))
		}
	}
	var out []*apiv1.Node
	for _, d := range c.GetNodes() {
		old, ok := f.state.Node(d.GetNodeId())
		if !ok || old.GetStatus() == apiv1.NodeStatus_NODE_STATUS_DOWN {
			continue
		}
		if v := d.GetExpectedVersion(); v != 0 && v != old.GetVersion() {
			continue
		}
		n := proto.CloneOf(old)
		n.Status = apiv1.NodeStatus_NODE_STATUS_DOWN
		n.Message = d.GetReason()
		n.UpdatedAt = c.GetUpdatedAt()
		n.Version = tx.index
		f.state.PutNode(n)
		tx.put(state.BucketNodes, n.GetId(), n)
		tx.event("node", apiv1.EventAction_EVENT_ACTION_UPDATED, n.GetId(), n.GetName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Node{Node: n} })
		out = append(out, n)
	}
	return out
}
