package dispatcher

import (
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

const (
	sNew       = apiv1.TaskState_TASK_STATE_NEW
	sAssigned  = apiv1.TaskState_TASK_STATE_ASSIGNED
	sPreparing = apiv1.TaskState_TASK_STATE_PREPARING
	sStarting  = apiv1.TaskState_TASK_STATE_STARTING
	sRunning   = apiv1.TaskState_TASK_STATE_RUNNING
	sComplete  = apiv1.TaskState_TASK_STATE_COMPLETE
	sFailed    = apiv1.TaskState_TASK_STATE_FAILED
	sShutdown  = apiv1.TaskState_TASK_STATE_SHUTDOWN
	sRejected  = apiv1.TaskState_TASK_STATE_REJECTED
	sOrphaned  = apiv1.TaskState_TASK_STATE_ORPHANED
)

// TestApplyUpdateWaitingMessage: a worker may change only the message of a
// task that has not started (why it waits), never of a running one, and the
// same message twice is no change.
func TestApplyUpdateWaitingMessage(t *testing.T) {
	waiting := &apiv1.TaskStatusUpdate{TaskId: "t", State: sPreparing, Message: "waiting for the runtime: crash-looping"}
	task := &apiv1.Task{Id: "t", State: sPreparing, Message: "ensuring image x"}
	if !state.ApplyReport(task, waiting) || task.GetMessage() != waiting.GetMessage() || task.GetState() != sPreparing {
		t.Fatalf("a waiting task's new message: %v", task)
	}
	if state.ApplyReport(task, waiting) {
		t.Fatal("the same message again was applied")
	}
	running := &apiv1.Task{Id: "t", State: sRunning, Message: "started"}
	if state.ApplyReport(running, &apiv1.TaskStatusUpdate{TaskId: "t", State: sRunning, Message: "other"}) || running.GetMessage() != "started" {
		t.Fatalf("a running task's message changed: %v", running)
	}
}

func TestApplyUpdate(t *testing.T) {
	tests := []struct {
		name    string
		from    apiv1.TaskState
		update  apiv1.TaskState
		applied bool
	}{
		{"assigned to preparing", sAssigned, sPreparing, true},
		{"assigned straight to running", sAssigned, sRunning, true},
		{"assigned to rejected", sAssigned, sRejected, true},
		{"running to failed", sRunning, sFailed, true},
		{"running to complete", sRunning, sComplete, true},
		{"starting to shutdown", sStarting, sShutdown, true},
		{"running stays", sRunning, sRunning, false},
		{"running back to starting", sRunning, sStarting, false},
		{"failed is final", sFailed, sShutdown, false},
		{"complete is final", sComplete, sFailed, false},
		{"orphaned is final", sOrphaned, sRunning, false},
		{"worker cannot orphan", sRunning, sOrphaned, false},
		{"worker cannot assign", sNew, sAssigned, false},
		{"unspecified ignored", sAssigned, apiv1.TaskState_TASK_STATE_UNSPECIFIED, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := &apiv1.Task{Id: "t", State: tt.from, Message: "old"}
			u := &apiv1.TaskStatusUpdate{TaskId: "t", State: tt.update, Message: "new", Error: "boom", ExitCode: 3}
			if got := state.ApplyReport(task, u); got != tt.applied {
				t.Fatalf("ApplyReport = %v, want %v", got, tt.applied)
			}
			want := tt.from
			if tt.applied {
				want = tt.update
			}
			if task.GetState() != want {
				t.Fatalf("state = %v, want %v", task.GetState(), want)
			}
			if tt.applied && (task.GetMessage() != "new" || task.GetError() != "boom" || task.GetExitCode() != 3) {
				t.Fatalf("details not kept: %v", task)
			}
			if !tt.applied && task.GetMessage() != "old" {
				t.Fatalf("a refused update changed the task: %v", task)
			}
		})
	}
}

func TestRelevant(t *testing.T) {
	running, shutdown := apiv1.TaskState_TASK_STATE_RUNNING, apiv1.TaskState_TASK_STATE_SHUTDOWN
	tests := []struct {
		desired, state apiv1.TaskState
		want           bool
	}{
		{running, sAssigned, true},
		{running, sRunning, true},
		{running, sFailed, true}, // waiting for the orchestrator's decision
		{shutdown, sRunning, true},
		{shutdown, sAssigned, true},
		{shutdown, sShutdown, false},
		{shutdown, sFailed, false},
		{shutdown, sRejected, false},
	}
	for _, tt := range tests {
		got := Relevant(&apiv1.Task{DesiredState: tt.desired, State: tt.state})
		if got != tt.want {
			t.Errorf("Relevant(desired %v, state %v) = %v, want %v", tt.desired, tt.state, got, tt.want)
		}
	}
}

// TestApplyUpdateHealth: a running task's health changes with its worker's
// reports, the same health and output twice is no change, and a task that
// ended keeps the health it ended with.
func TestApplyUpdateHealth(t *testing.T) {
	healthy := apiv1.HealthState_HEALTH_STATE_HEALTHY
	unhealthy := apiv1.HealthState_HEALTH_STATE_UNHEALTHY
	task := &apiv1.Task{Id: "t", State: sRunning, Message: "started", Health: apiv1.HealthState_HEALTH_STATE_STARTING}
	u := &apiv1.TaskStatusUpdate{TaskId: "t", State: sRunning, Message: "started", Health: healthy, HealthOutput: "200 OK"}
	if !state.ApplyReport(task, u) || task.GetHealth() != healthy || task.GetHealthOutput() != "200 OK" || task.GetState() != sRunning {
		t.Fatalf("health report not applied: %v", task)
	}
	if state.ApplyReport(task, u) {
		t.Fatal("the same health again was applied")
	}
	end := &apiv1.TaskStatusUpdate{TaskId: "t", State: sFailed, Error: "unhealthy: refused", Health: unhealthy, HealthOutput: "refused"}
	if !state.ApplyReport(task, end) || task.GetState() != sFailed || task.GetHealth() != unhealthy {
		t.Fatalf("the unhealthy end not applied: %v", task)
	}
	if state.ApplyReport(task, &apiv1.TaskStatusUpdate{TaskId: "t", State: sRunning, Health: healthy}) || task.GetHealth() != unhealthy {
		t.Fatalf("a finished task's health changed: %v", task)
	}
}
