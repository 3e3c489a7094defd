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
