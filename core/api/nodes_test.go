package api_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/orchestrator"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// env is a real single-node manager (store-bolt, FSM, Raft) with the API
// served over gRPC on a unix socket, and the orchestrator running.
type env struct {
	m      *dispatchertest.Manager
	client apiv1.WarrenClient
	conn   *grpc.ClientConn
}

func newEnv(t *testing.T) *env {
	t.Helper()
	m := dispatchertest.Start(t, dispatchertest.Options{})
	srv := api.NewServer(api.Options{State: m.State, Raft: m.Raft, Events: m.Events, NodeID: "manager-1", NodeName: "mgr"})
	dir, err := os.MkdirTemp("", "wapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	g := srv.GRPCServer()
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(); g.Stop() })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		logger := hclog.New(&hclog.LoggerOptions{Name: "orchestrator", Level: hclog.Warn, Output: os.Stderr})
		if err := orchestrator.Run(ctx, orchestrator.Deps{State: m.State, Events: m.Events, Raft: m.Raft, Logger: logger}); err != nil {
			t.Errorf("orchestrator: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return &env{m: m, client: apiv1.NewWarrenClient(conn), conn: conn}
}

func (e *env) addNode(t *testing.T, n *apiv1.Node) *apiv1.Node {
	t.Helper()
	// UpdatedAt now: the dispatcher leaves a READY node alone for a
	// heartbeat TTL after that before it counts it as silent.
	n.CreatedAt, n.UpdatedAt = timestamppb.Now(), timestamppb.Now()
	return e.m.Apply(&fsmpb.UpsertNode{Node: n}).(*apiv1.Node)
}

func (e *env) node(t *testing.T, id string) *apiv1.Node {
	t.Helper()
	n, ok := e.m.State.Node(id)
	if !ok {
		t.Fatalf("node %s not found", id)
	}
	return n
}

func availability(a apiv1.NodeAvailability) *apiv1.NodeAvailability { return &a }

const (
	ready  = apiv1.NodeStatus_NODE_STATUS_READY
	down   = apiv1.NodeStatus_NODE_STATUS_DOWN
	active = apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE
	pause  = apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE
	drain  = apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN
)

func TestUpdateNodeRefusesBadRequests(t *testing.T) {
	e := newEnv(t)
	e.addNode(t, &apiv1.Node{
		Id: "w1aaaaaaaaaaaaaaaaaaaaaa", Name: "edge-1", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Worker: true, Status: ready,
		Labels: map[string]string{"zone": "a"}, AgentLabels: map[string]string{"zone": "a"},
	})
	e.addNode(t, &apiv1.Node{Id: "w1bbbbbbbbbbbbbbbbbbbbbb", Name: "edge-2", Worker: true, Status: ready})
	manyLabels := map[string]string{}
	for i := range api.MaxNodeLabels + 1 {
		manyLabels[fmt.Sprintf("k%d", i)] = "v"
	}
	tests := []struct {
		name     string
		req      *apiv1.UpdateNodeRequest
		code     codes.Code
		mentions string
	}{
		{"no node", &apiv1.UpdateNodeRequest{Availability: availability(drain)}, codes.InvalidArgument, "node name or ID is required"},
		{"invalid node name", &apiv1.UpdateNodeRequest{Node: "edge 1", Availability: availability(drain)}, codes.InvalidArgument, `"edge 1" is invalid`},
		{"too long node name", &apiv1.UpdateNodeRequest{Node: strings.Repeat("a", 200), Availability: availability(drain)}, codes.InvalidArgument, "longer than 128"},
		{"unknown node", &apiv1.UpdateNodeRequest{Node: "edge-9", Availability: availability(drain)}, codes.NotFound, `node "edge-9"`},
		{"ambiguous prefix", &apiv1.UpdateNodeRequest{Node: "w1", Availability: availability(drain)}, codes.InvalidArgument, "more than one node"},
		{"nothing to update", &apiv1.UpdateNodeRequest{Node: "edge-1"}, codes.InvalidArgument, "nothing to update"},
		{"unspecified availability", &apiv1.UpdateNodeRequest{Node: "edge-1", Availability: availability(0)}, codes.InvalidArgument, "NODE_AVAILABILITY_UNSPECIFIED is not one of active, pause or drain"},
		{"unknown availability", &apiv1.UpdateNodeRequest{Node: "edge-1", Availability: availability(42)}, codes.InvalidArgument, "availability 42"},
		{"empty label key", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsAdd: map[string]string{"": "x"}}, codes.InvalidArgument, "label key is empty"},
		{"bad label key", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsAdd: map[string]string{"zone=a": "x"}}, codes.InvalidArgument, `label key "zone=a" is invalid`},
		{"long label key", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsAdd: map[string]string{strings.Repeat("k", 64): "x"}}, codes.InvalidArgument, "more than the 63 allowed"},
		{"long label value", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsAdd: map[string]string{"k": strings.Repeat("v", 64)}}, codes.InvalidArgument, `label "k": the value is 64 characters`},
		{"control character in value", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsAdd: map[string]string{"k": "a\nb"}}, codes.InvalidArgument, "control characters"},
		{"too many labels", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsAdd: manyLabels}, codes.InvalidArgument, "more than the 64"},
		{"bad key to remove", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsRm: []string{"-zone"}}, codes.InvalidArgument, `labels_rm: label key "-zone" is invalid`},
		{"removing a configured label", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsRm: []string{"zone"}}, codes.FailedPrecondition, "comes from the node's agent configuration"},
		{"stale version", &apiv1.UpdateNodeRequest{Node: "edge-1", Availability: availability(drain), ExpectedVersion: 1}, codes.Aborted, "not 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.node(t, "w1aaaaaaaaaaaaaaaaaaaaaa")
			_, err := e.client.UpdateNode(context.Background(), tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.mentions) {
				t.Fatalf("UpdateNode = %v, want %v mentioning %q", err, tt.code, tt.mentions)
			}
			if after := e.node(t, "w1aaaaaaaaaaaaaaaaaaaaaa"); !proto.Equal(before, after) {
				t.Errorf("a refused request changed the node:\n%v\n%v", before, after)
			}
		})
	}
}

func TestUpdateNode(t *testing.T) {
	e := newEnv(t)
	e.addNode(t, &apiv1.Node{
		Id: "w1aaaaaaaaaaaaaaaaaaaaaa", Name: "edge-1", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Worker: true, Status: ready,
		Labels: map[string]string{"zone": "a", "disk": "ssd"}, AgentLabels: map[string]string{"zone": "a", "disk": "ssd"},
	})
	type m = map[string]string
	steps := []struct {
		name       string
		req        *apiv1.UpdateNodeRequest
		wantAvail  apiv1.NodeAvailability
		wantLabels m
	}{
		{"drain by name", &apiv1.UpdateNodeRequest{Node: "edge-1", Availability: availability(drain)}, drain, m{"zone": "a", "disk": "ssd"}},
		{"pause by ID prefix", &apiv1.UpdateNodeRequest{Node: "w1a", Availability: availability(pause)}, pause, m{"zone": "a", "disk": "ssd"}},
		{"add labels, one over the configuration's", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsAdd: m{"rack": "r1", "zone": "x", "empty": ""}}, pause, m{"zone": "x", "disk": "ssd", "rack": "r1", "empty": ""}},
		{"remove: an API label goes, an override gives the configured value back, a missing one is fine", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsRm: []string{"rack", "zone", "nope"}}, pause, m{"zone": "a", "disk": "ssd", "empty": ""}},
		{"remove before add", &apiv1.UpdateNodeRequest{Node: "edge-1", LabelsRm: []string{"empty"}, LabelsAdd: m{"empty": "now"}, Availability: availability(active)}, active, m{"zone": "a", "disk": "ssd", "empty": "now"}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := e.node(t, "w1aaaaaaaaaaaaaaaaaaaaaa")
			st.req.ExpectedVersion = before.GetVersion()
			resp, err := e.client.UpdateNode(context.Background(), st.req)
			if err != nil {
				t.Fatal(err)
			}
			got := e.node(t, "w1aaaaaaaaaaaaaaaaaaaaaa")
			if !proto.Equal(resp.GetNode(), got) {
				t.Errorf("response %v, stored %v", resp.GetNode(), got)
			}
			if got.GetAvailability() != st.wantAvail || !maps.Equal(got.GetLabels(), st.wantLabels) {
				t.Errorf("node: availability %v labels %v, want %v %v", got.GetAvailability(), got.GetLabels(), st.wantAvail, st.wantLabels)
			}
			if got.GetVersion() <= before.GetVersion() || got.GetStatus() != ready || got.GetRole() != apiv1.NodeRole_NODE_ROLE_WORKER ||
				!maps.Equal(got.GetAgentLabels(), before.GetAgentLabels()) {
				t.Errorf("node: version %d (was %d), status %v, role %v, agent labels %v", got.GetVersion(), before.GetVersion(), got.GetStatus(), got.GetRole(), got.GetAgentLabels())
			}
		})
	}
	t.Run("no change writes nothing", func(t *testing.T) {
		before := e.node(t, "w1aaaaaaaaaaaaaaaaaaaaaa")
		resp, err := e.client.UpdateNode(context.Background(), &apiv1.UpdateNodeRequest{Node: "edge-1", Availability: availability(active), LabelsAdd: m{"zone": "a"}})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetNode().GetVersion() != before.GetVersion() {
			t.Errorf("version moved from %d to %d", before.GetVersion(), resp.GetNode().GetVersion())
		}
	})
}

func TestRemoveNode(t *testing.T) {
	e := newEnv(t)
	e.addNode(t, &apiv1.Node{Id: "mgr", Name: "mgr", Role: apiv1.NodeRole_NODE_ROLE_MANAGER, Worker: true, Status: ready})
	e.addNode(t, &apiv1.Node{Id: "gone-mgr", Name: "gone-mgr", Role: apiv1.NodeRole_NODE_ROLE_MANAGER, Status: down})
	e.addNode(t, &apiv1.Node{Id: "live", Name: "live", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Worker: true, Status: ready})
	e.addNode(t, &apiv1.Node{Id: "dead", Name: "dead", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Worker: true, Status: down})
	now := timestamppb.Now()
	svc := e.m.Apply(&fsmpb.CreateService{Service: &apiv1.Service{
		Id: api.NewID(), CreatedAt: now, UpdatedAt: now,
		Spec: &apiv1.ServiceSpec{Name: "web", Image: "nginx", Replicas: 1},
	}}).(*apiv1.Service)
	// The orchestrator made the service's task; put it on "live" as a
	// worker would have run it.
	var task *apiv1.Task
	dispatchertest.Eventually(t, "the service's task", func() bool {
		ts := e.m.State.Tasks(state.TaskFilter{ServiceID: svc.GetId()})
		if len(ts) == 1 {
			task = ts[0]
		}
		return task != nil
	})
	placed := proto.CloneOf(task)
	placed.NodeId, placed.State = "live", apiv1.TaskState_TASK_STATE_RUNNING
	e.m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{placed}})

	refusals := []struct {
		name     string
		req      *apiv1.RemoveNodeRequest
		code     codes.Code
		mentions string
	}{
		{"no node", &apiv1.RemoveNodeRequest{}, codes.InvalidArgument, "required"},
		{"invalid name", &apiv1.RemoveNodeRequest{Node: "a/b"}, codes.InvalidArgument, "is invalid"},
		{"unknown", &apiv1.RemoveNodeRequest{Node: "nope"}, codes.NotFound, `"nope"`},
		{"manager", &apiv1.RemoveNodeRequest{Node: "mgr"}, codes.FailedPrecondition, "demote it first: warren node demote mgr"},
		{"manager, even forced and down", &apiv1.RemoveNodeRequest{Node: "gone-mgr", Force: true}, codes.FailedPrecondition, "is a manager"},
		{"ready worker", &apiv1.RemoveNodeRequest{Node: "live"}, codes.FailedPrecondition, "is ready"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.client.RemoveNode(context.Background(), tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.mentions) {
				t.Fatalf("RemoveNode = %v, want %v mentioning %q", err, tt.code, tt.mentions)
			}
			if _, _, n := e.m.State.Counts(); n != 4 {
				t.Fatalf("%d nodes after a refused removal, want 4", n)
			}
		})
	}

	t.Run("down worker", func(t *testing.T) {
		resp, err := e.client.RemoveNode(context.Background(), &apiv1.RemoveNodeRequest{Node: "dead"})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetNode().GetId() != "dead" {
			t.Errorf("response names %v", resp.GetNode())
		}
		if _, ok := e.m.State.Node("dead"); ok {
			t.Fatal("node still there")
		}
	})
	t.Run("ready worker, forced: its tasks are orphaned and replaced", func(t *testing.T) {
		if _, err := e.client.RemoveNode(context.Background(), &apiv1.RemoveNodeRequest{Node: "live", Force: true}); err != nil {
			t.Fatal(err)
		}
		dispatchertest.Eventually(t, "the task orphaned and replaced", func() bool {
			old, _ := e.m.State.Task(task.GetId())
			if old.GetState() != apiv1.TaskState_TASK_STATE_ORPHANED || old.GetDesiredState() != apiv1.TaskState_TASK_STATE_SHUTDOWN {
				return false
			}
			for _, tk := range e.m.State.Tasks(state.TaskFilter{ServiceID: svc.GetId()}) {
				if tk.GetId() != task.GetId() && tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING {
					return true
				}
			}
			return false
		})
		if old, _ := e.m.State.Task(task.GetId()); old.GetMessage() != "node live removed" {
			t.Errorf("orphaned task message %q", old.GetMessage())
		}
	})
}
