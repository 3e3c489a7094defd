package worker_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/runtimetest"
	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

const (
	nodeID = "node-1"
	image  = "example.com/warren/app:1"
	// slowImage is pulled only when the test opens its gate.
	slowImage = "example.com/warren/slow:1"

	assigned  = apiv1.TaskState_TASK_STATE_ASSIGNED
	preparing = apiv1.TaskState_TASK_STATE_PREPARING
	running   = apiv1.TaskState_TASK_STATE_RUNNING
	complete  = apiv1.TaskState_TASK_STATE_COMPLETE
	failed    = apiv1.TaskState_TASK_STATE_FAILED
	shutdown  = apiv1.TaskState_TASK_STATE_SHUTDOWN
	rejected  = apiv1.TaskState_TASK_STATE_REJECTED
	ready     = apiv1.NodeStatus_NODE_STATUS_READY
	down      = apiv1.NodeStatus_NODE_STATUS_DOWN
)

// observedRuntime counts the starts of the runtime it wraps and holds
// EnsureImage of slowImage until gate is closed. While hung is set, its
// StartTask and Health wait for their ctx to end, as a runtime that does
// not bound its backend's calls would. Everything else goes to the real
// gRPC client.
type observedRuntime struct {
	runtime.Runtime
	starts atomic.Int64
	// inspects counts InspectTask calls.
	inspects atomic.Int64
	gate     chan struct{}
	hung     atomic.Bool
	// down, when set, is the error StartTask answers with, as the host's
	// connection does while the plugin restarts.
	down atomic.Pointer[error]
}

func (o *observedRuntime) StartTask(ctx context.Context, spec runtime.TaskSpec) (runtime.TaskHandle, runtime.TaskStatus, error) {
	o.starts.Add(1)
	if err := o.down.Load(); err != nil {
		return runtime.TaskHandle{}, runtime.TaskStatus{}, *err
	}
	if o.hung.Load() {
		<-ctx.Done()
		return runtime.TaskHandle{}, runtime.TaskStatus{}, ctx.Err()
	}
	return o.Runtime.StartTask(ctx, spec)
}

func (o *observedRuntime) InspectTask(ctx context.Context, id string) (runtime.TaskStatus, error) {
	o.inspects.Add(1)
	return o.Runtime.InspectTask(ctx, id)
}

func (o *observedRuntime) Health(ctx context.Context) error {
	if o.hung.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return o.Runtime.Health(ctx)
}

func (o *observedRuntime) EnsureImage(ctx context.Context, ref string, alwaysPull bool) (runtime.Image, error) {
	if ref == slowImage {
		select {
		case <-o.gate:
		case <-ctx.Done():
			return runtime.Image{}, ctx.Err()
		}
	}
	return o.Runtime.EnsureImage(ctx, ref, alwaysPull)
}

// env is a real manager (Raft, FSM, store-bolt, dispatcher over gRPC) and a
// FakeRuntime served over a real gRPC connection.
type env struct {
	m       *dispatchertest.Manager
	fake    *runtimetest.FakeRuntime
	rt      *observedRuntime
	dataDir string
}

func newEnv(t *testing.T, opts dispatchertest.Options) *env {
	t.Helper()
	fake := runtimetest.NewFakeRuntime(image, slowImage)
	conn := sdk.TestConn(t, fake, runtime.Register(fake))
	// Close before TestConn's own cleanup (see runtimetest.Run).
	t.Cleanup(func() { conn.Close() })
	return &env{
		m:       dispatchertest.Start(t, opts),
		fake:    fake,
		rt:      &observedRuntime{Runtime: runtime.NewClient(conn), gate: make(chan struct{})},
		dataDir: t.TempDir(),
	}
}

// runningWorker is a worker whose Run goroutine the test controls.
type runningWorker struct {
	*worker.Worker
	stop func()
}

func (e *env) startWorker(t *testing.T, tweak func(*worker.Options)) *runningWorker {
	t.Helper()
	opts := worker.Options{
		NodeID:       nodeID,
		NodeName:     "worker-1",
		Addr:         "10.0.0.2:7946",
		Labels:       map[string]string{"zone": "edge-1"},
		DataDir:      e.dataDir,
		Runtime:      e.rt,
		Dial:         e.m.Dial,
		Logger:       hclog.New(&hclog.LoggerOptions{Name: "worker", Level: hclog.Warn, Output: os.Stderr}),
		AgentVersion: "test",
		MaxBackoff:   200 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&opts)
	}
	w, err := worker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("worker Run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("worker Run did not return within 20s of cancel")
			}
		})
	}
	t.Cleanup(stop)
	return &runningWorker{Worker: w, stop: stop}
}

func newTask(id string, slot uint64, cmd ...string) *apiv1.Task {
	return &apiv1.Task{
		Id: id, ServiceId: "svc-web", ServiceName: "web", Slot: slot, NodeId: nodeID,
		DesiredState: running, State: assigned, CreatedAt: timestamppb.Now(),
		Spec: &apiv1.ServiceSpec{Name: "web", Image: image, Command: cmd},
	}
}

func (e *env) upsert(ts ...*apiv1.Task) {
	e.m.Apply(&fsmpb.UpsertTasks{Tasks: ts})
}

// setDesired commits a new desired state for a task, as the orchestrator
// would, on top of its current copy.
func (e *env) setDesired(t *testing.T, id string, desired apiv1.TaskState) {
	t.Helper()
	cur, ok := e.m.State.Task(id)
	if !ok {
		t.Fatalf("task %s not found", id)
	}
	c := proto.CloneOf(cur)
	c.DesiredState = desired
	e.upsert(c)
}

func (e *env) waitState(t *testing.T, id string, want apiv1.TaskState) *apiv1.Task {
	t.Helper()
	var last apiv1.TaskState
	dispatchertest.Eventually(t, "task "+id+" "+want.String(), func() bool {
		task, _ := e.m.State.Task(id)
		last = task.GetState()
		if last != want && last != 0 && isTerminal(last) {
			t.Fatalf("task %s reached %v (%s %s), want %v", id, last, task.GetMessage(), task.GetError(), want)
		}
		return last == want
	})
	task, _ := e.m.State.Task(id)
	return task
}

func isTerminal(s apiv1.TaskState) bool {
	return s >= complete
}

func (e *env) inRuntime(id string) bool {
	_, err := e.fake.InspectTask(context.Background(), id)
	return err == nil
}

func (e *env) handleStored(id string) bool {
	_, err := os.Stat(filepath.Join(e.dataDir, "worker", "tasks", id+".json"))
	return err == nil
}

func (e *env) nodeStatus() apiv1.NodeStatus {
	n, _ := e.m.State.Node(nodeID)
	return n.GetStatus()
}

func TestWorkerConvergesAssignedTasks(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	e.startWorker(t, nil)
	dispatchertest.Eventually(t, "node ready", func() bool { return e.nodeStatus() == ready })
	n, _ := e.m.State.Node(nodeID)
	if n.GetLabels()["zone"] != "edge-1" || n.GetResources().GetMemoryBytes() != 1<<30 || n.GetRuntimeVersion() != "fake 0.0.0" || n.GetAddr() != "10.0.0.2:7946" {
		t.Fatalf("registered node: %v", n)
	}

	e.upsert(newTask("sleep-1", 1, "sleep", "3600"), newTask("sleep-2", 2, "sleep", "3600"), newTask("sleep-3", 3, "sleep", "3600"))
	for _, id := range []string{"sleep-1", "sleep-2", "sleep-3"} {
		e.waitState(t, id, running)
		if !e.inRuntime(id) || !e.handleStored(id) {
			t.Fatalf("task %s: in runtime %v, handle stored %v", id, e.inRuntime(id), e.handleStored(id))
		}
	}
	if n := e.rt.starts.Load(); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}

	t.Run("exit codes", func(t *testing.T) {
		e.upsert(newTask("exit-3", 4, "exit", "3"), newTask("exit-0", 5, "exit", "0"))
		got := e.waitState(t, "exit-3", failed)
		if got.GetExitCode() != 3 || !strings.Contains(got.GetError(), "3") {
			t.Fatalf("failed task: exit code %d, error %q", got.GetExitCode(), got.GetError())
		}
		if got := e.waitState(t, "exit-0", complete); got.GetExitCode() != 0 {
			t.Fatalf("complete task exit code %d", got.GetExitCode())
		}
		// Each exit is reported as its event says: the runtime is not
		// asked again.
		if n := e.rt.inspects.Load(); n != 0 {
			t.Fatalf("%d InspectTask calls after exit events, want 0", n)
		}
	})

	t.Run("rejections", func(t *testing.T) {
		missing := newTask("missing-image", 6, "sleep", "1")
		missing.Spec.Image = "example.com/warren/missing:1"
		e.upsert(missing)
		tests := []struct {
			id, wantErr string
		}{
			{"missing-image", "example.com/warren/missing:1"},
		}
		for _, tt := range tests {
			got := e.waitState(t, tt.id, rejected)
			if !strings.Contains(got.GetError(), tt.wantErr) {
				t.Errorf("task %s: error %q does not mention %q", tt.id, got.GetError(), tt.wantErr)
			}
			if e.inRuntime(tt.id) {
				t.Errorf("rejected task %s is in the runtime", tt.id)
			}
		}
	})

	t.Run("desired shutdown", func(t *testing.T) {
		e.setDesired(t, "sleep-1", shutdown)
		e.waitState(t, "sleep-1", shutdown)
		if e.inRuntime("sleep-1") || e.handleStored("sleep-1") {
			t.Fatalf("after shutdown: in runtime %v, handle stored %v", e.inRuntime("sleep-1"), e.handleStored("sleep-1"))
		}
		// An exited task the manager is done with is destroyed, and keeps
		// the state it ended in.
		e.setDesired(t, "exit-3", shutdown)
		dispatchertest.Eventually(t, "exited task destroyed", func() bool { return !e.inRuntime("exit-3") && !e.handleStored("exit-3") })
		if got, _ := e.m.State.Task("exit-3"); got.GetState() != failed {
			t.Fatalf("exit-3 is %v after its shutdown, want FAILED", got.GetState())
		}
	})

	t.Run("removed by the manager", func(t *testing.T) {
		e.m.Apply(&fsmpb.RemoveTasks{Ids: []string{"sleep-2"}})
		dispatchertest.Eventually(t, "removed task destroyed", func() bool { return !e.inRuntime("sleep-2") && !e.handleStored("sleep-2") })
	})

	if !e.inRuntime("sleep-3") {
		t.Fatal("an untouched task stopped running")
	}
}

func TestWorkerBatchesStatusReports(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	// A long report window: the first reports after the quiet spell go up
	// at once, and all five starts within the window after them in one
	// message.
	e.startWorker(t, func(o *worker.Options) { o.ReportBatchWindow = 300 * time.Millisecond })
	dispatchertest.Eventually(t, "node ready", func() bool { return e.nodeStatus() == ready })

	sub := e.m.Events.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "task" }, 1024)
	defer sub.Close()
	ids := []string{"b-1", "b-2", "b-3", "b-4", "b-5"}
	var ts []*apiv1.Task
	for i, id := range ids {
		ts = append(ts, newTask(id, uint64(i+1), "sleep", "3600"))
	}
	e.upsert(ts...)
	index := map[string]uint64{}
	first := map[string]uint64{} // the index of each task's first report
	states := map[string][]apiv1.TaskState{}
	deadline := time.After(20 * time.Second)
	for len(index) < len(ids) {
		select {
		case ev := <-sub.C:
			st := ev.GetTask().GetState()
			states[ev.GetId()] = append(states[ev.GetId()], st)
			if _, ok := first[ev.GetId()]; !ok && st != assigned {
				first[ev.GetId()] = ev.GetIndex()
			}
			if st == running {
				index[ev.GetId()] = ev.GetIndex()
			}
		case <-deadline:
			t.Fatalf("not all tasks running: %v", states)
		}
	}
	for _, id := range ids {
		if index[id] != index[ids[0]] {
			t.Fatalf("RUNNING committed at indexes %v: want one Raft entry", index)
		}
		// Only the latest report of a window goes up: ASSIGNED, then what
		// the first message carried (if it carried the task), then RUNNING.
		got := states[id]
		if len(got) < 2 || len(got) > 3 || got[0] != assigned || got[len(got)-1] != running {
			t.Errorf("task %s went through %v, want [ASSIGNED (PREPARING|STARTING) RUNNING]", id, got)
		}
	}
	// The first message did not wait for the window: it was committed
	// before the batch of RUNNING reports.
	if f := slices.Min(slices.Collect(maps.Values(first))); f >= index[ids[0]] {
		t.Fatalf("first report committed at index %d, the RUNNING batch at %d: want the first report sent at once", f, index[ids[0]])
	}
}

func TestWorkerRestartRecoversTasks(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	w := e.startWorker(t, nil)
	e.upsert(newTask("keep", 1, "sleep", "3600"), newTask("dies", 2, "sleep", "3600"), newTask("vanishes", 3, "sleep", "3600"), newTask("unwanted", 4, "sleep", "3600"))
	for _, id := range []string{"keep", "dies", "vanishes", "unwanted"} {
		e.waitState(t, id, running)
	}
	w.stop()
	dispatchertest.Eventually(t, "node down once the worker is gone", func() bool { return e.nodeStatus() == down })

	// While the worker is away: one task exits, one disappears from the
	// runtime, one is no longer wanted, one is newly assigned.
	ctx := context.Background()
	if _, err := e.fake.StopTask(ctx, "dies", 0); err != nil {
		t.Fatal(err)
	}
	if err := e.fake.DestroyTask(ctx, "vanishes", true); err != nil {
		t.Fatal(err)
	}
	e.m.Apply(&fsmpb.RemoveTasks{Ids: []string{"unwanted"}})
	e.upsert(newTask("new", 5, "sleep", "3600"))
	startsBefore := e.rt.starts.Load()

	w2 := e.startWorker(t, nil)
	dispatchertest.Eventually(t, "node ready again", func() bool { return e.nodeStatus() == ready })
	e.waitState(t, "new", running)
	if got := e.waitState(t, "dies", failed); got.GetExitCode() != 143 {
		t.Fatalf("task that exited while the worker was away: exit code %d", got.GetExitCode())
	}
	if got := e.waitState(t, "vanishes", failed); !strings.Contains(got.GetError(), "lost after restart") {
		t.Fatalf("vanished task: error %q", got.GetError())
	}
	dispatchertest.Eventually(t, "unwanted task destroyed", func() bool { return !e.inRuntime("unwanted") && !e.handleStored("unwanted") })
	dispatchertest.Eventually(t, "keep recovered", func() bool {
		for _, lt := range w2.LocalTasks() {
			if lt.ID == "keep" {
				return lt.State == running && lt.HasHandle
			}
		}
		return false
	})
	if got, _ := e.m.State.Task("keep"); got.GetState() != running || !e.inRuntime("keep") {
		t.Fatalf("kept task: %v, in runtime %v", got.GetState(), e.inRuntime("keep"))
	}
	if n := e.rt.starts.Load() - startsBefore; n != 1 {
		t.Fatalf("%d starts after the restart, want 1 (only the new task)", n)
	}
}

func TestWorkerReconnectsByItself(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	e.startWorker(t, nil)
	e.upsert(newTask("before", 1, "sleep", "3600"))
	e.waitState(t, "before", running)

	tests := []struct {
		name  string
		cut   func()
		after string
	}{
		{"connection lost", e.m.RestartServer, "after-restart"},
		{"manager disconnects", func() { e.m.Dispatcher.Disconnect(nodeID) }, "after-disconnect"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := e.m.Events.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "node" && ev.GetId() == nodeID }, 100)
			defer sub.Close()
			tt.cut()
			// The worker opens a new session by itself, well within the
			// TTL: the new task reaches it, and its node is never DOWN.
			e.upsert(newTask(tt.after, uint64(i+2), "sleep", "3600"))
			e.waitState(t, tt.after, running)
			if got, _ := e.m.State.Task("before"); got.GetState() != running || !e.inRuntime("before") {
				t.Fatalf("a task stopped while the worker reconnected: %v", got.GetState())
			}
			for {
				select {
				case ev := <-sub.C:
					if ev.GetNode().GetStatus() == down {
						t.Fatal("the node was marked down while its worker reconnected within the TTL")
					}
					continue
				default:
				}
				break
			}
		})
	}
	if n := e.rt.starts.Load(); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}
}

func TestWorkerHonorsNotBefore(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	e.startWorker(t, nil)
	notBefore := time.Now().Add(400 * time.Millisecond)
	task := newTask("delayed", 1, "sleep", "3600")
	task.NotBefore = timestamppb.New(notBefore)
	e.upsert(task)
	e.waitState(t, "delayed", running)
	st, err := e.fake.InspectTask(context.Background(), "delayed")
	if err != nil {
		t.Fatal(err)
	}
	if st.StartedAt.Before(notBefore) {
		t.Fatalf("started at %v, before not_before %v", st.StartedAt, notBefore)
	}
}

func TestWorkerSlowPullBlocksNothingElse(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	e.startWorker(t, nil)
	slow := newTask("slow", 1, "sleep", "3600")
	slow.Spec.Image = slowImage
	e.upsert(slow)
	e.waitState(t, "slow", preparing)
	e.upsert(newTask("fast", 2, "sleep", "3600"))
	e.waitState(t, "fast", running)

	// The manager gives up on the slow one: the pull is abandoned.
	e.setDesired(t, "slow", shutdown)
	e.waitState(t, "slow", shutdown)
	if e.inRuntime("slow") {
		t.Fatal("an abandoned task was started")
	}
}

func TestWorkerDestroysOrphans(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	ctx := context.Background()
	if _, err := e.fake.EnsureImage(ctx, image, false); err != nil {
		t.Fatal(err)
	}
	// Left by an agent that died before storing the handle, say.
	if _, _, err := e.fake.StartTask(ctx, runtime.TaskSpec{TaskID: "orphan", Image: image, Command: []string{"sleep", "3600"}}); err != nil {
		t.Fatal(err)
	}
	e.startWorker(t, nil)
	dispatchertest.Eventually(t, "orphan destroyed", func() bool { return !e.inRuntime("orphan") })
}

func TestWorkerStartReplacesTaskWithoutHandle(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	ctx := context.Background()
	if _, err := e.fake.EnsureImage(ctx, image, false); err != nil {
		t.Fatal(err)
	}
	// The same ID exists in the runtime, but no handle was stored.
	if _, _, err := e.fake.StartTask(ctx, runtime.TaskSpec{TaskID: "half-started", Image: image, Command: []string{"sleep", "3600"}}); err != nil {
		t.Fatal(err)
	}
	e.upsert(newTask("half-started", 1, "sleep", "3600"))
	e.startWorker(t, nil)
	e.waitState(t, "half-started", running)
	if !e.handleStored("half-started") {
		t.Fatal("no handle stored")
	}
}

func TestNewChecksOptions(t *testing.T) {
	dial := func(context.Context) (apiv1.DispatcherClient, error) { return nil, errors.New("unused") }
	rt := runtime.Runtime(&observedRuntime{})
	tests := []struct {
		name string
		opts worker.Options
	}{
		{"no node", worker.Options{DataDir: t.TempDir(), Runtime: rt, Dial: dial}},
		{"no data dir", worker.Options{NodeID: "n", NodeName: "n", Runtime: rt, Dial: dial}},
		{"no runtime", worker.Options{NodeID: "n", NodeName: "n", DataDir: t.TempDir(), Dial: dial}},
		{"no dial", worker.Options{NodeID: "n", NodeName: "n", DataDir: t.TempDir(), Runtime: rt}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := worker.New(tt.opts); !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("New = %v, want ErrInvalidArgument", err)
			}
		})
	}
}

// runtimeCondition returns the message of the node's runtime condition, ""
// when there is none.
func (e *env) runtimeCondition() string {
	n, _ := e.m.State.Node(nodeID)
	for _, c := range n.GetConditions() {
		if c.GetType() == "runtime" {
			return c.GetMessage()
		}
	}
	return ""
}

// TestWorkerRuntimeDoesNotAnswer: a runtime whose calls hang (StartTask,
// Health) makes the task FAILED within runtime_timeout, naming the runtime,
// and the node gets a runtime condition; a runtime that answers that it is
// unhealthy shows its own words; once it answers again the condition
// clears and tasks run.
func TestWorkerRuntimeDoesNotAnswer(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	e.rt.hung.Store(true)
	e.startWorker(t, func(o *worker.Options) {
		o.RuntimeTimeout = 300 * time.Millisecond
		o.HeartbeatPeriod = 100 * time.Millisecond
	})
	e.upsert(newTask("stuck", 1, "sleep", "3600"))
	task := e.waitState(t, "stuck", failed)
	if want := "runtime fake 0.0.0 did not answer StartTask within 300ms"; task.GetError() != want {
		t.Errorf("task error = %q, want %q", task.GetError(), want)
	}
	dispatchertest.Eventually(t, "the node's runtime condition", func() bool {
		return e.runtimeCondition() == "runtime fake 0.0.0 did not answer a health check within 300ms"
	})

	// Answering, but unhealthy: its own words.
	e.fake.SetHealth(errors.New("the backend is frozen"))
	e.rt.hung.Store(false)
	dispatchertest.Eventually(t, "the runtime's own words in the condition", func() bool {
		return strings.HasSuffix(e.runtimeCondition(), "the backend is frozen")
	})

	e.fake.SetHealth(nil)
	dispatchertest.Eventually(t, "the runtime condition clears", func() bool {
		return e.runtimeCondition() == ""
	})
	e.upsert(newTask("after", 2, "sleep", "3600"))
	e.waitState(t, "after", running)
}

// TestWorkerTaskSaysWhyItWaits: a task whose start the runtime plugin cannot
// take (it is down, crash-looping) is retried, and its row says why it
// waits, in the plugin host's own words; once the plugin is back it runs.
func TestWorkerTaskSaysWhyItWaits(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	restarting := fmt.Errorf(`runtime plugin "runtime-containerd" unavailable: restarting (attempt 1): %w`, sdk.ErrPluginUnavailable)
	e.rt.down.Store(&restarting)
	e.startWorker(t, nil)
	e.upsert(newTask("held", 1, "sleep", "3600"))
	says := func(what, part string) {
		t.Helper()
		dispatchertest.Eventually(t, what, func() bool {
			tk, ok := e.m.State.Task("held")
			return ok && tk.GetState() < running && strings.HasPrefix(tk.GetMessage(), "waiting for the runtime: ") && strings.Contains(tk.GetMessage(), part)
		})
	}
	says("the held task to say why it waits", "restarting (attempt 1)")
	// A new reason on a task whose state has not moved is committed too.
	looping := fmt.Errorf(`runtime plugin "runtime-containerd" unavailable: crash-looping: its process was lost 3 times in a row, each within 1m0s of its start; last: exit status 2; restarting (attempt 4): %w`, sdk.ErrPluginUnavailable)
	e.rt.down.Store(&looping)
	says("the held task to say the plugin crash-loops", "crash-looping")
	e.rt.down.Store(nil)
	e.waitState(t, "held", running)
}

// TestWorkerSweepsStaleTaskFiles: the secret and config files of a task
// the manager no longer assigns here (left by an agent that died before it
// removed them) are removed when the worker starts; an assigned task's stay.
func TestWorkerSweepsStaleTaskFiles(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	files := t.TempDir()
	stale := filepath.Join(files, "stale-task", "secret", "token")
	kept := filepath.Join(files, "kept", "config", "app")
	for _, p := range []string{stale, kept} {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	e.upsert(newTask("kept", 1, "sleep", "3600"))
	e.startWorker(t, func(o *worker.Options) { o.FilesDir = files })
	e.waitState(t, "kept", running)
	dispatchertest.Eventually(t, "stale task files removed", func() bool {
		_, err := os.Stat(filepath.Dir(filepath.Dir(stale)))
		return errors.Is(err, os.ErrNotExist)
	})
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the files of an assigned task went: %v", err)
	}
}

// TestRedirectedReconnectsAtOnce: session attempts refused with a redirect
// (a follower naming the leader, right after an election) are retried
// after MinBackoff each, the backoff not growing: twelve in a row would
// otherwise have doubled it up to MaxBackoff (2 s here, waits of 1 – 2 s).
func TestRedirectedReconnectsAtOnce(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	errRedirect := errors.New("not the leader; the leader is elsewhere")
	var (
		mu    sync.Mutex
		dials []time.Time
	)
	e.startWorker(t, func(o *worker.Options) {
		o.MinBackoff, o.MaxBackoff = 5*time.Millisecond, 2*time.Second
		o.Redirected = func(err error) bool { return errors.Is(err, errRedirect) }
		o.Dial = func(ctx context.Context) (apiv1.DispatcherClient, error) {
			mu.Lock()
			dials = append(dials, time.Now())
			n := len(dials)
			mu.Unlock()
			if n <= 12 {
				return nil, errRedirect
			}
			return e.m.Dial(ctx)
		}
	})
	dispatchertest.Eventually(t, "the node READY after the redirects", func() bool { return e.nodeStatus() == apiv1.NodeStatus_NODE_STATUS_READY })
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < 13 && i < len(dials); i++ {
		if gap := dials[i].Sub(dials[i-1]); gap >= time.Second {
			t.Fatalf("attempt %d came %s after the redirect before it: the backoff grew", i+1, gap)
		}
	}
}
