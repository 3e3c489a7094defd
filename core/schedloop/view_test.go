package schedloop

import (
	"errors"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/scheduler"
)

var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

const (
	tsNew      = apiv1.TaskState_TASK_STATE_NEW
	tsPending  = apiv1.TaskState_TASK_STATE_PENDING
	tsAssigned = apiv1.TaskState_TASK_STATE_ASSIGNED
	tsRunning  = apiv1.TaskState_TASK_STATE_RUNNING
	tsComplete = apiv1.TaskState_TASK_STATE_COMPLETE
	tsFailed   = apiv1.TaskState_TASK_STATE_FAILED
	tsShutdown = apiv1.TaskState_TASK_STATE_SHUTDOWN
	ready      = apiv1.NodeStatus_NODE_STATUS_READY
	down       = apiv1.NodeStatus_NODE_STATUS_DOWN
)

func res(cpu, mem int64) *apiv1.Resources { return &apiv1.Resources{NanoCpus: cpu, MemoryBytes: mem} }

// worker returns a worker node whose runtime has every capability.
func worker(id string, status apiv1.NodeStatus, avail apiv1.NodeAvailability) *apiv1.Node {
	return &apiv1.Node{Id: id, Name: "name-" + id, Worker: true, Status: status, Availability: avail, Capabilities: allCapabilities()}
}

func allCapabilities() []string {
	out := make([]string, len(runtime.Capabilities))
	for i, c := range runtime.Capabilities {
		out[i] = string(c)
	}
	return out
}

// capabilityAttrs are the attributes NodeView sets for allCapabilities.
func capabilityAttrs(extra map[string]string) map[string]string {
	out := maps.Clone(extra)
	if out == nil {
		out = map[string]string{}
	}
	for _, c := range runtime.Capabilities {
		out[scheduler.CapabilityAttr(string(c))] = "true"
	}
	return out
}

// needs are the capability constraints of a task with an image and a
// network namespace of its own.
var needs = []scheduler.Constraint{
	{Key: "node.attr.warren.capability.images", Op: scheduler.OpEqual, Value: "true"},
	{Key: "node.attr.warren.capability.network-namespace", Op: scheduler.OpEqual, Value: "true"},
}

// unplaced returns a task waiting for a node.
func unplaced(id string, slot uint64, constraints ...string) *apiv1.Task {
	return &apiv1.Task{
		Id: id, ServiceId: "s1", ServiceName: "web", Slot: slot, ServiceVersion: 1,
		Spec:         &apiv1.ServiceSpec{Name: "web", Image: "app", Constraints: constraints},
		DesiredState: tsRunning, State: tsNew,
	}
}

// on returns a task on node with state s reserving r.
func on(id, node string, s apiv1.TaskState, r *apiv1.Resources) *apiv1.Task {
	return &apiv1.Task{
		Id: id, ServiceId: "s0", ServiceName: "db", NodeId: node, Spec: &apiv1.ServiceSpec{Reservations: r},
		DesiredState: tsRunning, State: s,
	}
}

func TestNeedsPlacement(t *testing.T) {
	cases := []struct {
		name string
		task *apiv1.Task
		want bool
	}{
		{"new", unplaced("a", 1), true},
		{"pending", func() *apiv1.Task { t := unplaced("a", 1); t.State = tsPending; return t }(), true},
		{"assigned", on("a", "n1", tsAssigned, nil), false},
		{"on a node but NEW", func() *apiv1.Task { t := unplaced("a", 1); t.NodeId = "n1"; return t }(), false},
		{"desired shutdown", func() *apiv1.Task { t := unplaced("a", 1); t.DesiredState = tsShutdown; return t }(), false},
		{"finished", func() *apiv1.Task { t := unplaced("a", 1); t.State = tsShutdown; return t }(), false},
	}
	for _, tc := range cases {
		if got := NeedsPlacement(tc.task); got != tc.want {
			t.Errorf("%s: NeedsPlacement = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNodeView(t *testing.T) {
	cases := []struct {
		name  string
		node  *apiv1.Node
		tasks []*apiv1.Task
		want  scheduler.Node
	}{
		{
			name: "ready, unspecified availability means active",
			node: worker("n1", ready, apiv1.NodeAvailability_NODE_AVAILABILITY_UNSPECIFIED),
			want: scheduler.Node{ID: "n1", Name: "name-n1", Ready: true, Availability: scheduler.AvailabilityActive},
		},
		{
			name: "down and paused",
			node: worker("n1", down, apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE),
			want: scheduler.Node{ID: "n1", Name: "name-n1", Availability: scheduler.AvailabilityPause},
		},
		{
			name: "status unknown is not ready; draining",
			node: worker("n1", apiv1.NodeStatus_NODE_STATUS_UNKNOWN, apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN),
			want: scheduler.Node{ID: "n1", Name: "name-n1", Availability: scheduler.AvailabilityDrain},
		},
		{
			name: "an availability this version does not know takes no new tasks",
			node: worker("n1", ready, apiv1.NodeAvailability(42)),
			want: scheduler.Node{ID: "n1", Name: "name-n1", Ready: true, Availability: scheduler.AvailabilityPause},
		},
		{
			name: "platform and runtime attributes",
			node: func() *apiv1.Node {
				n := worker("n1", ready, apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE)
				n.Os, n.Arch = "linux", "arm64"
				n.Attributes = map[string]string{"containerd.snapshotter": "overlayfs"}
				return n
			}(),
			want: scheduler.Node{ID: "n1", Name: "name-n1", Ready: true, Availability: scheduler.AvailabilityActive,
				OS: "linux", Arch: "arm64", Attributes: map[string]string{"containerd.snapshotter": "overlayfs"}},
		},
		{
			name: "the unfinished tasks of the batch's services are counted per service",
			node: worker("n1", ready, apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE),
			tasks: func() []*apiv1.Task {
				web1, web2, webDone := on("w1", "n1", tsRunning, nil), on("w2", "n1", tsAssigned, nil), on("w3", "n1", tsFailed, nil)
				for _, t := range []*apiv1.Task{web1, web2, webDone} {
					t.ServiceId = "s1"
				}
				return []*apiv1.Task{web1, web2, webDone, on("d1", "n1", tsRunning, nil)}
			}(),
			// db (s0) has no task in the batch: counted in TaskCount only.
			want: scheduler.Node{ID: "n1", Name: "name-n1", Ready: true, Availability: scheduler.AvailabilityActive,
				TaskCount: 3, ServiceTasks: map[string]int{"s1": 2}},
		},
		{
			name: "labels, total, and the reservations of unfinished tasks",
			node: func() *apiv1.Node {
				n := worker("n1", ready, apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE)
				n.Labels = map[string]string{"zone": "edge-1"}
				n.Resources = res(4e9, 8<<30)
				return n
			}(),
			tasks: []*apiv1.Task{
				on("a", "n1", tsRunning, res(1e9, 1<<30)),
				on("b", "n1", tsAssigned, res(5e8, 0)),
				on("c", "n1", tsRunning, nil),
				on("d", "n1", tsFailed, res(1e9, 1<<30)),   // finished: frees its room
				on("e", "n1", tsShutdown, res(1e9, 1<<30)), // finished
			},
			want: scheduler.Node{
				ID: "n1", Name: "name-n1", Labels: map[string]string{"zone": "edge-1"}, Ready: true,
				Availability: scheduler.AvailabilityActive,
				Total:        scheduler.Resources{NanoCPUs: 4e9, MemoryBytes: 8 << 30},
				Reserved:     scheduler.Resources{NanoCPUs: 15e8, MemoryBytes: 1 << 30},
				TaskCount:    3,
			},
		},
	}
	for _, tc := range cases {
		// Every test node's runtime has every capability (worker).
		tc.want.Attributes = capabilityAttrs(tc.want.Attributes)
		if got := NodeView(tc.node, tc.tasks, map[string]bool{"s1": true}); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
}

func TestBuildRequest(t *testing.T) {
	manager := &apiv1.Node{Id: "m1", Name: "manager", Status: ready}
	nodes := []*apiv1.Node{worker("n1", ready, 0), manager, worker("n2", down, 0)}
	byNode := map[string][]*apiv1.Task{
		"n1": {on("x", "n1", tsRunning, res(1e9, 0))},
		"m1": {on("y", "m1", tsRunning, res(1e9, 0))},
	}
	a := unplaced("a", 1, "node.labels.zone==edge-1", " node.name != gw ")
	a.Spec.Reservations = res(2e8, 64<<20)
	b := unplaced("b", 2, "node.labels.zone==edge-1", " node.name != gw ")
	bad := unplaced("bad", 1, "zone=edge")
	bad.ServiceId, bad.ServiceVersion = "s2", 9
	c := unplaced("c", 3)
	c.ServiceId, c.ServiceName, c.ServiceVersion = "s3", "other", 1 // same version as s1, other constraints

	req, sent, rejected := BuildRequest(nodes, func(id string) []*apiv1.Task { return byNode[id] }, []*apiv1.Task{a, bad, b, c}, nil)

	if len(req.Nodes) != 2 || req.Nodes[0].ID != "n1" || req.Nodes[1].ID != "n2" {
		t.Fatalf("nodes = %+v, want the workers n1 and n2 only", req.Nodes)
	}
	if req.Nodes[0].TaskCount != 1 || req.Nodes[0].Reserved.NanoCPUs != 1e9 || req.Nodes[0].ServiceTasks != nil {
		t.Errorf("n1 = %+v, want its one task (of a service not in the batch) counted", req.Nodes[0])
	}
	zone := []scheduler.Constraint{
		{Key: "node.labels.zone", Op: scheduler.OpEqual, Value: "edge-1"},
		{Key: "node.name", Op: scheduler.OpNotEqual, Value: "gw"},
	}
	// The tasks' own constraints, then what their specs need of a runtime.
	zone = append(zone, needs...)
	want := []scheduler.Task{
		{ID: "a", ServiceID: "s1", ServiceName: "web", Slot: 1, Reservation: scheduler.Resources{NanoCPUs: 2e8, MemoryBytes: 64 << 20}, Constraints: zone},
		{ID: "b", ServiceID: "s1", ServiceName: "web", Slot: 2, Constraints: zone},
		{ID: "c", ServiceID: "s3", ServiceName: "other", Slot: 3, Constraints: needs},
	}
	if !reflect.DeepEqual(req.Tasks, want) {
		t.Errorf("tasks:\n got %+v\nwant %+v", req.Tasks, want)
	}
	if len(sent) != 3 || sent[0] != a || sent[1] != b || sent[2] != c {
		t.Errorf("sent = %v, want a, b, c in order", sent)
	}
	if msg := rejected["bad"]; len(rejected) != 1 || !strings.HasPrefix(msg, "invalid constraint: ") || !strings.Contains(msg, "zone=edge") {
		t.Errorf("rejected = %v, want bad with an invalid constraint message naming it", rejected)
	}
	if err := scheduler.ValidateRequest(req); err != nil {
		t.Errorf("the request is not valid: %v", err)
	}
}

// TestBuildRequestVolumes: a task mounting a volume that lives on a node
// is constrained to it, and waits while that node is down; of the tasks
// mounting a volume on no node yet, only the first of the batch is sent.
func TestBuildRequestVolumes(t *testing.T) {
	nodes := []*apiv1.Node{worker("n1", ready, 0), worker("n2", down, 0)}
	volumes := map[string]*apiv1.Volume{
		"on-n1":   {Name: "on-n1", NodeId: "n1"},
		"on-n2":   {Name: "on-n2", NodeId: "n2"},
		"nowhere": {Name: "nowhere"},
	}
	lookup := func(name string) (*apiv1.Volume, bool) { v, ok := volumes[name]; return v, ok }
	mounting := func(id string, slot uint64, vol string) *apiv1.Task {
		tk := unplaced(id, slot)
		tk.Spec.Mounts = []*apiv1.Mount{{Type: "volume", Source: vol, Target: "/data"}}
		return tk
	}
	batch := []*apiv1.Task{mounting("a", 1, "on-n1"), mounting("b", 2, "on-n2"), mounting("c", 3, "nowhere"), mounting("d", 4, "nowhere"), mounting("e", 5, "gone")}
	req, sent, rejected := BuildRequest(nodes, func(string) []*apiv1.Task { return nil }, batch, lookup)

	if len(sent) != 2 || sent[0].GetId() != "a" || sent[1].GetId() != "c" {
		t.Fatalf("sent %v, want a and c", sent)
	}
	onN1 := scheduler.Constraint{Key: scheduler.KeyNodeID, Op: scheduler.OpEqual, Value: "n1"}
	if !slices.Contains(req.Tasks[0].Constraints, onN1) {
		t.Errorf("task a constraints %v lack %v", req.Tasks[0].Constraints, onN1)
	}
	if slices.ContainsFunc(req.Tasks[1].Constraints, func(c scheduler.Constraint) bool { return c.Key == scheduler.KeyNodeID }) {
		t.Errorf("task c, the first on a volume on no node, is constrained: %v", req.Tasks[1].Constraints)
	}
	for id, want := range map[string]string{
		"b": `volume "on-n2" lives on node name-n2, which is down`,
		"d": `waiting for volume "nowhere" to be put on the node of task c`,
		"e": `volume "gone" does not exist`,
	} {
		if rejected[id] != want {
			t.Errorf("task %s waits with %q, want %q", id, rejected[id], want)
		}
	}
}

func TestOutcome(t *testing.T) {
	pendingAlready := unplaced("p", 3)
	pendingAlready.State, pendingAlready.Message = tsPending, "no room"
	pendingOther := unplaced("q", 4)
	pendingOther.State, pendingOther.Message = tsPending, "old reason"
	sent := []*apiv1.Task{unplaced("a", 1), unplaced("b", 2), pendingAlready, pendingOther}
	before := make([]*apiv1.Task, len(sent))
	for i, t := range sent {
		before[i] = proto.CloneOf(t)
	}

	type write struct {
		id, node, message string
		state             apiv1.TaskState
	}
	render := func(ws []*apiv1.Task) []write {
		var out []write
		for _, w := range ws {
			if !w.GetUpdatedAt().AsTime().Equal(t0) {
				t.Errorf("write %s: updated_at %v, want %v", w.GetId(), w.GetUpdatedAt().AsTime(), t0)
			}
			out = append(out, write{w.GetId(), w.GetNodeId(), w.GetMessage(), w.GetState()})
		}
		return out
	}

	plan := []scheduler.Placement{
		{TaskID: "a", NodeID: "n1"},
		{TaskID: "b", Reason: "no room"},
		{TaskID: "p", Reason: "no room"},
		{TaskID: "q", NodeID: "n2", Reason: "ignored when placed"},
	}
	got := render(Outcome(sent, plan, nil, t0))
	want := []write{
		{"a", "n1", "", tsAssigned},
		{"b", "", "no room", tsPending},
		// p is PENDING with that message already: no write.
		{"q", "n2", "", tsAssigned},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("valid plan:\n got %+v\nwant %+v", got, want)
	}

	invalid := errors.New(`task "a": node "n9" is not in the request`)
	got = render(Outcome(sent, plan, invalid, t0))
	msg := InvalidPlanPrefix + invalid.Error()
	want = []write{{"a", "", msg, tsPending}, {"b", "", msg, tsPending}, {"p", "", msg, tsPending}, {"q", "", msg, tsPending}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("invalid plan:\n got %+v\nwant %+v", got, want)
	}
	for i := range sent {
		if !proto.Equal(sent[i], before[i]) {
			t.Errorf("Outcome changed its input task %s", sent[i].GetId())
		}
	}
}
