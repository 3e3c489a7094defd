package dispatcher

import (
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

// Terminal reports whether s is a state a task never leaves.
func Terminal(s apiv1.TaskState) bool { return state.Terminal(s) }

// Rank orders task states along the lifecycle; see state.Rank.
func Rank(s apiv1.TaskState) int { return state.Rank(s) }

// Relevant reports whether a worker must know about t: the manager still
// wants it running, or it has not reached a terminal state yet (it may
// still have to be stopped). A terminal task the manager wants shut down is
// history the worker can forget.
func Relevant(t *apiv1.Task) bool {
	return t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING || !Terminal(t.GetState())
}
