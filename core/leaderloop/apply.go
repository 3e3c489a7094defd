package leaderloop

import (
	"context"
	"errors"
	"fmt"

	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// ApplyInOrder commits cmds as one Raft entry (an fsm.Batch: applied in
// order, at one index, each with its own result) through apply (a
// Proposer's Apply) and returns the commands' errors, joined; a command
// that fails changes nothing of its own and does not stop the
// others. One entry instead of one per command spares a loop a Raft
// commit per command on its way, while keeping their order.
func ApplyInOrder(ctx context.Context, apply func(context.Context, fsm.Command) (any, error), cmds ...fsm.Command) error {
	enc := make([][]byte, len(cmds))
	for i, c := range cmds {
		data, err := fsm.Encode(c)
		if err != nil {
			return err
		}
		enc[i] = data
	}
	resp, err := apply(ctx, &fsmpb.Batch{Commands: enc})
	if err != nil {
		return err
	}
	results, ok := resp.([]any)
	if !ok || len(results) != len(cmds) {
		return fmt.Errorf("a batch of %d commands answered with %T", len(cmds), resp)
	}
	var errs []error
	for i, r := range results {
		if err, ok := r.(error); ok {
			errs = append(errs, fmt.Errorf("%T: %w", cmds[i], err))
		}
	}
	return errors.Join(errs...)
}
