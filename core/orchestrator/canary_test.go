package orchestrator

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// canaryUpdate makes s1 (version v, spec app:v) an update from app:1 with
// canary n, in update state st since a minute and a second before t0.
func canaryUpdate(n uint32, st apiv1.UpdateStatus_State, p *apiv1.UpdatePolicy) svcOpt {
	return func(s *apiv1.Service) {
		if p == nil {
			p = &apiv1.UpdatePolicy{}
		}
		p.Canary = n
		s.Spec.UpdatePolicy = p
		s.PreviousSpec = specV(1, s.Spec.GetReplicas())
		s.UpdateStatus = &apiv1.UpdateStatus{State: st, StartedAt: timestamppb.New(t0.Add(-time.Minute - time.Second))}
	}
}

// describeAll is describe with the update statuses ("status STATE
// (rollback): message") and rechecks ("recheck +delay").
func describeAll(actions []Action) []string {
	out := describe(actions)
	for _, a := range actions {
		switch a := a.(type) {
		case SetUpdateStatus:
			s := "status " + a.Status.GetState().String()
			if a.Rollback {
				s += " (rollback)"
			}
			out = append(out, s+": "+a.Status.GetMessage())
		case Recheck:
			out = append(out, "recheck +"+a.At.Sub(t0).String())
		}
	}
	return out
}

// TestCanary: the decisions of a canary update: start the canaries beside
// the old tasks, wait for a promote (or auto-promote after the monitor
// window), roll back a failed canary without touching the old tasks.
func TestCanary(t *testing.T) {
	old := func() []*apiv1.Task {
		return []*apiv1.Task{task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning)}
	}
	with := func(ts ...*apiv1.Task) []*apiv1.Task { return append(old(), ts...) }
	canaryTask := func(id string, slot uint64, st apiv1.TaskState, since time.Duration) *apiv1.Task {
		return task(id, slot, wantRunning, st, v(2), func(t *apiv1.Task) {
			t.CreatedAt, t.UpdatedAt = timestamppb.New(t0.Add(-time.Minute)), timestamppb.New(t0.Add(-since))
			if st == tsFailed {
				t.Error = "exited with code 1"
			}
		})
	}
	canary := apiv1.UpdateStatus_STATE_CANARY
	auto := func() *apiv1.UpdatePolicy {
		return &apiv1.UpdatePolicy{AutoPromote: true, Monitor: durationpb.New(5 * time.Second)}
	}
	tests := []struct {
		name  string
		svc   *apiv1.Service
		tasks []*apiv1.Task
		want  []string
	}{
		{"the canaries start beside the old tasks", service(2, 3, canaryUpdate(2, canary, nil)), old(),
			[]string{"create slot 1 attempt 1 v2", "create slot 2 attempt 1 v2"}},
		{"serving canaries wait for a promote", service(2, 3, canaryUpdate(1, canary, nil)), with(canaryTask("k1", 1, tsRunning, time.Hour)),
			nil},
		{"a starting canary waits too", service(2, 3, canaryUpdate(1, canary, auto())), with(canaryTask("k1", 1, tsStarting, time.Hour)),
			nil},
		{"auto-promote once served through the monitor window", service(2, 3, canaryUpdate(1, canary, auto())), with(canaryTask("k1", 1, tsRunning, 6*time.Second)),
			[]string{"status STATE_UPDATING: canary promoted: 1 task(s) served through the 5s monitor window; update in progress"}},
		{"auto-promote waits for the monitor window", service(2, 3, canaryUpdate(1, canary, auto())), with(canaryTask("k1", 1, tsRunning, time.Second)),
			[]string{"recheck +4s"}},
		{"auto-promote waits for every canary", service(2, 3, canaryUpdate(2, canary, auto())), with(canaryTask("k1", 1, tsRunning, time.Hour), canaryTask("k2", 2, tsStarting, time.Hour)),
			nil},
		{"a failed canary rolls back: nothing restarted, nothing stopped", service(2, 3, canaryUpdate(2, canary, nil)),
			with(canaryTask("k1", 1, tsFailed, 0), canaryTask("k2", 2, tsRunning, time.Hour)),
			[]string{"status STATE_ROLLBACK_STARTED (rollback): update rolled back: canary task k1 failed: exited with code 1"}},
		{"a failed canary pauses with no previous spec", service(2, 3, canaryUpdate(1, canary, nil), func(s *apiv1.Service) { s.PreviousSpec = nil }),
			with(canaryTask("k1", 1, tsFailed, 0)),
			[]string{"status STATE_PAUSED: update paused: canary task k1 failed: exited with code 1"}},
		{"the rollback stops the canaries only", service(3, 3, func(s *apiv1.Service) {
			s.Spec = specV(1, 3)
			s.PreviousSpec = specV(2, 3)
			s.UpdateStatus = &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_ROLLBACK_STARTED, Message: "update rolled back: canary", StartedAt: timestamppb.New(t0)}
		}), with(canaryTask("k1", 1, tsFailed, 0), canaryTask("k2", 2, tsRunning, time.Hour)),
			[]string{"shutdown k1", "shutdown k2"}},
		{"promoted: the canaries' old tasks stop, the rest rolls", service(2, 3, canaryUpdate(1, apiv1.UpdateStatus_STATE_UPDATING, &apiv1.UpdatePolicy{Parallelism: 1})),
			with(canaryTask("k1", 1, tsRunning, time.Hour)),
			[]string{"shutdown a", "shutdown b"}},
		{"promoted, start-first: the next slot starts beside its old task", service(2, 3, canaryUpdate(1, apiv1.UpdateStatus_STATE_UPDATING,
			&apiv1.UpdatePolicy{Parallelism: 1, Order: apiv1.UpdatePolicy_ORDER_START_FIRST})),
			with(canaryTask("k1", 1, tsRunning, time.Hour)),
			[]string{"create slot 2 attempt 1 v2", "shutdown a"}},
		{"a canary count beyond the replicas is bounded by them", service(2, 1, canaryUpdate(3, canary, nil)), []*apiv1.Task{task("a", 1, wantRunning, tsRunning)},
			[]string{"create slot 1 attempt 1 v2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describeAll(Reconcile(Input{Service: tt.svc, Tasks: tt.tasks, Now: t0, NewID: ids()}))
			if !slices.Equal(got, tt.want) {
				t.Fatalf("actions %q, want %q", got, tt.want)
			}
		})
	}
}

// TestCanaryToTheEnd follows a canary update of 3 replicas through its
// rounds, every new task coming up at once: 1 canary beside the 3 old
// tasks until the promote, then the rest, ending with 3 tasks, all new.
func TestCanaryToTheEnd(t *testing.T) {
	svc := service(2, 3, canaryUpdate(1, apiv1.UpdateStatus_STATE_CANARY, &apiv1.UpdatePolicy{Parallelism: 1}))
	tasks := []*apiv1.Task{task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning)}
	newID := ids()
	step := func() []Action {
		actions := Reconcile(Input{Service: svc, Tasks: tasks, Now: t0, NewID: newID})
		tasks = apply(tasks, actions)
		for i, tk := range tasks { // the cluster brings each change about at once
			if tk.GetDesiredState() == wantRunning && tk.GetState() == tsNew {
				tk = proto.CloneOf(tk)
				tk.State, tk.NodeId = tsRunning, "n1"
				tasks[i] = tk
			}
			if tk.GetDesiredState() == wantStop && !Terminal(tk.GetState()) {
				tk = proto.CloneOf(tk)
				tk.State = tsShutdown
				tasks[i] = tk
			}
		}
		for _, a := range actions {
			if a, ok := a.(SetUpdateStatus); ok {
				svc = ApplyUpdateStatus(svc, a)
			}
		}
		return actions
	}
	running := func(version uint64) (n int) {
		for _, tk := range tasks {
			if current(tk) && tk.GetState() == tsRunning && tk.GetServiceVersion() == version {
				n++
			}
		}
		return n
	}
	for i := 0; i < 3; i++ {
		step()
	}
	if n1, n2 := running(1), running(2); n1 != 3 || n2 != 1 {
		t.Fatalf("before the promote: %d old and %d new tasks running, want 3 and 1", n1, n2)
	}
	svc.UpdateStatus = &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_UPDATING, StartedAt: svc.GetUpdateStatus().GetStartedAt()}
	for i := 0; i < 20 && svc.GetUpdateStatus().GetState() != apiv1.UpdateStatus_STATE_COMPLETED; i++ {
		step()
	}
	if st := svc.GetUpdateStatus().GetState(); st != apiv1.UpdateStatus_STATE_COMPLETED {
		t.Fatalf("update state %s after the promote, want completed", st)
	}
	if n1, n2 := running(1), running(2); n1 != 0 || n2 != 3 {
		t.Fatalf("after the promote: %d old and %d new tasks running, want 0 and 3", n1, n2)
	}
}
