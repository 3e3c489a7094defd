package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

const (
	tNew       = apiv1.TaskState_TASK_STATE_NEW
	tPending   = apiv1.TaskState_TASK_STATE_PENDING
	tAssigned  = apiv1.TaskState_TASK_STATE_ASSIGNED
	tPreparing = apiv1.TaskState_TASK_STATE_PREPARING
	tRunning   = apiv1.TaskState_TASK_STATE_RUNNING
	tFailed    = apiv1.TaskState_TASK_STATE_FAILED
	tShutdown  = apiv1.TaskState_TASK_STATE_SHUTDOWN
	tOrphaned  = apiv1.TaskState_TASK_STATE_ORPHANED
)

func report(node, id string, s apiv1.TaskState, msg string) *fsmpb.ReportStatus {
	return &fsmpb.ReportStatus{Reports: []*fsmpb.TaskReport{{NodeId: node, Update: &apiv1.TaskStatusUpdate{TaskId: id, State: s, Message: msg}}}}
}

func end(id string, kind fsmpb.TaskEnd_Kind, reason string) *fsmpb.SetDesiredState {
	return &fsmpb.SetDesiredState{Tasks: []*fsmpb.TaskEnd{{TaskId: id, Kind: kind, Reason: reason}}}
}

// TestTaskCommandRules checks each task command's rules on a task in a
// given state: what it changes and what it skips.
func TestTaskCommandRules(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	tests := []struct {
		name string
		// task is the task as it is before the command (created with
		// CreateTasks); its ID is the test's.
		task *apiv1.Task
		// cmd builds the command from the stored task.
		cmd         func(cur *apiv1.Task) Command
		wantApplied int
		// want checks the task after the command.
		wantState   apiv1.TaskState
		wantDesired apiv1.TaskState
		wantNode    string
		wantMessage string
	}{
		{"assign a new task", &apiv1.Task{State: tNew},
			func(cur *apiv1.Task) Command {
				return &fsmpb.AssignTasks{Assignments: []*fsmpb.TaskAssignment{{TaskId: cur.GetId(), ExpectedVersion: cur.GetVersion(), NodeId: "n1"}}}
			}, 1, tAssigned, tRunning, "n1", ""},
		{"stale assignment skipped", &apiv1.Task{State: tNew},
			func(cur *apiv1.Task) Command {
				return &fsmpb.AssignTasks{Assignments: []*fsmpb.TaskAssignment{{TaskId: cur.GetId(), ExpectedVersion: cur.GetVersion() - 1, NodeId: "n1"}}}
			}, 0, tNew, tRunning, "", ""},
		{"assignment of a task shut down meanwhile skipped", &apiv1.Task{State: tNew, DesiredState: tShutdown},
			func(cur *apiv1.Task) Command {
				return &fsmpb.AssignTasks{Assignments: []*fsmpb.TaskAssignment{{TaskId: cur.GetId(), ExpectedVersion: cur.GetVersion(), NodeId: "n1"}}}
			}, 0, tNew, tShutdown, "", ""},
		{"pending with a reason", &apiv1.Task{State: tNew},
			func(cur *apiv1.Task) Command {
				return &fsmpb.AssignTasks{Assignments: []*fsmpb.TaskAssignment{{TaskId: cur.GetId(), ExpectedVersion: cur.GetVersion(), Message: "no node fits"}}}
			}, 1, tPending, tRunning, "", "no node fits"},
		{"the same pending reason again changes nothing", &apiv1.Task{State: tPending, Message: "no node fits"},
			func(cur *apiv1.Task) Command {
				return &fsmpb.AssignTasks{Assignments: []*fsmpb.TaskAssignment{{TaskId: cur.GetId(), ExpectedVersion: cur.GetVersion(), Message: "no node fits"}}}
			}, 0, tPending, tRunning, "", "no node fits"},
		{"report moves forward", &apiv1.Task{State: tAssigned, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return report("n1", cur.GetId(), tRunning, "started") }, 1, tRunning, tRunning, "n1", "started"},
		{"report from another node ignored", &apiv1.Task{State: tAssigned, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return report("n2", cur.GetId(), tRunning, "started") }, 0, tAssigned, tRunning, "n1", ""},
		{"state never backwards", &apiv1.Task{State: tRunning, NodeId: "n1", Message: "started"},
			func(cur *apiv1.Task) Command { return report("n1", cur.GetId(), tPreparing, "pulling") }, 0, tRunning, tRunning, "n1", "started"},
		{"terminal is final", &apiv1.Task{State: tFailed, NodeId: "n1", Message: "exit 1"},
			func(cur *apiv1.Task) Command {
				return report("n1", cur.GetId(), apiv1.TaskState_TASK_STATE_COMPLETE, "done")
			}, 0, tFailed, tRunning, "n1", "exit 1"},
		{"orphaned is final for the worker", &apiv1.Task{State: tOrphaned, DesiredState: tShutdown, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return report("n1", cur.GetId(), tRunning, "") }, 0, tOrphaned, tShutdown, "n1", ""},
		{"a worker cannot report a scheduler state", &apiv1.Task{State: tNew, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return report("n1", cur.GetId(), tAssigned, "") }, 0, tNew, tRunning, "n1", ""},
		{"a report keeps desired shutdown", &apiv1.Task{State: tPreparing, DesiredState: tShutdown, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return report("n1", cur.GetId(), tRunning, "") }, 1, tRunning, tShutdown, "n1", ""},
		{"shutdown of a placed task", &apiv1.Task{State: tRunning, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return end(cur.GetId(), fsmpb.TaskEnd_KIND_SHUTDOWN, "scaled down") }, 1, tRunning, tShutdown, "n1", ""},
		{"shutdown of an unplaced task ends it", &apiv1.Task{State: tPending},
			func(cur *apiv1.Task) Command { return end(cur.GetId(), fsmpb.TaskEnd_KIND_SHUTDOWN, "scaled down") }, 1, tShutdown, tShutdown, "", "scaled down"},
		{"shutdown twice changes nothing", &apiv1.Task{State: tRunning, NodeId: "n1", DesiredState: tShutdown},
			func(cur *apiv1.Task) Command { return end(cur.GetId(), fsmpb.TaskEnd_KIND_SHUTDOWN, "again") }, 0, tRunning, tShutdown, "n1", ""},
		{"orphan", &apiv1.Task{State: tRunning, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return end(cur.GetId(), fsmpb.TaskEnd_KIND_ORPHAN, "node down") }, 1, tOrphaned, tShutdown, "n1", "node down"},
		{"orphan keeps a finished task's end", &apiv1.Task{State: tFailed, NodeId: "n1", Message: "exit 1"},
			func(cur *apiv1.Task) Command { return end(cur.GetId(), fsmpb.TaskEnd_KIND_ORPHAN, "node down") }, 1, tFailed, tShutdown, "n1", "exit 1"},
		{"note", &apiv1.Task{State: tRunning, NodeId: "n1"},
			func(cur *apiv1.Task) Command { return end(cur.GetId(), fsmpb.TaskEnd_KIND_NOTE, "draining") }, 1, tRunning, tRunning, "n1", "draining"},
		{"no note on a task shut down", &apiv1.Task{State: tRunning, NodeId: "n1", DesiredState: tShutdown},
			func(cur *apiv1.Task) Command { return end(cur.GetId(), fsmpb.TaskEnd_KIND_NOTE, "draining") }, 0, tRunning, tShutdown, "n1", ""},
		{"create of an existing task skipped", &apiv1.Task{State: tRunning, NodeId: "n1"},
			func(cur *apiv1.Task) Command {
				return &fsmpb.CreateTasks{Tasks: []*apiv1.Task{{Id: cur.GetId(), ServiceId: "s", State: tNew, DesiredState: tRunning}}}
			}, 0, tRunning, tRunning, "n1", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			task := proto.CloneOf(tt.task)
			task.Id, task.ServiceId = string(rune('a'+i))+"-task", "s"
			if task.DesiredState == apiv1.TaskState_TASK_STATE_UNSPECIFIED {
				task.DesiredState = tRunning
			}
			if r, ok := h.apply(t, &fsmpb.CreateTasks{Tasks: []*apiv1.Task{task}}).(TasksResult); !ok || r.Applied != 1 {
				t.Fatalf("create: %v", r)
			}
			before, _ := h.state.Task(task.GetId())
			r := h.apply(t, tt.cmd(before))
			res, ok := r.(TasksResult)
			if !ok {
				t.Fatalf("result %v, want a TasksResult", r)
			}
			if res.Applied != tt.wantApplied || res.Applied+res.Skipped != 1 {
				t.Errorf("result %v, want %d applied of 1", res, tt.wantApplied)
			}
			got, _ := h.state.Task(task.GetId())
			if got.GetState() != tt.wantState || got.GetDesiredState() != tt.wantDesired || got.GetNodeId() != tt.wantNode || got.GetMessage() != tt.wantMessage {
				t.Errorf("task = state %v desired %v node %q message %q; want %v %v %q %q", got.GetState(), got.GetDesiredState(), got.GetNodeId(), got.GetMessage(),
					tt.wantState, tt.wantDesired, tt.wantNode, tt.wantMessage)
			}
			if changed := got.GetVersion() != before.GetVersion(); changed != (tt.wantApplied > 0) {
				t.Errorf("version %d → %d with %d applied", before.GetVersion(), got.GetVersion(), tt.wantApplied)
			}
		})
	}
}

// TestReportStatusCarriesWhatTheWorkerOwns: every field of a report is
// stored, and a batch of reports about several tasks is one command.
func TestReportStatusCarriesWhatTheWorkerOwns(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.apply(t, &fsmpb.CreateTasks{Tasks: []*apiv1.Task{
		{Id: "t1", ServiceId: "s", State: tAssigned, DesiredState: tRunning, NodeId: "n1"},
		{Id: "t2", ServiceId: "s", State: tRunning, DesiredState: tRunning, NodeId: "n1"},
	}})
	sub := h.bus.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "task" }, 16)
	defer sub.Close()
	r := h.apply(t, &fsmpb.ReportStatus{Reports: []*fsmpb.TaskReport{
		{NodeId: "n1", Update: &apiv1.TaskStatusUpdate{TaskId: "t1", State: tRunning, Message: "started", Address: "10.88.1.2/24",
			Health: apiv1.HealthState_HEALTH_STATE_HEALTHY, HealthOutput: "200 OK"}},
		{NodeId: "n1", Update: &apiv1.TaskStatusUpdate{TaskId: "t2", State: tFailed, Message: "exited", Error: "exit status 3", ExitCode: 3}},
		{NodeId: "n1", Update: &apiv1.TaskStatusUpdate{TaskId: "gone", State: tRunning}},
	}})
	if res, _ := r.(TasksResult); res != (TasksResult{Applied: 2, Skipped: 1}) {
		t.Fatalf("result %v, want 2 applied, 1 skipped", r)
	}
	t1, _ := h.state.Task("t1")
	if t1.GetState() != tRunning || t1.GetMessage() != "started" || t1.GetAddress() != "10.88.1.2/24" ||
		t1.GetHealth() != apiv1.HealthState_HEALTH_STATE_HEALTHY || t1.GetHealthOutput() != "200 OK" {
		t.Errorf("t1 = %v", t1)
	}
	t2, _ := h.state.Task("t2")
	if t2.GetState() != tFailed || t2.GetError() != "exit status 3" || t2.GetExitCode() != 3 || t2.GetMessage() != "exited" {
		t.Errorf("t2 = %v", t2)
	}
	if r := h.apply(t, &fsmpb.ReportStatus{Reports: []*fsmpb.TaskReport{{Update: &apiv1.TaskStatusUpdate{TaskId: "t1"}}}}); !isErr(r) {
		t.Errorf("a report without a node: %v, want an error", r)
	}
	// The reports' events say they are the workers' own; a manager's
	// change of the same task does not.
	h.apply(t, end("t1", fsmpb.TaskEnd_KIND_SHUTDOWN, "scaled down"))
	for _, want := range []struct {
		id     string
		report bool
	}{{"t1", true}, {"t2", true}, {"t1", false}} {
		ev := <-sub.C
		if ev.GetId() != want.id || ev.GetWorkerReport() != want.report {
			t.Errorf("event of %s worker_report=%v, want %s worker_report=%v", ev.GetId(), ev.GetWorkerReport(), want.id, want.report)
		}
	}
}

// TestAssignBindsVolume: the first placement of a task that mounts a
// volume on no node puts the volume on the task's node.
func TestAssignBindsVolume(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.apply(t, &fsmpb.UpsertVolume{Volume: &apiv1.Volume{Id: "v1", Name: "data"}})
	spec := &apiv1.ServiceSpec{Name: "db", Mounts: []*apiv1.Mount{{Type: "volume", Source: "data", Target: "/data"}}}
	h.apply(t, &fsmpb.CreateTasks{Tasks: []*apiv1.Task{{Id: "t1", ServiceId: "s", State: tNew, DesiredState: tRunning, Spec: spec}}})
	if v, _ := h.state.VolumeByName("data"); v.GetNodeId() != "" {
		t.Fatalf("volume on %q before any placement", v.GetNodeId())
	}
	cur, _ := h.state.Task("t1")
	h.apply(t, &fsmpb.AssignTasks{Assignments: []*fsmpb.TaskAssignment{{TaskId: "t1", ExpectedVersion: cur.GetVersion(), NodeId: "n7"}}})
	if v, _ := h.state.VolumeByName("data"); v.GetNodeId() != "n7" {
		t.Fatalf("volume on %q after the placement on n7", v.GetNodeId())
	}
}

// TestReplayOldTaskLog replays a Raft log written before the task commands
// (whole tasks in UpsertTasks) and the same history in the new commands:
// both end in the same tasks, also after a restart from the store.
func TestReplayOldTaskLog(t *testing.T) {
	spec := &apiv1.ServiceSpec{Name: "web"}
	base := func() *apiv1.Task {
		return &apiv1.Task{Id: "t1", ServiceId: "s1", ServiceName: "web", Slot: 1, Spec: spec, State: tNew, DesiredState: tRunning}
	}
	with := func(change func(*apiv1.Task)) *apiv1.Task { t := base(); change(t); return t }
	old := []Command{
		&fsmpb.CreateService{Service: svc("s1", "web")},
		&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{base()}},
		&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{with(func(t *apiv1.Task) { t.State, t.NodeId = tAssigned, "n1" })}},
		&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{with(func(t *apiv1.Task) {
			t.State, t.NodeId, t.Message, t.Address = tRunning, "n1", "started", "10.88.1.2/24"
		})}},
		// A stale loop write (state ASSIGNED) after the report: MergeTask's rules keep RUNNING.
		&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{with(func(t *apiv1.Task) {
			t.State, t.NodeId, t.DesiredState, t.Message, t.Address = tRunning, "n1", tShutdown, "started", "10.88.1.2/24"
		})}},
	}
	current := []Command{
		&fsmpb.CreateService{Service: svc("s1", "web")},
		&fsmpb.CreateTasks{Tasks: []*apiv1.Task{base()}},
		&fsmpb.AssignTasks{Assignments: []*fsmpb.TaskAssignment{{TaskId: "t1", ExpectedVersion: 2, NodeId: "n1"}}},
		report("n1", "t1", tRunning, "started"),
		end("t1", fsmpb.TaskEnd_KIND_SHUTDOWN, ""),
	}
	current[3].(*fsmpb.ReportStatus).Reports[0].Update.Address = "10.88.1.2/24"
	run := func(cmds []Command) (*apiv1.Task, *apiv1.Task) {
		dir := t.TempDir()
		st := openStore(t, dir)
		h := newHarness(t, st)
		for _, c := range cmds {
			if r := h.apply(t, c); isErr(r) {
				t.Fatalf("apply %T: %v", c, r)
			}
		}
		got, _ := h.state.Task("t1")
		h.fsm.Flush()
		again := newHarness(t, st)
		reloaded, _ := again.state.Task("t1")
		return got, reloaded
	}
	fromOld, oldReloaded := run(old)
	fromNew, newReloaded := run(current)
	same := func(a, b *apiv1.Task) bool {
		a, b = proto.CloneOf(a), proto.CloneOf(b)
		a.UpdatedAt, b.UpdatedAt = nil, nil // the writers' clocks
		return proto.Equal(a, b)
	}
	if !same(fromOld, fromNew) {
		t.Errorf("old log and new commands differ:\nold %v\nnew %v", fromOld, fromNew)
	}
	if !same(fromOld, oldReloaded) || !same(fromNew, newReloaded) {
		t.Errorf("a task changed over a restart:\nold %v → %v\nnew %v → %v", fromOld, oldReloaded, fromNew, newReloaded)
	}
	if fromNew.GetState() != tRunning || fromNew.GetDesiredState() != tShutdown || fromNew.GetVersion() != 5 {
		t.Errorf("task = %v", fromNew)
	}
}
