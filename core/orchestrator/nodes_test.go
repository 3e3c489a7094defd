package orchestrator

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

const (
	nodeReady  = apiv1.NodeStatus_NODE_STATUS_READY
	nodeDown   = apiv1.NodeStatus_NODE_STATUS_DOWN
	availPause = apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE
	availDrain = apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
)

// node returns node id (named after it) with a status and availability.
func node(id string, st apiv1.NodeStatus, av apiv1.NodeAvailability) *apiv1.Node {
	return &apiv1.Node{Id: id, Name: "node-" + id, Worker: true, Status: st, Availability: av}
}

// lookup is Input.Node over nodes; a missing ID is a removed node.
func lookup(nodes ...*apiv1.Node) func(string) (*apiv1.Node, bool) {
	byID := map[string]*apiv1.Node{}
	for _, n := range nodes {
		byID[n.GetId()] = n
	}
	return func(id string) (*apiv1.Node, bool) {
		n, ok := byID[id]
		return n, ok
	}
}

// on places a task on node id.
func on(id string) taskOpt { return func(t *apiv1.Task) { t.NodeId = id } }

func message(m string) taskOpt { return func(t *apiv1.Task) { t.Message = m } }

func TestReconcileNodes(t *testing.T) {
	up := node("n1", nodeReady, 0)
	other := node("n2", nodeReady, 0)
	down := node("n1", nodeDown, 0)
	down.Message = "no heartbeat within 10s"
	drained := node("n1", nodeReady, availDrain)
	paused := node("n1", nodeReady, availPause)
	cases := []struct {
		name  string
		svc   *apiv1.Service
		tasks []*apiv1.Task
		nodes []*apiv1.Node
		want  []string
		// check, when set, looks at the actions further.
		check func(t *testing.T, actions []Action)
	}{
		{
			name:  "all nodes up: nothing",
			svc:   service(1, 2),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning, on("n2"))},
			nodes: []*apiv1.Node{up, other},
		},
		{
			name: "node down: its live tasks are orphaned and replaced at once",
			svc:  service(1, 3),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsAssigned),
				task("c", 3, wantRunning, tsRunning, on("n2")),
			},
			nodes: []*apiv1.Node{down, other},
			want:  []string{"orphan a", "orphan b", "create slot 1 attempt 1 v1", "create slot 2 attempt 1 v1"},
			check: func(t *testing.T, actions []Action) {
				for _, a := range actions {
					if o, ok := a.(Orphan); ok && o.Reason != "node node-n1 down: no heartbeat within 10s" {
						t.Errorf("orphan reason = %q", o.Reason)
					}
				}
			},
		},
		{
			name: "node down: the restart policy and attempts do not apply",
			svc:  service(1, 1, restartPolicy(&apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_NONE})),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning, attempt(4), ran(time.Second)),
			},
			nodes: []*apiv1.Node{down},
			want:  []string{"orphan a", "create slot 1 attempt 1 v1"},
		},
		{
			name:  "node removed: like down",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning, on("gone"))},
			nodes: []*apiv1.Node{other},
			want:  []string{"orphan a", "create slot 1 attempt 1 v1"},
			check: func(t *testing.T, actions []Action) {
				if o := actions[0].(Orphan); o.Reason != "node gone removed" {
					t.Errorf("orphan reason = %q", o.Reason)
				}
			},
		},
		{
			name: "node down: a task being stopped is orphaned too, and a stop-first update goes on",
			svc:  service(2, 1),
			tasks: []*apiv1.Task{
				task("old", 1, wantStop, tsRunning),
			},
			nodes: []*apiv1.Node{down},
			want:  []string{"orphan old", "create slot 1 attempt 1 v2"},
		},
		{
			name: "node down: finished tasks are left to the restart policy",
			svc:  service(1, 2),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsFailed, ran(time.Hour)), task("h", 2, wantStop, tsShutdown),
				task("b", 2, wantRunning, tsRunning, on("n2")),
			},
			nodes: []*apiv1.Node{down, other},
			want:  []string{"shutdown a", "create slot 1 attempt 1 v1"},
		},
		{
			name:  "node down: the tasks of a removed service are removed",
			tasks: []*apiv1.Task{task("a", 1, wantStop, tsRunning), task("b", 2, wantRunning, tsRunning)},
			nodes: []*apiv1.Node{down},
			want:  []string{"orphan a", "orphan b", "remove a", "remove b"},
		},
		{
			name:  "node down: scaled-down tasks are removed",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning, on("n2")), task("b", 2, wantStop, tsRunning)},
			nodes: []*apiv1.Node{down, other},
			want:  []string{"orphan b", "remove b"},
		},
		{
			name: "node down: unplaced tasks are not concerned",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsPending),
			},
			nodes: []*apiv1.Node{down},
		},
		{
			name:  "pause: nothing moves",
			svc:   service(1, 2),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsAssigned)},
			nodes: []*apiv1.Node{paused, other},
		},
		{
			name:  "drain: the replacement is started first, the old task kept with a note",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning)},
			nodes: []*apiv1.Node{drained, other},
			want:  []string{"create slot 1 attempt 1 v1", "note a"},
			check: func(t *testing.T, actions []Action) {
				for _, a := range actions {
					if n, ok := a.(Note); ok && n.Message != "node node-n1 is draining; kept running until its replacement new1 runs" {
						t.Errorf("note = %q", n.Message)
					}
				}
			},
		},
		{
			name: "drain: the old task waits while the replacement starts",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning, message("node node-n1 is draining; kept running until its replacement r runs")),
				task("r", 1, wantRunning, tsStarting, on("n2"), createdAgo(time.Second)),
			},
			nodes: []*apiv1.Node{drained, other},
		},
		{
			name: "drain: the old task stops once the replacement runs",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("r", 1, wantRunning, tsRunning, on("n2"), createdAgo(time.Second)),
			},
			nodes: []*apiv1.Node{drained, other},
			want:  []string{"shutdown a"},
		},
		{
			name: "drain with no other node: the old task keeps running, and says why",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning),
				task("r", 1, wantRunning, tsPending, message("no ready worker node"), createdAgo(time.Second)),
			},
			nodes: []*apiv1.Node{drained},
			want:  []string{"note a"},
			check: func(t *testing.T, actions []Action) {
				want := "node node-n1 is draining, but no node can take its replacement (no ready worker node); kept running"
				if n := actions[0].(Note); n.Message != want {
					t.Errorf("note = %q, want %q", n.Message, want)
				}
			},
		},
		{
			name: "drain: a replacement out of attempts leaves the old task running",
			svc:  service(1, 1, restartPolicy(&apiv1.RestartPolicy{MaxAttempts: 1})),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning),
				task("r", 1, wantRunning, tsFailed, on("n2"), ran(time.Second), attempt(2)),
			},
			nodes: []*apiv1.Node{drained, other},
			want:  []string{"note a"},
		},
		{
			name: "drain: a replacement that crashed is restarted, the old task still waits",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning, message("node node-n1 is draining; kept running until its replacement r runs")),
				task("r", 1, wantRunning, tsFailed, on("n2"), ran(time.Second)),
			},
			nodes: []*apiv1.Node{drained, other},
			want:  []string{"shutdown r", "create slot 1 attempt 2 v1 +100ms", "note a"},
		},
		{
			name: "drain: tasks being stopped and finished ones are left alone",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning, on("n2")),
				task("b", 1, wantStop, tsRunning, createdAgo(time.Hour)), task("c", 1, wantStop, tsFailed, createdAgo(time.Hour)),
			},
			nodes: []*apiv1.Node{drained, other},
		},
		{
			name: "drain: an outdated task is replaced by one of the current spec",
			svc:  service(2, 1, updatePolicy(1, apiv1.UpdatePolicy_ORDER_STOP_FIRST)),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning),
			},
			nodes: []*apiv1.Node{drained, other},
			want:  []string{"create slot 1 attempt 1 v2", "note a"},
		},
		{
			name: "back to active before the replacement runs: the replacement goes",
			svc:  service(1, 1),
			tasks: []*apiv1.Task{
				task("a", 1, wantRunning, tsRunning), task("r", 1, wantRunning, tsPending, createdAgo(time.Second)),
			},
			nodes: []*apiv1.Node{up},
			want:  []string{"shutdown r"},
		},
		{
			name:  "drained and down: orphaned",
			svc:   service(1, 1),
			tasks: []*apiv1.Task{task("a", 1, wantRunning, tsRunning)},
			nodes: []*apiv1.Node{node("n1", nodeDown, availDrain), other},
			want:  []string{"orphan a", "create slot 1 attempt 1 v1"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Service: tc.svc, Tasks: tc.tasks, Now: t0, NewID: ids(), Node: lookup(tc.nodes...)}
			before := cloneAll(tc.tasks)
			got := Reconcile(in)
			if d := diff(describe(got), tc.want); d != "" {
				t.Fatalf("Reconcile:\n%s", d)
			}
			if tc.check != nil {
				tc.check(t, got)
			}
			for i := range before {
				if !proto.Equal(before[i], tc.tasks[i]) {
					t.Errorf("Reconcile changed its input task %s", tc.tasks[i].GetId())
				}
			}
			in.Tasks = apply(tc.tasks, got)
			if again := Reconcile(in); len(again) > 0 {
				t.Errorf("after applying, Reconcile again = %v, want nothing", describe(again))
			}
		})
	}
}

// TestDrainSteps walks a drain through: replacement first, the old task
// stopped only once the replacement runs.
func TestDrainSteps(t *testing.T) {
	svc := service(1, 2)
	nodes := lookup(node("n1", nodeReady, availDrain), node("n2", nodeReady, 0))
	tasks := []*apiv1.Task{task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning, on("n2"))}
	newID := ids()
	step := func(what string, want ...string) {
		t.Helper()
		got := Reconcile(Input{Service: svc, Tasks: tasks, Now: t0, NewID: newID, Node: nodes})
		if d := diff(describe(got), want); d != "" {
			t.Fatalf("%s:\n%s", what, d)
		}
		tasks = apply(tasks, got)
	}
	set := func(id string, change func(*apiv1.Task)) {
		for i, tk := range tasks {
			if tk.GetId() == id {
				tk = proto.CloneOf(tk)
				change(tk)
				tasks[i] = tk
				return
			}
		}
		t.Fatalf("no task %s", id)
	}

	step("drain starts", "create slot 1 attempt 1 v1", "note a")
	set("new1", func(tk *apiv1.Task) { tk.State, tk.NodeId = tsAssigned, "n2" })
	step("replacement assigned")
	set("new1", func(tk *apiv1.Task) { tk.State = tsStarting })
	step("replacement starting")
	if a := tasks[0]; a.GetDesiredState() != wantRunning || !strings.Contains(a.GetMessage(), "draining") {
		t.Fatalf("old task before the replacement runs: desired %v, message %q", a.GetDesiredState(), a.GetMessage())
	}
	set("new1", func(tk *apiv1.Task) { tk.State = tsRunning })
	step("replacement running", "shutdown a")
	set("a", func(tk *apiv1.Task) { tk.State = tsShutdown })
	step("old task stopped")
}

func TestOrphanTask(t *testing.T) {
	cases := []struct {
		name        string
		task        *apiv1.Task
		changed     bool
		wantState   apiv1.TaskState
		wantMessage string
	}{
		{"running task", task("a", 1, wantRunning, tsRunning), true, tsOrphaned, "node down"},
		{"stopping task", task("a", 1, wantStop, tsStarting), true, tsOrphaned, "node down"},
		{"finished task: desired only", task("a", 1, wantRunning, tsFailed), true, tsFailed, ""},
		{"finished stopped task: nothing", task("a", 1, wantStop, tsComplete), false, tsComplete, ""},
		{"orphaned already: nothing", task("a", 1, wantStop, tsOrphaned, message("node down")), false, tsOrphaned, "node down"},
	}
	for _, tc := range cases {
		got, changed := OrphanTask(tc.task, "node down", t0)
		if changed != tc.changed || got.GetDesiredState() != wantStop || got.GetState() != tc.wantState || got.GetMessage() != tc.wantMessage {
			t.Errorf("%s: OrphanTask = (desired %v, state %v, message %q, changed %v), want (SHUTDOWN, %v, %q, %v)",
				tc.name, got.GetDesiredState(), got.GetState(), got.GetMessage(), changed, tc.wantState, tc.wantMessage, tc.changed)
		}
		if changed && got == tc.task {
			t.Errorf("%s: OrphanTask changed its input instead of a copy", tc.name)
		}
	}
}

func TestNoteTask(t *testing.T) {
	cases := []struct {
		name    string
		task    *apiv1.Task
		changed bool
	}{
		{"running task", task("a", 1, wantRunning, tsRunning), true},
		{"same message", task("a", 1, wantRunning, tsRunning, message("why")), false},
		{"stopping task", task("a", 1, wantStop, tsRunning), false},
		{"finished task", task("a", 1, wantRunning, tsFailed), false},
	}
	for _, tc := range cases {
		got, changed := NoteTask(tc.task, "why")
		if changed != tc.changed || (changed && (got.GetMessage() != "why" || got == tc.task || got.GetState() != tc.task.GetState())) {
			t.Errorf("%s: NoteTask = (%v, message %q, changed %v)", tc.name, got.GetState(), got.GetMessage(), changed)
		}
	}
}
