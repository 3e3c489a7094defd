package schedloop

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/raftnode"
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

var testLogger = hclog.New(&hclog.LoggerOptions{Name: "test", Level: hclog.Warn, Output: os.Stderr})

// roundRobin starts the real scheduler-roundrobin plugin process.
func roundRobin(t testing.TB) scheduler.Scheduler {
	t.Helper()
	p := testutil.StartPlugin(t, testutil.Build(t, "plugins/scheduler-roundrobin"))
	s := scheduler.NewClient(p.Conn)
	if err := s.Configure(context.Background(), []byte("{}")); err != nil {
		t.Fatalf("configure scheduler-roundrobin: %v", err)
	}
	return s
}

// TestSchedule runs one round's decision against the real plugin process
// on a state built in memory.
func TestSchedule(t *testing.T) {
	st := state.New()
	n1 := worker("n1", ready, 0)
	n1.Resources = res(0, 1<<30)
	n2 := worker("n2", ready, apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE)
	n2.Resources = res(0, 1<<30)
	n2.Labels = map[string]string{"zone": "a"}
	n3 := worker("n3", ready, apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN)
	mgr := &apiv1.Node{Id: "m1", Name: "manager", Status: ready}
	for _, n := range []*apiv1.Node{n1, n2, n3, mgr} {
		st.PutNode(n)
	}
	st.PutTasks([]*apiv1.Task{
		on("x1", "n1", tsRunning, nil), on("x2", "n1", tsRunning, nil), on("x3", "n2", tsFailed, nil),
	})

	var batch []*apiv1.Task
	for i := range 4 {
		batch = append(batch, unplaced(fmt.Sprintf("t%d", i), uint64(i+1)))
	}
	zoned := unplaced("zoned", 1, "node.labels.zone==a")
	zoned.ServiceId = "s2"
	nowhere := unplaced("nowhere", 1, "node.labels.zone==mars")
	nowhere.ServiceId = "s3"
	badc := unplaced("badc", 1, "zone")
	badc.ServiceId = "s4"
	huge := unplaced("huge", 1)
	huge.ServiceId = "s5"
	huge.Spec.Reservations = res(0, 2<<30)
	batch = append(batch, zoned, nowhere, badc, huge)
	for i, tk := range batch {
		tk.CreatedAt = timestamppb.New(t0.Add(time.Duration(i) * time.Second))
	}

	l := &loop{Deps: Deps{State: st, Scheduler: roundRobin(t), Logger: testLogger}}
	writes, err := l.schedule(t.Context(), batch, t0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*apiv1.Task{}
	for _, w := range writes {
		got[w.GetId()] = w
	}
	if len(got) != len(batch) {
		t.Fatalf("%d writes for %d tasks: %v", len(got), len(batch), writes)
	}
	perNode := map[string]int{"n1": 2} // x1, x2; x3 finished
	for i := range 4 {
		w := got[fmt.Sprintf("t%d", i)]
		if w.GetState() != tsAssigned {
			t.Fatalf("t%d: %s %q, want ASSIGNED", i, w.GetState(), w.GetMessage())
		}
		perNode[w.GetNodeId()]++
	}
	if got["zoned"].GetNodeId() != "n2" {
		t.Errorf("zoned task on %q, want n2 (zone=a)", got["zoned"].GetNodeId())
	}
	perNode["n2"]++
	// Round-robin spreads the service first, then fills the emptier node:
	// n1 had 2 tasks of another service, n2 none; t0 goes to n2, t1 to n1
	// (no web yet), t2 to the emptier n2, t3 to n1; zoned can only go to n2.
	if perNode["n1"] != 4 || perNode["n2"] != 3 || len(perNode) != 2 {
		t.Errorf("tasks per node = %v, want n1 4, n2 3 and nothing on the draining node or the manager", perNode)
	}
	for id, prefix := range map[string]string{
		"nowhere": "no node satisfies constraint node.labels.zone==mars",
		"badc":    "invalid constraint: ",
		"huge":    "insufficient memory",
	} {
		if w := got[id]; w.GetState() != tsPending || !strings.HasPrefix(w.GetMessage(), prefix) || w.GetNodeId() != "" {
			t.Errorf("%s: %s on %q with %q, want PENDING with a message starting %q", id, w.GetState(), w.GetNodeId(), w.GetMessage(), prefix)
		}
	}
}

// harness is a single manager: real store-bolt process, FSM and Raft on
// loopback, and the scheduling loop with the real round-robin plugin.
type harness struct {
	node  *raftnode.Node
	state *state.State
	bus   *events.Broker
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, func(*Deps) {})
}

// newHarnessWith is newHarness with the loop's Deps changed by set.
func newHarnessWith(t *testing.T, set func(*Deps)) *harness {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	sp := testutil.StartPlugin(t, testutil.Build(t, "plugins/store-bolt"))
	st := store.NewClient(sp.Conn)
	if err := st.Configure(ctx, []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "state.db")))); err != nil {
		t.Fatalf("configure store-bolt: %v", err)
	}
	sched := roundRobin(t)
	view := state.New()
	bus := events.NewBroker()
	f, err := fsm.New(ctx, st, view, bus, testLogger)
	if err != nil {
		t.Fatalf("fsm: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	node, err := raftnode.Open(raftnode.Config{ID: "n1", Dir: filepath.Join(dir, "raft"), BindAddr: addr, Advertise: addr, FSM: f, Logger: testLogger})
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

	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	deps := Deps{State: view, Events: bus, Raft: node, Scheduler: sched, Logger: testLogger}
	set(&deps)
	wg.Go(func() { runErr = Run(runCtx, deps) })
	t.Cleanup(func() {
		stop()
		wg.Wait()
		if runErr != nil {
			t.Errorf("Run: %v", runErr)
		}
	})
	return &harness{node: node, state: view, bus: bus}
}

func (h *harness) apply(t *testing.T, cmd fsm.Command) {
	t.Helper()
	if _, err := h.node.Apply(t.Context(), cmd); err != nil {
		t.Fatalf("apply %T: %v", cmd, err)
	}
}

// waitFor re-checks cond after every applied change until it holds, or
// fails after a deadline.
func (h *harness) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	sub := h.bus.Subscribe(nil, 1<<14)
	defer func() { sub.Close() }()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case _, ok := <-sub.C:
			if !ok {
				sub = h.bus.Subscribe(nil, 1<<14)
			}
		case <-deadline.C:
			var b strings.Builder
			for _, tk := range h.state.Tasks(state.TaskFilter{}) {
				fmt.Fprintf(&b, "\t%s %s node %q message %q\n", tk.GetId(), tk.GetState(), tk.GetNodeId(), tk.GetMessage())
			}
			t.Fatalf("timed out waiting for %s; tasks:\n%s", what, b.String())
		}
	}
}

func (h *harness) task(id string) *apiv1.Task {
	tk, _ := h.state.Task(id)
	return tk
}

func TestRun(t *testing.T) {
	h := newHarness(t)
	tasks := []*apiv1.Task{unplaced("a", 1), unplaced("b", 2), unplaced("c", 3), unplaced("edge", 1, "node.labels.zone==edge")}
	tasks[3].ServiceId = "s2"
	h.apply(t, &fsmpb.UpsertTasks{Tasks: tasks})

	h.waitFor(t, "every task pending for want of workers", func() bool {
		for _, tk := range tasks {
			if cur := h.task(tk.GetId()); cur.GetState() != tsPending || !strings.HasPrefix(cur.GetMessage(), "no ready worker") {
				return false
			}
		}
		return true
	})

	for _, id := range []string{"w1", "w2"} {
		h.apply(t, &fsmpb.UpsertNode{Node: worker(id, ready, 0)})
	}
	h.waitFor(t, "a, b, c assigned; edge pending on its constraint", func() bool {
		for _, id := range []string{"a", "b", "c"} {
			cur := h.task(id)
			if cur.GetState() != tsAssigned || cur.GetMessage() != "" || (cur.GetNodeId() != "w1" && cur.GetNodeId() != "w2") {
				return false
			}
		}
		edge := h.task("edge")
		return edge.GetState() == tsPending && strings.Contains(edge.GetMessage(), "node.labels.zone==edge")
	})

	// A node that satisfies the constraint joins: the pending task goes there.
	edgeNode := worker("w3", ready, 0)
	edgeNode.Labels = map[string]string{"zone": "edge"}
	h.apply(t, &fsmpb.UpsertNode{Node: edgeNode})
	h.waitFor(t, "edge placed on w3", func() bool {
		cur := h.task("edge")
		return cur.GetState() == tsAssigned && cur.GetNodeId() == "w3"
	})

	// A new task after that is placed on its own event.
	late := unplaced("late", 4)
	h.apply(t, &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{late}})
	h.waitFor(t, "late placed", func() bool { return h.task("late").GetState() == tsAssigned })
}

// TestRunRetriesWhenRoomIsFreed: a task pending for want of memory is
// placed once a task on the full node finishes.
func TestRunRetriesWhenRoomIsFreed(t *testing.T) {
	h := newHarness(t)
	n := worker("w1", ready, 0)
	n.Resources = res(0, 1<<30)
	h.apply(t, &fsmpb.UpsertNode{Node: n})
	big := on("big", "w1", tsRunning, res(0, 768<<20))
	h.apply(t, &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{big}})
	wants := unplaced("wants", 1)
	wants.Spec.Reservations = res(0, 512<<20)
	h.apply(t, &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{wants}})
	h.waitFor(t, "wants pending on memory", func() bool {
		cur := h.task("wants")
		return cur.GetState() == tsPending && strings.Contains(cur.GetMessage(), "insufficient memory")
	})

	finished := proto.CloneOf(h.task("big"))
	finished.State = tsFailed
	h.apply(t, &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{finished}})
	h.waitFor(t, "wants placed once big finished", func() bool {
		cur := h.task("wants")
		return cur.GetState() == tsAssigned && cur.GetNodeId() == "w1"
	})
}

// TestScheduleWhenThePluginIsGone: a batch the scheduler plugin cannot be
// asked about (its process was killed) stays unplaced, and every task of
// it says why.
func TestScheduleWhenThePluginIsGone(t *testing.T) {
	p := testutil.StartPlugin(t, testutil.Build(t, "plugins/scheduler-roundrobin"))
	s := scheduler.NewClient(p.Conn)
	if err := s.Configure(t.Context(), []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := state.New()
	st.PutNode(worker("n1", ready, 0))
	batch := []*apiv1.Task{unplaced("t1", 1), unplaced("t2", 2)}
	l := &loop{Deps: Deps{State: st, Scheduler: s, Logger: testLogger}}
	writes, err := l.schedule(t.Context(), batch, t0)
	if err == nil {
		t.Fatal("schedule with a dead plugin: no error, want one (the round is retried)")
	}
	if len(writes) != 2 {
		t.Fatalf("writes %v, want both tasks marked", writes)
	}
	for _, w := range writes {
		if w.GetState() != tsPending || w.GetNodeId() != "" || !strings.HasPrefix(w.GetMessage(), SchedulerFailedPrefix) {
			t.Errorf("%s: %s on %q, message %q; want PENDING saying the scheduler plugin failed", w.GetId(), w.GetState(), w.GetNodeId(), w.GetMessage())
		}
	}
}

// TestScheduleHonoursRuntimeCapabilities: a node whose runtime declares no
// image support is never given a task that runs an image, and a task that
// no runtime can run says which capability is missing; a task without an
// image may go there.
func TestScheduleHonoursRuntimeCapabilities(t *testing.T) {
	st := state.New()
	raw := worker("raw", ready, 0) // processes on the host: no images, no namespaces
	raw.Capabilities = []string{string(runtime.CapLimitMemory)}
	st.PutNode(raw)
	full := worker("full", ready, apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE)
	st.PutNode(full)
	l := &loop{Deps: Deps{State: st, Scheduler: roundRobin(t), Logger: testLogger}}

	imaged := unplaced("imaged", 1)
	hostProc := unplaced("host-proc", 1)
	hostProc.ServiceId = "s2"
	hostProc.Spec = &apiv1.ServiceSpec{Name: "tool", Command: []string{"/usr/bin/tool"}, NetworkMode: apiv1.NetworkMode_NETWORK_MODE_HOST}
	writes, err := l.schedule(t.Context(), []*apiv1.Task{imaged, hostProc}, t0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*apiv1.Task{}
	for _, w := range writes {
		got[w.GetId()] = w
	}
	if w := got["imaged"]; w.GetNodeId() != "" || !strings.Contains(w.GetMessage(), "no ready worker's runtime supports images") {
		t.Errorf("a task with an image: on %q, message %q; want it pending, naming the capability", w.GetNodeId(), w.GetMessage())
	}
	if w := got["host-proc"]; w.GetNodeId() != "raw" {
		t.Errorf("a host process without an image: on %q (%q), want the raw node", w.GetNodeId(), w.GetMessage())
	}
}
