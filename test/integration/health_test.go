package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// httpdCmd serves /www/index.html on port 8080 (busybox httpd).
const httpdCmd = "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"

// fastHealth are the flags of a quick HTTP health check of httpdCmd's page
// at path.
func fastHealth(path string) []string {
	return []string{"--health-http", path + ":8080", "--health-interval", "200ms", "--health-timeout", "1s", "--health-retries", "2"}
}

// waitTasks polls a service's tasks (with history) until ok says they are
// as wanted, or fails the test after 30s.
func (n *node) waitTasks(service, what string, ok func([]*apiv1.Task) bool) []*apiv1.Task {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ts := n.tasks(service, true)
		if ok(ts) {
			return ts
		}
		if time.Now().After(deadline) {
			var rows []string
			for _, tk := range ts {
				rows = append(rows, fmt.Sprintf("%s slot %d attempt %d v%d %v/%v health %v %q %q", tk.GetId(), tk.GetSlot(), tk.GetAttempt(), tk.GetServiceVersion(),
					tk.GetDesiredState(), tk.GetState(), tk.GetHealth(), tk.GetHealthOutput(), tk.GetError()))
			}
			n.t.Fatalf("%s: waiting for %s; tasks:\n%s\nagent output:\n%s", service, what, strings.Join(rows, "\n"), tail(n.a.Output(), 60))
		}
		time.Sleep(50 * time.Millisecond) // polling the API with a deadline
	}
}

// TestHealthChecks: a task whose HTTP check passes turns healthy (in service
// ps and task inspect); one whose check never passes is stopped as
// unhealthy and replaced under the restart policy.
func TestHealthChecks(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startOverlayNode(t)

	args := append([]string{"service", "create", "web", "--image", ctrtest.TestImage, quickStop, "--detach"}, fastHealth("/index.html")...)
	n.cli(append(args, "--", "sh", "-c", httpdCmd)...)
	ts := n.waitTasks("web", "a healthy task", func(ts []*apiv1.Task) bool {
		return len(ts) == 1 && ts[0].GetHealth() == apiv1.HealthState_HEALTH_STATE_HEALTHY
	})
	if out := ts[0].GetHealthOutput(); !strings.Contains(out, "200 OK") {
		t.Errorf("health output %q, want the answer of the check", out)
	}
	if ps := n.cli("service", "ps", "web"); !strings.Contains(ps, "(healthy)") {
		t.Errorf("service ps does not show the health:\n%s", ps)
	}
	if insp := n.cli("task", "inspect", ts[0].GetId(), "-o", "table"); !strings.Contains(insp, "healthy") || !strings.Contains(insp, "http GET /index.html port 8080") {
		t.Errorf("task inspect does not show the health:\n%s", insp)
	}

	args = append([]string{"service", "create", "sick", "--image", ctrtest.TestImage, quickStop, "--detach", "--restart-delay", "0s"}, fastHealth("/missing")...)
	n.cli(append(args, "--", "sh", "-c", httpdCmd)...)
	n.waitTasks("sick", "an unhealthy task replaced", func(ts []*apiv1.Task) bool { return unhealthyReplaced(ts, "404") })
	n.cli("service", "rm", "sick")

	// An update whose health check never passes rolls back.
	n.cli("service", "update", "web", "--replicas", "2", converge)
	if _, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, "service", "update", "web", "--health-http", "/missing:8080",
		"--update-failure-action", "rollback", "--update-parallelism", "1", converge); code == 0 || !strings.Contains(errOut, "update rolled back") {
		t.Errorf("update to a failing health check: exit %d: %s", code, errOut)
	}
	n.waitTasks("web", "2 healthy tasks of the old check", func(ts []*apiv1.Task) bool {
		ok := 0
		for _, tk := range ts {
			if tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && state.Serving(tk) && tk.GetSpec().GetHealthCheck().GetPath() == "/index.html" {
				ok++
			}
		}
		return ok == 2 && n.service("web").GetUpdateStatus().GetState() == apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED
	})

	// With one replica the command waits for the new task to be healthy,
	// not just running: the update whose check fails ends in the rollback
	// and a non-zero exit, never in a success.
	args = append([]string{"service", "create", "solo", "--image", ctrtest.TestImage, quickStop, converge}, fastHealth("/index.html")...)
	n.cli(append(args, "--", "sh", "-c", httpdCmd)...)
	if _, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, "service", "update", "solo", "--health-http", "/missing:8080",
		"--update-failure-action", "rollback", converge); code == 0 || !strings.Contains(errOut, "update rolled back") {
		t.Errorf("one replica, update to a failing health check: exit %d: %s", code, errOut)
	}
}

// unhealthyReplaced reports whether ts has a task that failed as unhealthy,
// with output in its last check's output, and a later attempt wanted
// running.
func unhealthyReplaced(ts []*apiv1.Task, output string) bool {
	failed, replaced := false, false
	for _, tk := range ts {
		if tk.GetState() == apiv1.TaskState_TASK_STATE_FAILED && strings.HasPrefix(tk.GetError(), "unhealthy: ") &&
			strings.Contains(tk.GetHealthOutput(), output) && tk.GetHealth() == apiv1.HealthState_HEALTH_STATE_UNHEALTHY {
			failed = true
		}
		replaced = replaced || (tk.GetAttempt() >= 2 && tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING)
	}
	return failed && replaced
}

// TestRollingUpdateKeepsHealthyTasks: during a rolling update of 4 replicas
// with parallelism 1 and a health check, the service never has fewer than 3
// running, healthy tasks (stop-first), or fewer than 4 (start-first),
// sampled at every task event.
func TestRollingUpdateKeepsHealthyTasks(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startOverlayNode(t)
	for _, tc := range []struct {
		order string
		floor int
	}{{"stop-first", 3}, {"start-first", 4}} {
		name := "web-" + tc.order
		args := append([]string{"service", "create", name, "--image", ctrtest.TestImage, quickStop, "--detach", "--replicas", "4",
			"--update-parallelism", "1", "--update-order", tc.order}, fastHealth("/index.html")...)
		n.cli(append(args, "--", "sh", "-c", httpdCmd)...)
		n.waitTasks(name, "4 healthy tasks", func(ts []*apiv1.Task) bool { return serving(ts, 0) == 4 })

		ctx, cancel := context.WithCancel(context.Background())
		events, err := n.c.Events(ctx, &apiv1.EventsRequest{Kinds: []string{"task"}})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		// The stream is open once its first message could arrive: a
		// sample now is the floor's starting point.
		low := serving(n.tasks(name, false), 0)
		version := n.service(name).GetVersion()
		n.cli("service", "update", name, "--env-add", "V=2", "--detach")
		newVersion := n.service(name).GetVersion()
		if newVersion == version {
			cancel()
			t.Fatalf("%s: the update did not change the service", name)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := events.Recv(); err != nil {
				cancel()
				t.Fatalf("%s: event stream: %v", name, err)
			}
			ts := n.tasks(name, false)
			low = min(low, serving(ts, 0))
			if serving(ts, newVersion) == 4 && len(ts) == 4 {
				break
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("%s: the update did not finish; %d tasks serve the new spec", name, serving(ts, newVersion))
			}
		}
		cancel()
		if low < tc.floor {
			t.Errorf("%s: %d running, healthy tasks at the low point, want at least %d", name, low, tc.floor)
		}
		n.cli("service", "rm", name)
	}
}

// serving counts the running, healthy tasks in ts, of service version v
// only when v is not 0.
func serving(ts []*apiv1.Task, v uint64) int {
	count := 0
	for _, tk := range ts {
		if state.Serving(tk) && (v == 0 || tk.GetServiceVersion() == v) {
			count++
		}
	}
	return count
}

// service returns the service named name.
func (n *node) service(name string) *apiv1.Service {
	n.t.Helper()
	resp, err := n.c.GetService(context.Background(), &apiv1.GetServiceRequest{NameOrId: name})
	if err != nil {
		n.t.Fatalf("get service %s: %v", name, err)
	}
	return resp.GetService()
}

// TestCmdHealthChecks: a --health-cmd check runs in the task through the
// runtime's Exec: one that exits 0 turns the task healthy with the command's
// output, one that exits 1 gets it stopped as unhealthy and replaced, and
// so does one that runs past --health-timeout.
func TestCmdHealthChecks(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	for _, tc := range []struct {
		name, cmd string
		ok        func(*apiv1.Task) bool
	}{
		{"cmd-ok", "echo fine-from-inside", func(tk *apiv1.Task) bool {
			return tk.GetHealth() == apiv1.HealthState_HEALTH_STATE_HEALTHY && strings.Contains(tk.GetHealthOutput(), "fine-from-inside")
		}},
		{"cmd-sick", "echo broken >&2; exit 1", func(tk *apiv1.Task) bool {
			return tk.GetState() == apiv1.TaskState_TASK_STATE_FAILED && strings.HasPrefix(tk.GetError(), "unhealthy: ") &&
				strings.Contains(tk.GetHealthOutput(), "exited with 1: broken")
		}},
		{"cmd-slow", "sleep 30", func(tk *apiv1.Task) bool {
			return tk.GetState() == apiv1.TaskState_TASK_STATE_FAILED && strings.HasPrefix(tk.GetError(), "unhealthy: ") &&
				strings.Contains(tk.GetHealthOutput(), "timed out after 2s")
		}},
	} {
		n.cli("service", "create", tc.name, "--image", ctrtest.TestImage, quickStop, "--detach", "--restart-delay", "0s",
			"--health-cmd", tc.cmd, "--health-interval", "200ms", "--health-timeout", "2s", "--health-retries", "2", "--", "sleep", "3600")
		n.waitTasks(tc.name, "the check's outcome", func(ts []*apiv1.Task) bool {
			seen, replaced := false, tc.name == "cmd-ok"
			for _, tk := range ts {
				seen = seen || tc.ok(tk)
				replaced = replaced || tk.GetAttempt() >= 2
			}
			return seen && replaced
		})
		n.cli("service", "rm", tc.name)
	}
}

// TestImageHealthCheck: the image's own HEALTHCHECK runs when the service
// has no check (healthy once it passes, unhealthy and replaced once it
// fails, shown in service ps and task inspect) and gates rolling updates;
// a check of the service's replaces it; --no-healthcheck, on create and on
// update, disables it.
func TestImageHealthCheck(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	create := func(name string, extra ...string) {
		args := append([]string{"service", "create", name, "--image", ctrtest.HealthImage, quickStop, "--detach", "--restart-delay", "0s"}, extra...)
		n.cli(args...)
	}
	running := func(ts []*apiv1.Task) *apiv1.Task {
		for _, tk := range ts {
			if tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING {
				return tk
			}
		}
		return nil
	}

	// --no-healthcheck first: it runs through the others' checks below.
	create("img-none", "--no-healthcheck")
	create("img-ok", "--", "sh", "-c", "touch /tmp/ok && exec sleep 3600")
	create("img-own", "--health-cmd", "echo own-check", "--health-interval", "200ms")
	create("img-sick")

	ts := n.waitTasks("img-ok", "a healthy task", func(ts []*apiv1.Task) bool {
		tk := running(ts)
		return tk != nil && tk.GetHealth() == apiv1.HealthState_HEALTH_STATE_HEALTHY
	})
	if ps := n.cli("service", "ps", "img-ok"); !strings.Contains(ps, "(healthy)") {
		t.Errorf("service ps does not show the image's check's health:\n%s", ps)
	}
	if insp := n.cli("task", "inspect", running(ts).GetId(), "-o", "table"); !strings.Contains(insp, "the image's HEALTHCHECK") || !strings.Contains(insp, "healthy") {
		t.Errorf("task inspect does not show the image's check:\n%s", insp)
	}

	// The image's check fails in img-own too (no /tmp/ok): its own passes.
	n.waitTasks("img-own", "healthy from the service's check", func(ts []*apiv1.Task) bool {
		tk := running(ts)
		return tk != nil && tk.GetHealth() == apiv1.HealthState_HEALTH_STATE_HEALTHY && strings.Contains(tk.GetHealthOutput(), "own-check")
	})

	n.waitTasks("img-sick", "an unhealthy task replaced", func(ts []*apiv1.Task) bool { return unhealthyReplaced(ts, "test -f /tmp/ok") })

	// img-none started before img-sick, whose check has failed twice by
	// now: had it a check, its worker would have reported a health with
	// RUNNING, and its task would have failed the same way.
	none := n.tasks("img-none", true)
	if len(none) != 1 || none[0].GetState() != apiv1.TaskState_TASK_STATE_RUNNING || none[0].GetHealth() != apiv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		t.Fatalf("img-none: tasks %v, want one running task without a health", none)
	}

	// An update whose new task fails the image's check rolls back: the
	// managers wait for it as for a check of the service's (two replicas:
	// the second old task runs until the first new one is up).
	n.cli("service", "update", "img-ok", "--replicas", "2", converge)
	if _, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, "service", "update", "img-ok", "--args=-c 'exec sleep 3600'",
		"--update-failure-action", "rollback", "--update-parallelism", "1", converge); code == 0 || !strings.Contains(errOut, "update rolled back") {
		t.Errorf("update to a task failing the image's check: exit %d: %s", code, errOut)
	}
	n.waitTasks("img-ok", "2 healthy tasks of the old spec after the rollback", func(ts []*apiv1.Task) bool {
		ok := 0
		for _, tk := range ts {
			if tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && state.Serving(tk) && strings.Contains(strings.Join(tk.GetSpec().GetArgs(), " "), "touch /tmp/ok") {
				ok++
			}
		}
		return ok == 2 && n.service("img-ok").GetUpdateStatus().GetState() == apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED
	})

	// --no-healthcheck on update: the new task runs without the image's
	// check and stays.
	n.cli("service", "update", "img-sick", "--no-healthcheck", converge)
	n.waitTasks("img-sick", "a running task without a check", func(ts []*apiv1.Task) bool {
		tk := running(ts)
		return tk != nil && tk.GetSpec().GetHealthCheck().GetType() == apiv1.HealthCheck_TYPE_NONE && tk.GetHealth() == apiv1.HealthState_HEALTH_STATE_UNSPECIFIED
	})
}
