package metrics

import (
	"context"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
)

// WatchTasks records, from the task events on bus until ctx ends, the
// time from each task's creation to its first RUNNING
// (warren_task_scheduling_delay_seconds). Run it on the leader only, so
// that a cluster counts each task once; tasks (every task in the state)
// tells it which tasks were already running when it started or fell
// behind.
func (m *Metrics) WatchTasks(ctx context.Context, bus *events.Broker, tasks func() []*apiv1.Task) error {
	if m == nil {
		return nil
	}
	w := bus.Watch(func(ev *apiv1.Event) bool { return ev.GetKind() == "task" }, 1024)
	tw := &taskWatch{m: m, running: make(map[string]struct{}), tasks: tasks}
	tw.resync()
	return w.Run(ctx, tw.event, tw.resync)
}

// taskWatch is WatchTasks' memory: the tasks seen RUNNING or past it.
type taskWatch struct {
	m       *Metrics
	running map[string]struct{}
	tasks   func() []*apiv1.Task
}

// started reports whether a task in state s has been RUNNING, or will never be.
func started(s apiv1.TaskState) bool { return s >= apiv1.TaskState_TASK_STATE_RUNNING }

// resync marks every task in the state that is past STARTING as seen.
func (tw *taskWatch) resync() {
	for _, t := range tw.tasks() {
		if started(t.GetState()) {
			tw.running[t.GetId()] = struct{}{}
		}
	}
}

func (tw *taskWatch) event(ev *apiv1.Event) {
	t := ev.GetTask()
	if ev.GetAction() == apiv1.EventAction_EVENT_ACTION_DELETED {
		delete(tw.running, ev.GetId())
		return
	}
	if t == nil || !started(t.GetState()) {
		return
	}
	if _, seen := tw.running[t.GetId()]; seen {
		return
	}
	tw.running[t.GetId()] = struct{}{}
	if t.GetState() != apiv1.TaskState_TASK_STATE_RUNNING || t.GetCreatedAt() == nil || ev.GetTime() == nil {
		return // ended without running (failed, rejected, shut down)
	}
	delay := ev.GetTime().AsTime().Sub(t.GetCreatedAt().AsTime())
	tw.m.schedulingDelay.Observe(max(delay.Seconds(), 0))
}

// OnTaskRestarts counts replacement tasks the orchestrator committed
// (orchestrator.Deps.OnRestarts).
func (m *Metrics) OnTaskRestarts(n int) {
	if m == nil {
		return
	}
	m.taskRestarts.Add(float64(n))
}
