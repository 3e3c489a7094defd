package orchestrator

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// job makes s1 a replicated job with max_concurrent n (0: all).
func job(n uint64) svcOpt {
	return func(s *apiv1.Service) {
		s.Spec.Mode, s.Spec.MaxConcurrent = apiv1.ServiceMode_SERVICE_MODE_REPLICATED_JOB, n
	}
}

func globalJob(s *apiv1.Service) { s.Spec.Mode = apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB }

func jobStatus(st apiv1.JobStatus_State, completed, failed, total uint64) svcOpt {
	return func(s *apiv1.Service) {
		s.JobStatus = &apiv1.JobStatus{State: st, Completed: completed, Failed: failed, Total: total,
			Message: fmt.Sprintf("%d/%d completed", completed, total), StartedAt: timestamppb.New(t0.Add(-time.Hour))}
		if st != apiv1.JobStatus_STATE_RUNNING {
			s.JobStatus.CompletedAt = timestamppb.New(t0.Add(-time.Minute))
		}
	}
}

// jobOf renders the SetJobStatus among actions: "running 1/3 (0 failed)",
// "" for none.
func jobOf(actions []Action) string {
	for _, a := range actions {
		if a, ok := a.(SetJobStatus); ok {
			st := a.Status
			name := map[apiv1.JobStatus_State]string{apiv1.JobStatus_STATE_RUNNING: "running", apiv1.JobStatus_STATE_COMPLETED: "completed", apiv1.JobStatus_STATE_FAILED: "failed"}[st.GetState()]
			return fmt.Sprintf("%s %d/%d (%d failed)", name, st.GetCompleted(), st.GetTotal(), st.GetFailed())
		}
	}
	return ""
}

// TestReplicatedJob: a replicated job runs replicas completions, at most
// max_concurrent at once, retries failures under on-failure (its default)
// and never runs a completed slot again; an update re-runs it.
func TestReplicatedJob(t *testing.T) {
	fastFail := ran(time.Second)
	failed := func(id string, slot uint64, opts ...taskOpt) *apiv1.Task {
		return task(id, slot, wantRunning, tsFailed, append([]taskOpt{fastFail, v(2)}, opts...)...)
	}
	done := func(id string, slot uint64) *apiv1.Task { return task(id, slot, wantRunning, tsComplete, v(2)) }
	running := func(id string, slot uint64) *apiv1.Task { return task(id, slot, wantRunning, tsRunning, v(2)) }
	cases := []struct {
		name  string
		svc   *apiv1.Service
		tasks []*apiv1.Task
		nodes func(string) (*apiv1.Node, bool)
		want  []string
		job   string
	}{
		{
			name: "a new job starts max_concurrent tasks",
			svc:  service(2, 3, job(2)),
			want: []string{"create slot 1 attempt 1 v2", "create slot 2 attempt 1 v2"},
			job:  "running 0/3 (0 failed)",
		},
		{
			name: "max_concurrent 0 runs every completion at once",
			svc:  service(2, 3, job(0)),
			want: []string{"create slot 1 attempt 1 v2", "create slot 2 attempt 1 v2", "create slot 3 attempt 1 v2"},
			job:  "running 0/3 (0 failed)",
		},
		{
			name:  "a completion frees a place for the next slot",
			svc:   service(2, 3, job(2)),
			tasks: []*apiv1.Task{done("a", 1), running("b", 2)},
			want:  []string{"create slot 3 attempt 1 v2"},
			job:   "running 1/3 (0 failed)",
		},
		{
			name:  "no place while max_concurrent tasks run",
			svc:   service(2, 3, job(2), jobStatus(apiv1.JobStatus_STATE_RUNNING, 0, 0, 3)),
			tasks: []*apiv1.Task{running("a", 1), task("b", 2, wantRunning, tsNew, v(2))},
		},
		{
			name:  "every completion done: nothing restarts, the job is completed",
			svc:   service(2, 3, job(2), jobStatus(apiv1.JobStatus_STATE_RUNNING, 2, 0, 3)),
			tasks: []*apiv1.Task{done("a", 1), done("b", 2), done("c", 3)},
			job:   "completed 3/3 (0 failed)",
		},
		{
			name:  "a completed job stays as it is",
			svc:   service(2, 3, job(2), jobStatus(apiv1.JobStatus_STATE_COMPLETED, 3, 0, 3)),
			tasks: []*apiv1.Task{done("a", 1), done("b", 2), done("c", 3)},
		},
		{
			name:  "a failure is retried with backoff, before a new slot",
			svc:   service(2, 3, job(2)),
			tasks: []*apiv1.Task{failed("a", 1), running("b", 2)},
			want:  []string{"create slot 1 attempt 2 v2 +100ms", "shutdown a"},
			job:   "running 0/3 (0 failed)",
		},
		{
			name:  "a retry waits for a place too",
			svc:   service(2, 3, job(1)),
			tasks: []*apiv1.Task{done("a", 1), failed("b", 2), running("c", 3)},
			job:   "running 1/3 (0 failed)",
		},
		{
			name: "max_attempts reached: the slot failed, the job failed once nothing runs",
			svc: service(2, 3, job(2), restartPolicy(&apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_ON_FAILURE, MaxAttempts: 2}),
				jobStatus(apiv1.JobStatus_STATE_RUNNING, 2, 0, 3)),
			tasks: []*apiv1.Task{failed("a", 1, attempt(2)), done("b", 2), done("c", 3)},
			job:   "failed 2/3 (1 failed)",
		},
		{
			name:  "restart condition none: a failure is final, the others still run",
			svc:   service(2, 3, job(3), restartPolicy(&apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_NONE})),
			tasks: []*apiv1.Task{failed("a", 1), running("b", 2)},
			want:  []string{"create slot 3 attempt 1 v2"},
			job:   "running 0/3 (1 failed)",
		},
		{
			name:  "an update re-runs a finished job: old tasks become history",
			svc:   service(2, 3, job(2), jobStatus(apiv1.JobStatus_STATE_COMPLETED, 3, 0, 3)),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsComplete), task("b", 2, wantRunning, tsComplete), task("c", 3, wantRunning, tsComplete)},
			want:  []string{"create slot 1 attempt 1 v2", "create slot 2 attempt 1 v2", "shutdown a", "shutdown b", "shutdown c"},
			job:   "running 0/3 (0 failed)",
		},
		{
			name:  "an update of a running job stops the old task first, which counts against max_concurrent",
			svc:   service(2, 3, job(2), jobStatus(apiv1.JobStatus_STATE_RUNNING, 0, 0, 3)),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning)},
			want:  []string{"create slot 2 attempt 1 v2", "shutdown a"},
		},
		{
			name:  "an old task still stopping keeps its slot busy",
			svc:   service(2, 3, job(1), jobStatus(apiv1.JobStatus_STATE_RUNNING, 0, 0, 3)),
			tasks: []*apiv1.Task{task("a", 1, wantStop, tsRunning)},
		},
		{
			name:  "a task on a draining node is stopped and its slot runs again after",
			svc:   service(2, 1, job(0), jobStatus(apiv1.JobStatus_STATE_RUNNING, 0, 0, 1)),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning, v(2), on("d1"))},
			nodes: lookup(node("d1", nodeReady, availDrain)),
			want:  []string{"shutdown a"},
		},
		{
			name:  "a task of a down node is orphaned and its slot runs again at once",
			svc:   service(2, 1, job(0), jobStatus(apiv1.JobStatus_STATE_RUNNING, 0, 0, 1)),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning, v(2), on("x1"))},
			nodes: lookup(node("x1", nodeDown, 0)),
			want:  []string{"create slot 1 attempt 1 v2", "orphan a"},
		},
		{
			name:  "fewer completions: tasks beyond them are stopped or removed",
			svc:   service(2, 1, job(0), jobStatus(apiv1.JobStatus_STATE_COMPLETED, 1, 0, 1)),
			tasks: []*apiv1.Task{done("a", 1), done("b", 2), running("c", 3)},
			want:  []string{"remove b", "shutdown c"},
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got := Reconcile(Input{Service: tt.svc, Tasks: tt.tasks, Now: t0, NewID: ids(), Node: tt.nodes})
			if d := describe(got); !slices.Equal(d, tt.want) {
				t.Errorf("actions %q, want %q", d, tt.want)
			}
			if j := jobOf(got); j != tt.job {
				t.Errorf("job status %q, want %q", j, tt.job)
			}
		})
	}
}

// TestReplicatedJobRun runs a job of 5 completions, at most 2 at once, to
// its end, with the tasks finishing as they start (one of them failing
// once): never more than 2 tasks in flight, 5 COMPLETE, the status ends
// COMPLETED with its times, and nothing more is decided.
func TestReplicatedJobRun(t *testing.T) {
	svc := service(1, 5, job(2))
	var tasks []*apiv1.Task
	newID := ids()
	failedOnce := false
	for round := 0; round < 30; round++ {
		actions := Reconcile(Input{Service: svc, Tasks: tasks, Now: t0, NewID: newID})
		for _, a := range actions {
			if a, ok := a.(SetJobStatus); ok {
				svc = ApplyJobStatus(svc, a)
			}
		}
		tasks = apply(tasks, actions)
		inflight := 0
		for _, t := range tasks {
			if !Terminal(t.GetState()) {
				inflight++
			}
		}
		if inflight > 2 {
			t.Fatalf("round %d: %d tasks in flight, max_concurrent 2", round, inflight)
		}
		if inflight == 0 && len(actions) == 0 {
			break
		}
		// Every task in flight ends: the first of slot 3 fails, once.
		for i, tk := range tasks {
			if Terminal(tk.GetState()) || tk.GetDesiredState() != wantRunning {
				continue
			}
			c := proto.CloneOf(tk)
			c.State, c.UpdatedAt = tsComplete, timestamppb.New(t0)
			if tk.GetSlot() == 3 && !failedOnce {
				c.State, c.Error, failedOnce = tsFailed, "exited with code 1", true
			}
			tasks[i] = c
		}
	}
	complete := 0
	for _, tk := range tasks {
		if tk.GetState() == tsComplete && current(tk) {
			complete++
		}
	}
	st := svc.GetJobStatus()
	if complete != 5 || st.GetState() != apiv1.JobStatus_STATE_COMPLETED || st.GetCompleted() != 5 || st.GetStartedAt() == nil || st.GetCompletedAt() == nil {
		t.Fatalf("%d complete tasks, status %v; want 5 and COMPLETED 5/5 with its times", complete, st)
	}
	if again := Reconcile(Input{Service: svc, Tasks: tasks, Now: t0.Add(time.Hour), NewID: newID}); len(again) != 0 {
		t.Fatalf("a finished job still decides %v", again)
	}
}

// TestGlobalJob: a global job runs one task to completion on every
// eligible node, a node that joins gets its own; a completed task is not
// run again; an update re-runs the job on every node.
func TestGlobalJob(t *testing.T) {
	n1, n2, n3 := node("n1", nodeReady, 0), node("n2", nodeReady, 0), node("n3", nodeReady, 0)
	onNode := func(id, n string, st apiv1.TaskState, opts ...taskOpt) *apiv1.Task {
		return task(id, 0, wantRunning, st, append([]taskOpt{v(2), on(n)}, opts...)...)
	}
	cases := []struct {
		name  string
		svc   *apiv1.Service
		tasks []*apiv1.Task
		nodes []*apiv1.Node
		want  []string
		job   string
	}{
		{
			name:  "one task per eligible node",
			svc:   service(2, 0, globalJob),
			nodes: []*apiv1.Node{n1, n2, node("d", nodeReady, availDrain)},
			want:  []string{"create slot 0 attempt 1 v2", "create slot 0 attempt 1 v2"},
			job:   "running 0/2 (0 failed)",
		},
		{
			name:  "completed on every node: done, nothing restarts",
			svc:   service(2, 0, globalJob, jobStatus(apiv1.JobStatus_STATE_RUNNING, 1, 0, 2)),
			nodes: []*apiv1.Node{n1, n2},
			tasks: []*apiv1.Task{onNode("a", "n1", tsComplete), onNode("b", "n2", tsComplete)},
			job:   "completed 2/2 (0 failed)",
		},
		{
			name:  "a node that joins gets its task: the job runs again",
			svc:   service(2, 0, globalJob, jobStatus(apiv1.JobStatus_STATE_COMPLETED, 2, 0, 2)),
			nodes: []*apiv1.Node{n1, n2, n3},
			tasks: []*apiv1.Task{onNode("a", "n1", tsComplete), onNode("b", "n2", tsComplete)},
			want:  []string{"create slot 0 attempt 1 v2"},
			job:   "running 2/3 (0 failed)",
		},
		{
			name:  "a failure is retried on its node",
			svc:   service(2, 0, globalJob, jobStatus(apiv1.JobStatus_STATE_RUNNING, 1, 0, 2)),
			nodes: []*apiv1.Node{n1, n2},
			tasks: []*apiv1.Task{onNode("a", "n1", tsFailed, ran(time.Second)), onNode("b", "n2", tsComplete)},
			want:  []string{"create slot 0 attempt 2 v2 +100ms", "shutdown a"},
		},
		{
			name:  "a failure with no retry left: the job failed",
			svc:   service(2, 0, globalJob, restartPolicy(&apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_NONE})),
			nodes: []*apiv1.Node{n1, n2},
			tasks: []*apiv1.Task{onNode("a", "n1", tsFailed, ran(time.Second)), onNode("b", "n2", tsComplete)},
			job:   "failed 1/2 (1 failed)",
		},
		{
			name:  "an update re-runs it on every node at once",
			svc:   service(3, 0, globalJob, jobStatus(apiv1.JobStatus_STATE_COMPLETED, 2, 0, 2)),
			nodes: []*apiv1.Node{n1, n2},
			tasks: []*apiv1.Task{onNode("a", "n1", tsComplete), onNode("b", "n2", tsRunning)},
			want:  []string{"create slot 0 attempt 1 v3", "shutdown a", "shutdown b"},
			job:   "running 0/2 (0 failed)",
		},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got := Reconcile(Input{Service: tt.svc, Tasks: tt.tasks, Now: t0, NewID: ids(),
				Node: lookup(tt.nodes...), Nodes: func() []*apiv1.Node { return tt.nodes }})
			if d := describe(got); !slices.Equal(d, tt.want) {
				t.Errorf("actions %q, want %q", d, tt.want)
			}
			if j := jobOf(got); j != tt.job {
				t.Errorf("job status %q, want %q", j, tt.job)
			}
			for _, a := range got {
				if c, ok := a.(Create); ok && (c.Task.GetNodeId() == "" || c.Task.GetState() != tsAssigned) {
					t.Errorf("new task %s not made on its node: node %q state %v", c.Task.GetId(), c.Task.GetNodeId(), c.Task.GetState())
				}
			}
		})
	}
}

// TestJobStatusTimes: a run's started_at is kept while it runs, set anew
// when a finished job runs again, and completed_at is set when it ends.
func TestJobStatusTimes(t *testing.T) {
	done := task("a", 1, wantRunning, tsComplete, v(2))
	cases := []struct {
		name             string
		svc              *apiv1.Service
		tasks            []*apiv1.Task
		started, stopped time.Time // zero: unset
	}{
		{"a new run starts now", service(2, 1, job(0)), nil, t0, time.Time{}},
		{"a run keeps its start", service(2, 2, job(0), jobStatus(apiv1.JobStatus_STATE_RUNNING, 0, 0, 2)), []*apiv1.Task{done}, t0.Add(-time.Hour), time.Time{}},
		{"a run that ends gets its end", service(2, 1, job(0), jobStatus(apiv1.JobStatus_STATE_RUNNING, 0, 0, 1)), []*apiv1.Task{done}, t0.Add(-time.Hour), t0},
		{"a finished job found with no status starts with its oldest task", service(2, 1, job(0)), []*apiv1.Task{done}, t0.Add(-time.Minute), t0},
		{"a finished job that runs again starts a new run", service(2, 2, job(0), jobStatus(apiv1.JobStatus_STATE_COMPLETED, 1, 0, 1)), []*apiv1.Task{done}, t0, time.Time{}},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			var st *apiv1.JobStatus
			for _, a := range Reconcile(Input{Service: tt.svc, Tasks: tt.tasks, Now: t0, NewID: ids()}) {
				if a, ok := a.(SetJobStatus); ok {
					st = a.Status
				}
			}
			at := func(ts *timestamppb.Timestamp) time.Time {
				if ts == nil {
					return time.Time{}
				}
				return ts.AsTime()
			}
			if st == nil || !at(st.GetStartedAt()).Equal(tt.started) || !at(st.GetCompletedAt()).Equal(tt.stopped) {
				t.Fatalf("status %v; want started %v, completed %v", st, tt.started, tt.stopped)
			}
		})
	}
}
