package schedulertest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
)

const (
	cpu = int64(1e9)
	mib = int64(1 << 20)
	gib = int64(1 << 30)
)

// node returns a ready, active node without resource limits.
func node(id string, labels map[string]string) scheduler.Node {
	return scheduler.Node{
		ID:           id,
		Name:         "host-" + id,
		Labels:       labels,
		Ready:        true,
		Availability: scheduler.AvailabilityActive,
	}
}

// tasks returns n tasks of one service without reservation or constraints.
func tasks(prefix string, n int) []scheduler.Task {
	out := make([]scheduler.Task, 0, n)
	for i := range n {
		out = append(out, scheduler.Task{
			ID:          fmt.Sprintf("%s-%d", prefix, i),
			ServiceID:   "svc-" + prefix,
			ServiceName: prefix,
			Slot:        uint64(i + 1),
		})
	}
	return out
}

// constrained returns n tasks that all carry the given constraints.
func constrained(prefix string, n int, cs ...string) []scheduler.Task {
	out := tasks(prefix, n)
	for i := range out {
		for _, s := range cs {
			c, err := scheduler.ParseConstraint(s)
			if err != nil {
				panic(err)
			}
			out[i].Constraints = append(out[i].Constraints, c)
		}
	}
	return out
}

// reserving returns n tasks that each reserve r.
func reserving(prefix string, n int, r scheduler.Resources) []scheduler.Task {
	out := tasks(prefix, n)
	for i := range out {
		out[i].Reservation = r
	}
	return out
}

// schedule calls Schedule, fails the test on an error, and checks the plan
// the way the host does before returning it.
func schedule(t *testing.T, s scheduler.Scheduler, req scheduler.Request) []scheduler.Placement {
	t.Helper()
	plan, err := s.Schedule(t.Context(), req)
	if err != nil {
		t.Fatalf("Schedule(%d nodes, %d tasks): %v", len(req.Nodes), len(req.Tasks), err)
	}
	if err := scheduler.Validate(req, plan); err != nil {
		t.Fatalf("Schedule(%d nodes, %d tasks) returned a plan the host rejects: %v\nplan: %s",
			len(req.Nodes), len(req.Tasks), err, describe(plan))
	}
	return plan
}

// describe formats a plan compactly for failure messages.
func describe(plan []scheduler.Placement) string {
	const limit = 20
	var b strings.Builder
	for i, p := range plan {
		if i == limit {
			fmt.Fprintf(&b, " ... (%d more)", len(plan)-limit)
			break
		}
		if p.NodeID != "" {
			fmt.Fprintf(&b, "[%s→%s] ", p.TaskID, p.NodeID)
		} else {
			fmt.Fprintf(&b, "[%s unplaced: %q] ", p.TaskID, p.Reason)
		}
	}
	return b.String()
}

// wantAllPlaced fails unless every task has a node.
func wantAllPlaced(t *testing.T, plan []scheduler.Placement) {
	t.Helper()
	for _, p := range plan {
		if p.NodeID == "" {
			t.Fatalf("task %q not placed (reason %q), want every task placed\nplan: %s", p.TaskID, p.Reason, describe(plan))
		}
	}
}

// wantNonePlaced fails unless no task has a node and each has a reason.
func wantNonePlaced(t *testing.T, plan []scheduler.Placement) {
	t.Helper()
	for _, p := range plan {
		if p.NodeID != "" {
			t.Fatalf("task %q placed on %q, want it unplaced", p.TaskID, p.NodeID)
		}
		if strings.TrimSpace(p.Reason) == "" {
			t.Fatalf("task %q unplaced without a reason", p.TaskID)
		}
	}
}

func testInfo(t *testing.T, s scheduler.Scheduler) {
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindScheduler {
		t.Errorf("Info.Kind = %q, want %q", info.Kind, sdk.KindScheduler)
	}
	if info.Name == "" || info.Version == "" {
		t.Errorf("Info name %q, version %q: want both set", info.Name, info.Version)
	}
	if !slices.Contains(info.APIVersions, sdk.APIVersion) {
		t.Errorf("Info.APIVersions = %v, want it to contain %d", info.APIVersions, sdk.APIVersion)
	}
	if _, err := s.ConfigSchema(t.Context()); err != nil {
		t.Errorf("ConfigSchema: %v", err)
	}
}

func testEmptyBatch(t *testing.T, s scheduler.Scheduler) {
	for _, req := range []scheduler.Request{
		{},
		{Nodes: []scheduler.Node{node("n1", nil), node("n2", nil)}},
	} {
		if plan := schedule(t, s, req); len(plan) != 0 {
			t.Fatalf("Schedule with %d nodes and no tasks = %d placements, want none", len(req.Nodes), len(plan))
		}
	}
}

func testOnePerTaskInOrder(t *testing.T, s scheduler.Scheduler) {
	// IDs out of any sorted order, and two services interleaved: the plan
	// must follow the request, not a sorted or grouped view of it.
	req := scheduler.Request{Nodes: []scheduler.Node{node("n2", nil), node("n1", nil), node("n3", nil)}}
	for i, id := range []string{"t-q", "t-b", "t-z", "t-a", "t-m", "t-c", "t-y"} {
		req.Tasks = append(req.Tasks, scheduler.Task{ID: id, ServiceID: fmt.Sprintf("svc-%d", i%2), Slot: uint64(i/2 + 1)})
	}
	plan := schedule(t, s, req) // Validate checks count and order
	wantAllPlaced(t, plan)
}

func testOnlyReadyActive(t *testing.T, s scheduler.Scheduler) {
	down := node("down", nil)
	down.Ready = false
	paused := node("paused", nil)
	paused.Availability = scheduler.AvailabilityPause
	draining := node("draining", nil)
	draining.Availability = scheduler.AvailabilityDrain
	// The unavailable nodes are the emptiest, so a scheduler that ignores
	// availability would pick them.
	good := node("good", nil)
	good.TaskCount = 50
	req := scheduler.Request{
		Nodes: []scheduler.Node{down, paused, good, draining},
		Tasks: tasks("web", 6),
	}
	plan := schedule(t, s, req)
	wantAllPlaced(t, plan)
	for _, p := range plan {
		if p.NodeID != "good" {
			t.Fatalf("task %q on %q, want every task on the only ready, active node %q", p.TaskID, p.NodeID, "good")
		}
	}
}

func testNoNodes(t *testing.T, s scheduler.Scheduler) {
	plan := schedule(t, s, scheduler.Request{Tasks: tasks("web", 3)})
	if len(plan) != 3 {
		t.Fatalf("got %d placements, want 3", len(plan))
	}
	wantNonePlaced(t, plan)
}

func testNoSchedulableNodes(t *testing.T, s scheduler.Scheduler) {
	down := node("down", nil)
	down.Ready = false
	paused := node("paused", nil)
	paused.Availability = scheduler.AvailabilityPause
	draining := node("draining", nil)
	draining.Availability = scheduler.AvailabilityDrain
	downDraining := node("down-draining", nil)
	downDraining.Ready = false
	downDraining.Availability = scheduler.AvailabilityDrain
	plan := schedule(t, s, scheduler.Request{
		Nodes: []scheduler.Node{down, paused, draining, downDraining},
		Tasks: tasks("web", 4),
	})
	wantNonePlaced(t, plan)
}

// zoned returns nodes in zones edge-1 (two of them), edge-2 and none.
func zoned() []scheduler.Node {
	return []scheduler.Node{
		node("a", map[string]string{"zone": "edge-1", "disk": "ssd"}),
		node("b", map[string]string{"zone": "edge-1"}),
		node("c", map[string]string{"zone": "edge-2", "disk": "ssd"}),
		node("d", nil),
	}
}

// wantPlacedOn fails unless every task is placed on one of the nodes in ids.
func wantPlacedOn(t *testing.T, plan []scheduler.Placement, ids ...string) {
	t.Helper()
	wantAllPlaced(t, plan)
	for _, p := range plan {
		if !slices.Contains(ids, p.NodeID) {
			t.Fatalf("task %q on %q, want one of %v", p.TaskID, p.NodeID, ids)
		}
	}
}

func testConstraintEqual(t *testing.T, s scheduler.Scheduler) {
	for _, tc := range []struct {
		constraint string
		want       []string
	}{
		{"node.labels.zone==edge-1", []string{"a", "b"}},
		{"node.labels.zone==edge-2", []string{"c"}},
		{"node.name==host-d", []string{"d"}},
		{"node.id==b", []string{"b"}},
	} {
		t.Run(tc.constraint, func(t *testing.T) {
			plan := schedule(t, s, scheduler.Request{Nodes: zoned(), Tasks: constrained("web", 6, tc.constraint)})
			wantPlacedOn(t, plan, tc.want...)
		})
	}
}

// platformed returns nodes with platforms and runtime attributes: a and b
// linux/amd64 (a with a GPU attribute), c linux/arm64, d with nothing
// reported.
func platformed() []scheduler.Node {
	nodes := zoned()
	for i, p := range []struct {
		os, arch string
		attrs    map[string]string
	}{
		{"linux", "amd64", map[string]string{"gpu.model": "t4", "containerd.snapshotter": "overlayfs"}},
		{"linux", "amd64", map[string]string{"containerd.snapshotter": "overlayfs"}},
		{"linux", "arm64", map[string]string{"containerd.snapshotter": "native"}},
		{},
	} {
		nodes[i].OS, nodes[i].Arch, nodes[i].Attributes = p.os, p.arch, p.attrs
	}
	return nodes
}

func testConstraintPlatformAndAttributes(t *testing.T, s scheduler.Scheduler) {
	for _, tc := range []struct {
		constraint string
		want       []string
	}{
		{"node.platform.os==linux", []string{"a", "b", "c"}},
		{"node.platform.arch==arm64", []string{"c"}},
		{"node.platform.arch!=arm64", []string{"a", "b", "d"}},
		{"node.attr.gpu.model==t4", []string{"a"}},
		{"node.attr.containerd.snapshotter==overlayfs", []string{"a", "b"}},
		// A node whose runtime does not report the attribute differs from
		// any value.
		{"node.attr.gpu.model!=t4", []string{"b", "c", "d"}},
	} {
		t.Run(tc.constraint, func(t *testing.T) {
			plan := schedule(t, s, scheduler.Request{Nodes: platformed(), Tasks: constrained("web", 6, tc.constraint)})
			wantPlacedOn(t, plan, tc.want...)
		})
	}
	// An attribute no node reports places nothing, with a reason.
	plan := schedule(t, s, scheduler.Request{Nodes: platformed(), Tasks: constrained("web", 2, "node.attr.fpga==yes")})
	wantNonePlaced(t, plan)
}

func testConstraintNotEqual(t *testing.T, s scheduler.Scheduler) {
	for _, tc := range []struct {
		constraint string
		want       []string
	}{
		// A node without the label differs from any value.
		{"node.labels.zone!=edge-1", []string{"c", "d"}},
		{"node.labels.disk!=ssd", []string{"b", "d"}},
		{"node.name!=host-a", []string{"b", "c", "d"}},
		{"node.id!=c", []string{"a", "b", "d"}},
	} {
		t.Run(tc.constraint, func(t *testing.T) {
			plan := schedule(t, s, scheduler.Request{Nodes: zoned(), Tasks: constrained("web", 6, tc.constraint)})
			wantPlacedOn(t, plan, tc.want...)
		})
	}
}

func testConstraintsAllHold(t *testing.T, s scheduler.Scheduler) {
	plan := schedule(t, s, scheduler.Request{
		Nodes: zoned(),
		Tasks: constrained("web", 5, "node.labels.zone==edge-1", "node.labels.disk==ssd"),
	})
	wantPlacedOn(t, plan, "a")

	plan = schedule(t, s, scheduler.Request{
		Nodes: zoned(),
		Tasks: constrained("web", 5, "node.labels.zone!=edge-1", "node.id!=d"),
	})
	wantPlacedOn(t, plan, "c")
}

func testUnsatisfiableConstraint(t *testing.T, s scheduler.Scheduler) {
	for _, cs := range [][]string{
		{"node.labels.zone==edge-9"},
		{"node.labels.zone==edge-2", "node.labels.disk!=ssd"},
	} {
		t.Run(strings.Join(cs, ","), func(t *testing.T) {
			plan := schedule(t, s, scheduler.Request{Nodes: zoned(), Tasks: constrained("web", 2, cs...)})
			wantNonePlaced(t, plan)
		})
	}

	// A matching node that is draining does not count.
	nodes := zoned()
	nodes[2].Availability = scheduler.AvailabilityDrain // c, the only edge-2 node
	plan := schedule(t, s, scheduler.Request{Nodes: nodes, Tasks: constrained("web", 2, "node.labels.zone==edge-2")})
	wantNonePlaced(t, plan)
}

func testResourcesWithinBatch(t *testing.T, s scheduler.Scheduler) {
	n1, n2 := node("n1", nil), node("n2", nil)
	n1.Total.MemoryBytes, n2.Total.MemoryBytes = gib, gib
	req := scheduler.Request{
		Nodes: []scheduler.Node{n1, n2},
		Tasks: reserving("web", 3, scheduler.Resources{MemoryBytes: 600 * mib}),
	}
	plan := schedule(t, s, req)
	used := map[string]bool{}
	var unplaced []scheduler.Placement
	for _, p := range plan {
		if p.NodeID == "" {
			unplaced = append(unplaced, p)
			continue
		}
		if used[p.NodeID] {
			t.Fatalf("two 600MiB tasks on %q, which has 1GiB\nplan: %s", p.NodeID, describe(plan))
		}
		used[p.NodeID] = true
	}
	if len(used) != 2 || len(unplaced) != 1 {
		t.Fatalf("%d tasks placed and %d unplaced, want 2 and 1\nplan: %s", len(used), len(unplaced), describe(plan))
	}
	if !strings.Contains(strings.ToLower(unplaced[0].Reason), "memory") {
		t.Errorf("unplaced task's reason %q does not mention memory", unplaced[0].Reason)
	}
}

func testResourcesAlreadyReserved(t *testing.T, s scheduler.Scheduler) {
	// "full" is the emptiest by task count but has only 512MiB left.
	full := node("full", nil)
	full.Total = scheduler.Resources{NanoCPUs: 4 * cpu, MemoryBytes: 2 * gib}
	full.Reserved = scheduler.Resources{NanoCPUs: cpu, MemoryBytes: 1536 * mib}
	roomy := node("roomy", nil)
	roomy.Total = scheduler.Resources{NanoCPUs: 4 * cpu, MemoryBytes: 8 * gib}
	roomy.TaskCount = 40
	plan := schedule(t, s, scheduler.Request{
		Nodes: []scheduler.Node{full, roomy},
		Tasks: reserving("web", 4, scheduler.Resources{MemoryBytes: gib}),
	})
	wantPlacedOn(t, plan, "roomy")
}

func testUnknownTotal(t *testing.T, s scheduler.Scheduler) {
	// A node that does not know its size takes anything.
	plan := schedule(t, s, scheduler.Request{
		Nodes: []scheduler.Node{node("unknown", nil)},
		Tasks: reserving("big", 3, scheduler.Resources{NanoCPUs: 64 * cpu, MemoryBytes: 512 * gib}),
	})
	wantPlacedOn(t, plan, "unknown")
}

func testInsufficientCPU(t *testing.T, s scheduler.Scheduler) {
	small := node("small", nil)
	small.Total = scheduler.Resources{NanoCPUs: cpu, MemoryBytes: 8 * gib}
	plan := schedule(t, s, scheduler.Request{
		Nodes: []scheduler.Node{small},
		Tasks: reserving("heavy", 1, scheduler.Resources{NanoCPUs: 2 * cpu}),
	})
	wantNonePlaced(t, plan)
	if !strings.Contains(strings.ToLower(plan[0].Reason), "cpu") {
		t.Errorf("reason %q does not mention cpu", plan[0].Reason)
	}
}

func testThousandTasks(t *testing.T, s scheduler.Scheduler) {
	plan := schedule(t, s, GenerateRequest(100, 1000))
	wantAllPlaced(t, plan)
}

func testInvalidRequest(t *testing.T, s scheduler.Scheduler) {
	dup := scheduler.Request{Nodes: []scheduler.Node{node("n1", nil), node("n1", nil)}, Tasks: tasks("web", 1)}
	noAvail := scheduler.Request{Nodes: []scheduler.Node{node("n1", nil)}, Tasks: tasks("web", 1)}
	noAvail.Nodes[0].Availability = ""
	badConstraint := scheduler.Request{Nodes: []scheduler.Node{node("n1", nil)}, Tasks: tasks("web", 1)}
	badConstraint.Tasks[0].Constraints = []scheduler.Constraint{{Key: "node.color", Op: scheduler.OpEqual, Value: "red"}}
	for name, req := range map[string]scheduler.Request{
		"duplicate node":         dup,
		"empty availability":     noAvail,
		"unknown constraint key": badConstraint,
	} {
		_, err := s.Schedule(t.Context(), req)
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("Schedule with %s: err = %v, want one wrapping sdk.ErrInvalidArgument", name, err)
		}
	}
}

// variedRequests returns requests of different shapes, for the purity
// checks.
func variedRequests() []scheduler.Request {
	var out []scheduler.Request
	for i := range 12 {
		req := GenerateRequest(5+i*3, 10+i*17)
		// Make nodes compete: a tight memory limit on some of them.
		for j := range req.Nodes {
			if j%4 == i%4 {
				req.Nodes[j].Total.MemoryBytes = req.Nodes[j].Reserved.MemoryBytes + 768*mib
			}
		}
		out = append(out, req)
	}
	return out
}

func testSameRequestSamePlan(t *testing.T, s scheduler.Scheduler) {
	for i, req := range variedRequests() {
		first := schedule(t, s, req)
		// Another request in between must not change the answer either.
		schedule(t, s, GenerateRequest(7, 30))
		second := schedule(t, s, req)
		if !slices.Equal(first, second) {
			t.Fatalf("request %d: two calls gave different plans:\n%s\n%s", i, describe(first), describe(second))
		}
	}
}

func testConcurrentCalls(t *testing.T, s scheduler.Scheduler) {
	reqs := variedRequests()
	want := make([][]scheduler.Placement, len(reqs))
	for i, req := range reqs {
		want[i] = schedule(t, s, req)
	}
	const workers, rounds = 8, 3
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for r := range rounds * len(reqs) {
				i := (w + r) % len(reqs) // each worker in its own order
				got, err := s.Schedule(t.Context(), reqs[i])
				if err != nil {
					t.Errorf("worker %d: Schedule(request %d): %v", w, i, err)
					return
				}
				if !slices.Equal(got, want[i]) {
					t.Errorf("worker %d: request %d: plan differs from the one computed alone:\n%s\n%s", w, i, describe(got), describe(want[i]))
					return
				}
			}
		})
	}
	wg.Wait()
}
