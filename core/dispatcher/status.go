package dispatcher

import (
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

// Terminal reports whether s is a state a task never leaves.
func Terminal(s apiv1.TaskState) bool { return state.Terminal(s) }

// Rank orders task states along the lifecycle; see state.Rank.
func Rank(s apiv1.TaskState) int { return state.Rank(s) }

// workerReportable is what a worker may report about a task. NEW, PENDING
// and ASSIGNED belong to the scheduler, ORPHANED to the manager.
func workerReportable(s apiv1.TaskState) bool {
	switch s {
	case apiv1.TaskState_TASK_STATE_PREPARING,
		apiv1.TaskState_TASK_STATE_STARTING,
		apiv1.TaskState_TASK_STATE_RUNNING,
		apiv1.TaskState_TASK_STATE_COMPLETE,
		apiv1.TaskState_TASK_STATE_FAILED,
		apiv1.TaskState_TASK_STATE_SHUTDOWN,
		apiv1.TaskState_TASK_STATE_REJECTED:
		return true
	}
	return false
}

// applyUpdate applies a worker's report to t (a clone the caller owns) when
// it moves the task's state forward, or changes only the message of a task
// that is not running yet (why it waits), and reports whether it did. A
// report never moves a state backwards, never changes a terminal task and
// never sets a state a worker does not own. The task's address, when the report
// carries one, is taken unless the task is terminal.
//
// The task's health (the worker's too) is taken from a report that carries
// one while the task is not terminal, or with the report that ends it.
func applyUpdate(t *apiv1.Task, u *apiv1.TaskStatusUpdate) bool {
	if u.GetAddress() != "" && !Terminal(t.GetState()) {
		t.Address = u.GetAddress() // the worker owns it, whatever the state
	}
	healthChanged := false
	if h := u.GetHealth(); h != apiv1.HealthState_HEALTH_STATE_UNSPECIFIED && !Terminal(t.GetState()) &&
		(h != t.GetHealth() || u.GetHealthOutput() != t.GetHealthOutput()) {
		t.Health, t.HealthOutput = h, u.GetHealthOutput()
		healthChanged = true
	}
	if u.GetState() == t.GetState() && Rank(t.GetState()) < Rank(apiv1.TaskState_TASK_STATE_RUNNING) &&
		workerReportable(u.GetState()) && u.GetMessage() != "" && u.GetMessage() != t.GetMessage() {
		// A task not running yet: its worker says why it waits.
		t.Message = u.GetMessage()
		return true
	}
	if !workerReportable(u.GetState()) || Terminal(t.GetState()) || Rank(u.GetState()) <= Rank(t.GetState()) {
		return healthChanged
	}
	t.State = u.GetState()
	t.Message = u.GetMessage()
	t.Error = u.GetError()
	t.ExitCode = u.GetExitCode()
	return true
}

// Relevant reports whether a worker must know about t: the manager still
// wants it running, or it has not reached a terminal state yet (it may
// still have to be stopped). A terminal task the manager wants shut down is
// history the worker can forget.
func Relevant(t *apiv1.Task) bool {
	return t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING || !Terminal(t.GetState())
}
