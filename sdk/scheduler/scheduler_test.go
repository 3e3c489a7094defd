package scheduler

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk"
)

const (
	mib = int64(1 << 20)
	gib = int64(1 << 30)
	cpu = int64(1e9)
)

func ready(id string, labels map[string]string) Node {
	return Node{ID: id, Name: "host-" + id, Labels: labels, Ready: true, Availability: AvailabilityActive}
}

func TestParseConstraint(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Constraint
		wantErr string
	}{
		{in: "node.labels.zone==edge-1", want: Constraint{"node.labels.zone", OpEqual, "edge-1"}},
		{in: " node.labels.zone != edge-1 ", want: Constraint{"node.labels.zone", OpNotEqual, "edge-1"}},
		{in: "node.id==k3x9", want: Constraint{"node.id", OpEqual, "k3x9"}},
		{in: "node.name!=gw-1", want: Constraint{"node.name", OpNotEqual, "gw-1"}},
		// The first operator splits; the rest belongs to the value.
		{in: "node.labels.expr==a!=b", want: Constraint{"node.labels.expr", OpEqual, "a!=b"}},
		{in: "node.labels.expr!=a==b", want: Constraint{"node.labels.expr", OpNotEqual, "a==b"}},
		{in: "node.labels.zone=edge-1", wantErr: "want <key>==<value>"},
		{in: "", wantErr: "want <key>==<value>"},
		{in: "node.labels.==x", wantErr: `key "node.labels."`},
		{in: "node.color==red", wantErr: `key "node.color"`},
		{in: "==red", wantErr: `key ""`},
		{in: "node.name==", wantErr: "empty value"},
		{in: "node.name==  ", wantErr: "empty value"},
		{in: "node.platform.os==linux", want: Constraint{"node.platform.os", OpEqual, "linux"}},
		{in: "node.platform.arch!=arm64", want: Constraint{"node.platform.arch", OpNotEqual, "arm64"}},
		{in: "node.attr.containerd.snapshotter==overlayfs", want: Constraint{"node.attr.containerd.snapshotter", OpEqual, "overlayfs"}},
		{in: "node.attr.==x", wantErr: `attribute key ""`},
		{in: "node.attr.gpu/count==1", wantErr: `attribute key "gpu/count"`},
		{in: "node.attr..gpu==1", wantErr: `attribute key ".gpu"`},
		{in: "node.platform.kernel==6", wantErr: `key "node.platform.kernel"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseConstraint(tc.in)
			if tc.wantErr != "" {
				if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseConstraint(%q) = %v, %v; want an invalid-argument error containing %q", tc.in, got, err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), `"`+tc.in+`"`) {
					t.Errorf("error %q does not quote the input", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseConstraint(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
			if round, err := ParseConstraint(got.String()); err != nil || round != got {
				t.Errorf("ParseConstraint(%q) = %+v, %v; want the same constraint back", got.String(), round, err)
			}
		})
	}
}

func TestConstraintMatches(t *testing.T) {
	n := ready("n1", map[string]string{"zone": "edge-1", "empty": ""})
	n.OS, n.Arch = "linux", "amd64"
	n.Attributes = map[string]string{"containerd.snapshotter": "overlayfs"}
	for _, tc := range []struct {
		c    Constraint
		want bool
	}{
		{Constraint{"node.id", OpEqual, "n1"}, true},
		{Constraint{"node.id", OpEqual, "n2"}, false},
		{Constraint{"node.id", OpNotEqual, "n2"}, true},
		{Constraint{"node.name", OpEqual, "host-n1"}, true},
		{Constraint{"node.name", OpNotEqual, "host-n1"}, false},
		{Constraint{"node.labels.zone", OpEqual, "edge-1"}, true},
		{Constraint{"node.labels.zone", OpEqual, "Edge-1"}, false},
		{Constraint{"node.labels.zone", OpNotEqual, "edge-1"}, false},
		{Constraint{"node.labels.zone", OpNotEqual, "edge-2"}, true},
		{Constraint{"node.labels.rack", OpEqual, "r1"}, false},
		{Constraint{"node.labels.rack", OpNotEqual, "r1"}, true},
		{Constraint{"node.labels.empty", OpNotEqual, "x"}, true},
		{Constraint{"node.labels.", OpNotEqual, "x"}, false},
		{Constraint{"node.color", OpNotEqual, "x"}, false},
		{Constraint{"node.id", Op("=~"), "n1"}, false},
		{Constraint{"node.platform.os", OpEqual, "linux"}, true},
		{Constraint{"node.platform.os", OpEqual, "windows"}, false},
		{Constraint{"node.platform.arch", OpNotEqual, "arm64"}, true},
		{Constraint{"node.platform.arch", OpEqual, "amd64"}, true},
		{Constraint{"node.attr.containerd.snapshotter", OpEqual, "overlayfs"}, true},
		{Constraint{"node.attr.containerd.snapshotter", OpNotEqual, "overlayfs"}, false},
		// An attribute the node's runtime does not report is empty.
		{Constraint{"node.attr.gpu", OpEqual, "1"}, false},
		{Constraint{"node.attr.gpu", OpNotEqual, "1"}, true},
		{Constraint{"node.attr.", OpNotEqual, "x"}, false},
	} {
		if got := tc.c.Matches(n); got != tc.want {
			t.Errorf("%s matches %v: got %v, want %v", tc.c, n, got, tc.want)
		}
	}
	if !MatchesAll(n, nil) {
		t.Error("MatchesAll(no constraints) = false, want true")
	}
	if MatchesAll(n, []Constraint{{"node.id", OpEqual, "n1"}, {"node.labels.zone", OpEqual, "edge-2"}}) {
		t.Error("MatchesAll with one failing constraint = true, want false")
	}
}

func TestFits(t *testing.T) {
	node := func(total, reserved Resources) Node {
		n := ready("n", nil)
		n.Total, n.Reserved = total, reserved
		return n
	}
	for _, tc := range []struct {
		name string
		n    Node
		r    Resources
		want bool
	}{
		{"nothing asked", node(Resources{cpu, gib}, Resources{cpu, gib}), Resources{}, true},
		{"exact fit", node(Resources{2 * cpu, gib}, Resources{cpu, 424 * mib}), Resources{cpu, 600 * mib}, true},
		{"memory short by a byte", node(Resources{2 * cpu, gib}, Resources{cpu, 424*mib + 1}), Resources{cpu, 600 * mib}, false},
		{"cpu short", node(Resources{2 * cpu, gib}, Resources{cpu + 1, 0}), Resources{cpu, 0}, false},
		{"unknown totals are unlimited", node(Resources{}, Resources{64 * cpu, 64 * gib}), Resources{64 * cpu, 64 * gib}, true},
		{"unknown cpu, known memory", node(Resources{0, gib}, Resources{}), Resources{64 * cpu, 2 * gib}, false},
		{"overcommitted node, nothing asked", node(Resources{cpu, gib}, Resources{2 * cpu, 2 * gib}), Resources{}, true},
	} {
		if got := Fits(tc.n, tc.r); got != tc.want {
			t.Errorf("%s: Fits = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestAssign(t *testing.T) {
	n := ready("n", nil)
	n.TaskCount = 2
	n.Reserved = Resources{cpu, gib}
	n.ServiceTasks = map[string]int{"web": 2}
	req := Request{Nodes: []Node{n}}
	copied := req.Nodes[0]
	copied.Assign(Task{ID: "t", ServiceID: "web", Reservation: Resources{cpu / 2, 512 * mib}})
	copied.Assign(Task{ID: "u", ServiceID: "db"})
	if copied.TaskCount != 4 || copied.Reserved != (Resources{cpu + cpu/2, gib + 512*mib}) {
		t.Fatalf("after Assign: count %d, reserved %+v", copied.TaskCount, copied.Reserved)
	}
	if copied.ServiceCount("web") != 3 || copied.ServiceCount("db") != 1 || copied.ServiceCount("cache") != 0 {
		t.Fatalf("after Assign: per-service counts %v", copied.ServiceTasks)
	}
	// The Request's node is untouched: Assign copied its map.
	if got := req.Nodes[0]; got.TaskCount != 2 || !maps.Equal(got.ServiceTasks, map[string]int{"web": 2}) {
		t.Fatalf("Assign on a copy changed the request's node: count %d, per service %v", got.TaskCount, got.ServiceTasks)
	}
	// A task of no service counts on the node only.
	copied.Assign(Task{ID: "v"})
	if copied.TaskCount != 5 || len(copied.ServiceTasks) != 2 {
		t.Fatalf("a task with no service: count %d, per service %v", copied.TaskCount, copied.ServiceTasks)
	}
}

func TestCheckAttributeKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"containerd.snapshotter", true},
		{"gpu", true},
		{"GPU_count-2", true},
		{"a", true},
		{strings.Repeat("k", 128), true},
		{strings.Repeat("k", 129), false},
		{"", false},
		{".gpu", false},
		{"gpu.", false},
		{"gpu count", false},
		{"gpu=1", false},
		{"zoné", false},
	} {
		err := CheckAttributeKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("CheckAttributeKey(%q) = %v, want ok %v", tc.key, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), fmt.Sprintf("%q", tc.key))) {
			t.Errorf("CheckAttributeKey(%q) = %v, want an invalid-argument error quoting the key", tc.key, err)
		}
	}
}

func TestValidateRequest(t *testing.T) {
	good := func() Request {
		c, _ := ParseConstraint("node.labels.zone==a")
		return Request{
			Nodes: []Node{ready("n1", nil), ready("n2", nil)},
			Tasks: []Task{{ID: "t1"}, {ID: "t2", Constraints: []Constraint{c}}},
		}
	}
	if err := ValidateRequest(good()); err != nil {
		t.Fatalf("ValidateRequest(good) = %v", err)
	}
	if err := ValidateRequest(Request{}); err != nil {
		t.Fatalf("ValidateRequest(empty) = %v", err)
	}
	for _, tc := range []struct {
		name    string
		mutate  func(r *Request)
		wantErr string
	}{
		{"empty node ID", func(r *Request) { r.Nodes[1].ID = "" }, `node 1 (name "host-n2"): empty ID`},
		{"duplicate node", func(r *Request) { r.Nodes[1].ID = "n1" }, `node "n1": listed twice`},
		{"no availability", func(r *Request) { r.Nodes[0].Availability = "" }, `node "n1": availability ""`},
		{"unknown availability", func(r *Request) { r.Nodes[0].Availability = "Active" }, `availability "Active"`},
		{"negative total", func(r *Request) { r.Nodes[0].Total.MemoryBytes = -1 }, `node "n1": negative`},
		{"negative reserved", func(r *Request) { r.Nodes[0].Reserved.NanoCPUs = -1 }, `node "n1": negative`},
		{"negative count", func(r *Request) { r.Nodes[1].TaskCount = -1 }, `node "n2": negative`},
		{"empty task ID", func(r *Request) { r.Tasks[0].ID = "" }, `task 0 (service ""): empty ID`},
		{"duplicate task", func(r *Request) { r.Tasks[1].ID = "t1" }, `task "t1": listed twice`},
		{"negative reservation", func(r *Request) { r.Tasks[1].Reservation.MemoryBytes = -5 }, `task "t2": negative reservation`},
		{"bad constraint key", func(r *Request) { r.Tasks[1].Constraints[0].Key = "zone" }, `task "t2": constraint "zone==a": key "zone"`},
		{"bad constraint op", func(r *Request) { r.Tasks[1].Constraints[0].Op = "=" }, `operator "="`},
		{"empty constraint value", func(r *Request) { r.Tasks[1].Constraints[0].Value = "" }, "empty value"},
		{"negative service count", func(r *Request) { r.Nodes[0].ServiceTasks = map[string]int{"web": -1} }, `node "n1": service "web": task count -1`},
		{"service count above the node's", func(r *Request) {
			r.Nodes[0].TaskCount = 1
			r.Nodes[0].ServiceTasks = map[string]int{"web": 2}
		}, `node "n1": service "web": task count 2, want 0 to the node's 1`},
		{"bad attribute key", func(r *Request) { r.Nodes[1].Attributes = map[string]string{"gpu count": "1"} }, `node "n2": attribute key "gpu count"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := good()
			tc.mutate(&req)
			err := ValidateRequest(req)
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ValidateRequest = %v, want an invalid-argument error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	zone, _ := ParseConstraint("node.labels.zone==edge-1")
	newReq := func() Request {
		n1 := ready("n1", map[string]string{"zone": "edge-1"})
		n1.Total = Resources{2 * cpu, gib}
		n2 := ready("n2", nil)
		n2.Total = Resources{2 * cpu, gib}
		down := ready("down", nil)
		down.Ready = false
		drain := ready("drain", nil)
		drain.Availability = AvailabilityDrain
		return Request{
			Nodes: []Node{n1, n2, down, drain},
			Tasks: []Task{
				{ID: "a", Reservation: Resources{MemoryBytes: 600 * mib}},
				{ID: "b", Reservation: Resources{MemoryBytes: 600 * mib}},
				{ID: "c", Constraints: []Constraint{zone}},
			},
		}
	}
	place := func(nodes ...string) []Placement {
		ps := make([]Placement, len(nodes))
		for i, n := range nodes {
			ps[i] = Placement{TaskID: string(rune('a' + i)), NodeID: n}
			if n == "" {
				ps[i].Reason = "no room"
			}
		}
		return ps
	}
	for _, tc := range []struct {
		name    string
		plan    []Placement
		edit    func(r *Request, p []Placement)
		wantErr string
	}{
		{name: "valid", plan: place("n1", "n2", "n1")},
		{name: "valid with unplaced", plan: place("n1", "", "n1")},
		{name: "unknown totals take anything", plan: place("n1", "n1", "n1"), edit: func(r *Request, _ []Placement) { r.Nodes[0].Total = Resources{} }},
		{name: "too few", plan: place("n1", "n2"), wantErr: "plan has 2 placements for 3 tasks"},
		{name: "too many", plan: append(place("n1", "n2", "n1"), Placement{TaskID: "d", NodeID: "n1"}), wantErr: "plan has 4 placements for 3 tasks"},
		{name: "out of order", plan: place("n1", "n2", "n1"), edit: func(_ *Request, p []Placement) { p[0].TaskID, p[1].TaskID = "b", "a" },
			wantErr: `placement 0 is for task "b", want task "a"`},
		{name: "unplaced without reason", plan: place("n1", "", "n1"), edit: func(_ *Request, p []Placement) { p[1].Reason = " " },
			wantErr: `task "b": not placed and no reason given`},
		{name: "unknown node", plan: place("n1", "n9", "n1"), wantErr: `task "b": node "n9" is not in the request`},
		{name: "down node", plan: place("down", "n2", "n1"), wantErr: `task "a": node "down" is not ready`},
		{name: "draining node", plan: place("n1", "drain", "n1"), wantErr: `task "b": node "drain" has availability drain`},
		{name: "paused node", plan: place("n1", "n2", "n1"), edit: func(r *Request, _ []Placement) { r.Nodes[1].Availability = AvailabilityPause },
			wantErr: `task "b": node "n2" has availability pause`},
		{name: "constraint", plan: place("n1", "n2", "n2"), wantErr: `task "c": node "n2" does not satisfy constraint node.labels.zone==edge-1`},
		{name: "overcommit within the plan", plan: place("n1", "n1", "n1"),
			wantErr: `task "b": node "n1": insufficient memory: need 600MiB, 424MiB free`},
		{name: "already reserved", plan: place("n1", "n2", "n1"), edit: func(r *Request, _ []Placement) { r.Nodes[1].Reserved.MemoryBytes = 512 * mib },
			wantErr: `task "b": node "n2": insufficient memory: need 600MiB, 512MiB free`},
		{name: "cpu", plan: place("n1", "n2", "n1"), edit: func(r *Request, _ []Placement) { r.Tasks[0].Reservation.NanoCPUs = 3 * cpu },
			wantErr: `task "a": node "n1": insufficient cpu: need 3 CPU, 2 CPU free`},
		{name: "bad request", plan: place("n1", "n2", "n1"), edit: func(r *Request, _ []Placement) { r.Nodes[1].ID = "n1" },
			wantErr: `request: node "n1": listed twice`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := newReq()
			if tc.edit != nil {
				tc.edit(&req, tc.plan)
			}
			before := newReq()
			if tc.edit != nil {
				tc.edit(&before, append([]Placement(nil), tc.plan...))
			}
			err := Validate(req, tc.plan)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
			} else if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate = %v, want an invalid-argument error containing %q", err, tc.wantErr)
			}
			if !reflect.DeepEqual(req, before) {
				t.Errorf("Validate changed the request")
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{FormatBytes(0), "0B"},
		{FormatBytes(512), "512B"},
		{FormatBytes(1024), "1KiB"},
		{FormatBytes(600 * mib), "600MiB"},
		{FormatBytes(gib), "1GiB"},
		{FormatBytes(gib + gib/2), "1.5GiB"},
		{FormatBytes(1500), "1.5KiB"},
		{FormatBytes(-gib), "-1GiB"},
		{FormatNanoCPUs(0), "0 CPU"},
		{FormatNanoCPUs(cpu / 2), "0.5 CPU"},
		{FormatNanoCPUs(2 * cpu), "2 CPU"},
		{FormatNanoCPUs(cpu / 8), "0.125 CPU"},
		{FormatNanoCPUs(cpu / 3), "0.333 CPU"},
		{Resources{cpu / 4, 256 * mib}.String(), "0.25 CPU, 256MiB memory"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

func TestWireRoundTrip(t *testing.T) {
	c1, _ := ParseConstraint("node.labels.zone==edge-1")
	c2, _ := ParseConstraint("node.id!=n2")
	req := Request{
		Nodes: []Node{
			{ID: "n1", Name: "a", Labels: map[string]string{"zone": "edge-1"}, Ready: true, Availability: AvailabilityActive,
				Total: Resources{4 * cpu, 8 * gib}, Reserved: Resources{cpu, gib}, TaskCount: 7,
				ServiceTasks: map[string]int{"s1": 3, "s2": 1}, OS: "linux", Arch: "arm64",
				Attributes: map[string]string{"containerd.snapshotter": "overlayfs"}},
			{ID: "n2", Name: "b", Availability: AvailabilityDrain},
		},
		Tasks: []Task{
			{ID: "t1", ServiceID: "s1", ServiceName: "web", Slot: 3, Reservation: Resources{cpu / 2, 600 * mib}, Constraints: []Constraint{c1, c2}},
			{ID: "t2"},
		},
	}
	if got := requestFromPB(requestToPB(req)); !reflect.DeepEqual(got, req) {
		t.Errorf("request round trip:\n got %+v\nwant %+v", got, req)
	}
	plan := []Placement{{TaskID: "t1", NodeID: "n1"}, {TaskID: "t2", Reason: "no ready worker"}}
	if got := placementsFromPB(placementsToPB(plan)); !reflect.DeepEqual(got, plan) {
		t.Errorf("placements round trip:\n got %+v\nwant %+v", got, plan)
	}
	// Task counts cross as uint32 and saturate instead of wrapping.
	req.Nodes[1].TaskCount = -3
	if got := requestToPB(req).GetNodes()[1].GetTaskCount(); got != 0 {
		t.Errorf("negative TaskCount sent as %d, want 0", got)
	}
}
