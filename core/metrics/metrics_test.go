package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/metrics"
	"github.com/warrenorch/warren/core/pluginhost"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/test/testutil"
)

// serve serves m over a real HTTP server for the test and returns its URL.
func serve(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return srv.URL + "/metrics"
}

func task(id string, st apiv1.TaskState, desired apiv1.TaskState, node string) *apiv1.Task {
	return &apiv1.Task{Id: id, State: st, DesiredState: desired, NodeId: node}
}

// TestPullFigures: tasks by state, pending tasks, sessions, heartbeats and
// plugin figures are read from their sources at scrape time, and are gone
// once the manager's sources are cleared.
func TestPullFigures(t *testing.T) {
	m := metrics.New("test")
	url := serve(t, m)
	run := apiv1.TaskState_TASK_STATE_RUNNING
	tasks := []*apiv1.Task{
		task("a", apiv1.TaskState_TASK_STATE_NEW, run, ""),
		task("b", apiv1.TaskState_TASK_STATE_PENDING, run, ""),
		task("c", run, run, "n1"),
		task("d", run, run, "n1"),
		task("e", apiv1.TaskState_TASK_STATE_FAILED, apiv1.TaskState_TASK_STATE_SHUTDOWN, "n1"),
	}
	clear := m.SetManager(metrics.ManagerSources{
		Tasks:    func() []*apiv1.Task { return tasks },
		Sessions: func() (int, uint64) { return 2, 17 },
	})
	m.SetPlugins(func() []pluginhost.Status {
		return []pluginhost.Status{{Name: "store-bolt", Kind: sdk.KindStore, State: pluginhost.StateRestarting, Restarts: 3}}
	})

	got := testutil.Scrape(t, url)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"warren_tasks", []string{"state", "new"}, 1},
		{"warren_tasks", []string{"state", "pending"}, 1},
		{"warren_tasks", []string{"state", "running"}, 2},
		{"warren_tasks", []string{"state", "failed"}, 1},
		{"warren_tasks", []string{"state", "orphaned"}, 0},
		{"warren_tasks", nil, 5},
		{"warren_scheduler_pending_tasks", nil, 2},
		{"warren_worker_sessions", nil, 2},
		{"warren_worker_heartbeats_total", nil, 17},
		{"warren_plugin_restarts_total", []string{"plugin", "store-bolt", "kind", "store"}, 3},
		{"warren_plugin_state", []string{"plugin", "store-bolt", "state", "restarting"}, 1},
		{"warren_plugin_state", []string{"plugin", "store-bolt", "state", "running"}, 0},
		{"warren_build_info", []string{"version", "test"}, 1},
	}
	for _, tt := range tests {
		if v, ok := got.Value(tt.name, tt.labels...); !ok || v != tt.want {
			t.Errorf("%s%v = %v (present %t), want %v", tt.name, tt.labels, v, ok, tt.want)
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if _, ok := got.Value(name); !ok {
			t.Errorf("%s missing", name)
		}
	}

	clear()
	got = testutil.Scrape(t, url)
	if _, ok := got.Value("warren_tasks"); ok {
		t.Error("warren_tasks still reported after the manager's sources were cleared")
	}
	if _, ok := got.Value("warren_plugin_restarts_total"); !ok {
		t.Error("plugin figures went with the manager's")
	}
}

// TestWatchTasks: the delay from creation to the first RUNNING is
// observed once per task, and not for tasks already running when the
// watch started or for tasks that ended without running.
func TestWatchTasks(t *testing.T) {
	m := metrics.New("test")
	url := serve(t, m)
	bus := events.NewBroker()
	defer bus.Close()
	created := time.Now().Add(-3 * time.Second)
	running := apiv1.TaskState_TASK_STATE_RUNNING
	at := func(id string, st apiv1.TaskState) *apiv1.Task {
		return &apiv1.Task{Id: id, State: st, CreatedAt: timestamppb.New(created)}
	}
	old := at("old", running) // running before the watch started
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.WatchTasks(ctx, bus, func() []*apiv1.Task { return []*apiv1.Task{old} }) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("WatchTasks: %v", err)
		}
	}()
	updated := func(tk *apiv1.Task) *apiv1.Event {
		return &apiv1.Event{Kind: "task", Action: apiv1.EventAction_EVENT_ACTION_UPDATED, Id: tk.GetId(),
			Time: timestamppb.New(created.Add(2 * time.Second)), Object: &apiv1.Event_Task{Task: tk}}
	}
	observed := func() float64 {
		n, _ := testutil.Scrape(t, url).Value("warren_task_scheduling_delay_seconds")
		return n
	}
	// The watch subscribes inside WatchTasks: publish a first task until
	// it is seen.
	probe := 0
	testutil.Eventually(t, 5*time.Second, "the watch to start", func() bool {
		probe++
		bus.Publish([]*apiv1.Event{updated(at(fmt.Sprintf("probe-%d", probe), running))})
		return observed() > 0
	})
	base := observed()
	bus.Publish([]*apiv1.Event{
		updated(at("t1", apiv1.TaskState_TASK_STATE_STARTING)),
		updated(at("t1", running)),
		updated(at("t1", running)), // again: not a second observation
		updated(at("old", running)),
		updated(at("t3", apiv1.TaskState_TASK_STATE_FAILED)),
		updated(at("t3", running)), // a late report after it failed
		updated(at("last", running)),
	})
	testutil.Eventually(t, 5*time.Second, "the last task to be observed", func() bool { return observed() >= base+2 })
	got := testutil.Scrape(t, url)
	if n, _ := got.Value("warren_task_scheduling_delay_seconds"); n != base+2 {
		t.Fatalf("warren_task_scheduling_delay_seconds observed %v times, want %v (t1 and last)", n, base+2)
	}
	if sum := got["warren_task_scheduling_delay_seconds"].GetMetric()[0].GetHistogram().GetSampleSum(); sum != 2*(base+2) {
		t.Errorf("delays sum to %vs, want 2s each (event time - created_at)", sum)
	}
}

// TestObservedCalls: plugin calls, Raft applies and scheduler calls are
// recorded with their labels.
func TestObservedCalls(t *testing.T) {
	m := metrics.New("test")
	url := serve(t, m)
	m.OnPluginCall("store-bolt", "/warren.sdk.store.v1.Store/Apply", time.Millisecond, nil)
	m.OnPluginCall("store-bolt", "/warren.sdk.store.v1.Store/Apply", time.Millisecond, status.Error(codes.Unavailable, "down"))
	m.OnRaftApply(time.Millisecond, nil)
	m.OnRaftApply(time.Millisecond, errors.New("not the leader"))
	m.OnSchedule(time.Millisecond, 3, nil)
	m.OnTaskRestarts(2)
	got := testutil.Scrape(t, url)
	apply := "/warren.sdk.store.v1.Store/Apply"
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"warren_plugin_calls_total", []string{"plugin", "store-bolt", "method", apply, "code", "OK"}, 1},
		{"warren_plugin_calls_total", []string{"plugin", "store-bolt", "method", apply, "code", "Unavailable"}, 1},
		{"warren_plugin_call_duration_seconds", []string{"plugin", "store-bolt", "method", apply}, 2},
		{"warren_raft_apply_duration_seconds", []string{"result", "ok"}, 1},
		{"warren_raft_apply_duration_seconds", []string{"result", "error"}, 1},
		{"warren_scheduler_placement_duration_seconds", []string{"result", "ok"}, 1},
		{"warren_task_restarts_total", nil, 2},
	}
	for _, tt := range tests {
		if v, _ := got.Value(tt.name, tt.labels...); v != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, v, tt.want)
		}
	}
}

// TestListenInUse: an address in use is refused at once, naming it.
func TestListenInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	srv, err := metrics.New("test").Listen(taken.Addr().String())
	if err == nil {
		srv.Close(context.Background())
		t.Fatalf("Listen on %s, which is in use, succeeded", taken.Addr())
	}
	if want := "metrics_addr " + taken.Addr().String(); !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("error %q does not name %q as in use", err, want)
	}
}
