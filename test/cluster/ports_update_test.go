package cluster

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestClusterPortsStartFirst: a manager and two
// workers; a service of two replicas with an HTTP health check publishes an
// ingress port. While a start-first rolling update (parallelism 1) replaces
// both tasks, a client on another host sends requests one after the other,
// each with a deadline, through the port of the worker: every one is
// answered, since only healthy tasks are behind published ports, and an
// old task leaves them before it stops.
func TestClusterPortsStartFirst(t *testing.T) {
	const (
		minRequests = 100  // at least this many, the update running or not
		maxRequests = 5000 // the loop's bound
	)
	c, m1 := overlayCluster(t, "10.249.0.0/16")
	client := c.Net.AddHost(t, "client")
	w1 := c.Node("w1")
	m1.CLI(0, "service", "create", "web", "--replicas", "2", "--publish", "18380:8080", "--image", ctrtest.TestImage,
		"--stop-grace-period", "1s", "--update-order", "start-first", "--update-parallelism", "1",
		"--health-http", "/index.html:8080", "--health-interval", "200ms", "--health-timeout", "1s", "--health-retries", "2",
		// A server that stops at once on SIGTERM (as PID 1, httpd alone
		// would ignore it and live out the grace period).
		"--", "sh", "-c", "mkdir -p /www && hostname > /www/index.html; trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait")
	addr := w1.Host.Addr(18380)
	testutil.Eventually(t, 60*time.Second, "web answers on w1's published port", func() bool {
		out, err := httpGet(client, addr)
		return err == nil && strings.Contains(out, "web.")
	})
	before := overlayTasks(t, m1, "web")

	// The client loop: requests one after the other until told to stop
	// (with at least minRequests sent) or maxRequests.
	var stop atomic.Bool
	type result struct {
		sent     int
		failures []string
	}
	done := make(chan result, 1)
	go func() {
		var r result
		for r.sent < maxRequests && (r.sent < minRequests || !stop.Load()) {
			r.sent++
			out, err := httpGet(client, addr) // a 3s deadline
			if err != nil || !strings.Contains(out, "web.") {
				r.failures = append(r.failures, fmt.Sprintf("request %d at %s: %v %q", r.sent, time.Now().Format("15:04:05.000"), err, out))
			}
		}
		done <- r
	}()
	m1.CLI(0, "service", "update", "web", "--env-add", "V=2", "--timeout-converge=120s")
	stop.Store(true)
	r := <-done

	after := overlayTasks(t, m1, "web")
	for _, tk := range after {
		for _, old := range before {
			if tk.GetId() == old.GetId() {
				t.Errorf("task %s of before the update still runs", tk.GetId())
			}
		}
		if tk.GetSpec().GetEnv()["V"] != "2" || !state.Serving(tk) {
			t.Errorf("after the update: task %s with env %v (want V=2), serving %v", tk.GetId(), tk.GetSpec().GetEnv(), state.Serving(tk))
		}
	}
	// The old tasks stopped at their stop signal, not at the kill after
	// the grace period: the loop ran against servers that go at once.
	hist, err := m1.Client().ListTasks(t.Context(), &apiv1.ListTasksRequest{Service: "web", All: true, View: apiv1.TaskView_TASK_VIEW_FULL})
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range hist.GetTasks() {
		for _, old := range before {
			if tk.GetId() == old.GetId() && (tk.GetState() != apiv1.TaskState_TASK_STATE_SHUTDOWN || tk.GetExitCode() != 0) {
				t.Errorf("old task %s ended %v with exit code %d, want SHUTDOWN with 0 (its trap)", tk.GetId(), tk.GetState(), tk.GetExitCode())
			}
		}
	}
	if len(after) != 2 {
		t.Errorf("after the update: %d running tasks, want 2", len(after))
	}
	if len(r.failures) > 0 {
		t.Errorf("%d of %d requests through the published port failed during the update:\n%s", len(r.failures), r.sent, strings.Join(r.failures, "\n"))
	}
	t.Logf("%d requests, %d failed", r.sent, len(r.failures))
}
