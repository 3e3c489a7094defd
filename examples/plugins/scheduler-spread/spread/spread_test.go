package spread

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
	"github.com/warrenorch/warren/sdk/schedulertest"
)

// TestConformance runs the sdk's conformance suite over a real gRPC
// connection, unconfigured and spreading over the zone label.
func TestConformance(t *testing.T) {
	t.Run("default", func(t *testing.T) {
		schedulertest.Run(t, func(t *testing.T) scheduler.Scheduler { return New() })
	})
	t.Run("label=zone", func(t *testing.T) {
		schedulertest.Run(t, func(t *testing.T) scheduler.Scheduler { return configured(t, "zone") })
	})
}

func configured(t *testing.T, label string) *Scheduler {
	t.Helper()
	s := New()
	if err := s.Configure(t.Context(), []byte(fmt.Sprintf(`{"label": %q}`, label))); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return s
}

// zoneNode is a ready, active node in zone running the given tasks of
// service web and others.
func zoneNode(id, zone string, web, others int) scheduler.Node {
	n := scheduler.Node{ID: id, Name: "host-" + id, Labels: map[string]string{"zone": zone}, Ready: true,
		Availability: scheduler.AvailabilityActive, TaskCount: web + others}
	if web > 0 {
		n.ServiceTasks = map[string]int{"svc-web": web}
	}
	return n
}

func webTasks(from, n int) []scheduler.Task {
	out := make([]scheduler.Task, n)
	for i := range out {
		out[i] = scheduler.Task{ID: fmt.Sprintf("web-%d", from+i), ServiceID: "svc-web", ServiceName: "web", Slot: uint64(from + i)}
	}
	return out
}

// perZone counts a plan's placements by the zone of their node, plus what
// the nodes ran already.
func perZone(t *testing.T, nodes []scheduler.Node, plan []scheduler.Placement) map[string]int {
	t.Helper()
	zone := map[string]string{}
	got := map[string]int{}
	for _, n := range nodes {
		zone[n.ID] = n.Labels["zone"]
		got[n.Labels["zone"]] += n.ServiceCount("svc-web")
	}
	for _, p := range plan {
		if p.NodeID == "" {
			t.Fatalf("task %s not placed: %s", p.TaskID, p.Reason)
		}
		got[zone[p.NodeID]]++
	}
	return got
}

func TestScaleUpSpreadsAcrossBatches(t *testing.T) {
	s := configured(t, "zone")
	// A service with 4 tasks, all in zone a (it ran before b's nodes
	// joined); b's nodes run other work. Scaled to 8: the 4 new tasks go to
	// zone b.
	nodes := []scheduler.Node{
		zoneNode("a1", "a", 2, 0), zoneNode("a2", "a", 2, 0),
		zoneNode("b1", "b", 0, 3), zoneNode("b2", "b", 0, 5),
	}
	plan, err := s.Schedule(t.Context(), scheduler.Request{Nodes: nodes, Tasks: webTasks(5, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := perZone(t, nodes, plan), map[string]int{"a": 4, "b": 4}; !maps.Equal(got, want) {
		t.Fatalf("web per zone after 4 → 8: %v, want %v (plan %v)", got, want, plan)
	}
	// Within zone b the new tasks alternate, starting with the node that
	// runs less.
	for i, want := range []string{"b1", "b2", "b1", "b2"} {
		if plan[i].NodeID != want {
			t.Fatalf("placement %d on %s, want %s (plan %v)", i, plan[i].NodeID, want, plan)
		}
	}

	// Without the label's groups (one group of all nodes) the same request
	// spreads by node: also 4/4 here, since zone a's nodes already run 2.
	plan, err = New().Schedule(t.Context(), scheduler.Request{Nodes: nodes, Tasks: webTasks(5, 4)})
	if err != nil {
		t.Fatal(err)
	}
	if got := perZone(t, nodes, plan); got["b"] != 4 {
		t.Fatalf("unconfigured: web per zone %v, want the 4 new ones on b's empty-of-web nodes", got)
	}
}

func TestNodesWithoutTheLabelFormAGroup(t *testing.T) {
	s := configured(t, "zone")
	unlabelled := scheduler.Node{ID: "x", Name: "host-x", Ready: true, Availability: scheduler.AvailabilityActive}
	nodes := []scheduler.Node{zoneNode("a1", "a", 0, 0), zoneNode("a2", "a", 0, 0), zoneNode("b1", "b", 0, 0), unlabelled}
	plan, err := s.Schedule(t.Context(), scheduler.Request{Nodes: nodes, Tasks: webTasks(1, 6)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := perZone(t, nodes, plan), map[string]int{"a": 2, "b": 2, "": 2}; !maps.Equal(got, want) {
		t.Fatalf("web per group: %v, want %v", got, want)
	}
}

func TestUnplaceableReasons(t *testing.T) {
	s := configured(t, "zone")
	onMars, err := scheduler.ParseConstraint("node.labels.zone==mars")
	if err != nil {
		t.Fatal(err)
	}
	down := zoneNode("d", "a", 0, 0)
	down.Ready = false
	small := zoneNode("s", "a", 0, 0)
	small.Total.MemoryBytes = 1 << 20
	for _, tc := range []struct {
		name  string
		nodes []scheduler.Node
		task  scheduler.Task
		want  string
	}{
		{"no ready node", []scheduler.Node{down}, webTasks(1, 1)[0], "no ready, active worker among 1 nodes"},
		{"constraint", []scheduler.Node{zoneNode("a1", "a", 0, 0)},
			scheduler.Task{ID: "t", ServiceID: "svc-web", Constraints: []scheduler.Constraint{onMars}}, "satisfies node.labels.zone==mars"},
		{"room", []scheduler.Node{small},
			scheduler.Task{ID: "t", ServiceID: "svc-web", Reservation: scheduler.Resources{MemoryBytes: 1 << 30}}, "no room for the reservation"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, err := s.Schedule(t.Context(), scheduler.Request{Nodes: tc.nodes, Tasks: []scheduler.Task{tc.task}})
			if err != nil {
				t.Fatal(err)
			}
			if plan[0].NodeID != "" || !strings.Contains(plan[0].Reason, tc.want) {
				t.Fatalf("placement %+v, want none with a reason containing %q", plan[0], tc.want)
			}
		})
	}
}

func TestConfigure(t *testing.T) {
	for _, bad := range []string{`{}`, `{"label": " "}`, `{"label": "zone", "other": 1}`} {
		if err := New().Configure(t.Context(), []byte(bad)); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Configure(%s) = %v, want an invalid-argument error", bad, err)
		}
	}
}
