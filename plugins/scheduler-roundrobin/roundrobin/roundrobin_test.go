package roundrobin

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
	"github.com/warrenorch/warren/sdk/schedulertest"
)

const (
	mib = int64(1 << 20)
	gib = int64(1 << 30)
	cpu = int64(1e9)
)

func TestConformance(t *testing.T) {
	schedulertest.Run(t, func(t *testing.T) scheduler.Scheduler { return New() })
}

// node returns a ready, active node with count tasks, changed by opts.
func node(id string, count int, opts ...func(*scheduler.Node)) scheduler.Node {
	n := scheduler.Node{ID: id, Name: "host-" + id, Ready: true, Availability: scheduler.AvailabilityActive, TaskCount: count}
	for _, o := range opts {
		o(&n)
	}
	return n
}

// running records that the node already runs count tasks of svc (which
// its task count includes).
func running(svc string, count int) func(*scheduler.Node) {
	return func(n *scheduler.Node) {
		if n.ServiceTasks == nil {
			n.ServiceTasks = map[string]int{}
		}
		n.ServiceTasks[svc] = count
	}
}

func down(n *scheduler.Node)   { n.Ready = false }
func paused(n *scheduler.Node) { n.Availability = scheduler.AvailabilityPause }
func drained(n *scheduler.Node) {
	n.Availability = scheduler.AvailabilityDrain
}

func label(k, v string) func(*scheduler.Node) {
	return func(n *scheduler.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

func memory(total, reserved int64) func(*scheduler.Node) {
	return func(n *scheduler.Node) { n.Total.MemoryBytes, n.Reserved.MemoryBytes = total, reserved }
}

func cpus(total, reserved int64) func(*scheduler.Node) {
	return func(n *scheduler.Node) { n.Total.NanoCPUs, n.Reserved.NanoCPUs = total, reserved }
}

// tasks returns n tasks of service svc, changed by opts.
func tasks(svc string, n int, opts ...func(*scheduler.Task)) []scheduler.Task {
	out := make([]scheduler.Task, n)
	for i := range out {
		out[i] = scheduler.Task{ID: fmt.Sprintf("%s-%d", svc, i+1), ServiceID: svc, ServiceName: svc, Slot: uint64(i + 1)}
		for _, o := range opts {
			o(&out[i])
		}
	}
	return out
}

func need(r scheduler.Resources) func(*scheduler.Task) {
	return func(t *scheduler.Task) { t.Reservation = r }
}

func where(constraints ...string) func(*scheduler.Task) {
	return func(t *scheduler.Task) {
		for _, s := range constraints {
			c, err := scheduler.ParseConstraint(s)
			if err != nil {
				panic(err)
			}
			t.Constraints = append(t.Constraints, c)
		}
	}
}

// interleave returns the tasks of lists taken in turn: a1 b1 a2 b2...
func interleave(lists ...[]scheduler.Task) []scheduler.Task {
	var out []scheduler.Task
	for i := 0; ; i++ {
		added := false
		for _, l := range lists {
			if i < len(l) {
				out = append(out, l[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}

func TestPlacementRule(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []scheduler.Node
		tasks []scheduler.Task
		// want is the node for each task in order, "" for unplaced.
		want []string
		// reasons maps a task's index to its exact reason.
		reasons map[int]string
	}{
		{
			name:  "fewest tasks first",
			nodes: []scheduler.Node{node("a", 5), node("b", 2), node("c", 3)},
			tasks: tasks("web", 1),
			want:  []string{"b"},
		},
		{
			name:  "counts grow as the batch places tasks",
			nodes: []scheduler.Node{node("a", 2), node("b", 0), node("c", 1)},
			tasks: tasks("web", 6),
			// No node runs web: b (0 tasks), then c (1), then a; each has
			// one web now, and b has the fewest tasks, then c, then a.
			want: []string{"b", "c", "a", "b", "c", "a"},
		},
		{
			name:  "3 tasks on 3 empty nodes spread",
			nodes: []scheduler.Node{node("a", 0), node("b", 0), node("c", 0)},
			tasks: tasks("web", 3),
			want:  []string{"a", "b", "c"},
		},
		{
			name:  "9 tasks on 3 nodes go 3/3/3 in turn",
			nodes: []scheduler.Node{node("a", 0), node("b", 0), node("c", 0)},
			tasks: tasks("web", 9),
			want:  []string{"a", "b", "c", "a", "b", "c", "a", "b", "c"},
		},
		{
			name:  "10 tasks on 3 nodes go 4/3/3",
			nodes: []scheduler.Node{node("a", 0), node("b", 0), node("c", 0)},
			tasks: tasks("web", 10),
			want:  []string{"a", "b", "c", "a", "b", "c", "a", "b", "c", "a"},
		},
		{
			name:  "ties follow ID order, not request order",
			nodes: []scheduler.Node{node("n3", 0), node("n1", 0), node("n2", 0)},
			tasks: tasks("web", 4),
			want:  []string{"n1", "n2", "n3", "n1"},
		},
		{
			name:  "ties rotate across services",
			nodes: []scheduler.Node{node("a", 0), node("b", 0), node("c", 0)},
			tasks: interleave(tasks("x", 3), tasks("y", 3)),
			want:  []string{"a", "b", "c", "a", "b", "c"},
		},
		{
			name:  "a service spreads before it stacks",
			nodes: []scheduler.Node{node("a", 0), node("b", 0)},
			// x-1→a, y-1→b; then both have 1 task and rotation says a,
			// but a already has an x: x-2→b. y-2 then goes to a, the
			// emptier node.
			tasks: []scheduler.Task{tasks("x", 2)[0], tasks("y", 2)[0], tasks("x", 2)[1], tasks("y", 2)[1]},
			want:  []string{"a", "b", "b", "a"},
		},
		{
			// As in Swarm: a replica on the busy node before a second one
			// on the idle node.
			name:  "service spread beats fewest tasks",
			nodes: []scheduler.Node{node("a", 0), node("b", 4)},
			tasks: tasks("web", 3),
			want:  []string{"a", "b", "a"},
		},
		{
			// Every node runs 3 tasks, but web's 3 are a's: a scale-up of
			// web by 3 goes to b and c first, then to a at the next tie.
			name: "a scale-up spreads over the tasks the nodes already run",
			nodes: []scheduler.Node{
				node("a", 3, running("web", 3)), node("b", 3, running("db", 3)), node("c", 3, running("db", 2), running("web", 1)),
			},
			tasks: tasks("web", 3),
			// b has no web → b; b and c have 1, c fewer tasks → c; then b and
			// c have 2, a 3 → b.
			want: []string{"b", "c", "b"},
		},
		{
			name: "scaling 3 to 9 over nodes busy with other services ends 3/3/3",
			nodes: []scheduler.Node{
				node("a", 4, running("web", 3), running("db", 1)), node("b", 4, running("db", 4)), node("c", 4, running("cache", 4)),
			},
			tasks: tasks("web", 6),
			// b and c take web until they have as many as a: 3/3/3.
			want: []string{"b", "c", "b", "c", "b", "c"},
		},
		{
			name: "down, paused and draining nodes are skipped",
			nodes: []scheduler.Node{
				node("a", 0, down), node("b", 0, paused), node("c", 0, drained), node("d", 9), node("e", 0, down, drained),
			},
			tasks: tasks("web", 2),
			want:  []string{"d", "d"},
		},
		{
			name:    "no nodes",
			tasks:   tasks("web", 2),
			want:    []string{"", ""},
			reasons: map[int]string{0: "no ready worker (the cluster has no worker nodes)"},
		},
		{
			name:    "no ready worker",
			nodes:   []scheduler.Node{node("a", 0, down), node("b", 0, paused), node("c", 0, drained), node("d", 0, down, paused)},
			tasks:   tasks("web", 1),
			want:    []string{""},
			reasons: map[int]string{0: "no ready worker (4 nodes: 2 not ready, 1 paused, 1 draining)"},
		},
		{
			name:  "label constraint ==",
			nodes: []scheduler.Node{node("a", 0, label("zone", "edge-2")), node("b", 3, label("zone", "edge-1")), node("c", 5, label("zone", "edge-1"))},
			tasks: tasks("web", 3, where("node.labels.zone==edge-1")),
			want:  []string{"b", "c", "b"},
		},
		{
			name:  "label constraint != matches nodes without the label",
			nodes: []scheduler.Node{node("a", 0, label("zone", "edge-1")), node("b", 2), node("c", 2, label("zone", "edge-2"))},
			tasks: tasks("web", 2, where("node.labels.zone!=edge-1")),
			want:  []string{"b", "c"},
		},
		{
			name:  "name and id constraints",
			nodes: []scheduler.Node{node("a", 0), node("b", 0), node("c", 0)},
			tasks: append(tasks("x", 2, where("node.name==host-c")), tasks("y", 2, where("node.id!=a", "node.id!=c"))...),
			want:  []string{"c", "c", "b", "b"},
		},
		{
			name:    "no node satisfies a constraint",
			nodes:   []scheduler.Node{node("a", 0, label("zone", "edge-2")), node("b", 0)},
			tasks:   tasks("web", 1, where("node.labels.zone==edge-1")),
			want:    []string{""},
			reasons: map[int]string{0: "no node satisfies constraint node.labels.zone==edge-1"},
		},
		{
			name:    "each failing constraint is named",
			nodes:   []scheduler.Node{node("a", 0, label("zone", "edge-2")), node("b", 0)},
			tasks:   tasks("web", 1, where("node.labels.zone==edge-1", "node.id!=b", "node.labels.disk==ssd")),
			want:    []string{""},
			reasons: map[int]string{0: "no node satisfies constraint node.labels.zone==edge-1; no node satisfies constraint node.labels.disk==ssd"},
		},
		{
			name:    "constraints that only fail together",
			nodes:   []scheduler.Node{node("a", 0, label("zone", "edge-1")), node("b", 0, label("disk", "ssd"))},
			tasks:   tasks("web", 1, where("node.labels.zone==edge-1", "node.labels.disk==ssd")),
			want:    []string{""},
			reasons: map[int]string{0: "no node satisfies constraints node.labels.zone==edge-1, node.labels.disk==ssd together"},
		},
		{
			name: "matching nodes that are unavailable are mentioned",
			nodes: []scheduler.Node{
				node("a", 0), node("b", 0, label("zone", "edge-1"), drained), node("c", 0, label("zone", "edge-1"), down),
			},
			tasks:   tasks("web", 1, where("node.labels.zone==edge-1")),
			want:    []string{""},
			reasons: map[int]string{0: "no node satisfies constraint node.labels.zone==edge-1 (2 matching nodes are unavailable: 1 not ready, 1 draining)"},
		},
		{
			name:    "resources count within the batch",
			nodes:   []scheduler.Node{node("a", 0, memory(gib, 0)), node("b", 0, memory(gib, 0))},
			tasks:   tasks("web", 3, need(scheduler.Resources{MemoryBytes: 600 * mib})),
			want:    []string{"a", "b", ""},
			reasons: map[int]string{2: "insufficient memory (need 600MiB) on 2 of 2 eligible nodes"},
		},
		{
			name:  "a full node is skipped even when emptiest",
			nodes: []scheduler.Node{node("a", 0, memory(2*gib, 1536*mib)), node("b", 30, memory(8*gib, 0))},
			tasks: tasks("web", 2, need(scheduler.Resources{MemoryBytes: gib})),
			want:  []string{"b", "b"},
		},
		{
			name:  "exact fit",
			nodes: []scheduler.Node{node("a", 0, memory(gib, 424*mib), cpus(2*cpu, cpu))},
			tasks: tasks("web", 2, need(scheduler.Resources{NanoCPUs: cpu, MemoryBytes: 600 * mib})),
			want:  []string{"a", ""},
			reasons: map[int]string{1: "insufficient memory (need 600MiB) on 1 of 1 eligible node; " +
				"insufficient cpu (need 1 CPU) on 1 of 1 eligible node"},
		},
		{
			name:  "unknown totals are unlimited",
			nodes: []scheduler.Node{node("a", 0), node("b", 0, memory(gib, 0))},
			tasks: tasks("web", 3, need(scheduler.Resources{NanoCPUs: 32 * cpu, MemoryBytes: 600 * mib})),
			want:  []string{"a", "b", "a"},
		},
		{
			name: "cpu and memory shortfalls are counted per node",
			nodes: []scheduler.Node{
				node("a", 0, cpus(cpu, 0), memory(8*gib, 0)),
				node("b", 0, cpus(8*cpu, 0), memory(gib, 0)),
				node("c", 0, cpus(cpu, 0), memory(gib, 0)),
				node("d", 0, down),
			},
			tasks: tasks("web", 1, need(scheduler.Resources{NanoCPUs: 2 * cpu, MemoryBytes: 2 * gib})),
			want:  []string{""},
			reasons: map[int]string{0: "insufficient memory (need 2GiB) on 2 of 3 eligible nodes; " +
				"insufficient cpu (need 2 CPU) on 2 of 3 eligible nodes"},
		},
		{
			name: "constraints narrow the nodes resources are counted on",
			nodes: []scheduler.Node{
				node("a", 0, label("zone", "edge-1"), memory(gib, 512*mib)),
				node("b", 0, memory(8*gib, 0)),
			},
			tasks:   tasks("web", 1, where("node.labels.zone==edge-1"), need(scheduler.Resources{MemoryBytes: gib})),
			want:    []string{""},
			reasons: map[int]string{0: "insufficient memory (need 1GiB) on 1 of 1 eligible node"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := scheduler.Request{Nodes: tc.nodes, Tasks: tc.tasks}
			plan, err := New().Schedule(t.Context(), req)
			if err != nil {
				t.Fatalf("Schedule: %v", err)
			}
			if err := scheduler.Validate(req, plan); err != nil {
				t.Fatalf("plan fails Validate: %v", err)
			}
			got := make([]string, len(plan))
			for i, p := range plan {
				got[i] = p.NodeID
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("placed on %q, want %q", got, tc.want)
			}
			for i, want := range tc.reasons {
				if plan[i].Reason != want {
					t.Errorf("task %q reason:\n got %q\nwant %q", plan[i].TaskID, plan[i].Reason, want)
				}
			}
		})
	}
}

func TestSpreadAtScale(t *testing.T) {
	for _, tc := range []struct {
		nodes, tasks int
		existing     []int // TaskCount per node (of other services); nil for empty nodes
		want         []int // tasks per node afterwards
	}{
		{nodes: 3, tasks: 10, want: []int{4, 3, 3}},
		// web spreads 3/3/3 whatever else the nodes run.
		{nodes: 3, tasks: 9, existing: []int{3, 0, 6}, want: []int{6, 3, 9}},
		// 2/2/2/1: the busiest node gets the odd one out.
		{nodes: 4, tasks: 7, existing: []int{1, 0, 0, 9}, want: []int{3, 2, 2, 10}},
		{nodes: 100, tasks: 1000, want: slices.Repeat([]int{10}, 100)},
	} {
		t.Run(fmt.Sprintf("%d tasks on %d nodes", tc.tasks, tc.nodes), func(t *testing.T) {
			var req scheduler.Request
			for i := range tc.nodes {
				n := node(fmt.Sprintf("n%03d", i), 0)
				if tc.existing != nil {
					n.TaskCount = tc.existing[i]
				}
				req.Nodes = append(req.Nodes, n)
			}
			req.Tasks = tasks("web", tc.tasks)
			plan, err := New().Schedule(t.Context(), req)
			if err != nil {
				t.Fatalf("Schedule: %v", err)
			}
			got := make([]int, tc.nodes)
			for i := range got {
				got[i] = req.Nodes[i].TaskCount
			}
			for _, p := range plan {
				var i int
				if _, err := fmt.Sscanf(p.NodeID, "n%03d", &i); err != nil {
					t.Fatalf("task %q on %q (reason %q)", p.TaskID, p.NodeID, p.Reason)
				}
				got[i]++
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("tasks per node %v, want %v", got, tc.want)
			}
		})
	}
}

func TestScheduleLeavesRequestAlone(t *testing.T) {
	req := schedulertest.GenerateRequest(20, 150)
	before := schedulertest.GenerateRequest(20, 150)
	if _, err := New().Schedule(t.Context(), req); err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	if !reflect.DeepEqual(req, before) {
		t.Fatal("Schedule changed its request")
	}
}

func TestScheduleErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := New().Schedule(ctx, schedulertest.GenerateRequest(3, 10)); !errors.Is(err, context.Canceled) {
		t.Errorf("Schedule with a canceled context: err = %v, want context.Canceled", err)
	}
	bad := scheduler.Request{Nodes: []scheduler.Node{node("a", 0), node("a", 1)}, Tasks: tasks("web", 1)}
	if _, err := New().Schedule(t.Context(), bad); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Schedule with a duplicate node: err = %v, want sdk.ErrInvalidArgument", err)
	}
}

func TestPluginBasics(t *testing.T) {
	s := New()
	info, err := s.Info(t.Context())
	want := sdk.Info{
		Kind: sdk.KindScheduler, Name: "scheduler-roundrobin", Version: "0.1.0", APIVersions: []uint32{1},
		Description: info.Description,
	}
	if err != nil || !reflect.DeepEqual(info, want) || info.Description == "" {
		t.Errorf("Info = %+v, %v; want %+v with a description", info, err, want)
	}
	schema, err := s.ConfigSchema(t.Context())
	if err != nil || len(schema.Attributes) != 0 {
		t.Errorf("ConfigSchema = %+v, %v; want an empty schema", schema, err)
	}
	for _, tc := range []struct {
		config  string
		wantErr bool
	}{
		{"{}", false},
		{"", false},
		{`{"strategy": "spread"}`, true},
		{`[]`, true},
		{`{`, true},
	} {
		err := s.Configure(t.Context(), []byte(tc.config))
		if tc.wantErr && !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Configure(%s) = %v, want sdk.ErrInvalidArgument", tc.config, err)
		}
		if !tc.wantErr && err != nil {
			t.Errorf("Configure(%s) = %v, want nil", tc.config, err)
		}
	}
}

// BenchmarkFleet places 10,000 tasks on 1,000 nodes, the fleet scale the
// design aims at, in one call. (BenchmarkSchedule in the command's package
// measures the 1,000-on-100 batch in-process and over the wire.)
func BenchmarkFleet(b *testing.B) {
	req := schedulertest.GenerateRequest(1000, 10000)
	s := New()
	for b.Loop() {
		if _, err := s.Schedule(b.Context(), req); err != nil {
			b.Fatal(err)
		}
	}
}
