package dispatcher_test

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

const (
	assigned = apiv1.TaskState_TASK_STATE_ASSIGNED
	starting = apiv1.TaskState_TASK_STATE_STARTING
	running  = apiv1.TaskState_TASK_STATE_RUNNING
	failed   = apiv1.TaskState_TASK_STATE_FAILED
	complete = apiv1.TaskState_TASK_STATE_COMPLETE
	shutdown = apiv1.TaskState_TASK_STATE_SHUTDOWN
	ready    = apiv1.NodeStatus_NODE_STATUS_READY
	down     = apiv1.NodeStatus_NODE_STATUS_DOWN
)

// dialer is a dispatchertest.Manager or Server.
type dialer interface {
	Dial(context.Context) (apiv1.DispatcherClient, error)
}

// client is a raw worker session driven by the test.
type client struct {
	t      *testing.T
	stream apiv1.Dispatcher_SessionClient
	cancel context.CancelFunc
	msgs   chan *apiv1.ManagerMessage
	err    chan error
	// specs are the spec references the session was sent (see specsOf).
	specs map[string]bool
}

// open starts a session and sends first (nil: nothing).
func open(t *testing.T, m dialer, first *apiv1.WorkerMessage) *client {
	t.Helper()
	dc, err := m.Dial(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := dc.Session(ctx)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	c := &client{t: t, stream: stream, cancel: cancel, msgs: make(chan *apiv1.ManagerMessage, 100), err: make(chan error, 1)}
	go func() {
		for {
			msg, err := stream.Recv()
			if err != nil {
				c.err <- err
				return
			}
			c.msgs <- msg
		}
	}()
	if first != nil {
		c.send(first)
	}
	return c
}

func register(nodeID, name string) *apiv1.WorkerMessage {
	return &apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Register{Register: &apiv1.RegisterWorker{
		NodeId: nodeID, Name: name, Os: "linux", Arch: "amd64", AgentVersion: "test", RuntimeVersion: "fake 0.0.0",
		Resources: &apiv1.Resources{NanoCpus: 2e9, MemoryBytes: 1 << 30},
		Labels:    map[string]string{"zone": "b", "disk": "ssd"},
		// One attribute key no constraint could name: left out.
		Attributes: map[string]string{"containerd.snapshotter": "overlayfs", "bad key": "x"},
	}}}
}

// connect registers a node and returns the session after SessionInfo.
func connect(t *testing.T, m dialer, nodeID string) *client {
	t.Helper()
	c := open(t, m, register(nodeID, "node-"+nodeID))
	if info := c.next().GetSession(); info == nil || info.GetNodeId() != nodeID || info.GetHeartbeatPeriodMs() <= 0 {
		t.Fatalf("first message is not a SessionInfo for %s: %v", nodeID, info)
	}
	return c
}

func (c *client) send(m *apiv1.WorkerMessage) {
	c.t.Helper()
	if err := c.stream.Send(m); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) next() *apiv1.ManagerMessage {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		return m
	case err := <-c.err:
		c.t.Fatalf("session ended: %v", err)
	case <-time.After(20 * time.Second):
		c.t.Fatal("no message from the dispatcher within 20s")
	}
	return nil
}

func (c *client) assignments() *apiv1.Assignments {
	c.t.Helper()
	a := c.next().GetAssignments()
	if a == nil {
		c.t.Fatal("expected Assignments")
	}
	return a
}

// ended waits for the session to end and returns its status code.
func (c *client) ended() (codes.Code, string) {
	c.t.Helper()
	for {
		select {
		case <-c.msgs:
		case err := <-c.err:
			s := status.Convert(err)
			return s.Code(), s.Message()
		case <-time.After(20 * time.Second):
			c.t.Fatal("session did not end within 20s")
		}
	}
}

func status1(id string, st apiv1.TaskState) *apiv1.TaskStatusUpdate {
	return &apiv1.TaskStatusUpdate{TaskId: id, State: st, Time: timestamppb.Now()}
}

func batch(us ...*apiv1.TaskStatusUpdate) *apiv1.WorkerMessage {
	return &apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Status{Status: &apiv1.TaskStatusBatch{Updates: us}}}
}

func task(id, node string, desired, st apiv1.TaskState) *apiv1.Task {
	return &apiv1.Task{
		Id: id, ServiceId: "svc1", ServiceName: "web", Slot: 1, NodeId: node,
		DesiredState: desired, State: st,
		Spec: &apiv1.ServiceSpec{Name: "web", Image: "img", Command: []string{"sleep", "3600"}},
	}
}

func ids(ts []*apiv1.Task) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.GetId())
	}
	slices.Sort(out)
	return out
}

func nodeStatus(m *dispatchertest.Manager, id string) apiv1.NodeStatus {
	n, _ := m.State.Node(id)
	return n.GetStatus()
}

func TestSessionRefusals(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	tests := []struct {
		name  string
		first *apiv1.WorkerMessage
		want  codes.Code
	}{
		{"heartbeat first", &apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Heartbeat{Heartbeat: &apiv1.Heartbeat{}}}, codes.InvalidArgument},
		{"status first", batch(status1("x", running)), codes.InvalidArgument},
		{"register without node id", register("", "n"), codes.InvalidArgument},
		{"register without name", register("n1", ""), codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := open(t, m, tt.first)
			if code, msg := c.ended(); code != tt.want {
				t.Fatalf("code = %v (%s), want %v", code, msg, tt.want)
			}
		})
	}
	t.Run("register twice", func(t *testing.T) {
		c := connect(t, m, "twice")
		c.send(register("twice", "node-twice"))
		if code, msg := c.ended(); code != codes.InvalidArgument {
			t.Fatalf("code = %v (%s), want InvalidArgument", code, msg)
		}
	})
	t.Run("name taken by another node", func(t *testing.T) {
		connect(t, m, "owner")
		c := open(t, m, register("intruder", "node-owner"))
		if code, msg := c.ended(); code != codes.AlreadyExists {
			t.Fatalf("code = %v (%s), want AlreadyExists", code, msg)
		}
	})
}

func TestSessionNeedsLeadership(t *testing.T) {
	tests := []struct {
		name   string
		leader bool
		run    bool
	}{
		{"follower", false, true},
		// A leader whose Run has not started holds the session first
		// (TestAwaitRunning), then refuses it the same way.
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := dispatcher.New(dispatcher.Deps{Leader: func() bool { return tt.leader }})
			if tt.run {
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { _ = d.Run(ctx); close(done) }()
				t.Cleanup(func() { cancel(); <-done })
			}
			// The refusal comes before the stream is touched.
			err := d.Session(nil)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "not the leader") {
				t.Fatalf("Session = %v, want Unavailable: not the leader", err)
			}
		})
	}
}

func TestRegisterKeepsClusterOwnedFields(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	created := timestamppb.New(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC))
	m.Apply(&fsmpb.UpsertNode{Node: &apiv1.Node{
		Id: "mgr", Name: "node-mgr", Role: apiv1.NodeRole_NODE_ROLE_MANAGER, Status: ready,
		Availability: apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN,
		Labels:       map[string]string{"zone": "a"}, Addr: "10.0.0.1:7946", CreatedAt: created,
	}})
	connect(t, m, "mgr")
	connect(t, m, "fresh")

	n, _ := m.State.Node("mgr")
	if n.GetRole() != apiv1.NodeRole_NODE_ROLE_MANAGER || !n.GetWorker() || n.GetStatus() != ready ||
		n.GetAvailability() != apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN || !n.GetCreatedAt().AsTime().Equal(created.AsTime()) ||
		n.GetAddr() != "10.0.0.1:7946" {
		t.Fatalf("manager node after register: %v", n)
	}
	if n.GetLabels()["zone"] != "a" || n.GetLabels()["disk"] != "ssd" {
		t.Fatalf("labels = %v, want the stored zone=a and the worker's disk=ssd", n.GetLabels())
	}
	if n.GetResources().GetMemoryBytes() != 1<<30 || n.GetOs() != "linux" || n.GetRuntimeVersion() != "fake 0.0.0" || n.GetAgentVersion() != "test" {
		t.Fatalf("reported facts not stored: %v", n)
	}
	if want := map[string]string{"containerd.snapshotter": "overlayfs"}; !maps.Equal(n.GetAttributes(), want) {
		t.Fatalf("attributes = %v, want %v: the valid runtime attribute kept, the bad key left out", n.GetAttributes(), want)
	}
	f, _ := m.State.Node("fresh")
	if f.GetRole() != apiv1.NodeRole_NODE_ROLE_WORKER || f.GetAvailability() != apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE || f.GetCreatedAt() == nil || f.GetLabels()["zone"] != "b" {
		t.Fatalf("new worker node: %v", f)
	}
}

// TestReregisterKeepsOperatorDecisions: labels and availability set by an
// operator survive re-registration, while the agent configuration's labels
// follow the configuration.
func TestReregisterKeepsOperatorDecisions(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	reg := func(labels map[string]string) *apiv1.WorkerMessage {
		msg := register("n1", "node-n1")
		msg.GetRegister().Labels = labels
		return msg
	}
	c := open(t, m, reg(map[string]string{"zone": "b", "disk": "ssd"}))
	c.next()
	n, _ := m.State.Node("n1")
	if n.GetLabels()["zone"] != "b" || n.GetAgentLabels()["disk"] != "ssd" {
		t.Fatalf("first registration: labels %v, agent labels %v", n.GetLabels(), n.GetAgentLabels())
	}
	// The operator drains the node, labels it and overrides zone.
	n = proto.CloneOf(n)
	n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
	n.Labels["rack"], n.Labels["zone"] = "r1", "x"
	m.Apply(&fsmpb.UpsertNode{Node: n})

	// The agent comes back with another configuration.
	c = open(t, m, reg(map[string]string{"zone": "c", "gpu": "yes"}))
	c.next()
	n, _ = m.State.Node("n1")
	want := map[string]string{"zone": "x", "rack": "r1", "gpu": "yes"}
	if !maps.Equal(n.GetLabels(), want) || !maps.Equal(n.GetAgentLabels(), map[string]string{"zone": "c", "gpu": "yes"}) {
		t.Errorf("after re-registering: labels %v (want %v), agent labels %v", n.GetLabels(), want, n.GetAgentLabels())
	}
	if n.GetAvailability() != apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN || n.GetStatus() != ready {
		t.Errorf("after re-registering: availability %v status %v", n.GetAvailability(), n.GetStatus())
	}
}

func TestAssignmentsFollowTheState(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{
		task("t1", "n1", running, assigned),
		task("t2", "n1", running, failed),    // ended, awaiting the orchestrator: still known
		task("t3", "n1", shutdown, shutdown), // history: not sent
		task("t4", "n2", running, assigned),  // another node
	}})
	c := connect(t, m, "n1")
	full := c.assignments()
	if !full.GetFull() || !slices.Equal(ids(full.GetTasks()), []string{"t1", "t2"}) {
		t.Fatalf("full assignments = %v %v, want full [t1 t2]", full.GetFull(), ids(full.GetTasks()))
	}

	tests := []struct {
		name        string
		cmd         any
		wantTasks   []string
		wantRemoved []string
	}{
		{"new task", &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t5", "n1", running, assigned)}}, []string{"t5"}, nil},
		{"desired shutdown", &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t1", "n1", shutdown, running)}}, []string{"t1"}, nil},
		{"ended and unwanted", &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t2", "n1", shutdown, failed)}}, nil, []string{"t2"}},
		{"deleted", &fsmpb.RemoveTasks{Ids: []string{"t5"}}, nil, []string{"t5"}},
		{"moved to another node", &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t1", "n2", shutdown, running)}}, nil, []string{"t1"}},
		{"several in one entry", &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t6", "n1", running, assigned), task("t7", "n1", running, assigned), task("t8", "n2", running, assigned)}}, []string{"t6", "t7"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch cmd := tt.cmd.(type) {
			case *fsmpb.UpsertTasks:
				m.Apply(cmd)
			case *fsmpb.RemoveTasks:
				m.Apply(cmd)
			}
			a := c.assignments()
			removed := slices.Sorted(slices.Values(a.GetRemoved()))
			if a.GetFull() || !slices.Equal(ids(a.GetTasks()), tt.wantTasks) || !slices.Equal(removed, tt.wantRemoved) {
				t.Fatalf("assignments = full %v tasks %v removed %v, want tasks %v removed %v", a.GetFull(), ids(a.GetTasks()), removed, tt.wantTasks, tt.wantRemoved)
			}
		})
	}
	// Everything routed was sent: nothing is left in the backlog that
	// the scheduling loop paces its entries by.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := m.Dispatcher.AwaitDelivered(ctx, 0); err != nil {
		t.Fatalf("AwaitDelivered(0) with every change sent: %v", err)
	}
}

// taskEvents collects the Raft index of every task event by task ID.
func taskEvents(t *testing.T, m *dispatchertest.Manager) func(id string, st apiv1.TaskState) uint64 {
	sub := m.Events.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "task" }, 1024)
	t.Cleanup(sub.Close)
	seen := map[string]uint64{}
	return func(id string, st apiv1.TaskState) uint64 {
		t.Helper()
		key := id + "/" + st.String()
		deadline := time.After(20 * time.Second)
		for {
			if idx, ok := seen[key]; ok {
				return idx
			}
			select {
			case ev := <-sub.C:
				seen[ev.GetId()+"/"+ev.GetTask().GetState().String()] = ev.GetIndex()
			case <-deadline:
				t.Fatalf("no event of task %s reaching %v", id, st)
			}
		}
	}
}

func TestStatusReportsAreBatchedAndOnlyMoveForward(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{StatusBatchWindow: 200 * time.Millisecond})
	var tasks []*apiv1.Task
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		tasks = append(tasks, task(id, "n1", running, assigned))
	}
	tasks = append(tasks, task("other", "n2", running, assigned))
	m.Apply(&fsmpb.UpsertTasks{Tasks: tasks})
	indexOf := taskEvents(t, m)
	c := connect(t, m, "n1")
	c.assignments()

	// A report after a quiet spell is committed at once (the window is
	// long); three messages within the window after that commit go in
	// one Raft entry for all five tasks.
	c.send(batch(status1("e", apiv1.TaskState_TASK_STATE_PREPARING)))
	indexOf("e", apiv1.TaskState_TASK_STATE_PREPARING)
	c.send(batch(status1("a", apiv1.TaskState_TASK_STATE_PREPARING), status1("b", starting)))
	c.send(batch(status1("a", starting), status1("b", running), status1("c", running), status1("d", running)))
	c.send(batch(status1("a", running), status1("e", running), status1("other", running), status1("ghost", running)))
	idx := indexOf("a", running)
	for _, id := range []string{"b", "c", "d", "e"} {
		if got := indexOf(id, running); got != idx {
			t.Fatalf("task %s committed at index %d, task a at %d: not one batch", id, got, idx)
		}
	}
	if o, _ := m.State.Task("other"); o.GetState() != assigned {
		t.Fatalf("a report about another node's task was applied: %v", o.GetState())
	}
	a, _ := m.State.Task("a")
	if a.GetUpdatedAt() == nil {
		t.Fatal("updated_at not set")
	}

	// Backwards and after-terminal reports change nothing; the forward ones
	// in the same batch do.
	exit := &apiv1.TaskStatusUpdate{TaskId: "c", State: failed, ExitCode: 3, Error: "exited with code 3"}
	c.send(batch(status1("a", starting), exit, status1("b", complete)))
	indexOf("c", failed)
	if got, _ := m.State.Task("c"); got.GetExitCode() != 3 || got.GetError() != "exited with code 3" {
		t.Fatalf("exit details not kept: %v", got)
	}
	if got, _ := m.State.Task("a"); got.GetState() != running {
		t.Fatalf("task a moved back to %v", got.GetState())
	}
	c.send(batch(status1("c", complete), status1("d", complete)))
	indexOf("d", complete)
	if got, _ := m.State.Task("c"); got.GetState() != failed {
		t.Fatalf("a terminal task changed to %v", got.GetState())
	}
}

func TestNodeGoesDownAndComesBack(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{HeartbeatPeriod: 50 * time.Millisecond, HeartbeatTTL: 400 * time.Millisecond})
	heartbeat := &apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Heartbeat{Heartbeat: &apiv1.Heartbeat{}}}

	t.Run("heartbeats keep the node ready", func(t *testing.T) {
		c := connect(t, m, "beating")
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for range 20 { // 1s: more than two TTLs
			<-tick.C
			c.send(heartbeat)
			if s := nodeStatus(m, "beating"); s != ready {
				t.Fatalf("node is %v while sending heartbeats", s)
			}
		}
	})
	t.Run("missed heartbeats", func(t *testing.T) {
		c := connect(t, m, "silent")
		if code, _ := c.ended(); code != codes.DeadlineExceeded {
			t.Fatalf("session ended with %v, want DeadlineExceeded", code)
		}
		dispatchertest.Eventually(t, "node down", func() bool { return nodeStatus(m, "silent") == down })
		if n, _ := m.State.Node("silent"); !strings.Contains(n.GetMessage(), "heartbeat") {
			t.Fatalf("down message = %q", n.GetMessage())
		}
		connect(t, m, "silent")
		if s := nodeStatus(m, "silent"); s != ready {
			t.Fatalf("after reconnecting the node is %v", s)
		}
	})
	t.Run("worker closes the session", func(t *testing.T) {
		c := connect(t, m, "closing")
		c.cancel()
		dispatchertest.Eventually(t, "node down", func() bool { return nodeStatus(m, "closing") == down })
	})
	t.Run("manager disconnects the node", func(t *testing.T) {
		c := connect(t, m, "kicked")
		if !m.Dispatcher.Disconnect("kicked") {
			t.Fatal("Disconnect found no session")
		}
		if code, _ := c.ended(); code != codes.Unavailable {
			t.Fatalf("session ended with %v, want Unavailable", code)
		}
		dispatchertest.Eventually(t, "node down", func() bool { return nodeStatus(m, "kicked") == down })
		if m.Dispatcher.Disconnect("kicked") {
			t.Fatal("Disconnect found a session after it ended")
		}
	})
	t.Run("node that never connects", func(t *testing.T) {
		m.Apply(&fsmpb.UpsertNode{Node: &apiv1.Node{Id: "ghost", Name: "node-ghost", Worker: true, Status: ready}})
		m.Apply(&fsmpb.UpsertNode{Node: &apiv1.Node{Id: "mgr-only", Name: "node-mgr-only", Role: apiv1.NodeRole_NODE_ROLE_MANAGER, Status: ready}})
		dispatchertest.Eventually(t, "silent node down", func() bool { return nodeStatus(m, "ghost") == down })
		if s := nodeStatus(m, "mgr-only"); s != ready {
			t.Fatalf("a manager that runs no worker was marked %v", s)
		}
	})
}

func TestNewerSessionSupersedesOlder(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	sub := m.Events.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "node" && ev.GetId() == "n1" }, 100)
	t.Cleanup(sub.Close)
	old := connect(t, m, "n1")
	old.assignments()
	c := connect(t, m, "n1")
	c.assignments()
	if code, _ := old.ended(); code != codes.Aborted {
		t.Fatalf("older session ended with %v, want Aborted", code)
	}
	// The newer session works; only its end marks the node down.
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t1", "n1", running, assigned)}})
	if a := c.assignments(); !slices.Equal(ids(a.GetTasks()), []string{"t1"}) {
		t.Fatalf("newer session got %v", ids(a.GetTasks()))
	}
	c.cancel()
	downs := 0
	for downs == 0 {
		select {
		case ev := <-sub.C:
			if ev.GetNode().GetStatus() == down {
				downs++
			}
		case <-time.After(20 * time.Second):
			t.Fatal("node not marked down after its last session ended")
		}
	}
	if s := nodeStatus(m, "n1"); s != down {
		t.Fatalf("node is %v", s)
	}
}

func TestSessionsEndWhenRunStops(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	// A second dispatcher on the same manager, whose Run the test stops as
	// a lost leadership would.
	d := dispatcher.New(dispatcher.Deps{State: m.State, Events: m.Events, Raft: m.Raft, Leader: m.Raft.IsLeader})
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	srv := dispatchertest.Serve(t, d)

	c := connect(t, srv, "n1")
	c.assignments()
	stop()
	<-done
	if code, msg := c.ended(); code != codes.Unavailable || !strings.Contains(msg, "not the leader") {
		t.Fatalf("session ended with %v %q, want Unavailable: not the leader", code, msg)
	}
	if s := nodeStatus(m, "n1"); s != ready {
		t.Fatalf("a session ended by lost leadership marked the node %v", s)
	}
}

// TestMovedTaskReachesBothSessions: a task moved from one node to another
// is removed from the first worker and sent to the second, and a third
// session hears of neither (its next message is about its own task).
func TestMovedTaskReachesBothSessions(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	c1, c2, c3 := connect(t, m, "n1"), connect(t, m, "n2"), connect(t, m, "n3")
	for _, c := range []*client{c1, c2, c3} {
		if a := c.assignments(); !a.GetFull() || len(a.GetTasks()) != 0 {
			t.Fatalf("first assignments = full %v tasks %v, want an empty full set", a.GetFull(), ids(a.GetTasks()))
		}
	}
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t1", "n1", running, assigned)}})
	if a := c1.assignments(); !slices.Equal(ids(a.GetTasks()), []string{"t1"}) {
		t.Fatalf("n1 got %v, want [t1]", ids(a.GetTasks()))
	}
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t1", "n2", running, assigned)}})
	if a := c1.assignments(); len(a.GetTasks()) != 0 || !slices.Equal(a.GetRemoved(), []string{"t1"}) {
		t.Fatalf("n1 got tasks %v removed %v, want t1 removed", ids(a.GetTasks()), a.GetRemoved())
	}
	if a := c2.assignments(); !slices.Equal(ids(a.GetTasks()), []string{"t1"}) || len(a.GetRemoved()) != 0 {
		t.Fatalf("n2 got tasks %v removed %v, want [t1]", ids(a.GetTasks()), a.GetRemoved())
	}
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("t3", "n3", running, assigned)}})
	if a := c3.assignments(); !slices.Equal(ids(a.GetTasks()), []string{"t3"}) || len(a.GetRemoved()) != 0 {
		t.Fatalf("n3 got tasks %v removed %v, want only [t3]", ids(a.GetTasks()), a.GetRemoved())
	}
}

// TestSilentNodesGoDownInOneEntry: 20 nodes whose sessions end together
// are marked DOWN by one Raft entry once their TTL has passed.
func TestSilentNodesGoDownInOneEntry(t *testing.T) {
	const n, ttl = 20, time.Second
	m := dispatchertest.Start(t, dispatchertest.Options{HeartbeatPeriod: 100 * time.Millisecond, HeartbeatTTL: ttl})
	sub := m.Events.Subscribe(func(ev *apiv1.Event) bool {
		return ev.GetKind() == "node" && ev.GetNode().GetStatus() == down
	}, 100)
	t.Cleanup(sub.Close)
	heartbeat := &apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Heartbeat{Heartbeat: &apiv1.Heartbeat{}}}
	var clients []*client
	for i := range n {
		c := connect(t, m, fmt.Sprintf("n%02d", i))
		c.assignments()
		// The test's only sender on this stream from now on.
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for range tick.C {
				if c.stream.Send(heartbeat) != nil {
					return
				}
			}
		}()
		t.Cleanup(func() { c.cancel(); <-done })
		clients = append(clients, c)
	}
	for _, c := range clients {
		c.cancel()
	}
	indexes := map[uint64][]string{}
	downs := 0
	deadline := time.After(20 * time.Second) // TTL + 1 s expected; slack for a loaded machine
	for downs < n {
		select {
		case ev := <-sub.C:
			indexes[ev.GetIndex()] = append(indexes[ev.GetIndex()], ev.GetId())
			downs++
			if msg := ev.GetNode().GetMessage(); !strings.Contains(msg, "no session") {
				t.Errorf("node %s down with message %q", ev.GetId(), msg)
			}
		case <-deadline:
			t.Fatalf("%d of %d nodes down within 20s", downs, n)
		}
	}
	if len(indexes) != 1 {
		t.Fatalf("the %d silent nodes went down in %d Raft entries (%v), want one", n, len(indexes), indexes)
	}
}

// TestNewLeaderWaitsTwoTTLsForUnseenNodes: a READY node that has not
// connected to this leader yet (as every node right after an election) is
// marked DOWN only two TTLs after the leader's dispatcher started, so
// workers coming back through their reconnection backoff are not taken
// for lost; one that keeps away is still marked DOWN then.
func TestNewLeaderWaitsTwoTTLsForUnseenNodes(t *testing.T) {
	const ttl = 2 * time.Second
	m := dispatchertest.Start(t, dispatchertest.Options{HeartbeatTTL: ttl, HeartbeatPeriod: ttl / 4})
	// Run started just before Start returned. Marked at one TTL (and up
	// to two 500 ms sweeps), the node would be DOWN at most 1.5 TTLs
	// after this; at two TTLs, no sooner than 1.75 TTLs after it.
	started := time.Now()
	m.Apply(&fsmpb.UpsertNode{Node: &apiv1.Node{Id: "away", Name: "node-away", Worker: true, Status: ready,
		UpdatedAt: timestamppb.New(started.Add(-time.Hour))}})
	dispatchertest.Eventually(t, "the unseen node down", func() bool { return nodeStatus(m, "away") == down })
	n, _ := m.State.Node("away")
	if waited := n.GetUpdatedAt().AsTime().Sub(started); waited < ttl*7/4 {
		t.Fatalf("the unseen node went DOWN %s after the leader started, before two TTLs (%s)", waited, 2*ttl)
	}
}

// TestWorkersOwnReportsAreNotEchoed: a worker is not sent back the status
// it reported for a task it holds; a report that ends a task for good
// still tells it to forget the task, and a manager's change still goes out.
func TestWorkersOwnReportsAreNotEchoed(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("a", "n1", running, assigned), task("b", "n1", shutdown, running)}})
	indexOf := taskEvents(t, m)
	c := connect(t, m, "n1")
	if full := c.assignments(); !slices.Equal(ids(full.GetTasks()), []string{"a", "b"}) {
		t.Fatalf("full assignments %v, want [a b]", ids(full.GetTasks()))
	}
	c.send(batch(status1("a", starting)))
	indexOf("a", starting)
	c.send(batch(status1("a", running), status1("b", shutdown)))
	indexOf("a", running)
	if a := c.assignments(); len(a.GetTasks()) != 0 || !slices.Equal(a.GetRemoved(), []string{"b"}) {
		t.Fatalf("after the reports the worker got tasks %v removed %v, want only b removed", ids(a.GetTasks()), a.GetRemoved())
	}
	m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("a", "n1", shutdown, running)}})
	if a := c.assignments(); !slices.Equal(ids(a.GetTasks()), []string{"a"}) || a.GetTasks()[0].GetDesiredState() != shutdown {
		t.Fatalf("the manager's shutdown of a reached the worker as %v", a.GetTasks())
	}
}
