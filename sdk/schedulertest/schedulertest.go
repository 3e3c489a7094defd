// Package schedulertest is the conformance suite for Warren scheduler
// plugins. A scheduler author runs it on their own implementation in a few
// lines:
//
//	func TestConformance(t *testing.T) {
//		schedulertest.Run(t, func(t *testing.T) scheduler.Scheduler {
//			return myscheduler.New()
//		})
//	}
//
// Run serves the scheduler over a real go-plugin gRPC connection and checks
// everything on the client side, as the host sees it. RunClient runs the same
// cases on a scheduler that is already remote, such as a client of a real
// plugin process.
//
// The cases check the contract documented in package scheduler and nothing
// more: one placement per task in order; only ready, active nodes that
// satisfy the constraints and have room; placements within a batch counting
// against each other; unplaced tasks carrying a reason; purity (the same
// request gives the same plan, also under concurrent calls); and every plan
// passing scheduler.Validate, the check the host runs. How a scheduler
// chooses among valid nodes is its own business. Run the suite with -race.
package schedulertest

import (
	"fmt"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Run runs the conformance suite on the schedulers that factory makes, each
// served over a real gRPC connection that is closed when its subtest ends.
//
// factory is called once per subtest and must return a scheduler ready to
// Schedule: if it needs configuration, the factory calls Configure. The
// suite itself never calls Configure.
func Run(t *testing.T, factory func(t *testing.T) scheduler.Scheduler) {
	t.Helper()
	run(t, func(t *testing.T) scheduler.Scheduler {
		t.Helper()
		impl := factory(t)
		conn := sdk.TestConn(t, impl, scheduler.Register(impl))
		// Cleanups run last-registered first, so this closes the connection
		// before TestConn's own cleanup stops the server. Without it, closing
		// go-plugin's client asks the server to stop itself over the
		// connection while TestConn stops it directly, and the two Stop
		// calls race (go-plugin's GRPCServer.Stop is not safe to call
		// concurrently).
		t.Cleanup(func() { conn.Close() })
		return scheduler.NewClient(conn)
	})
}

// RunClient runs the conformance suite on schedulers that are already remote
// (a scheduler.NewClient over a real plugin process, say) without wrapping
// them again. factory has the same duties as in Run; since a scheduler keeps
// no state between calls, it may return the same client every time.
func RunClient(t *testing.T, factory func(t *testing.T) scheduler.Scheduler) {
	t.Helper()
	run(t, factory)
}

type suiteCase struct {
	name string
	fn   func(t *testing.T, s scheduler.Scheduler)
}

var suiteCases = []suiteCase{
	{"Info", testInfo},
	{"EmptyBatch", testEmptyBatch},
	{"OnePlacementPerTaskInOrder", testOnePerTaskInOrder},
	{"OnlyReadyActiveNodes", testOnlyReadyActive},
	{"NoNodes", testNoNodes},
	{"NoSchedulableNodes", testNoSchedulableNodes},
	{"ConstraintEqual", testConstraintEqual},
	{"ConstraintNotEqual", testConstraintNotEqual},
	{"ConstraintsAllHold", testConstraintsAllHold},
	{"ConstraintPlatformAndAttributes", testConstraintPlatformAndAttributes},
	{"UnsatisfiableConstraint", testUnsatisfiableConstraint},
	{"ResourcesWithinBatch", testResourcesWithinBatch},
	{"ResourcesAlreadyReserved", testResourcesAlreadyReserved},
	{"UnknownTotalIsUnlimited", testUnknownTotal},
	{"InsufficientCPU", testInsufficientCPU},
	{"ThousandTasksHundredNodes", testThousandTasks},
	{"InvalidRequest", testInvalidRequest},
	{"SameRequestSamePlan", testSameRequestSamePlan},
	{"ConcurrentCalls", testConcurrentCalls},
}

func run(t *testing.T, newScheduler func(t *testing.T) scheduler.Scheduler) {
	t.Helper()
	for _, c := range suiteCases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newScheduler(t)) })
	}
}

// GenerateRequest returns a deterministic request of the given size, the
// kind the host sends for a busy cluster: node IDs node-0000...; two zones
// (node.labels.zone a and b, alternating); five racks; about 15% of the
// nodes down, paused or draining; nodes of 8 CPU and 16 GiB with part
// already reserved and a few tasks running; tasks of ten services reserving
// 0.25 CPU and 256 MiB, one in ten constrained to zone a and one in ten
// kept off rack 0.
//
// Any correct scheduler places every task as long as tasks is at most ten
// times nodes. Benchmarks use it too.
func GenerateRequest(nodes, tasks int) scheduler.Request {
	req := scheduler.Request{
		Nodes: make([]scheduler.Node, 0, nodes),
		Tasks: make([]scheduler.Task, 0, tasks),
	}
	for i := range nodes {
		n := scheduler.Node{
			ID:           fmt.Sprintf("node-%04d", i),
			Name:         fmt.Sprintf("host-%04d", i),
			Labels:       map[string]string{"zone": []string{"a", "b"}[i%2], "rack": fmt.Sprint(i % 5)},
			Ready:        true,
			Availability: scheduler.AvailabilityActive,
			Total:        scheduler.Resources{NanoCPUs: 8 * cpu, MemoryBytes: 16 * gib},
			Reserved:     scheduler.Resources{NanoCPUs: int64(i%3) * cpu, MemoryBytes: int64(i%3) * 2 * gib},
			TaskCount:    i % 7,
		}
		// Only odd nodes are unavailable, so zone a keeps all its nodes.
		switch i % 20 {
		case 3:
			n.Ready = false
		case 9:
			n.Availability = scheduler.AvailabilityPause
		case 15:
			n.Availability = scheduler.AvailabilityDrain
		}
		req.Nodes = append(req.Nodes, n)
	}
	for j := range tasks {
		t := scheduler.Task{
			ID:          fmt.Sprintf("task-%05d", j),
			ServiceID:   fmt.Sprintf("svc-%d", j%10),
			ServiceName: fmt.Sprintf("web-%d", j%10),
			Slot:        uint64(j/10 + 1),
			Reservation: scheduler.Resources{NanoCPUs: cpu / 4, MemoryBytes: 256 * mib},
		}
		switch j % 10 {
		case 0:
			t.Constraints = []scheduler.Constraint{{Key: "node.labels.zone", Op: scheduler.OpEqual, Value: "a"}}
		case 5:
			t.Constraints = []scheduler.Constraint{{Key: "node.labels.rack", Op: scheduler.OpNotEqual, Value: "0"}}
		}
		req.Tasks = append(req.Tasks, t)
	}
	return req
}
