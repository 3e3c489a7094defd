package integration

import (
	"slices"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// cliFails runs the CLI, fails the test unless it exits non-zero, and
// returns its stderr.
func (n *node) cliFails(args ...string) string {
	n.t.Helper()
	out, errOut, code := testutil.RunCLI(n.t, n.bin, n.a.Socket, args...)
	if code == 0 {
		n.t.Fatalf("warren %s: exit 0, want a failure\n%s", strings.Join(args, " "), out)
	}
	return errOut
}

// waitUpdate waits until the service's update status is st and returns the
// service.
func (n *node) waitUpdate(name string, st apiv1.UpdateStatus_State) *apiv1.Service {
	n.t.Helper()
	var svc *apiv1.Service
	n.waitTasks(name, "update status "+st.String(), func([]*apiv1.Task) bool {
		svc = n.service(name)
		return svc.GetUpdateStatus().GetState() == st
	})
	return svc
}

// onSpec reports whether the service's current tasks are want of them,
// every one RUNNING with args as given.
func onSpec(ts []*apiv1.Task, want int, args []string) bool {
	count := 0
	for _, tk := range ts {
		if tk.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		if tk.GetState() != apiv1.TaskState_TASK_STATE_RUNNING || !slices.Equal(tk.GetSpec().GetArgs(), args) {
			return false
		}
		count++
	}
	return count == want
}

// TestUpdateFailureActions: an update to a command that exits 1 pauses by
// default (start-first: the old tasks keep serving) or, with failure action
// rollback, returns the service to its old spec; a good update is undone by
// `service rollback`; a rollback with nothing to return to is refused.
func TestUpdateFailureActions(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	good := []string{"-c", "sleep 3600"}
	bad := `--args=-c 'exit 1'`

	n.cli("service", "create", "pz", "--image", ctrtest.TestImage, quickStop, "--replicas", "3", "--stop-signal", "KILL", "--update-parallelism", "1",
		"--update-order", "start-first", "--restart-delay", "0s", converge, "--", "sh", "-c", "sleep 3600")
	if msg := n.cliFails("service", "rollback", "pz"); !strings.Contains(msg, "no previous spec") {
		t.Errorf("rollback of a service never updated: %s", msg)
	}
	if msg := n.cliFails("service", "update", "pz", bad, converge); !strings.Contains(msg, "update paused: task") || !strings.Contains(msg, "exited with code 1") {
		t.Errorf("update to a failing command: %s", msg)
	}
	n.waitUpdate("pz", apiv1.UpdateStatus_STATE_PAUSED)
	n.waitTasks("pz", "3 old tasks running", func(ts []*apiv1.Task) bool {
		old := 0
		for _, tk := range ts {
			if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && slices.Equal(tk.GetSpec().GetArgs(), good) {
				old++
			}
		}
		return old == 3
	})
	if ls := n.cli("service", "ls"); !strings.Contains(ls, "(paused: update paused") {
		t.Errorf("service ls does not show the paused update:\n%s", ls)
	}
	// A rollback resumes the paused update by undoing it.
	n.cli("service", "rollback", "pz", converge)
	n.waitUpdate("pz", apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED)
	n.waitTasks("pz", "3 tasks of the old spec", func(ts []*apiv1.Task) bool { return onSpec(ts, 3, good) })
	n.cli("service", "rm", "pz")

	n.cli("service", "create", "rb", "--image", ctrtest.TestImage, quickStop, "--replicas", "3", "--stop-signal", "KILL", "--update-parallelism", "1",
		"--update-failure-action", "rollback", "--restart-delay", "0s", converge, "--", "sh", "-c", "sleep 3600")
	if msg := n.cliFails("service", "update", "rb", bad, converge); !strings.Contains(msg, "update rolled back: task") {
		t.Errorf("update to a failing command with failure action rollback: %s", msg)
	}
	svc := n.waitUpdate("rb", apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED)
	if !slices.Equal(svc.GetSpec().GetArgs(), good) {
		t.Errorf("rolled back to args %q, want %q", svc.GetSpec().GetArgs(), good)
	}
	n.waitTasks("rb", "3 tasks of the old spec", func(ts []*apiv1.Task) bool { return onSpec(ts, 3, good) })

	// A good update, then a rollback by hand.
	n.cli("service", "update", "rb", "--args=-c 'sleep 7200'", converge)
	n.waitUpdate("rb", apiv1.UpdateStatus_STATE_COMPLETED)
	n.cli("service", "rollback", "rb", converge)
	n.waitUpdate("rb", apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED)
	n.waitTasks("rb", "3 tasks of the spec before the good update", func(ts []*apiv1.Task) bool { return onSpec(ts, 3, good) })
	if insp := n.cli("service", "inspect", "rb", "-o", "table"); !strings.Contains(insp, "rollback completed") {
		t.Errorf("service inspect does not show the update status:\n%s", insp)
	}
}

// TestUpdateDelay: with --update-delay each batch of a rolling update starts
// at least the delay after the previous batch's new task came up (read
// from the tasks' own times, no sleeps), and a negative delay is refused.
func TestUpdateDelay(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	const delay = 2 * time.Second
	n.cli("service", "create", "slow", "--image", ctrtest.TestImage, "--replicas", "3", "--stop-signal", "KILL",
		"--update-parallelism", "1", "--update-delay", delay.String(), converge, "--", "sh", "-c", "sleep 3600")
	if msg := n.cliFails("service", "update", "slow", "--update-delay", "-1s"); !strings.Contains(msg, "must not be negative") {
		t.Errorf("a negative delay: %q", msg)
	}
	n.cli("service", "update", "slow", "--args=-c 'sleep 7200'", converge)
	n.waitUpdate("slow", apiv1.UpdateStatus_STATE_COMPLETED)
	var updated []*apiv1.Task
	for _, tk := range n.tasks("slow", true) {
		if strings.Contains(strings.Join(tk.GetSpec().GetArgs(), " "), "7200") {
			updated = append(updated, tk)
		}
	}
	if len(updated) != 3 {
		t.Fatalf("%d tasks of the new spec, want 3", len(updated))
	}
	slices.SortFunc(updated, func(a, b *apiv1.Task) int { return a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()) })
	for i := 1; i < len(updated); i++ {
		if gap := updated[i].GetCreatedAt().AsTime().Sub(updated[i-1].GetCreatedAt().AsTime()); gap < delay {
			t.Errorf("batch %d started %s after batch %d, want at least the %s delay", i+1, gap, i, delay)
		}
	}
}
