package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestMetricsEndpoint scrapes a real agent's /metrics while the test acts
// on it: the task and Raft figures follow, the API calls are counted by
// method and code, and the Go and process metrics are there.
func TestMetricsEndpoint(t *testing.T) {
	bin := testutil.Install(t, managerPlugins...)
	a := testutil.NewAgent(t, bin, "")
	url := a.EnableMetrics()
	ctx := context.Background()
	a.Start(ctx)
	c := a.Client()

	before := testutil.Scrape(t, url)
	for _, name := range []string{
		"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes", "process_open_fds",
		"warren_build_info", "warren_raft_commit_index", "warren_raft_applied_index", "warren_raft_term",
		"warren_tasks", "warren_scheduler_pending_tasks", "warren_worker_sessions", "warren_plugin_restarts_total",
	} {
		if _, ok := before.Value(name); !ok {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	if v, _ := before.Value("warren_raft_state", "state", "Leader"); v != 1 {
		t.Errorf(`warren_raft_state{state="Leader"} = %v, want 1`, v)
	}
	for _, p := range managerPlugins {
		if v, _ := before.Value("warren_plugin_state", "plugin", p, "state", "running"); v != 1 {
			t.Errorf(`warren_plugin_state{plugin=%q,state="running"} = %v, want 1`, p, v)
		}
	}
	commit0, _ := before.Value("warren_raft_commit_index")
	tasks0, _ := before.Value("warren_tasks")
	if tasks0 != 0 {
		t.Fatalf("warren_tasks = %v before any service", tasks0)
	}

	spec := &apiv1.ServiceSpec{Name: "web", Image: "busybox", Replicas: 3}
	if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec}); err != nil {
		t.Fatalf("create service: %v", err)
	}
	_, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second create: %v, want AlreadyExists", err)
	}

	// No worker: the three tasks wait for a node.
	var after testutil.Metrics
	testutil.Eventually(t, 10*time.Second, "three tasks waiting in /metrics", func() bool {
		after = testutil.Scrape(t, url)
		n, _ := after.Value("warren_tasks")
		pending, _ := after.Value("warren_scheduler_pending_tasks")
		return n == 3 && pending == 3
	})
	waiting := 0.0
	for _, st := range []string{"new", "pending"} {
		v, _ := after.Value("warren_tasks", "state", st)
		waiting += v
	}
	if waiting != 3 {
		t.Errorf(`warren_tasks{state=~"new|pending"} = %v, want 3`, waiting)
	}
	if commit, _ := after.Value("warren_raft_commit_index"); commit <= commit0 {
		t.Errorf("warren_raft_commit_index = %v after creating a service, was %v", commit, commit0)
	}
	if n, _ := after.Value("warren_raft_apply_duration_seconds", "result", "ok"); n == 0 {
		t.Error("warren_raft_apply_duration_seconds counted no applies")
	}
	create := apiv1.Warren_CreateService_FullMethodName
	for code, want := range map[string]float64{"OK": 1, "AlreadyExists": 1} {
		if v, _ := after.Value("warren_api_requests_total", "method", create, "code", code); v != want {
			t.Errorf("warren_api_requests_total{method=%q,code=%q} = %v, want %v", create, code, v, want)
		}
	}
	if v, _ := after.Value("warren_plugin_calls_total", "plugin", "store-bolt", "code", "OK"); v == 0 {
		t.Error(`warren_plugin_calls_total{plugin="store-bolt",code="OK"} = 0`)
	}

	if _, err := c.RemoveService(ctx, &apiv1.RemoveServiceRequest{NameOrId: "web"}); err != nil {
		t.Fatalf("remove service: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "no tasks in /metrics after the removal", func() bool {
		n, _ := testutil.Scrape(t, url).Value("warren_tasks")
		return n == 0
	})
}

// TestMetricsAddrInUse: an agent whose metrics_addr is taken refuses to
// start, naming the address, and leaves nothing behind (no data dir).
func TestMetricsAddrInUse(t *testing.T) {
	bin := testutil.Install(t, managerPlugins...)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	a := testutil.NewAgent(t, bin, "")
	a.SetTopLevel(fmt.Sprintf("metrics_addr = %q", taken.Addr().String()))

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Bounded: an agent that starts anyway is killed when ctx ends.
	out, err := exec.CommandContext(ctx, bin, "agent", "-config", a.Config).CombinedOutput()
	stderr := string(out)
	if err == nil || ctx.Err() != nil {
		t.Fatalf("agent did not refuse to start with metrics_addr %s in use (%v):\n%s", taken.Addr(), err, stderr)
	}
	want := "metrics_addr " + taken.Addr().String()
	if !strings.Contains(stderr, want) || !strings.Contains(stderr, "address already in use") {
		t.Fatalf("agent's error does not say %q is in use:\n%s", want, stderr)
	}
	if _, err := os.Stat(a.DataDir); !os.IsNotExist(err) {
		t.Errorf("data_dir %s was created (stat: %v)", a.DataDir, err)
	}
}

// TestMetricsRunningTasks runs real containers on a manager+worker agent
// and follows them in /metrics: tasks RUNNING, the NEW→RUNNING delay
// observed once per task, the worker's session and heartbeats, the
// scheduler's rounds, the runtime plugin's calls, and a restart when a
// container is killed.
func TestMetricsRunningTasks(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	var url string
	n := startNodeWith(t, "", func(a *testutil.Agent) { url = a.EnableMetrics() })
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "2", converge)
	n.waitConverged("web", 2)

	var got testutil.Metrics
	testutil.Eventually(t, 15*time.Second, "two running tasks, their delays and a heartbeat in /metrics", func() bool {
		got = testutil.Scrape(t, url)
		running, _ := got.Value("warren_tasks", "state", "running")
		delays, _ := got.Value("warren_task_scheduling_delay_seconds")
		beats, _ := got.Value("warren_worker_heartbeats_total")
		return running == 2 && delays == 2 && beats > 0
	})
	checks := []struct {
		name   string
		labels []string
		min    float64
	}{
		{"warren_worker_sessions", nil, 1},
		{"warren_scheduler_placement_duration_seconds", []string{"result", "ok"}, 1},
		{"warren_plugin_calls_total", []string{"plugin", "runtime-containerd", "code", "OK"}, 1},
		{"warren_plugin_state", []string{"plugin", "runtime-containerd", "state", "running"}, 1},
	}
	for _, c := range checks {
		if v, _ := got.Value(c.name, c.labels...); v < c.min {
			t.Errorf("%s%v = %v, want at least %v", c.name, c.labels, v, c.min)
		}
	}
	if v, _ := got.Value("warren_task_restarts_total"); v != 0 {
		t.Errorf("warren_task_restarts_total = %v before any container ended", v)
	}
	sum := got["warren_task_scheduling_delay_seconds"].GetMetric()[0].GetHistogram().GetSampleSum()
	if sum <= 0 || sum > 60 {
		t.Errorf("NEW→RUNNING delays sum to %vs for two tasks", sum)
	}
	t.Logf("NEW→RUNNING: %.3fs on average over 2 tasks", sum/2)

	n.killOne("web", 2, "")
	testutil.Eventually(t, 15*time.Second, "the restart and its delay in /metrics", func() bool {
		got = testutil.Scrape(t, url)
		restarts, _ := got.Value("warren_task_restarts_total")
		delays, _ := got.Value("warren_task_scheduling_delay_seconds")
		return restarts == 1 && delays == 3
	})
}
