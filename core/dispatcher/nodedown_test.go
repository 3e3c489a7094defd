package dispatcher_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/orchestrator"
	"github.com/warrenorch/warren/core/schedloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/runtimetest"
	"github.com/warrenorch/warren/sdk/scheduler"
	"github.com/warrenorch/warren/test/testutil"
)

const appImage = "example.com/warren/app:1"

// startLoops runs the orchestrator and the scheduling loop (with the real
// scheduler-roundrobin plugin) on m until the test ends.
func startLoops(t *testing.T, m *dispatchertest.Manager) {
	t.Helper()
	proc := testutil.StartPlugin(t, testutil.Build(t, "plugins/scheduler-roundrobin"))
	sched := scheduler.NewClient(proc.Conn)
	if err := sched.Configure(context.Background(), []byte("{}")); err != nil {
		t.Fatalf("configure scheduler-roundrobin: %v", err)
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "loops", Level: hclog.Warn, Output: os.Stderr})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := orchestrator.Run(ctx, orchestrator.Deps{State: m.State, Events: m.Events, Raft: m.Raft, Logger: logger}); err != nil {
			t.Errorf("orchestrator: %v", err)
		}
	})
	wg.Go(func() {
		if err := schedloop.Run(ctx, schedloop.Deps{State: m.State, Events: m.Events, Raft: m.Raft, Scheduler: sched, Logger: logger}); err != nil {
			t.Errorf("scheduling loop: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// testWorker is a real worker with its own FakeRuntime (served over gRPC)
// and data dir, whose connections to the dispatcher the test can cut.
type testWorker struct {
	id, name string
	fake     *runtimetest.FakeRuntime
	rt       runtime.Runtime
	dataDir  string
	// cut makes every dial fail, as a network partition would.
	cut atomic.Bool
	m   *dispatchertest.Manager

	stop func()
}

func newTestWorker(t *testing.T, m *dispatchertest.Manager, id string) *testWorker {
	t.Helper()
	fake := runtimetest.NewFakeRuntime(appImage)
	conn := sdk.TestConn(t, fake, runtime.Register(fake))
	t.Cleanup(func() { conn.Close() })
	return &testWorker{id: id, name: "node-" + id, fake: fake, rt: runtime.NewClient(conn), dataDir: t.TempDir(), m: m}
}

// start runs a new Worker on w's runtime and data dir until stop or the
// end of the test.
func (w *testWorker) start(t *testing.T) {
	t.Helper()
	wk, err := worker.New(worker.Options{
		NodeID: w.id, NodeName: w.name, DataDir: w.dataDir, Runtime: w.rt,
		Dial: func(ctx context.Context) (apiv1.DispatcherClient, error) {
			if w.cut.Load() {
				return nil, errors.New("network unreachable")
			}
			return w.m.Dial(ctx)
		},
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "worker-" + w.id, Level: hclog.Warn, Output: os.Stderr}),
		MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := wk.Run(ctx); err != nil {
			t.Errorf("worker %s: %v", w.id, err)
		}
	}()
	var once sync.Once
	w.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(w.stop)
}

func (w *testWorker) runs(id string) bool {
	st, err := w.fake.InspectTask(context.Background(), id)
	return err == nil && st.State == runtime.StateRunning
}

func (w *testWorker) holds(id string) bool {
	_, err := w.fake.InspectTask(context.Background(), id)
	return err == nil
}

// TestNodeBackAfterDownStopsOrphanedTasks: a node is declared down while its
// worker still runs a task; the orchestrator orphans the task and runs a
// replacement on another node; when the node comes back, the full
// assignment set it gets makes its worker stop the orphaned task, so only
// the replacement keeps running.
func TestNodeBackAfterDownStopsOrphanedTasks(t *testing.T) {
	tests := []struct {
		name string
		// lose makes the node lose its session while the task keeps
		// running; back brings it back.
		lose, back func(t *testing.T, w *testWorker)
	}{
		{
			name: "network partition",
			lose: func(t *testing.T, w *testWorker) {
				w.cut.Store(true)
				w.m.Dispatcher.Disconnect(w.id)
			},
			back: func(t *testing.T, w *testWorker) { w.cut.Store(false) },
		},
		{
			name: "agent restart",
			lose: func(t *testing.T, w *testWorker) { w.stop() },
			back: func(t *testing.T, w *testWorker) { w.start(t) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := dispatchertest.Start(t, dispatchertest.Options{})
			startLoops(t, m)
			a := newTestWorker(t, m, "a")
			a.start(t)
			dispatchertest.Eventually(t, "node a ready", func() bool { return nodeStatus(m, "a") == ready })

			now := timestamppb.Now()
			svc := m.Apply(&fsmpb.CreateService{Service: &apiv1.Service{
				Id: api.NewID(), CreatedAt: now, UpdatedAt: now,
				Spec: &apiv1.ServiceSpec{Name: "web", Image: appImage, Command: []string{"sleep", "3600"}, Replicas: 1},
			}}).(*apiv1.Service)
			var first *apiv1.Task
			dispatchertest.Eventually(t, "the task running on node a", func() bool {
				for _, tk := range m.State.Tasks(state.TaskFilter{ServiceID: svc.GetId()}) {
					if tk.GetNodeId() == "a" && tk.GetState() == running {
						first = tk
						return a.runs(tk.GetId())
					}
				}
				return false
			})
			b := newTestWorker(t, m, "b")
			b.start(t)
			dispatchertest.Eventually(t, "node b ready", func() bool { return nodeStatus(m, "b") == ready })

			tt.lose(t, a)
			dispatchertest.Eventually(t, "node a down", func() bool { return nodeStatus(m, "a") == down })
			var second *apiv1.Task
			dispatchertest.Eventually(t, "the task orphaned and its replacement running on node b", func() bool {
				old, _ := m.State.Task(first.GetId())
				if old.GetState() != apiv1.TaskState_TASK_STATE_ORPHANED {
					return false
				}
				for _, tk := range m.State.Tasks(state.TaskFilter{ServiceID: svc.GetId(), NodeID: "b"}) {
					if tk.GetState() == running && b.runs(tk.GetId()) {
						second = tk
						return true
					}
				}
				return false
			})
			if !a.runs(first.GetId()) {
				t.Fatal("the orphaned task stopped on node a while it was cut off; the test proves nothing")
			}
			if old, _ := m.State.Task(first.GetId()); old.GetDesiredState() != shutdown || old.GetMessage() == "" {
				t.Errorf("orphaned task: desired %v, message %q", old.GetDesiredState(), old.GetMessage())
			}

			tt.back(t, a)
			dispatchertest.Eventually(t, "node a ready again", func() bool { return nodeStatus(m, "a") == ready })
			dispatchertest.Eventually(t, "the orphaned task stopped and destroyed on node a", func() bool { return !a.holds(first.GetId()) })
			old, _ := m.State.Task(first.GetId())
			if old.GetState() != apiv1.TaskState_TASK_STATE_ORPHANED {
				t.Errorf("the orphaned task's state became %v: ORPHANED is final", old.GetState())
			}
			if cur, _ := m.State.Task(second.GetId()); cur.GetState() != running || cur.GetDesiredState() != running || !b.runs(second.GetId()) {
				t.Errorf("replacement: state %v desired %v", cur.GetState(), cur.GetDesiredState())
			}
			// Back to active is no reason to move anything back.
			var live []string
			for _, tk := range m.State.Tasks(state.TaskFilter{ServiceID: svc.GetId()}) {
				if tk.GetDesiredState() == running {
					live = append(live, fmt.Sprintf("%s on %s", tk.GetId(), tk.GetNodeId()))
				}
			}
			if len(live) != 1 {
				t.Errorf("wanted tasks after node a came back: %v, want only the replacement", live)
			}
		})
	}
}
