package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/test/ctrtest"
)

// waitJob waits until the job's status is st and returns the service.
func (n *node) waitJob(name string, st apiv1.JobStatus_State) *apiv1.Service {
	n.t.Helper()
	var svc *apiv1.Service
	n.waitTasks(name, "job status "+st.String(), func([]*apiv1.Task) bool {
		svc = n.service(name)
		return svc.GetJobStatus().GetState() == st
	})
	return svc
}

// TestReplicatedJob: a replicated job of 3 completions with max-concurrent
// 2 never has more than 2 tasks in flight (sampled at every task event of
// the stream, from before its creation to its end), ends with 3 COMPLETE
// tasks and no restart, shows "3/3 completed" in service ls and its job
// status in inspect, runs again after an update and has no rollback. A job task that
// keeps failing is retried under on-failure up to --restart-max-attempts,
// and the job ends failed. Bad input is refused with nothing stored.
func TestReplicatedJob(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)

	// watch subscribes to the task events, for a minute at most, before
	// the change that starts a run.
	watch := func() apiv1.Warren_EventsClient {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		t.Cleanup(cancel)
		events, err := n.c.Events(ctx, &apiv1.EventsRequest{Kinds: []string{"task"}})
		if err != nil {
			t.Fatal(err)
		}
		return events
	}
	events := watch()
	n.cli("service", "create", "batch", "--image", ctrtest.TestImage, quickStop, "--mode", "replicated-job", "--replicas", "3",
		"--max-concurrent", "2", "--", "sh", "-c", "sleep 0.5")
	svcID := n.service("batch").GetId()
	// run follows one run of the job from the event stream: the tasks of
	// the job with env RUN=runID in flight at each event never exceed 2,
	// until 3 of them are COMPLETE (or the stream's minute ends).
	run := func(events apiv1.Warren_EventsClient, runID string) {
		t.Helper()
		states := map[string]apiv1.TaskState{}
		peak := 0
		for {
			ev, err := events.Recv()
			if err != nil {
				t.Fatalf("event stream (the job did not complete: tasks %v): %v", states, err)
			}
			tk := ev.GetTask()
			if tk.GetServiceId() != svcID || tk.GetSpec().GetEnv()["RUN"] != runID {
				continue
			}
			if ev.GetAction() == apiv1.EventAction_EVENT_ACTION_DELETED {
				delete(states, tk.GetId())
			} else {
				states[tk.GetId()] = tk.GetState()
			}
			inflight, complete := 0, 0
			for _, s := range states {
				switch {
				case s == apiv1.TaskState_TASK_STATE_COMPLETE:
					complete++
				case !state.Terminal(s):
					inflight++
				}
			}
			peak = max(peak, inflight)
			if peak > 2 {
				t.Fatalf("%d tasks of the job in flight at once, max-concurrent 2: %v", peak, states)
			}
			if complete == 3 {
				break
			}
		}
		if peak != 2 {
			t.Errorf("at most %d tasks in flight, want 2 (max-concurrent) at some point", peak)
		}
	}
	run(events, "")
	svc := n.waitJob("batch", apiv1.JobStatus_STATE_COMPLETED)
	ts := n.tasks("batch", true)
	if len(ts) != 3 {
		t.Fatalf("%d tasks, want 3 (no restart)", len(ts))
	}
	for _, tk := range ts {
		if tk.GetState() != apiv1.TaskState_TASK_STATE_COMPLETE || tk.GetAttempt() != 1 || tk.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING {
			t.Errorf("task %s slot %d: %v/%v attempt %d, want COMPLETE, attempt 1, kept as the slot's task", tk.GetId(), tk.GetSlot(), tk.GetDesiredState(), tk.GetState(), tk.GetAttempt())
		}
	}
	if st := svc.GetJobStatus(); st.GetCompleted() != 3 || st.GetTotal() != 3 || st.GetStartedAt() == nil || st.GetCompletedAt() == nil {
		t.Errorf("job status %v, want 3/3 completed with its times", st)
	}
	if ls := n.cli("service", "ls"); !strings.Contains(ls, "3/3 completed") {
		t.Errorf("service ls does not show the completions:\n%s", ls)
	}
	if insp := n.cli("service", "inspect", "batch", "-o", "table"); !strings.Contains(insp, "replicated-job") || !strings.Contains(insp, "completed: 3/3 completed; started ") {
		t.Errorf("service inspect does not show the job:\n%s", insp)
	}

	// An update re-runs the job: 3 new completions of the new spec.
	events = watch()
	n.cli("service", "update", "batch", "--env-add", "RUN=2", "--detach")
	run(events, "2")
	n.waitJob("batch", apiv1.JobStatus_STATE_COMPLETED)
	complete := 0
	for _, tk := range n.tasks("batch", true) {
		if tk.GetSpec().GetEnv()["RUN"] == "2" && tk.GetState() == apiv1.TaskState_TASK_STATE_COMPLETE {
			complete++
		}
	}
	if complete != 3 {
		t.Errorf("%d tasks of the updated spec completed, want 3", complete)
	}

	// --force runs it again with nothing else changed: 3 more completions,
	// of the same spec but for its force counter.
	n.cli("service", "update", "batch", "--force", "--detach")
	n.waitTasks("batch", "3 completions of the forced run", func(ts []*apiv1.Task) bool {
		forced := 0
		for _, tk := range ts {
			if tk.GetSpec().GetForceUpdate() == 1 && tk.GetSpec().GetEnv()["RUN"] == "2" && tk.GetState() == apiv1.TaskState_TASK_STATE_COMPLETE &&
				tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING {
				forced++
			}
		}
		return forced == 3
	})
	if st := n.waitJob("batch", apiv1.JobStatus_STATE_COMPLETED).GetJobStatus(); st.GetCompleted() != 3 {
		t.Errorf("job status after --force %v, want 3/3 completed", st)
	}

	if errOut := n.cliFails("service", "rollback", "batch"); !strings.Contains(errOut, "is a job: it has no rollback") {
		t.Errorf("rollback of a job: %s, want a refusal", errOut)
	}

	// A task that keeps failing: 2 attempts, then the job failed.
	n.cli("service", "create", "broken", "--image", ctrtest.TestImage, quickStop, "--mode", "replicated-job",
		"--restart-max-attempts", "2", "--restart-delay", "0s", "--", "sh", "-c", "exit 3")
	svc = n.waitJob("broken", apiv1.JobStatus_STATE_FAILED)
	ts = n.tasks("broken", true)
	if len(ts) != 2 {
		t.Errorf("%d tasks, want 2 (the first and one retry)", len(ts))
	}
	for _, tk := range ts {
		if tk.GetState() != apiv1.TaskState_TASK_STATE_FAILED {
			t.Errorf("task %s attempt %d: %v, want FAILED", tk.GetId(), tk.GetAttempt(), tk.GetState())
		}
	}
	if st := svc.GetJobStatus(); st.GetFailed() != 1 || st.GetCompleted() != 0 || !strings.Contains(st.GetMessage(), "exit") {
		t.Errorf("job status %v, want 0/1 completed, 1 failed, with the error", st)
	}
	if ls := n.cli("service", "ls"); !strings.Contains(ls, "0/1 completed, 1 failed") {
		t.Errorf("service ls does not show the failure:\n%s", ls)
	}

	// Bad input: refused, nothing stored.
	for _, args := range [][]string{
		{"--mode", "replicated-job", "--restart-condition", "any"},
		{"--mode", "global-job", "--replicas", "2"},
		{"--max-concurrent", "2"},
		{"--mode", "replicated-job", "--update-parallelism", "1"},
	} {
		errOut := n.cliFails(append([]string{"service", "create", "bad", "--image", ctrtest.TestImage}, args...)...)
		if !strings.Contains(errOut, "cannot be used with") && !strings.Contains(errOut, "is for --mode replicated-job") {
			t.Errorf("create %v: %s, want an error naming the flag", args, errOut)
		}
	}
	if ls := n.cli("service", "ls"); strings.Contains(ls, "bad") {
		t.Errorf("a refused service was stored:\n%s", ls)
	}
	n.cli("service", "rm", "batch", "broken")
}
