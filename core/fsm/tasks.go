package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/state"
)

// The field-owned task commands. Each writer owns some of a task's fields
// and changes only those, applied here in Raft order against the task as
// it is at that index: the orchestrator creates tasks (CreateTasks) and
// ends or notes them (SetDesiredState), the scheduling loop places them
// (AssignTasks), the dispatcher commits their workers' reports
// (ReportStatus). An entry that no longer applies is skipped, never an
// error for the others of its command.

// TasksResult is the result of the task commands: how many of their
// entries changed a task and how many were skipped.
type TasksResult struct {
	Applied, Skipped int
}

// applyTasks is what the task commands share: change is called with a
// copy of each entry's task, by ID, and reports whether it changed it.
// byWorker is set for the workers' own reports (see putTasks).
func (f *FSM) applyTasks(tx *txn, ids []string, byWorker bool, change func(i int, t *apiv1.Task) bool) TasksResult {
	var res TasksResult
	var ts []*apiv1.Task
	index := map[string]int{} // an ID's place in ts, when several entries name one task
	for i, id := range ids {
		var t *apiv1.Task
		if j, ok := index[id]; ok {
			t = ts[j]
		} else if cur, ok := f.state.Task(id); ok {
			t = proto.CloneOf(cur)
		} else {
			res.Skipped++
			continue
		}
		if !change(i, t) {
			res.Skipped++
			continue
		}
		res.Applied++
		t.Version = tx.index
		if _, ok := index[id]; !ok {
			index[id] = len(ts)
			ts = append(ts, t)
		}
	}
	f.putTasks(tx, ts, byWorker)
	return res
}

func (f *FSM) applyCreateTasks(tx *txn, c *fsmpb.CreateTasks) any {
	for _, t := range c.GetTasks() {
		if t.GetId() == "" || t.GetServiceId() == "" {
			return invalid("create tasks: task id and service id are required")
		}
	}
	var res TasksResult
	var ts []*apiv1.Task
	seen := map[string]bool{}
	for _, t := range c.GetTasks() {
		if _, ok := f.state.Task(t.GetId()); ok || seen[t.GetId()] {
			res.Skipped++
			continue
		}
		seen[t.GetId()] = true
		t.Version = tx.index
		ts = append(ts, t)
		res.Applied++
	}
	f.putTasks(tx, ts, false)
	return res
}

// needsPlacement reports whether t waits for the scheduler: wanted
// running, on no node, NEW or PENDING.
func needsPlacement(t *apiv1.Task) bool {
	s := t.GetState()
	return t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && t.GetNodeId() == "" &&
		(s == apiv1.TaskState_TASK_STATE_NEW || s == apiv1.TaskState_TASK_STATE_PENDING)
}

// applyAssignTasks places tasks (ASSIGNED on a node) or leaves them
// PENDING with a reason. An assignment is skipped when its task changed
// since the scheduler read it or no longer needs placement. A task placed
// on a node puts the volumes it mounts that are on no node yet on that
// node (bindVolumes, through putTasks).
func (f *FSM) applyAssignTasks(tx *txn, c *fsmpb.AssignTasks) any {
	as := c.GetAssignments()
	ids := make([]string, len(as))
	for i, a := range as {
		if a.GetTaskId() == "" {
			return invalid("assign tasks: task id is required")
		}
		ids[i] = a.GetTaskId()
	}
	return f.applyTasks(tx, ids, false, func(i int, t *apiv1.Task) bool {
		a := as[i]
		if t.GetVersion() != a.GetExpectedVersion() || !needsPlacement(t) {
			return false
		}
		if a.GetNodeId() != "" {
			t.State = apiv1.TaskState_TASK_STATE_ASSIGNED
			t.NodeId = a.GetNodeId()
			t.Message = ""
		} else {
			if t.GetState() == apiv1.TaskState_TASK_STATE_PENDING && t.GetMessage() == a.GetMessage() {
				return false
			}
			t.State = apiv1.TaskState_TASK_STATE_PENDING
			t.Message = a.GetMessage()
		}
		t.UpdatedAt = a.GetUpdatedAt()
		return true
	})
}

// applyReportStatus applies workers' reports with state.ApplyReport's
// rules. A report from a node the task is not assigned to is ignored.
func (f *FSM) applyReportStatus(tx *txn, c *fsmpb.ReportStatus) any {
	rs := c.GetReports()
	ids := make([]string, len(rs))
	for i, r := range rs {
		if r.GetUpdate().GetTaskId() == "" || r.GetNodeId() == "" {
			return invalid("report status: task id and node id are required")
		}
		ids[i] = r.GetUpdate().GetTaskId()
	}
	return f.applyTasks(tx, ids, true, func(i int, t *apiv1.Task) bool {
		r := rs[i]
		if t.GetNodeId() != r.GetNodeId() {
			return false
		}
		addr := t.GetAddress()
		if !state.ApplyReport(t, r.GetUpdate()) && t.GetAddress() == addr {
			return false
		}
		t.UpdatedAt = r.GetUpdatedAt()
		return true
	})
}

// applySetDesiredState applies the orchestrator's shutdowns, orphans and
// notes. Desired state SHUTDOWN and terminal states are final.
func (f *FSM) applySetDesiredState(tx *txn, c *fsmpb.SetDesiredState) any {
	es := c.GetTasks()
	ids := make([]string, len(es))
	for i, e := range es {
		if e.GetTaskId() == "" {
			return invalid("set desired state: task id is required")
		}
		switch e.GetKind() {
		case fsmpb.TaskEnd_KIND_SHUTDOWN, fsmpb.TaskEnd_KIND_ORPHAN, fsmpb.TaskEnd_KIND_NOTE:
		default:
			return invalid("set desired state: task %s: unknown kind %v", e.GetTaskId(), e.GetKind())
		}
		ids[i] = e.GetTaskId()
	}
	return f.applyTasks(tx, ids, false, func(i int, t *apiv1.Task) bool {
		e := es[i]
		ended := state.Terminal(t.GetState())
		switch e.GetKind() {
		case fsmpb.TaskEnd_KIND_NOTE:
			if t.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING || ended || t.GetMessage() == e.GetReason() {
				return false
			}
			t.Message = e.GetReason()
			return true // a note keeps the update time: it says when the state changed
		case fsmpb.TaskEnd_KIND_SHUTDOWN:
			// A task on no node yet has no worker to stop it: it ends now.
			return endTask(t, t.GetNodeId() == "" && !ended, apiv1.TaskState_TASK_STATE_SHUTDOWN, e)
		default:
			return endTask(t, !ended, apiv1.TaskState_TASK_STATE_ORPHANED, e)
		}
	})
}

// endTask sets t's desired state to SHUTDOWN and, when setState, its state
// to s with the entry's reason; it reports whether that changed t.
func endTask(t *apiv1.Task, setState bool, s apiv1.TaskState, e *fsmpb.TaskEnd) bool {
	if t.GetDesiredState() == apiv1.TaskState_TASK_STATE_SHUTDOWN && !setState {
		return false
	}
	t.DesiredState = apiv1.TaskState_TASK_STATE_SHUTDOWN
	if setState {
		t.State = s
		t.Message = e.GetReason()
	}
	t.UpdatedAt = e.GetUpdatedAt()
	return true
}

// String is for logs.
func (r TasksResult) String() string {
	return fmt.Sprintf("%d applied, %d skipped", r.Applied, r.Skipped)
}
