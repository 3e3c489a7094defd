package integration

import (
	"maps"
	"slices"
	"strings"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
)

// oldTasksUntouched fails the test unless every task in before (task ID →
// its container's PID, as running returned it) still runs, in the same
// container process, and the cluster still wants it running.
func (n *node) oldTasksUntouched(service string, before map[string]uint32) {
	n.t.Helper()
	run := n.running()
	wanted := n.runningTasks(service)
	for id, pid := range before {
		if run[id] != pid {
			n.t.Errorf("old task %s: container PID %d, want %d (stopped or restarted)", id, run[id], pid)
		}
		if !slices.Contains(wanted, id) {
			n.t.Errorf("old task %s is no longer RUNNING with desired state RUNNING (running: %v)", id, wanted)
		}
	}
}

// onSpecCount counts the service's current RUNNING tasks with args.
func onSpecCount(ts []*apiv1.Task, args []string) int {
	count := 0
	for _, tk := range ts {
		if tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING &&
			slices.Equal(tk.GetSpec().GetArgs(), args) {
			count++
		}
	}
	return count
}

// canaryService creates name with replicas tasks of `sh -c 'sleep 3600'`
// and returns their container PIDs by task ID.
func (n *node) canaryService(name, replicas string, extra ...string) map[string]uint32 {
	n.t.Helper()
	args := append([]string{"service", "create", name, "--image", ctrtest.TestImage, quickStop, "--replicas", replicas, "--stop-signal", "KILL",
		"--update-parallelism", "1", "--restart-delay", "0s", converge}, extra...)
	n.cli(append(args, "--", "sh", "-c", "sleep 3600")...)
	want := 0
	for _, tk := range n.tasks(name, false) {
		if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING {
			want++
		}
	}
	run := n.running()
	out := map[string]uint32{}
	for _, id := range n.runningTasks(name) {
		out[id] = run[id]
	}
	if len(out) != want || want == 0 {
		n.t.Fatalf("%s: %d running containers for %d running tasks", name, len(out), want)
	}
	return out
}

// TestCanaryPromote: an update with --update-canary 1 starts one task of
// the new spec beside the 3 old ones, which keep running, and waits in
// state canary; `service promote` rolls the rest, ending with 3 tasks of
// the new spec, the canary among them. Bad canary input and a promote
// with no canary waiting are refused and change nothing.
func TestCanaryPromote(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	good, next := []string{"-c", "sleep 3600"}, []string{"-c", "sleep 7200"}
	before := n.canaryService("cn", "3")

	version := n.service("cn").GetVersion()
	for flag, want := range map[string]string{"--update-canary=4": "canary 4 is more than its 3 replicas", "--update-canary=-1": "must be 0 or more"} {
		if msg := n.cliFails("service", "update", "cn", flag, "--args=-c 'sleep 7200'", converge); !strings.Contains(msg, want) {
			t.Errorf("update %s: %q, want an error containing %q", flag, msg, want)
		}
	}
	if msg := n.cliFails("service", "promote", "cn"); !strings.Contains(msg, "no canary waiting for a promote") {
		t.Errorf("promote with no update: %q", msg)
	}
	if v := n.service("cn").GetVersion(); v != version {
		t.Fatalf("refused input changed the service: version %d → %d", version, v)
	}

	out := n.cli("service", "update", "cn", "--update-canary", "1", "--args=-c 'sleep 7200'", converge)
	if !strings.Contains(out, "canary: 1 task(s) of the new spec serving") || !strings.Contains(out, "warren service promote cn") {
		t.Errorf("service update does not say the canary waits for a promote:\n%s", out)
	}
	svc := n.waitUpdate("cn", apiv1.UpdateStatus_STATE_CANARY)
	ts := n.waitTasks("cn", "1 canary beside the 3 old tasks", func(ts []*apiv1.Task) bool {
		return onSpecCount(ts, next) == 1 && onSpecCount(ts, good) == 3
	})
	var canary string
	for _, tk := range ts {
		if tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && slices.Equal(tk.GetSpec().GetArgs(), next) {
			canary = tk.GetId()
		}
	}
	n.oldTasksUntouched("cn", before)
	if ls := n.cli("service", "ls"); !strings.Contains(ls, "(canary: ") {
		t.Errorf("service ls does not show the canary:\n%s", ls)
	}
	if insp := n.cli("service", "inspect", "cn", "-o", "table"); !strings.Contains(insp, "canary: 1 task(s)") {
		t.Errorf("service inspect does not show the canary:\n%s", insp)
	}
	// The canary waits: nothing else changes while no one promotes it (a
	// re-read after the state is seen, with the orchestrator idle).
	if st := n.service("cn").GetUpdateStatus().GetState(); st != apiv1.UpdateStatus_STATE_CANARY || svc.GetVersion() != n.service("cn").GetVersion() {
		t.Fatalf("the canary did not wait: state %s", st)
	}

	n.cli("service", "promote", "cn", converge)
	n.waitUpdate("cn", apiv1.UpdateStatus_STATE_COMPLETED)
	ts = n.waitTasks("cn", "3 tasks of the new spec", func(ts []*apiv1.Task) bool { return onSpec(ts, 3, next) })
	if !slices.ContainsFunc(ts, func(tk *apiv1.Task) bool {
		return tk.GetId() == canary && tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING
	}) {
		t.Errorf("the canary %s is not one of the service's tasks after the promote", canary)
	}
	if msg := n.cliFails("service", "promote", "cn"); !strings.Contains(msg, "no canary waiting for a promote") {
		t.Errorf("promote of a completed update: %q", msg)
	}
	n.waitConverged("cn", 3)
}

// TestCanaryAutoPromote: with --update-auto-promote the update waits in
// state canary until the canary has served through the monitor window, then
// rolls the rest by itself.
func TestCanaryAutoPromote(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	good, next := []string{"-c", "sleep 3600"}, []string{"-c", "sleep 7200"}
	n.canaryService("ap", "2")
	n.cli("service", "update", "ap", "--update-canary", "1", "--update-auto-promote", "--update-monitor", "2s", "--args=-c 'sleep 7200'", "--detach")
	n.waitTasks("ap", "the canary beside the 2 old tasks, waiting", func(ts []*apiv1.Task) bool {
		return onSpecCount(ts, next) == 1 && onSpecCount(ts, good) == 2 &&
			n.service("ap").GetUpdateStatus().GetState() == apiv1.UpdateStatus_STATE_CANARY
	})
	n.waitUpdate("ap", apiv1.UpdateStatus_STATE_COMPLETED)
	n.waitTasks("ap", "2 tasks of the new spec", func(ts []*apiv1.Task) bool { return onSpec(ts, 2, next) })
	n.waitConverged("ap", 2)
}

// TestCanaryFailureRollsBack: a canary whose command exits 1, and one
// whose health check never passes, roll the update back: the canaries go,
// the old tasks keep running in the same containers, and the service ends
// on its old spec with state rollback completed and the reason.
func TestCanaryFailureRollsBack(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	good := []string{"-c", "sleep 3600"}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"exit", []string{"--args=-c 'exit 1'"}},
		{"unhealthy", []string{"--args=-c 'sleep 7200'", "--health-cmd", "exit 1", "--health-interval", "200ms", "--health-timeout", "1s", "--health-retries", "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "cf-" + tc.name
			before := n.canaryService(name, "2")
			args := append([]string{"service", "update", name, "--update-canary", "1"}, tc.args...)
			if msg := n.cliFails(append(args, converge)...); !strings.Contains(msg, "update rolled back: canary task") {
				t.Errorf("update with a failing canary: %s", msg)
			}
			svc := n.waitUpdate(name, apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED)
			if !strings.Contains(svc.GetUpdateStatus().GetMessage(), "update rolled back: canary task") {
				t.Errorf("update status %q does not name the failed canary", svc.GetUpdateStatus().GetMessage())
			}
			if !slices.Equal(svc.GetSpec().GetArgs(), good) || svc.GetSpec().GetHealthCheck() != nil {
				t.Errorf("rolled back to args %q health check %v, want %q and none", svc.GetSpec().GetArgs(), svc.GetSpec().GetHealthCheck(), good)
			}
			n.waitTasks(name, "only the 2 old tasks", func(ts []*apiv1.Task) bool { return onSpec(ts, 2, good) })
			if got := n.runningTasks(name); !slices.Equal(got, slices.Sorted(maps.Keys(before))) {
				t.Errorf("running tasks %v, want the old ones %v", got, slices.Sorted(maps.Keys(before)))
			}
			n.oldTasksUntouched(name, before)
			n.cli("service", "rm", name)
		})
	}
}
