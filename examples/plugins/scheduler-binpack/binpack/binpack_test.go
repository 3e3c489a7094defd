package binpack

import (
	"errors"
	"fmt"
	"strings"
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

// TestConformance runs the sdk's conformance suite over a real gRPC
// connection, unconfigured and with a task limit high enough for every case.
func TestConformance(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		schedulertest.Run(t, func(t *testing.T) scheduler.Scheduler { return New() })
	})
	t.Run("max_tasks_per_node", func(t *testing.T) {
		schedulertest.Run(t, func(t *testing.T) scheduler.Scheduler {
			return configured(t, `{"max_tasks_per_node": 100}`)
		})
	})
}

// configured returns a scheduler configured with configJSON.
func configured(t *testing.T, configJSON string) *Scheduler {
	t.Helper()
	s := New()
	if err := s.Configure(t.Context(), []byte(configJSON)); err != nil {
		t.Fatalf("Configure(%s): %v", configJSON, err)
	}
	return s
}

// node returns a ready, active node with count tasks, changed by opts.
func node(id string, count int, opts ...func(*scheduler.Node)) scheduler.Node {
	n := scheduler.Node{ID: id, Name: "host-" + id, Ready: true, Availability: scheduler.AvailabilityActive, TaskCount: count}
	for _, o := range opts {
		o(&n)
	}
	return n
}

func memory(total, reserved int64) func(*scheduler.Node) {
	return func(n *scheduler.Node) { n.Total.MemoryBytes, n.Reserved.MemoryBytes = total, reserved }
}

func cpus(total, reserved int64) func(*scheduler.Node) {
	return func(n *scheduler.Node) { n.Total.NanoCPUs, n.Reserved.NanoCPUs = total, reserved }
}

func paused(n *scheduler.Node) { n.Availability = scheduler.AvailabilityPause }

func label(k, v string) func(*scheduler.Node) {
	return func(n *scheduler.Node) { n.Labels = map[string]string{k: v} }
}

// tasks returns n tasks of one service, each reserving r and carrying the
// given constraints.
func tasks(n int, r scheduler.Resources, constraints ...string) []scheduler.Task {
	out := make([]scheduler.Task, n)
	for i := range out {
		out[i] = scheduler.Task{ID: fmt.Sprintf("web-%d", i+1), ServiceID: "web", ServiceName: "web", Slot: uint64(i + 1), Reservation: r}
		for _, s := range constraints {
			c, err := scheduler.ParseConstraint(s)
			if err != nil {
				panic(err)
			}
			out[i].Constraints = append(out[i].Constraints, c)
		}
	}
	return out
}

// schedule runs s on req, checks the plan as the host does, and returns the
// chosen node IDs ("" for an unplaced task) and the reasons.
func schedule(t *testing.T, s *Scheduler, req scheduler.Request) (nodes, reasons []string) {
	t.Helper()
	plan, err := s.Schedule(t.Context(), req)
	if err != nil {
		t.Fatalf("Schedule: %v", err)
	}
	if err := scheduler.Validate(req, plan); err != nil {
		t.Fatalf("the host would reject the plan: %v", err)
	}
	for _, p := range plan {
		nodes = append(nodes, p.NodeID)
		reasons = append(reasons, p.Reason)
	}
	return nodes, reasons
}

// TestChoosesFullestNode checks which node one task goes to.
func TestChoosesFullestNode(t *testing.T) {
	half := scheduler.Resources{MemoryBytes: 512 * mib}
	tests := []struct {
		name  string
		nodes []scheduler.Node
		task  scheduler.Resources
		want  string
	}{
		{
			name:  "least free memory",
			nodes: []scheduler.Node{node("a", 1, memory(8*gib, 4*gib)), node("b", 1, memory(8*gib, 7*gib)), node("c", 1, memory(4*gib, 2*gib))},
			task:  half,
			want:  "b",
		},
		{
			name:  "least free memory that still fits",
			nodes: []scheduler.Node{node("a", 1, memory(8*gib, 4*gib)), node("b", 1, memory(8*gib, 8*gib-256*mib)), node("c", 1, memory(4*gib, 2*gib))},
			task:  half,
			want:  "c",
		},
		{
			name:  "fewer tasks but less free memory",
			nodes: []scheduler.Node{node("a", 30, memory(8*gib, gib)), node("b", 2, memory(8*gib, 6*gib))},
			task:  half,
			want:  "b",
		},
		{
			name:  "known size before unknown size",
			nodes: []scheduler.Node{node("a", 90), node("b", 0, memory(64*gib, 0))},
			task:  half,
			want:  "b",
		},
		{
			name:  "most tasks when free memory ties",
			nodes: []scheduler.Node{node("a", 3, memory(8*gib, 2*gib)), node("b", 7, memory(8*gib, 2*gib)), node("c", 5, memory(8*gib, 2*gib))},
			task:  half,
			want:  "b",
		},
		{
			name:  "most tasks when sizes are unknown",
			nodes: []scheduler.Node{node("a", 2), node("b", 9), node("c", 4)},
			want:  "b",
		},
		{
			name:  "lowest ID on a full tie, whatever the order",
			nodes: []scheduler.Node{node("c", 4), node("a", 4), node("b", 4)},
			want:  "a",
		},
		{
			name:  "not a node without the CPU",
			nodes: []scheduler.Node{node("a", 1, memory(8*gib, 7*gib), cpus(2*cpu, 2*cpu)), node("b", 1, memory(8*gib, 4*gib))},
			task:  scheduler.Resources{NanoCPUs: cpu / 2, MemoryBytes: 512 * mib},
			want:  "b",
		},
		{
			name:  "not a paused node",
			nodes: []scheduler.Node{node("a", 1, memory(8*gib, 4*gib)), node("b", 1, memory(8*gib, 7*gib), paused)},
			task:  half,
			want:  "a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := schedule(t, New(), scheduler.Request{Nodes: tt.nodes, Tasks: tasks(1, tt.task)})
			if got[0] != tt.want {
				t.Errorf("task placed on %q, want %q", got[0], tt.want)
			}
		})
	}
}

// TestPacksBatch checks whole batches: earlier placements of a batch count,
// the task limit holds, and unplaced tasks say why.
func TestPacksBatch(t *testing.T) {
	tests := []struct {
		name   string
		config string
		nodes  []scheduler.Node
		tasks  []scheduler.Task
		want   []string // node per task; "" for unplaced
		reason string   // in the reason of every unplaced task
	}{
		{
			name:  "fills a node before starting the next",
			nodes: []scheduler.Node{node("a", 0, memory(gib, 0)), node("b", 0, memory(gib, 0))},
			tasks: tasks(6, scheduler.Resources{MemoryBytes: 256 * mib}),
			want:  []string{"a", "a", "a", "a", "b", "b"},
		},
		{
			name:  "the node the batch filled stays first",
			nodes: []scheduler.Node{node("a", 0, memory(4*gib, 0)), node("b", 0, memory(2*gib, 0))},
			tasks: tasks(3, scheduler.Resources{MemoryBytes: gib}),
			want:  []string{"b", "b", "a"},
		},
		{
			name:  "every task on the busiest node without sizes",
			nodes: []scheduler.Node{node("a", 1), node("b", 2)},
			tasks: tasks(4, scheduler.Resources{}),
			want:  []string{"b", "b", "b", "b"},
		},
		{
			name:   "task limit spills to the next node",
			config: `{"max_tasks_per_node": 3}`,
			nodes:  []scheduler.Node{node("a", 1), node("b", 2)},
			tasks:  tasks(5, scheduler.Resources{}),
			want:   []string{"b", "a", "a", "", ""},
			reason: "task limit (max_tasks_per_node = 3) reached on 2 of 2 eligible nodes",
		},
		{
			name:   "out of memory",
			nodes:  []scheduler.Node{node("a", 0, memory(gib, 0)), node("b", 0, memory(gib, 0))},
			tasks:  tasks(3, scheduler.Resources{MemoryBytes: 600 * mib}),
			want:   []string{"a", "b", ""},
			reason: "insufficient memory (need 600MiB) on 2 of 2 eligible nodes",
		},
		{
			name:  "constraint rules out the fuller node",
			nodes: []scheduler.Node{node("a", 9, label("zone", "edge-1")), node("b", 1, label("zone", "edge-2"))},
			tasks: tasks(2, scheduler.Resources{}, "node.labels.zone==edge-2"),
			want:  []string{"b", "b"},
		},
		{
			name:   "constraint no node satisfies",
			nodes:  []scheduler.Node{node("a", 0, label("zone", "edge-1"))},
			tasks:  tasks(2, scheduler.Resources{}, "node.labels.zone==edge-9"),
			want:   []string{"", ""},
			reason: "no node satisfies constraint node.labels.zone==edge-9",
		},
		{
			name:   "no ready worker",
			nodes:  []scheduler.Node{node("a", 0, paused)},
			tasks:  tasks(1, scheduler.Resources{}),
			want:   []string{""},
			reason: "no ready worker (1 node, none ready and active)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New()
			if tt.config != "" {
				s = configured(t, tt.config)
			}
			got, reasons := schedule(t, s, scheduler.Request{Nodes: tt.nodes, Tasks: tt.tasks})
			if strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("placed on %q, want %q", got, tt.want)
			}
			for i, r := range reasons {
				if got[i] == "" && !strings.Contains(r, tt.reason) {
					t.Errorf("task %d: reason %q, want it to contain %q", i, r, tt.reason)
				}
			}
		})
	}
}

// TestConfigure sends config blocks over a real gRPC connection, as the
// host does, and checks that refusals arrive as sdk.ErrInvalidArgument.
func TestConfigure(t *testing.T) {
	tests := []struct {
		config  string
		wantErr string // "": accepted
	}{
		{config: ``},
		{config: `{}`},
		{config: `{"max_tasks_per_node": 0}`},
		{config: `{"max_tasks_per_node": 40}`},
		{config: `{"max_tasks_per_node": -1}`, wantErr: "max_tasks_per_node = -1: want a whole number"},
		{config: `{"max_tasks_per_node": 2.5}`, wantErr: "max_tasks_per_node = 2.5: want a whole number"},
		{config: `{"max_tasks_per_node": 1e9}`, wantErr: "max_tasks_per_node = 1e9: want a whole number"},
		{config: `{"spread": true}`, wantErr: `unknown field "spread"`},
	}
	for _, tt := range tests {
		t.Run(tt.config, func(t *testing.T) {
			impl := New()
			s := scheduler.NewClient(sdk.TestConn(t, impl, scheduler.Register(impl)))
			err := s.Configure(t.Context(), []byte(tt.config))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Configure: %v", err)
			case tt.wantErr != "" && (!errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Configure: err = %v, want one wrapping sdk.ErrInvalidArgument containing %q", err, tt.wantErr)
			}
		})
	}
}
