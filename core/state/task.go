package state

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// Terminal reports whether s is one of the states a task never leaves:
// COMPLETE, FAILED, SHUTDOWN, REJECTED and ORPHANED.
func Terminal(s apiv1.TaskState) bool {
	switch s {
	case apiv1.TaskState_TASK_STATE_COMPLETE,
		apiv1.TaskState_TASK_STATE_FAILED,
		apiv1.TaskState_TASK_STATE_SHUTDOWN,
		apiv1.TaskState_TASK_STATE_REJECTED,
		apiv1.TaskState_TASK_STATE_ORPHANED:
		return true
	}
	return false
}

// rankTerminal is the rank every terminal state shares: none of them follows
// another.
const rankTerminal = 100

// Rank orders task states along the lifecycle (docs/task-lifecycle.md):
// NEW < PENDING < ASSIGNED < PREPARING < STARTING < RUNNING < any terminal
// state. A task's state only ever moves to an equal or higher rank (PENDING
// is rewritten with a new reason each time the scheduler tries again).
func Rank(s apiv1.TaskState) int {
	if Terminal(s) {
		return rankTerminal
	}
	return int(s)
}

// MergeTask returns the task to store when incoming replaces old: the
// proposer's copy, except that neither the state nor the desired state ever
// moves backwards. A manager loop and a worker report that both started
// from the same read can then not undo each other: the loop keeps the
// worker's newer state, the report keeps the loop's SHUTDOWN. A task's
// address (the worker's) is kept when incoming has none. incoming is
// modified in place and returned.
func MergeTask(old, incoming *apiv1.Task) *apiv1.Task {
	if old == nil {
		return incoming
	}
	if Rank(old.GetState()) > Rank(incoming.GetState()) || (Terminal(old.GetState()) && old.GetState() != incoming.GetState()) {
		incoming.State = old.GetState()
		incoming.Message = old.GetMessage()
		incoming.Error = old.GetError()
		incoming.ExitCode = old.GetExitCode()
	}
	if old.GetDesiredState() == apiv1.TaskState_TASK_STATE_SHUTDOWN {
		incoming.DesiredState = apiv1.TaskState_TASK_STATE_SHUTDOWN
	}
	if incoming.GetNodeId() == "" {
		incoming.NodeId = old.GetNodeId()
	}
	if incoming.GetAddress() == "" {
		incoming.Address = old.GetAddress() // the worker's, reported once
	}
	return incoming
}

// WorkerReportable reports whether s is a state a worker may report about
// a task. NEW, PENDING and ASSIGNED belong to the scheduler, ORPHANED to
// the manager.
func WorkerReportable(s apiv1.TaskState) bool {
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

// ApplyReport applies a worker's report to t (a clone the caller owns) when
// it moves the task's state forward, or changes only the message of a task
// that is not running yet (why it waits), and reports whether it did. A
// report never moves a state backwards, never changes a terminal task and
// never sets a state a worker does not own. The task's address, when the report
// carries one, is taken unless the task is terminal.
//
// The task's health (the worker's too) is taken from a report that carries
// one while the task is not terminal, or with the report that ends it.
func ApplyReport(t *apiv1.Task, u *apiv1.TaskStatusUpdate) bool {
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
		WorkerReportable(u.GetState()) && u.GetMessage() != "" && u.GetMessage() != t.GetMessage() {
		// A task not running yet: its worker says why it waits.
		t.Message = u.GetMessage()
		return true
	}
	if !WorkerReportable(u.GetState()) || Terminal(t.GetState()) || Rank(u.GetState()) <= Rank(t.GetState()) {
		return healthChanged
	}
	t.State = u.GetState()
	t.Message = u.GetMessage()
	t.Error = u.GetError()
	t.ExitCode = u.GetExitCode()
	return true
}

// HasHealthCheck reports whether a service spec has a health check of its
// own that the worker makes (an HTTP, TCP or command check). A spec
// without one runs its image's HEALTHCHECK, if the image declares one,
// unless its check is TYPE_NONE.
func HasHealthCheck(s *apiv1.ServiceSpec) bool {
	switch s.GetHealthCheck().GetType() {
	case apiv1.HealthCheck_TYPE_UNSPECIFIED, apiv1.HealthCheck_TYPE_NONE:
		return false
	}
	return true
}

// Serving reports whether t is RUNNING and, when it has a health check,
// its last health state is HEALTHY: such a task counts towards its
// service's healthy tasks (rolling updates, DNS answers, published ports).
// A task whose spec has no check may still run its image's: its worker
// then reports its health (STARTING with RUNNING), and that decides.
func Serving(t *apiv1.Task) bool {
	if t.GetState() != apiv1.TaskState_TASK_STATE_RUNNING {
		return false
	}
	if h := t.GetHealth(); h != apiv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		return h == apiv1.HealthState_HEALTH_STATE_HEALTHY
	}
	return !hasHealthCheck(t)
}

// hasHealthCheck reports whether t's spec has a health check of its own:
// HasHealthCheck of its spec, or, for a task listed without its spec (the
// API's BASIC view), its health_checked field.
func hasHealthCheck(t *apiv1.Task) bool {
	if s := t.GetSpec(); s != nil {
		return HasHealthCheck(s)
	}
	return t.GetHealthChecked()
}

// SpecKey is the comparison key of a spec: the encoding of its
// apiv1.TaskShape. Two specs with the same key run the same tasks.
func SpecKey(s *apiv1.ServiceSpec) string {
	if s == nil {
		return ""
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(apiv1.TaskShape(s))
	if err != nil {
		panic(fmt.Sprintf("state: encode spec: %v", err)) // only on a programming error
	}
	return string(b)
}

// SpecDigest is a short digest of SpecKey(s), "" for a nil spec: what a
// task listed without its spec carries instead (the API's Task.spec_digest).
// Two specs with the same digest run the same tasks.
func SpecDigest(s *apiv1.ServiceSpec) string {
	if s == nil {
		return ""
	}
	sum := sha256.Sum256([]byte(SpecKey(s)))
	return hex.EncodeToString(sum[:16])
}
