// Package scheduler is the contract for Warren's scheduler plugins: a pure
// placement function from a read-only view of the cluster and a batch of
// tasks to a plan saying which node runs each task.
//
// The leader's scheduling loop wakes when tasks need a node, builds one
// Request holding every worker node (ready or not) and the whole batch of
// tasks, calls Schedule once, checks the returned plan with Validate and
// commits it through Raft. A scheduler never talks to the cluster itself:
// everything it may base a decision on is in the Request.
//
// Besides the interface, this package holds what scheduler authors need to
// get the rules right without re-deriving them: Node.Schedulable,
// Constraint.Matches, ParseConstraint, Fits, Node.Assign, ValidateRequest
// and Validate (the very check the host runs on every plan). The
// conformance suite in sdk/schedulertest runs a scheduler through the
// contract over a real gRPC connection.
package scheduler

import (
	"context"
	"maps"

	"github.com/warrenorch/warren/sdk"
)

// Availability is what an operator allows on a node.
type Availability string

// The availabilities a node can have. Only active nodes take new tasks.
const (
	// AvailabilityActive: the node takes new tasks.
	AvailabilityActive Availability = "active"
	// AvailabilityPause: the node keeps its tasks but takes no new ones.
	AvailabilityPause Availability = "pause"
	// AvailabilityDrain: the node's tasks are being moved away; it takes no
	// new ones.
	AvailabilityDrain Availability = "drain"
)

// Valid reports whether a is one of the known availabilities. The empty
// string is not one: the host always says what a node's availability is.
func (a Availability) Valid() bool {
	switch a {
	case AvailabilityActive, AvailabilityPause, AvailabilityDrain:
		return true
	}
	return false
}

// Resources is an amount of CPU and memory. For a node's Total, 0 means
// unknown and is treated as unlimited for that resource; for a task's
// Reservation, 0 means the task reserves none of it. Negative values are
// invalid (ValidateRequest rejects them).
type Resources struct {
	// NanoCPUs is CPU in units of 1e-9 cores: 500_000_000 is half a core.
	NanoCPUs int64
	// MemoryBytes is memory in bytes.
	MemoryBytes int64
}

// Add returns r plus o.
func (r Resources) Add(o Resources) Resources {
	return Resources{NanoCPUs: r.NanoCPUs + o.NanoCPUs, MemoryBytes: r.MemoryBytes + o.MemoryBytes}
}

// String formats r for people, e.g. "0.5 CPU, 600MiB memory".
func (r Resources) String() string {
	return FormatNanoCPUs(r.NanoCPUs) + ", " + FormatBytes(r.MemoryBytes) + " memory"
}

// Node is one worker node as the scheduler sees it.
type Node struct {
	// ID identifies the node; placements name it. Unique within a Request.
	ID string
	// Name is the node's hostname-like name, matched by node.name
	// constraints.
	Name string
	// Labels are the operator's labels, matched by node.labels.<key>
	// constraints. May be nil.
	Labels map[string]string
	// Ready is false when the node is down or not yet registered.
	Ready bool
	// Availability says whether the node takes new tasks.
	Availability Availability
	// Total is what the node offers; a zero field is unknown/unlimited.
	Total Resources
	// Reserved is the sum of the reservations of the tasks already on the
	// node.
	Reserved Resources
	// TaskCount is the number of tasks assigned to the node and not
	// finished.
	TaskCount int
	// ServiceTasks counts, for each service with a task in the Request's
	// batch (keyed by Task.ServiceID), that service's tasks assigned to the
	// node and not finished; a service the node runs none of is absent.
	// It is what a spreading scheduler balances on across batches: a
	// service with 4 tasks on nodes of zone a, scaled to 8, shows those 4
	// here when the next 4 are placed. Services with no task in the batch
	// are left out (TaskCount counts them). May be nil.
	ServiceTasks map[string]int
	// OS and Arch are the node's platform as its runtime reports it, in Go's
	// GOOS and GOARCH names ("linux", "arm64"), matched by node.platform.os
	// and node.platform.arch constraints. Empty when unknown.
	OS   string
	Arch string
	// Attributes are the facts the node's runtime reports in its
	// fingerprint (runtime.Fingerprint.Attributes, keyed
	// "<runtime>.<fact>"), matched by node.attr.<key> constraints. May be
	// nil.
	Attributes map[string]string
}

// Schedulable reports whether n may take new tasks at all: it is Ready and
// its Availability is active. Paused and draining nodes keep their tasks
// but take no new ones.
func (n Node) Schedulable() bool {
	return n.Ready && n.Availability == AvailabilityActive
}

// Assign records task t on n: TaskCount one higher, t's Reservation added
// to Reserved and ServiceTasks[t.ServiceID] one higher. A scheduler must do
// this for every placement it makes so that later tasks of the same plan
// see it. ServiceTasks is copied before it changes, so a Node copied from
// the Request (slices.Clone of Request.Nodes) never changes the Request.
func (n *Node) Assign(t Task) {
	n.TaskCount++
	n.Reserved = n.Reserved.Add(t.Reservation)
	if t.ServiceID == "" {
		return
	}
	counts := make(map[string]int, len(n.ServiceTasks)+1)
	maps.Copy(counts, n.ServiceTasks)
	counts[t.ServiceID]++
	n.ServiceTasks = counts
}

// ServiceCount is the number of unfinished tasks of service serviceID on
// n, this plan's placements recorded with Assign included.
func (n Node) ServiceCount(serviceID string) int {
	return n.ServiceTasks[serviceID]
}

// Task is one task waiting for a node.
type Task struct {
	// ID identifies the task; its Placement carries it back. Unique within
	// a Request.
	ID string
	// ServiceID and ServiceName name the service the task belongs to.
	ServiceID   string
	ServiceName string
	// Slot is the task's replica number within its service, from 1.
	Slot uint64
	// Reservation is what the task needs free on its node.
	Reservation Resources
	// Constraints must all hold on the chosen node.
	Constraints []Constraint
}

// Request is the read-only view a scheduler decides from.
type Request struct {
	// Nodes are the cluster's worker nodes, including the ones that are
	// down, paused or draining. Order carries no meaning.
	Nodes []Node
	// Tasks is the batch to place, in the order placements must follow.
	Tasks []Task
}

// Placement is the scheduler's decision for one task.
type Placement struct {
	// TaskID is the ID of the task this placement is for.
	TaskID string
	// NodeID is the node that runs the task, or "" when the task could not
	// be placed.
	NodeID string
	// Reason says, for people, why the task could not be placed. Required
	// when NodeID is "", optional otherwise.
	Reason string
}

// Scheduler is implemented by scheduler plugins.
//
// Purity. Schedule is a pure function of its Request: the plan depends on
// nothing else, so the same Request always yields the same plan. A
// scheduler keeps no state between calls (no cursor carried from one call
// to the next, no cache of earlier requests), does no I/O, reads no clock
// and uses no randomness that is not seeded from the Request. Everything
// the host knows that matters for placement is in the Request; anything
// else would make plans impossible to reproduce and debug.
//
// Shape of the plan. Schedule returns exactly one Placement per task of
// req.Tasks, in the same order, each carrying its task's ID. An empty
// batch yields an empty plan and no error.
//
// Which node may take a task. A placement's NodeID must name a node of
// req.Nodes that
//   - is Schedulable: Ready, with Availability active (paused and draining
//     nodes take no new tasks);
//   - satisfies every one of the task's Constraints (Constraint.Matches);
//   - has room for the task's Reservation: for each resource, Total minus
//     Reserved must be at least the reservation, where a Total of 0 means
//     unknown and imposes no limit (Fits).
//
// Placements within one call account for each other: once a task is placed
// on a node, later tasks of the same batch see that node with TaskCount one
// higher and the task's Reservation added to Reserved (Node.Assign). Two
// 600 MiB tasks never both go to a node with 1 GiB free.
//
// Unplaceable tasks are not errors. A task no node can take gets NodeID ""
// and a Reason written for the operator who will read it in `warren service
// ps`: what stood in the way, with numbers where they help, e.g. "no ready
// worker", "insufficient memory (need 600MiB) on 2 of 2 eligible nodes",
// "no node satisfies constraint node.labels.zone==edge-1". A resource
// shortfall names the resource ("memory", "cpu"). The task stays pending
// and is offered again in a later batch.
//
// Errors. Schedule returns an error only when it cannot make a plan at all:
//   - the Request fails ValidateRequest (duplicate or empty IDs, negative
//     resources, an unknown availability, a malformed constraint): return
//     that error, which wraps sdk.ErrInvalidArgument. The host never sends
//     such a request, so this is a bug report, not a normal outcome;
//   - ctx ends: return ctx.Err() (a large batch should check ctx now and
//     then).
//
// Threading. The host may call Schedule concurrently (for example while a
// new leader catches up); implementations must be safe for that, which a
// stateless implementation is for free. Schedule may be called before
// Configure only by tests; the host always configures first.
//
// Trust. The host does not trust the plan: it runs Validate on it and
// rejects the whole plan, placing nothing, when any placement breaks the
// rules above. A scheduler that gets this wrong stalls scheduling rather
// than overcommitting a node.
type Scheduler interface {
	sdk.Plugin

	// Schedule places req.Tasks on req.Nodes and returns one Placement per
	// task, in order. See the Scheduler doc for the rules.
	Schedule(ctx context.Context, req Request) ([]Placement, error)
}
