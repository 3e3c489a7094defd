package orchestrator

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/runtime"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	tsNew       = apiv1.TaskState_TASK_STATE_NEW
	tsPending   = apiv1.TaskState_TASK_STATE_PENDING
	tsAssigned  = apiv1.TaskState_TASK_STATE_ASSIGNED
	tsStarting  = apiv1.TaskState_TASK_STATE_STARTING
	tsRunning   = apiv1.TaskState_TASK_STATE_RUNNING
	tsComplete  = apiv1.TaskState_TASK_STATE_COMPLETE
	tsFailed    = apiv1.TaskState_TASK_STATE_FAILED
	tsShutdown  = apiv1.TaskState_TASK_STATE_SHUTDOWN
	tsRejected  = apiv1.TaskState_TASK_STATE_REJECTED
	tsOrphaned  = apiv1.TaskState_TASK_STATE_ORPHANED
	wantRunning = apiv1.TaskState_TASK_STATE_RUNNING
	wantStop    = apiv1.TaskState_TASK_STATE_SHUTDOWN
)

// specV returns the spec of service version v: image app:v.
func specV(v uint64, replicas uint64) *apiv1.ServiceSpec {
	return &apiv1.ServiceSpec{Name: "web", Image: fmt.Sprintf("app:%d", v), Replicas: replicas}
}

type svcOpt func(*apiv1.Service)

// service returns service "s1" at version v (spec image app:v).
func service(v, replicas uint64, opts ...svcOpt) *apiv1.Service {
	s := &apiv1.Service{Id: "s1", Spec: specV(v, replicas), Version: v, CreatedAt: timestamppb.New(t0.Add(-time.Hour))}
	for _, o := range opts {
		o(s)
	}
	return s
}

func restartPolicy(p *apiv1.RestartPolicy) svcOpt {
	return func(s *apiv1.Service) { s.Spec.RestartPolicy = p }
}

func updatePolicy(parallelism uint32, order apiv1.UpdatePolicy_Order) svcOpt {
	return func(s *apiv1.Service) {
		s.Spec.UpdatePolicy = &apiv1.UpdatePolicy{Parallelism: parallelism, Order: order}
	}
}

type taskOpt func(*apiv1.Task)

// task returns a task of service s1 made from version 1, placed on node n1
// (unless state is NEW or PENDING), created a minute before t0.
func task(id string, slot uint64, desired, state apiv1.TaskState, opts ...taskOpt) *apiv1.Task {
	t := &apiv1.Task{
		Id: id, ServiceId: "s1", ServiceName: "web", Slot: slot,
		ServiceVersion: 1, Spec: specV(1, 3),
		DesiredState: desired, State: state, Attempt: 1,
		CreatedAt: timestamppb.New(t0.Add(-time.Minute)),
	}
	if state > tsPending {
		t.NodeId = "n1"
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

func v(version uint64) taskOpt {
	return func(t *apiv1.Task) { t.ServiceVersion = version; t.Spec = specV(version, 3) }
}

func attempt(n uint32) taskOpt { return func(t *apiv1.Task) { t.Attempt = n } }

// ran makes the task created d before t0 and finished (updated) at t0.
func ran(d time.Duration) taskOpt {
	return func(t *apiv1.Task) {
		t.CreatedAt = timestamppb.New(t0.Add(-d))
		t.UpdatedAt = timestamppb.New(t0)
	}
}

func createdAgo(d time.Duration) taskOpt {
	return func(t *apiv1.Task) { t.CreatedAt = timestamppb.New(t0.Add(-d)) }
}

func noNode(t *apiv1.Task) { t.NodeId = "" }

// describe renders actions for comparison: "create slot 2 attempt 1 v1",
// with "+<delay>" for a not_before; "shutdown <id>"; "remove <id>";
// "orphan <id>"; "note <id>".
func describe(actions []Action) []string {
	var out []string
	for _, a := range actions {
		switch a := a.(type) {
		case Create:
			s := fmt.Sprintf("create slot %d attempt %d v%d", a.Task.GetSlot(), a.Task.GetAttempt(), a.Task.GetServiceVersion())
			if nb := a.Task.GetNotBefore(); nb != nil {
				s += " +" + nb.AsTime().Sub(t0).String()
			}
			out = append(out, s)
		case Shutdown:
			out = append(out, "shutdown "+a.TaskID)
		case Remove:
			out = append(out, "remove "+a.TaskID)
		case Orphan:
			out = append(out, "orphan "+a.TaskID)
		case Note:
			out = append(out, "note "+a.TaskID)
		}
	}
	slices.Sort(out)
	return out
}

func ids() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("new%d", n) }
}

// apply returns tasks with actions applied, as the loop commits them.
func apply(tasks []*apiv1.Task, actions []Action) []*apiv1.Task {
	byID := map[string]*apiv1.Task{}
	var order []string
	for _, t := range tasks {
		byID[t.GetId()] = t
		order = append(order, t.GetId())
	}
	for _, a := range actions {
		switch a := a.(type) {
		case Create:
			byID[a.Task.GetId()] = a.Task
			order = append(order, a.Task.GetId())
		case Shutdown:
			if t, ok := byID[a.TaskID]; ok {
				byID[a.TaskID], _ = ShutdownTask(t, a.Reason, t0)
			}
		case Orphan:
			if t, ok := byID[a.TaskID]; ok {
				byID[a.TaskID], _ = OrphanTask(t, a.Reason, t0)
			}
		case Note:
			if t, ok := byID[a.TaskID]; ok {
				byID[a.TaskID], _ = NoteTask(t, a.Message)
			}
		case Remove:
			delete(byID, a.TaskID)
		}
	}
	var out []*apiv1.Task
	for _, id := range order {
		if t, ok := byID[id]; ok {
			out = append(out, t)
		}
	}
	return out
}

func TestReconcile(t *testing.T) {
	fastFail := ran(time.Second) // well inside the default 10s window
	cases := []struct {
		name   string
		svc    *apiv1.Service
		tasks  []*apiv1.Task
		config Config
		want   []string
	}{
		{
			name: "new service gets one task per slot",
			svc:  service(1, 3),
			want: []string{"create slot 1 attempt 1 v1", "create slot 2 attempt 1 v1", "create slot 3 attempt 1 v1"},
		},
		{
			name: "steady state needs nothing",
			svc:  service(1, 3),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsNew),
			},
		},
		{
			name:  "missing slot is filled",
			svc:   service(1, 3),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning)},
			want:  []string{"create slot 2 attempt 1 v1"},
		},
		{
			name: "scale down shuts down slots above replicas",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsStarting),
			},
			want: []string{"shutdown b", "shutdown c"},
		},
		{
			name: "scaled down tasks are removed once finished, not before",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning),
				task("b", 2, wantStop, tsRunning),
				task("c", 3, wantStop, tsShutdown),
				task("d", 3, wantStop, tsFailed),
			},
			want: []string{"remove c", "remove d"},
		},
		{
			name: "scaled down task on no node is removed at once",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsPending), task("c", 3, wantStop, tsNew),
			},
			want: []string{"remove b", "remove c"},
		},
		{
			name: "scale up while the old task of the slot still stops",
			svc:  service(1, 2),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantStop, tsRunning),
			},
			want: []string{"create slot 2 attempt 1 v1"},
		},
		{
			name: "removed service: stop, then remove what finished",
			svc:  nil,
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning),
				task("b", 2, wantStop, tsRunning),
				task("c", 3, wantStop, tsShutdown),
				task("d", 1, wantStop, tsComplete),
				task("e", 4, wantStop, tsPending),
			},
			want: []string{"remove c", "remove d", "remove e", "shutdown a"},
		},
		{
			name:  "restart after failure: attempt 2 after delay",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, fastFail)},
			want:  []string{"create slot 1 attempt 2 v1 +100ms", "shutdown a"},
		},
		{
			name:  "crash loop backs off exponentially: attempt 5 waits 8 delays",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, fastFail, attempt(4))},
			want:  []string{"create slot 1 attempt 5 v1 +800ms", "shutdown a"},
		},
		{
			name:  "backoff is capped at the default max delay",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, fastFail, attempt(9))},
			want:  []string{"create slot 1 attempt 10 v1 +10s", "shutdown a"},
		},
		{
			name: "custom delay and max delay",
			svc: service(1, 1, restartPolicy(&apiv1.RestartPolicy{
				Delay: durationpb.New(time.Second), MaxDelay: durationpb.New(5 * time.Second),
			})),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, fastFail, attempt(3))},
			want:  []string{"create slot 1 attempt 4 v1 +4s", "shutdown a"},
		},
		{
			name:  "explicit zero delay restarts at once",
			svc:   service(1, 1, restartPolicy(&apiv1.RestartPolicy{Delay: durationpb.New(0)})),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, fastFail, attempt(3))},
			want:  []string{"create slot 1 attempt 4 v1", "shutdown a"},
		},
		{
			name:  "a task that ran longer than the window starts over at attempt 1",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, ran(time.Minute), attempt(6))},
			want:  []string{"create slot 1 attempt 1 v1", "shutdown a"},
		},
		{
			name:  "custom window counts longer runs",
			svc:   service(1, 1, restartPolicy(&apiv1.RestartPolicy{Window: durationpb.New(2 * time.Minute)})),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, ran(time.Minute), attempt(2))},
			want:  []string{"create slot 1 attempt 3 v1 +200ms", "shutdown a"},
		},
		{
			name: "run time counts from not_before, not creation",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, ran(time.Minute), attempt(2), func(t *apiv1.Task) {
				t.NotBefore = timestamppb.New(t0.Add(-time.Second))
			})},
			want: []string{"create slot 1 attempt 3 v1 +200ms", "shutdown a"},
		},
		{
			name:  "max_attempts: attempt 3 of 3 is still made",
			svc:   service(1, 1, restartPolicy(&apiv1.RestartPolicy{MaxAttempts: 3})),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, fastFail, attempt(2))},
			want:  []string{"create slot 1 attempt 3 v1 +200ms", "shutdown a"},
		},
		{
			name: "max_attempts reached: no replacement, the failed task keeps its slot",
			svc:  service(1, 1, restartPolicy(&apiv1.RestartPolicy{MaxAttempts: 3})),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsFailed, fastFail, attempt(3)),
				task("h", 1, wantStop, tsFailed, createdAgo(time.Hour), attempt(2)),
			},
		},
		{
			name:  "max_attempts counts within the window only",
			svc:   service(1, 1, restartPolicy(&apiv1.RestartPolicy{MaxAttempts: 3})),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsFailed, ran(time.Hour), attempt(3))},
			want:  []string{"create slot 1 attempt 1 v1", "shutdown a"},
		},
		{
			name: "condition any restarts after every end",
			svc:  service(1, 4),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsComplete, fastFail), task("b", 2, wantRunning, tsRejected, fastFail),
				task("c", 3, wantRunning, tsOrphaned, fastFail), task("d", 4, wantRunning, tsShutdown, fastFail),
			},
			want: []string{
				"create slot 1 attempt 2 v1 +100ms", "create slot 2 attempt 2 v1 +100ms",
				"create slot 3 attempt 2 v1 +100ms", "create slot 4 attempt 2 v1 +100ms",
				"shutdown a", "shutdown b", "shutdown c", "shutdown d",
			},
		},
		{
			name: "condition on-failure: not after exit 0",
			svc:  service(1, 2, restartPolicy(&apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_ON_FAILURE})),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsComplete, fastFail), task("b", 2, wantRunning, tsFailed, fastFail),
			},
			want: []string{"create slot 2 attempt 2 v1 +100ms", "shutdown b"},
		},
		{
			name: "condition none: never",
			svc:  service(1, 2, restartPolicy(&apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_NONE})),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsComplete, fastFail), task("b", 2, wantRunning, tsFailed, fastFail),
			},
		},
		{
			name: "duplicate current tasks: the most advanced stays",
			svc:  service(1, 2),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 1, wantRunning, tsAssigned, createdAgo(time.Second)),
				task("c", 2, wantRunning, tsRunning, createdAgo(time.Hour)), task("d", 2, wantRunning, tsRunning),
			},
			want: []string{"shutdown b", "shutdown c"},
		},
		{
			name: "a live duplicate wins over a finished one, which is not restarted",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsFailed, fastFail), task("b", 1, wantRunning, tsRunning, createdAgo(time.Hour)),
			},
			want: []string{"shutdown a"},
		},
		{
			name: "stopping task on no node is marked shut down",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 1, wantStop, tsPending),
			},
			want: []string{"shutdown b"},
		},
		{
			name: "history beyond the limit is removed, oldest first",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning),
				task("h1", 1, wantStop, tsFailed, createdAgo(7*time.Hour)),
				task("h2", 1, wantStop, tsFailed, createdAgo(6*time.Hour)),
				task("h3", 1, wantStop, tsShutdown, createdAgo(5*time.Hour)),
				task("h4", 1, wantStop, tsFailed, createdAgo(4*time.Hour)),
				task("h5", 1, wantStop, tsComplete, createdAgo(3*time.Hour)),
				task("h6", 1, wantStop, tsFailed, createdAgo(2*time.Hour)),
				task("h7", 1, wantStop, tsRejected, createdAgo(time.Hour)),
				task("s", 1, wantStop, tsRunning, createdAgo(8*time.Hour)), // still stopping: not history yet
			},
			want: []string{"remove h1", "remove h2"},
		},
		{
			name:   "history limit from config, counting the task replaced this round",
			svc:    service(1, 1),
			config: Config{TaskHistoryLimit: 2},
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsFailed, fastFail),
				task("h1", 1, wantStop, tsFailed, createdAgo(3*time.Hour)),
				task("h2", 1, wantStop, tsFailed, createdAgo(2*time.Hour)),
			},
			want: []string{"create slot 1 attempt 2 v1 +100ms", "remove h1", "shutdown a"},
		},
		{
			name:   "negative history limit keeps none",
			svc:    service(1, 1),
			config: Config{TaskHistoryLimit: -1},
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("h1", 1, wantStop, tsFailed), task("h2", 2, wantStop, tsFailed),
			},
			want: []string{"remove h1", "remove h2"},
		},
		{
			name: "scaling changes no task",
			svc:  service(2, 2),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning, func(t *apiv1.Task) { t.ServiceVersion = 1; t.Spec = specV(2, 7) }),
				task("b", 2, wantRunning, tsRunning, func(t *apiv1.Task) { t.ServiceVersion = 1; t.Spec = specV(2, 7) }),
			},
		},
		{
			name: "update policy changes no task",
			svc:  service(2, 1, updatePolicy(1, apiv1.UpdatePolicy_ORDER_START_FIRST)),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning, func(t *apiv1.Task) { t.ServiceVersion = 1; t.Spec = specV(2, 1) }),
			},
		},
		{
			name: "published ports change no task",
			svc: service(2, 1, func(s *apiv1.Service) {
				s.Spec.Image = "app:1"
				s.Spec.Ports = []*apiv1.PortConfig{{Published: 8080, Target: 80}}
			}),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning)},
		},
		{
			name: "update, parallelism 0: every slot at once",
			svc:  service(2, 3),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
			},
			want: []string{"shutdown a", "shutdown b", "shutdown c"},
		},
		{
			name: "update, parallelism 2",
			svc:  service(2, 3, updatePolicy(2, 0)),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
			},
			want: []string{"shutdown a", "shutdown b"},
		},
		{
			name: "update, tasks that serve nothing go first and are replaced at once",
			svc:  service(2, 3, updatePolicy(1, 0)),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsPending),
			},
			want: []string{"create slot 3 attempt 1 v2", "shutdown c"},
		},
		{
			name: "update, a finished old task is replaced without waiting for a turn",
			svc:  service(2, 2, updatePolicy(1, 0), restartPolicy(&apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_NONE})),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsStarting, v(2)), task("b", 2, wantRunning, tsComplete),
			},
			want: []string{"create slot 2 attempt 1 v2", "shutdown b"},
		},
		{
			name: "update stop-first, parallelism 1: a new task fails and is restarted with backoff, the update waits",
			svc:  service(2, 2, updatePolicy(1, 0)),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsFailed, v(2), fastFail), task("old", 1, wantStop, tsShutdown),
				task("b", 2, wantRunning, tsRunning),
			},
			want: []string{"create slot 1 attempt 2 v2 +100ms", "shutdown a"},
		},
		{
			name: "start-first, a new task that fails while the old runs is restarted with backoff",
			svc:  service(2, 1, updatePolicy(1, apiv1.UpdatePolicy_ORDER_START_FIRST)),
			tasks: []*apiv1.Task{
				task("old", 1, wantRunning, tsRunning), task("new", 1, wantRunning, tsFailed, v(2), fastFail),
			},
			want: []string{"create slot 1 attempt 2 v2 +100ms", "shutdown new"},
		},
		{
			name: "start-first, a new task out of attempts keeps the old one running",
			svc: service(2, 1, updatePolicy(1, apiv1.UpdatePolicy_ORDER_START_FIRST),
				restartPolicy(&apiv1.RestartPolicy{MaxAttempts: 2})),
			tasks: []*apiv1.Task{
				task("old", 1, wantRunning, tsRunning), task("new", 1, wantRunning, tsFailed, v(2), fastFail, attempt(2)),
			},
		},
		{
			name: "start-first, the old task of a slot dies while the new one starts",
			svc:  service(2, 1, updatePolicy(1, apiv1.UpdatePolicy_ORDER_START_FIRST)),
			tasks: []*apiv1.Task{
				task("old", 1, wantRunning, tsFailed, fastFail), task("new", 1, wantRunning, tsStarting, v(2)),
			},
			want: []string{"shutdown old"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Service: tc.svc, Tasks: tc.tasks, Now: t0, Config: tc.config, NewID: ids()}
			before := cloneAll(tc.tasks)
			got := Reconcile(in)
			if d := diff(describe(got), tc.want); d != "" {
				t.Errorf("Reconcile:\n%s", d)
			}
			for i := range before {
				if !proto.Equal(before[i], tc.tasks[i]) {
					t.Errorf("Reconcile changed its input task %s", tc.tasks[i].GetId())
				}
			}
			// Applied, the actions leave nothing to do until workers act.
			in.Tasks = apply(tc.tasks, got)
			if again := Reconcile(in); len(again) > 0 {
				t.Errorf("after applying, Reconcile again = %v, want nothing", describe(again))
			}
		})
	}
}

func cloneAll(ts []*apiv1.Task) []*apiv1.Task {
	out := make([]*apiv1.Task, len(ts))
	for i, t := range ts {
		out[i] = proto.CloneOf(t)
	}
	return out
}

func diff(got, want []string) string {
	want = slices.Clone(want)
	slices.Sort(want)
	if slices.Equal(got, want) {
		return ""
	}
	return fmt.Sprintf("got:\n\t%s\nwant:\n\t%s", strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
}

func TestNewTasksCopyTheService(t *testing.T) {
	svc := service(7, 1)
	svc.Spec.Env = map[string]string{"A": "1"}
	got := Reconcile(Input{Service: svc, Now: t0, NewID: func() string { return "abcdefghijklmnopqrstuvwx" }})
	if len(got) != 1 {
		t.Fatalf("Reconcile = %v, want one create", describe(got))
	}
	c, ok := got[0].(Create)
	if !ok {
		t.Fatalf("action %v is not a Create", got[0])
	}
	want := &apiv1.Task{
		Id: "abcdefghijklmnopqrstuvwx", ServiceId: "s1", ServiceName: "web", Slot: 1, ServiceVersion: 7,
		Spec: svc.Spec, DesiredState: wantRunning, State: tsNew, Attempt: 1,
		CreatedAt: timestamppb.New(t0), UpdatedAt: timestamppb.New(t0),
	}
	if !proto.Equal(c.Task, want) {
		t.Errorf("created task:\n got %v\nwant %v", c.Task, want)
	}
	if c.Task.Spec == svc.Spec {
		t.Error("the new task shares the service's spec message; it must be a copy")
	}
}

func TestNewTaskIDsAreValidTaskIDs(t *testing.T) {
	got := Reconcile(Input{Service: service(1, 2), Now: t0})
	seen := map[string]bool{}
	for _, a := range got {
		id := a.(Create).Task.GetId()
		if len(id) != 24 || strings.Trim(id, "0123456789abcdefghijklmnopqrstuv") != "" || seen[id] {
			t.Errorf("task ID %q: want 24 distinct lowercase base32hex characters", id)
		}
		if err := runtime.ValidateTaskID(id); err != nil {
			t.Errorf("task ID %q is not a valid runtime task ID: %v", id, err)
		}
		seen[id] = true
	}
}

// TestRollingUpdate drives an update of 3 replicas, parallelism 1, through
// the workers' progress and checks that one slot at a time is replaced.
func TestRollingUpdate(t *testing.T) {
	for _, order := range []apiv1.UpdatePolicy_Order{apiv1.UpdatePolicy_ORDER_STOP_FIRST, apiv1.UpdatePolicy_ORDER_START_FIRST} {
		t.Run(order.String(), func(t *testing.T) {
			svc := service(2, 3, updatePolicy(1, order))
			tasks := []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
			}
			newID := ids()
			for round := 0; round < 40; round++ {
				actions := Reconcile(Input{Service: svc, Tasks: tasks, Now: t0, NewID: newID})
				tasks = apply(tasks, actions)
				// At most one slot is without a RUNNING task at any time,
				// and under start-first none is.
				down := 0
				for s := uint64(1); s <= 3; s++ {
					up := false
					for _, tk := range tasks {
						if tk.GetSlot() == s && tk.GetState() == tsRunning {
							up = true
						}
					}
					if !up {
						down++
					}
				}
				if order == apiv1.UpdatePolicy_ORDER_START_FIRST && down > 0 {
					t.Fatalf("round %d: %d slots without a running task under start-first", round, down)
				}
				if down > 1 {
					t.Fatalf("round %d: %d slots without a running task, parallelism is 1", round, down)
				}
				if done(tasks, 2) {
					return
				}
				tasks = workers(tasks)
			}
			t.Fatalf("update did not finish in 40 rounds: %v", tasks)
		})
	}
}

// done reports whether every current task runs version v and nothing else
// is still running.
func done(tasks []*apiv1.Task, v uint64) bool {
	n := 0
	for _, t := range tasks {
		if current(t) {
			if t.GetServiceVersion() != v || t.GetState() != tsRunning {
				return false
			}
			n++
		} else if !Terminal(t.GetState()) {
			return false
		}
	}
	return n == 3
}

// workers moves every task one step as workers would: a task to stop
// stops, a new one is placed, a placed one starts.
func workers(tasks []*apiv1.Task) []*apiv1.Task {
	out := make([]*apiv1.Task, len(tasks))
	for i, t := range tasks {
		t = proto.CloneOf(t)
		switch {
		case t.GetDesiredState() == wantStop && !Terminal(t.GetState()):
			t.State = tsShutdown
		case t.GetState() == tsNew:
			t.State, t.NodeId = tsAssigned, "n1"
		case t.GetState() == tsAssigned:
			t.State = tsRunning
		}
		out[i] = t
	}
	return out
}

func TestRollingUpdateParallelismOneSteps(t *testing.T) {
	svc := service(2, 3, updatePolicy(1, 0))
	steps := []struct {
		name  string
		tasks []*apiv1.Task
		want  []string
	}{
		{"first slot is stopped", []*apiv1.Task{
			task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, []string{"shutdown a"}},
		{"nothing while it stops", []*apiv1.Task{
			task("a", 1, wantStop, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, nil},
		{"stopped: the new task starts", []*apiv1.Task{
			task("a", 1, wantStop, tsShutdown), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, []string{"create slot 1 attempt 1 v2"}},
		{"nothing while the new task starts", []*apiv1.Task{
			task("a", 1, wantStop, tsShutdown), task("n1", 1, wantRunning, tsStarting, v(2)),
			task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, nil},
		{"new task running: next slot", []*apiv1.Task{
			task("a", 1, wantStop, tsShutdown), task("n1", 1, wantRunning, tsRunning, v(2)),
			task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, []string{"shutdown b"}},
	}
	for _, st := range steps {
		got := Reconcile(Input{Service: svc, Tasks: st.tasks, Now: t0, NewID: ids()})
		if d := diff(describe(got), st.want); d != "" {
			t.Errorf("%s:\n%s", st.name, d)
		}
	}
}

func TestStartFirstSteps(t *testing.T) {
	svc := service(2, 3, updatePolicy(1, apiv1.UpdatePolicy_ORDER_START_FIRST))
	steps := []struct {
		name  string
		tasks []*apiv1.Task
		want  []string
	}{
		{"new task first, old keeps running", []*apiv1.Task{
			task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, []string{"create slot 1 attempt 1 v2"}},
		{"old keeps running until the new one runs", []*apiv1.Task{
			task("a", 1, wantRunning, tsRunning), task("n1", 1, wantRunning, tsStarting, v(2)),
			task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, nil},
		{"new one runs: old stops, next slot starts", []*apiv1.Task{
			task("a", 1, wantRunning, tsRunning), task("n1", 1, wantRunning, tsRunning, v(2)),
			task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, []string{"create slot 2 attempt 1 v2", "shutdown a"}},
	}
	for _, st := range steps {
		got := Reconcile(Input{Service: svc, Tasks: st.tasks, Now: t0, NewID: ids()})
		if d := diff(describe(got), st.want); d != "" {
			t.Errorf("%s:\n%s", st.name, d)
		}
	}
}

// TestStartFirstWaitsForHealthy: with a health check, a new task that runs
// but is not healthy yet does not replace the old one, nor does it free
// the update's next turn.
func TestStartFirstWaitsForHealthy(t *testing.T) {
	withCheck := func(s *apiv1.ServiceSpec) *apiv1.ServiceSpec {
		s.HealthCheck = &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_HTTP, Path: "/"}
		return s
	}
	svc := service(2, 2, updatePolicy(1, apiv1.UpdatePolicy_ORDER_START_FIRST), func(s *apiv1.Service) { withCheck(s.Spec) })
	fresh := func(h apiv1.HealthState) taskOpt {
		return func(t *apiv1.Task) { t.ServiceVersion, t.Spec, t.Health = 2, withCheck(specV(2, 2)), h }
	}
	steps := []struct {
		name  string
		tasks []*apiv1.Task
		want  []string
	}{
		{"running but starting: old keeps running", []*apiv1.Task{
			task("a", 1, wantRunning, tsRunning), task("n1", 1, wantRunning, tsRunning, fresh(apiv1.HealthState_HEALTH_STATE_STARTING)),
			task("b", 2, wantRunning, tsRunning),
		}, nil},
		{"healthy: old stops, next slot starts", []*apiv1.Task{
			task("a", 1, wantRunning, tsRunning), task("n1", 1, wantRunning, tsRunning, fresh(apiv1.HealthState_HEALTH_STATE_HEALTHY)),
			task("b", 2, wantRunning, tsRunning),
		}, []string{"create slot 2 attempt 1 v2", "shutdown a"}},
	}
	for _, st := range steps {
		got := Reconcile(Input{Service: svc, Tasks: st.tasks, Now: t0, NewID: ids()})
		if d := diff(describe(got), st.want); d != "" {
			t.Errorf("%s:\n%s", st.name, d)
		}
	}
}

// TestCrashLoop fails the slot's task at once, again and again, and checks
// the backoff sequence and that max_attempts ends it.
func TestCrashLoop(t *testing.T) {
	svc := service(1, 1, restartPolicy(&apiv1.RestartPolicy{
		Delay: durationpb.New(time.Second), MaxDelay: durationpb.New(6 * time.Second), MaxAttempts: 6,
	}))
	now := t0
	tasks := []*apiv1.Task{{
		Id: "first", ServiceId: "s1", ServiceName: "web", Slot: 1, ServiceVersion: 1, Spec: specV(1, 1),
		DesiredState: wantRunning, State: tsNew, Attempt: 1, CreatedAt: timestamppb.New(now),
	}}
	var waits []time.Duration
	newID := ids()
	for range 10 {
		// The current task runs for 500ms after its not_before, then fails.
		for i, tk := range tasks {
			if current(tk) && !Terminal(tk.GetState()) {
				start := tk.GetCreatedAt().AsTime()
				if nb := tk.GetNotBefore(); nb != nil {
					start = nb.AsTime()
				}
				now = start.Add(500 * time.Millisecond)
				tk = proto.CloneOf(tk)
				tk.State, tk.NodeId, tk.UpdatedAt, tk.Error = tsFailed, "n1", timestamppb.New(now), "exit code 1"
				tasks[i] = tk
			}
		}
		actions := Reconcile(Input{Service: svc, Tasks: tasks, Now: now, NewID: newID})
		if len(actions) == 0 {
			break
		}
		for _, a := range actions {
			if c, ok := a.(Create); ok {
				waits = append(waits, c.Task.GetNotBefore().AsTime().Sub(now))
				// The replacement says why its slot's last attempt ended.
				if got := c.Task.GetPreviousError(); got != "failed: exit code 1" {
					t.Errorf("replacement attempt %d: previous error %q, want the failure it follows", c.Task.GetAttempt(), got)
				}
			}
		}
		tasks = apply(tasks, actions)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 6 * time.Second, 6 * time.Second}
	if !slices.Equal(waits, want) {
		t.Errorf("backoff waits = %v, want %v (attempts 2..6, then max_attempts)", waits, want)
	}
	var current []string
	for _, tk := range tasks {
		if tk.GetDesiredState() == wantRunning {
			current = append(current, fmt.Sprintf("attempt %d %s", tk.GetAttempt(), tk.GetState()))
		}
	}
	if !slices.Equal(current, []string{"attempt 6 TASK_STATE_FAILED"}) {
		t.Errorf("current tasks after the crash loop = %v, want the failed attempt 6 only", current)
	}
	if n := len(tasks); n != 1+DefaultTaskHistoryLimit {
		t.Errorf("%d tasks left, want the current one and %d history", n, DefaultTaskHistoryLimit)
	}
}

func TestBackoff(t *testing.T) {
	cases := []struct {
		policy  *apiv1.RestartPolicy
		attempt uint32
		want    time.Duration
	}{
		{nil, 2, 100 * time.Millisecond},
		{nil, 3, 200 * time.Millisecond},
		{nil, 8, 6400 * time.Millisecond},
		{nil, 9, 10 * time.Second},
		{nil, 4000, 10 * time.Second},
		{&apiv1.RestartPolicy{Delay: durationpb.New(3 * time.Second)}, 2, 3 * time.Second},
		{&apiv1.RestartPolicy{Delay: durationpb.New(3 * time.Second)}, 3, 6 * time.Second},
		{&apiv1.RestartPolicy{Delay: durationpb.New(3 * time.Second)}, 4, 10 * time.Second},
		{&apiv1.RestartPolicy{Delay: durationpb.New(time.Minute)}, 2, 10 * time.Second},
		{&apiv1.RestartPolicy{Delay: durationpb.New(time.Second), MaxDelay: durationpb.New(time.Hour)}, 12, 1024 * time.Second},
		{&apiv1.RestartPolicy{Delay: durationpb.New(0)}, 5, 0},
	}
	for _, tc := range cases {
		if got := backoff(tc.policy, tc.attempt); got != tc.want {
			t.Errorf("backoff(%v, %d) = %v, want %v", tc.policy, tc.attempt, got, tc.want)
		}
	}
}

func TestShutdownTask(t *testing.T) {
	cases := []struct {
		name        string
		task        *apiv1.Task
		changed     bool
		wantState   apiv1.TaskState
		wantMessage string
	}{
		{"running task: desired only", task("a", 1, wantRunning, tsRunning), true, tsRunning, ""},
		{"unplaced task: finished at once", task("a", 1, wantRunning, tsPending), true, tsShutdown, "why"},
		{"stopping task: nothing", task("a", 1, wantStop, tsRunning), false, tsRunning, ""},
		{"unplaced stopping task: finished", task("a", 1, wantStop, tsNew), true, tsShutdown, "why"},
		{"finished task: desired only", task("a", 1, wantRunning, tsFailed, noNode), true, tsFailed, ""},
		{"finished stopped task: nothing", task("a", 1, wantStop, tsFailed), false, tsFailed, ""},
	}
	for _, tc := range cases {
		got, changed := ShutdownTask(tc.task, "why", t0)
		if changed != tc.changed || got.GetDesiredState() != wantStop || got.GetState() != tc.wantState || got.GetMessage() != tc.wantMessage {
			t.Errorf("%s: ShutdownTask = (desired %v, state %v, message %q, changed %v), want (SHUTDOWN, %v, %q, %v)",
				tc.name, got.GetDesiredState(), got.GetState(), got.GetMessage(), changed, tc.wantState, tc.wantMessage, tc.changed)
		}
		if changed && got == tc.task {
			t.Errorf("%s: ShutdownTask changed its input instead of a copy", tc.name)
		}
	}
}

// TestCreateRestart: only the replacement of a task that ended, by the
// restart policy, is a Create with Restart (what warren_task_restarts_total
// counts); a scale-up or an update's new task is not.
func TestCreateRestart(t *testing.T) {
	tests := []struct {
		name  string
		svc   *apiv1.Service
		tasks []*apiv1.Task
		want  []bool
	}{
		{"scale up", service(1, 2), []*apiv1.Task{task("a", 1, wantRunning, tsRunning)}, []bool{false}},
		{"failed task replaced", service(1, 1), []*apiv1.Task{task("a", 1, wantRunning, tsFailed, ran(time.Second))}, []bool{true}},
		{"completed task replaced after a long run", service(1, 1), []*apiv1.Task{task("a", 1, wantRunning, tsComplete, ran(time.Hour))}, []bool{true}},
		{"update", service(2, 1, updatePolicy(1, 0)), []*apiv1.Task{task("a", 1, wantRunning, tsPending)}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []bool
			for _, a := range Reconcile(Input{Service: tt.svc, Tasks: tt.tasks, Now: t0}) {
				if c, ok := a.(Create); ok {
					got = append(got, c.Restart)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("Restart of the creates = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestUpdateProgress: the update status Reconcile asks for, from the
// failures of the new spec's tasks and the policy's failure action.
func TestUpdateProgress(t *testing.T) {
	updating := func(st apiv1.UpdateStatus_State, action apiv1.UpdatePolicy_FailureAction, ratio float32) svcOpt {
		return func(s *apiv1.Service) {
			s.Spec.UpdatePolicy = &apiv1.UpdatePolicy{FailureAction: action, MaxFailureRatio: ratio} // parallelism: all
			s.PreviousSpec = specV(1, s.Spec.GetReplicas())
			s.UpdateStatus = &apiv1.UpdateStatus{State: st, StartedAt: timestamppb.New(t0.Add(-time.Minute - time.Second))}
		}
	}
	failedNew := func(id string, slot uint64) *apiv1.Task {
		return task(id, slot, wantRunning, tsFailed, v(2), func(t *apiv1.Task) { t.Error = "exited with code 1"; t.UpdatedAt = timestamppb.New(t0) })
	}
	tests := []struct {
		name  string
		svc   *apiv1.Service
		tasks []*apiv1.Task
		// want is the SetUpdateStatus asked for ("" none), and whether
		// the update's next slot is replaced.
		want     string
		nextSlot bool
	}{
		{"a failure pauses by default", service(2, 2, updating(apiv1.UpdateStatus_STATE_UPDATING, 0, 0)),
			[]*apiv1.Task{failedNew("n1", 1), task("b", 2, wantRunning, tsRunning)}, "STATE_PAUSED: update paused: task n1 failed: exited with code 1", false},
		{"a failure rolls back", service(2, 2, updating(apiv1.UpdateStatus_STATE_UPDATING, apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK, 0)),
			[]*apiv1.Task{failedNew("n1", 1), task("b", 2, wantRunning, tsRunning)}, "STATE_ROLLBACK_STARTED (rollback): update rolled back: task n1 failed: exited with code 1", false},
		{"continue ignores failures", service(2, 2, updating(apiv1.UpdateStatus_STATE_UPDATING, apiv1.UpdatePolicy_FAILURE_ACTION_CONTINUE, 0)),
			[]*apiv1.Task{failedNew("n1", 1), task("b", 2, wantRunning, tsRunning)}, "", true},
		{"failures within the ratio are allowed", service(2, 4, updating(apiv1.UpdateStatus_STATE_UPDATING, 0, 0.5)),
			[]*apiv1.Task{failedNew("n1", 1), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning), task("d", 4, wantRunning, tsRunning)}, "", true},
		{"paused: no slot is replaced", service(2, 2, updating(apiv1.UpdateStatus_STATE_PAUSED, 0, 0)),
			[]*apiv1.Task{task("n1", 1, wantRunning, tsRunning, v(2)), task("b", 2, wantRunning, tsRunning)}, "", false},
		{"every slot up to date: completed", service(2, 2, updating(apiv1.UpdateStatus_STATE_UPDATING, 0, 0)),
			[]*apiv1.Task{task("n1", 1, wantRunning, tsRunning, v(2)), task("n2", 2, wantRunning, tsRunning, v(2))}, "STATE_COMPLETED: update completed", false},
		{"a rollback that fails pauses", service(2, 2, updating(apiv1.UpdateStatus_STATE_ROLLBACK_STARTED, 0, 0)),
			[]*apiv1.Task{failedNew("n1", 1), task("b", 2, wantRunning, tsRunning)}, "STATE_ROLLBACK_PAUSED: rollback paused: task n1 failed: exited with code 1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Reconcile(Input{Service: tt.svc, Tasks: tt.tasks, Now: t0, NewID: ids()})
			status, next := "", false
			for _, a := range got {
				switch a := a.(type) {
				case SetUpdateStatus:
					status = a.Status.GetState().String()
					if a.Rollback {
						status += " (rollback)"
					}
					status += ": " + a.Status.GetMessage()
				case Create:
					next = next || a.Task.GetSlot() == 2
				case Shutdown:
					next = next || a.TaskID == "b" // stop-first: the old task stops first
				}
			}
			if status != tt.want || next != tt.nextSlot {
				t.Fatalf("status %q, slot 2 replaced %v; want %q, %v (actions %v)", status, next, tt.want, tt.nextSlot, describe(got))
			}
		})
	}
}

// TestGlobal: a global service has one task on every eligible node, made
// there (ASSIGNED, no scheduler); a drained node's task is shut down, a
// DOWN node's is orphaned and not replaced elsewhere.
func TestGlobal(t *testing.T) {
	node := func(id string, st apiv1.NodeStatus, av apiv1.NodeAvailability, labels map[string]string) *apiv1.Node {
		return &apiv1.Node{Id: id, Name: id, Worker: true, Status: st, Availability: av, Labels: labels}
	}
	ready, drain := apiv1.NodeStatus_NODE_STATUS_READY, apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
	nodes := []*apiv1.Node{
		node("n1", ready, 0, nil),
		node("n2", ready, 0, map[string]string{"zone": "b"}),
		node("n3", ready, drain, nil),
		node("n4", apiv1.NodeStatus_NODE_STATUS_DOWN, 0, nil),
	}
	svc := service(1, 0, func(s *apiv1.Service) { s.Spec.Mode = apiv1.ServiceMode_SERVICE_MODE_GLOBAL })
	on := func(id, n string) *apiv1.Task {
		return task(id, 0, wantRunning, tsRunning, func(t *apiv1.Task) { t.NodeId = n })
	}
	in := Input{Service: svc, Now: t0, NewID: ids(),
		Tasks: []*apiv1.Task{on("a", "n1"), on("c", "n3"), on("d", "n4")},
		Nodes: func() []*apiv1.Node { return nodes },
		Node: func(id string) (*apiv1.Node, bool) {
			for _, n := range nodes {
				if n.GetId() == id {
					return n, true
				}
			}
			return nil, false
		}}
	got := Reconcile(in)
	var created []string
	for _, a := range got {
		if c, ok := a.(Create); ok {
			if c.Task.GetState() != apiv1.TaskState_TASK_STATE_ASSIGNED {
				t.Errorf("new task %v: state %v, want ASSIGNED to its node", c.Task.GetNodeId(), c.Task.GetState())
			}
			created = append(created, c.Task.GetNodeId())
		}
	}
	if !slices.Equal(created, []string{"n2"}) {
		t.Errorf("tasks made on %v, want [n2] (actions %v)", created, describe(got))
	}
	want := []string{"orphan d", "shutdown c"}
	for _, w := range want {
		if !slices.ContainsFunc(describe(got), func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("no %q in %v", w, describe(got))
		}
	}
	// With a constraint only n2 is eligible: n1's task is shut down.
	svc.Spec.Constraints = []string{"node.labels.zone==b"}
	got = Reconcile(in)
	if !slices.ContainsFunc(describe(got), func(s string) bool { return strings.HasPrefix(s, "shutdown a") }) {
		t.Errorf("constraint: n1's task not shut down: %v", describe(got))
	}
}
