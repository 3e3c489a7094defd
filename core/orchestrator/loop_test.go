package orchestrator_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/orchestrator"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/schedloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/scheduler"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// cluster is a single-manager control plane: a real store-bolt process,
// the FSM, Raft on loopback TCP, and the scheduler-roundrobin process.
type cluster struct {
	node      *raftnode.Node
	state     *state.State
	bus       *events.Broker
	scheduler scheduler.Scheduler
	logger    hclog.Logger
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	logger := hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn, Output: os.Stderr})

	sp := testutil.StartPlugin(t, testutil.Build(t, "plugins/store-bolt"))
	st := store.NewClient(sp.Conn)
	if err := st.Configure(ctx, []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "state.db")))); err != nil {
		t.Fatalf("configure store-bolt: %v", err)
	}
	schedProc := testutil.StartPlugin(t, testutil.Build(t, "plugins/scheduler-roundrobin"))
	sched := scheduler.NewClient(schedProc.Conn)
	if err := sched.Configure(ctx, []byte("{}")); err != nil {
		t.Fatalf("configure scheduler-roundrobin: %v", err)
	}

	view := state.New()
	bus := events.NewBroker()
	f, err := fsm.New(ctx, st, view, bus, logger)
	if err != nil {
		t.Fatalf("fsm: %v", err)
	}
	addr := freeAddr(t)
	node, err := raftnode.Open(raftnode.Config{ID: "n1", Dir: filepath.Join(dir, "raft"), BindAddr: addr, Advertise: addr, FSM: f, Logger: logger})
	if err != nil {
		t.Fatalf("raft: %v", err)
	}
	t.Cleanup(func() {
		if err := node.Shutdown(); err != nil {
			t.Errorf("raft shutdown: %v", err)
		}
		f.Close()
		bus.Close()
	})
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := node.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	return &cluster{node: node, state: view, bus: bus, scheduler: sched, logger: logger}
}

// start runs both loops until the test ends.
func (c *cluster) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		errs <- orchestrator.Run(ctx, orchestrator.Deps{State: c.state, Events: c.bus, Raft: c.node, Logger: c.logger})
	})
	wg.Go(func() {
		errs <- schedloop.Run(ctx, schedloop.Deps{State: c.state, Events: c.bus, Raft: c.node, Scheduler: c.scheduler, Logger: c.logger})
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("loop: %v", err)
			}
		}
	})
}

func (c *cluster) apply(t *testing.T, cmd fsm.Command) any {
	t.Helper()
	out, err := c.node.Apply(t.Context(), cmd)
	if err != nil {
		t.Fatalf("apply %T: %v", cmd, err)
	}
	return out
}

func (c *cluster) addWorker(t *testing.T, name string) string {
	t.Helper()
	id := api.NewID()
	c.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{
		Id: id, Name: name, Role: apiv1.NodeRole_NODE_ROLE_WORKER, Worker: true,
		Status: apiv1.NodeStatus_NODE_STATUS_READY, CreatedAt: timestamppb.Now(),
		Capabilities: allCapabilities(),
	}})
	return id
}

// allCapabilities are the names of every runtime capability: the test
// workers' runtime has them all.
func allCapabilities() []string {
	out := make([]string, len(runtime.Capabilities))
	for i, c := range runtime.Capabilities {
		out[i] = string(c)
	}
	return out
}

func (c *cluster) createService(t *testing.T, name string, replicas uint64) *apiv1.Service {
	t.Helper()
	now := timestamppb.Now()
	return c.apply(t, &fsmpb.CreateService{Service: &apiv1.Service{
		Id: api.NewID(), Spec: &apiv1.ServiceSpec{Name: name, Image: "nginx:1.27", Replicas: replicas},
		CreatedAt: now, UpdatedAt: now,
	}}).(*apiv1.Service)
}

// report writes a task's state as a worker's status report would.
func (c *cluster) report(t *testing.T, id string, s apiv1.TaskState) {
	t.Helper()
	cur, ok := c.state.Task(id)
	if !ok {
		t.Fatalf("task %s is gone", id)
	}
	cur = proto.CloneOf(cur)
	cur.State = s
	cur.UpdatedAt = timestamppb.Now()
	c.apply(t, &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{cur}})
}

// waitFor re-checks cond after every applied change until it holds, or
// fails the test after a deadline.
func (c *cluster) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	sub := c.bus.Subscribe(nil, 1<<14)
	defer func() { sub.Close() }()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case _, ok := <-sub.C:
			if !ok {
				sub = c.bus.Subscribe(nil, 1<<14)
			}
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; tasks:\n%s", what, c.dump())
		}
	}
}

func (c *cluster) dump() string {
	var b strings.Builder
	for _, t := range c.state.Tasks(state.TaskFilter{}) {
		fmt.Fprintf(&b, "\t%s %s slot %d desired %s state %s node %q attempt %d message %q\n", t.GetId(), t.GetServiceName(),
			t.GetSlot(), t.GetDesiredState(), t.GetState(), t.GetNodeId(), t.GetAttempt(), t.GetMessage())
	}
	return b.String()
}

func (c *cluster) tasks(serviceID string, keep func(*apiv1.Task) bool) []*apiv1.Task {
	var out []*apiv1.Task
	for _, t := range c.state.Tasks(state.TaskFilter{ServiceID: serviceID}) {
		if keep(t) {
			out = append(out, t)
		}
	}
	return out
}

func wanted(t *apiv1.Task) bool { return t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING }

func TestLoops(t *testing.T) {
	c := newCluster(t)
	c.start(t)
	nodes := map[string]bool{}
	for i := range 3 {
		nodes[c.addWorker(t, fmt.Sprintf("worker-%d", i))] = true
	}
	svc := c.createService(t, "web", 3)

	c.waitFor(t, "3 tasks assigned to 3 different nodes", func() bool {
		used := map[string]bool{}
		for _, tk := range c.tasks(svc.GetId(), wanted) {
			if tk.GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED && nodes[tk.GetNodeId()] {
				used[tk.GetNodeId()] = true
			}
		}
		return len(used) == 3
	})
	for _, tk := range c.tasks(svc.GetId(), wanted) {
		if tk.GetServiceVersion() != svc.GetVersion() || tk.GetServiceName() != "web" || tk.GetAttempt() != 1 ||
			tk.GetSpec().GetImage() != "nginx:1.27" || len(tk.GetId()) != 24 {
			t.Errorf("task %v does not carry the service's spec, version %d, attempt 1", tk, svc.GetVersion())
		}
	}
	if n := len(c.tasks(svc.GetId(), func(*apiv1.Task) bool { return true })); n != 3 {
		t.Fatalf("%d tasks, want exactly 3:\n%s", n, c.dump())
	}

	// Scale to 1: slots 2 and 3 are to stop.
	spec := proto.CloneOf(svc.GetSpec())
	spec.Replicas = 1
	svc = c.apply(t, &fsmpb.UpdateService{Service: &apiv1.Service{Id: svc.GetId(), Spec: spec, CreatedAt: svc.GetCreatedAt()}, ExpectedVersion: svc.GetVersion()}).(*apiv1.Service)
	c.waitFor(t, "slots 2 and 3 desired SHUTDOWN", func() bool {
		n := 0
		for _, tk := range c.tasks(svc.GetId(), func(tk *apiv1.Task) bool { return !wanted(tk) }) {
			if tk.GetSlot() > 1 {
				n++
			}
		}
		return n == 2
	})
	// The workers stop them: finished, they are removed.
	for _, tk := range c.tasks(svc.GetId(), func(tk *apiv1.Task) bool { return tk.GetSlot() > 1 }) {
		c.report(t, tk.GetId(), apiv1.TaskState_TASK_STATE_SHUTDOWN)
	}
	c.waitFor(t, "scaled-down tasks removed", func() bool {
		return len(c.tasks(svc.GetId(), func(*apiv1.Task) bool { return true })) == 1
	})

	// The remaining task crashes at once: a replacement, attempt 2, not before a backoff.
	first := c.tasks(svc.GetId(), wanted)[0]
	c.report(t, first.GetId(), apiv1.TaskState_TASK_STATE_RUNNING)
	failedAt := time.Now()
	sub := c.bus.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "task" }, 1<<10)
	defer sub.Close()
	c.report(t, first.GetId(), apiv1.TaskState_TASK_STATE_FAILED)
	var replacement *apiv1.Task
	c.waitFor(t, "a replacement of the failed task, assigned", func() bool {
		for _, tk := range c.tasks(svc.GetId(), wanted) {
			if tk.GetId() != first.GetId() && tk.GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED {
				replacement = tk
				return true
			}
		}
		return false
	})
	if replacement.GetSlot() != 1 || replacement.GetAttempt() != 2 {
		t.Errorf("replacement: slot %d attempt %d, want slot 1 attempt 2", replacement.GetSlot(), replacement.GetAttempt())
	}
	if nb := replacement.GetNotBefore(); nb == nil || !nb.AsTime().After(failedAt) {
		t.Errorf("replacement not_before = %v, want after the failure at %v", nb.AsTime(), failedAt)
	}
	if old, _ := c.state.Task(first.GetId()); old.GetDesiredState() != apiv1.TaskState_TASK_STATE_SHUTDOWN || old.GetState() != apiv1.TaskState_TASK_STATE_FAILED {
		t.Errorf("failed task: desired %s state %s, want desired SHUTDOWN, kept FAILED as history", old.GetDesiredState(), old.GetState())
	}
	// The failed task's end and its replacement are one Raft entry.
	var endIndex, createIndex uint64
	for endIndex == 0 || createIndex == 0 {
		var ev *apiv1.Event
		select {
		case ev = <-sub.C: // the replacement is assigned: both events are in
		case <-time.After(10 * time.Second):
			t.Fatalf("no events of the failed task's end and its replacement's creation (indexes %d, %d)", endIndex, createIndex)
		}
		switch {
		case ev.GetId() == first.GetId() && ev.GetTask().GetDesiredState() == apiv1.TaskState_TASK_STATE_SHUTDOWN && endIndex == 0:
			endIndex = ev.GetIndex()
		case ev.GetId() == replacement.GetId() && createIndex == 0: // its first event
			createIndex = ev.GetIndex()
		}
	}
	if endIndex != createIndex {
		t.Errorf("the failed task ended at index %d, its replacement was created at %d: two commits, want one", endIndex, createIndex)
	}

	// Removing the service: its tasks stop, then go.
	c.apply(t, &fsmpb.RemoveService{Id: svc.GetId()})
	c.report(t, replacement.GetId(), apiv1.TaskState_TASK_STATE_SHUTDOWN)
	c.waitFor(t, "every task of the removed service removed", func() bool {
		return len(c.tasks(svc.GetId(), func(*apiv1.Task) bool { return true })) == 0
	})
}

func TestLoopsWithoutWorkers(t *testing.T) {
	c := newCluster(t)
	c.start(t)
	svc := c.createService(t, "api", 2)
	c.waitFor(t, "2 tasks pending for want of workers", func() bool {
		n := 0
		for _, tk := range c.tasks(svc.GetId(), wanted) {
			if tk.GetState() == apiv1.TaskState_TASK_STATE_PENDING && strings.HasPrefix(tk.GetMessage(), "no ready worker") {
				n++
			}
		}
		return n == 2
	})
	// A worker joins: the pending tasks are placed.
	id := c.addWorker(t, "late")
	c.waitFor(t, "pending tasks placed on the new worker", func() bool {
		n := 0
		for _, tk := range c.tasks(svc.GetId(), wanted) {
			if tk.GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED && tk.GetNodeId() == id && tk.GetMessage() == "" {
				n++
			}
		}
		return n == 2
	})
}
