// Package schedloop is the leader's scheduling loop: it gathers the tasks
// that wait for a node, asks the scheduler plugin for a plan once per
// batch, checks the plan with scheduler.Validate and commits it through
// Raft (docs/task-lifecycle.md, "Scheduling loop").
//
// The decisions around the plugin call are pure functions: BuildRequest
// makes the read-only view, Outcome turns a plan into task writes. Run only
// fetches, calls and commits.
package schedloop

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	coreworker "github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// InvalidPlanPrefix starts the message of every task of a batch whose plan
// failed scheduler.Validate.
const InvalidPlanPrefix = "scheduler returned an invalid placement: "

// SchedulerFailedPrefix starts the message of every task of a batch the
// scheduler plugin could not be asked about (it is down, crash-looping or
// answered an error); the batch is tried again.
const SchedulerFailedPrefix = "the scheduler plugin failed: "

// NeedsPlacement reports whether t waits for a node: desired RUNNING, on no
// node, in state NEW or PENDING.
func NeedsPlacement(t *apiv1.Task) bool {
	if t.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING || t.GetNodeId() != "" {
		return false
	}
	s := t.GetState()
	return s == apiv1.TaskState_TASK_STATE_NEW || s == apiv1.TaskState_TASK_STATE_PENDING
}

func terminal(s apiv1.TaskState) bool {
	return s >= apiv1.TaskState_TASK_STATE_COMPLETE
}

// Availability maps a node's availability to the scheduler's; unspecified
// means active, and a value this version does not know takes no new tasks.
func Availability(a apiv1.NodeAvailability) scheduler.Availability {
	switch a {
	case apiv1.NodeAvailability_NODE_AVAILABILITY_UNSPECIFIED, apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE:
		return scheduler.AvailabilityActive
	case apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		return scheduler.AvailabilityDrain
	}
	return scheduler.AvailabilityPause
}

func resources(r *apiv1.Resources) scheduler.Resources {
	return scheduler.Resources{NanoCPUs: r.GetNanoCpus(), MemoryBytes: r.GetMemoryBytes()}
}

// NodeView is what the scheduler sees of node n, given the tasks assigned
// to it: Ready when its status is READY, its availability, its platform and
// runtime attributes (with scheduler.CapabilityAttr set to "true" for each
// capability of its runtime), its resources as Total, the reservations and count of
// its unfinished tasks, and in ServiceTasks the count of those that belong
// to a service of batchServices (nil: none).
func NodeView(n *apiv1.Node, tasks []*apiv1.Task, batchServices map[string]bool) scheduler.Node {
	v := scheduler.Node{
		ID:           n.GetId(),
		Name:         n.GetName(),
		Labels:       n.GetLabels(),
		Ready:        n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY,
		Availability: Availability(n.GetAvailability()),
		Total:        resources(n.GetResources()),
		OS:           n.GetOs(),
		Arch:         n.GetArch(),
		Attributes:   n.GetAttributes(),
	}
	if caps := n.GetCapabilities(); len(caps) > 0 {
		v.Attributes = maps.Clone(v.Attributes)
		if v.Attributes == nil {
			v.Attributes = make(map[string]string, len(caps))
		}
		for _, c := range caps {
			v.Attributes[scheduler.CapabilityAttr(c)] = "true"
		}
	}
	for _, t := range tasks {
		if terminal(t.GetState()) {
			continue
		}
		v.TaskCount++
		v.Reserved = v.Reserved.Add(resources(t.GetSpec().GetReservations()))
		if svc := t.GetServiceId(); batchServices[svc] {
			if v.ServiceTasks == nil {
				v.ServiceTasks = map[string]int{}
			}
			v.ServiceTasks[svc]++
		}
	}
	return v
}

// BuildRequest builds the scheduler's view for batch: every worker node
// of nodes (Node.Worker), ready or not, with tasksOn(id) the tasks
// assigned to it (counted per service for the batch's services), and the batch's tasks in order with their reservations
// and constraints. A task whose constraints do not parse is left out of the
// request and returned in rejected with its message.
//
// volume (nil: no volumes) finds the named volumes tasks mount: a task
// mounting one that lives on a node gets the constraint node.id==<that
// node>, and waits (rejected) while that node is not ready; of the tasks
// mounting a volume on no node yet, only the first of the batch is sent,
// the others wait for the placement of the first to put it on a node.
func BuildRequest(nodes []*apiv1.Node, tasksOn func(nodeID string) []*apiv1.Task, batch []*apiv1.Task, volume func(name string) (*apiv1.Volume, bool)) (req scheduler.Request, sent []*apiv1.Task, rejected map[string]string) {
	services := map[string]bool{}
	for _, t := range batch {
		services[t.GetServiceId()] = true
	}
	req.Nodes = make([]scheduler.Node, 0, len(nodes))
	for _, n := range nodes {
		if !n.GetWorker() {
			continue
		}
		req.Nodes = append(req.Nodes, NodeView(n, tasksOn(n.GetId()), services))
	}
	req.Tasks = make([]scheduler.Task, 0, len(batch))
	sent = make([]*apiv1.Task, 0, len(batch))
	// Tasks of one service share their constraints: parse them once.
	type parsed struct {
		cs  []scheduler.Constraint
		err error
	}
	type version struct {
		service string
		version uint64
	}
	cache := map[version]parsed{}
	nodeByID := make(map[string]*apiv1.Node, len(nodes))
	for _, n := range nodes {
		nodeByID[n.GetId()] = n
	}
	unplaced := map[string]string{} // volume on no node → the task sent for it
	for _, t := range batch {
		key := version{t.GetServiceId(), t.GetServiceVersion()}
		p, ok := cache[key]
		if !ok || key.version == 0 {
			p = parsed{}
			for _, s := range t.GetSpec().GetConstraints() {
				c, err := scheduler.ParseConstraint(s)
				if err != nil {
					p = parsed{err: err}
					break
				}
				p.cs = append(p.cs, c)
			}
			if p.err == nil {
				p.cs = append(p.cs, capabilityConstraints(t)...)
			}
			cache[key] = p
		}
		if p.err != nil {
			if rejected == nil {
				rejected = map[string]string{}
			}
			rejected[t.GetId()] = "invalid constraint: " + p.err.Error()
			continue
		}
		cs := p.cs
		if volume != nil {
			vcs, wait := volumeConstraints(t, volume, nodeByID, unplaced)
			if wait != "" {
				if rejected == nil {
					rejected = map[string]string{}
				}
				rejected[t.GetId()] = wait
				continue
			}
			if len(vcs) > 0 {
				cs = append(slices.Clone(cs), vcs...)
			}
		}
		req.Tasks = append(req.Tasks, scheduler.Task{
			ID:          t.GetId(),
			ServiceID:   t.GetServiceId(),
			ServiceName: t.GetServiceName(),
			Slot:        t.GetSlot(),
			Reservation: resources(t.GetSpec().GetReservations()),
			Constraints: cs,
		})
		sent = append(sent, t)
	}
	return req, sent, rejected
}

// volumeConstraints returns the constraints that keep t on the nodes of
// the volumes it mounts, or why it must wait: its volume's node is not
// ready, or another task of the batch (in unplaced, by volume) is placed
// first to put a volume on a node.
func volumeConstraints(t *apiv1.Task, volume func(string) (*apiv1.Volume, bool), nodes map[string]*apiv1.Node, unplaced map[string]string) (cs []scheduler.Constraint, wait string) {
	for _, m := range t.GetSpec().GetMounts() {
		if m.GetType() != "volume" {
			continue
		}
		v, ok := volume(m.GetSource())
		if !ok {
			return nil, fmt.Sprintf("volume %q does not exist", m.GetSource())
		}
		if v.GetNodeId() == "" {
			if first, ok := unplaced[v.GetName()]; ok && first != t.GetId() {
				return nil, fmt.Sprintf("waiting for volume %q to be put on the node of task %s", v.GetName(), first)
			}
			unplaced[v.GetName()] = t.GetId()
			continue
		}
		n, ok := nodes[v.GetNodeId()]
		switch {
		case !ok:
			return nil, fmt.Sprintf("volume %q lives on node %s, which is not in the cluster", v.GetName(), v.GetNodeId())
		case n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY:
			return nil, fmt.Sprintf("volume %q lives on node %s, which is %s", v.GetName(), n.GetName(), strings.ToLower(strings.TrimPrefix(n.GetStatus().String(), "NODE_STATUS_")))
		}
		cs = append(cs, scheduler.Constraint{Key: scheduler.KeyNodeID, Op: scheduler.OpEqual, Value: v.GetNodeId()})
	}
	return cs, ""
}

// capabilityConstraints are the constraints that keep t on nodes whose
// runtime has every capability its spec needs (runtime.TaskSpec.Needs). A
// spec the worker would refuse anyway gets none: its node says why.
func capabilityConstraints(t *apiv1.Task) []scheduler.Constraint {
	needs, err := coreworker.TaskNeeds(t)
	if err != nil {
		return nil
	}
	out := make([]scheduler.Constraint, len(needs))
	for i, c := range needs {
		out[i] = scheduler.Constraint{Key: scheduler.AttrKeyPrefix + scheduler.CapabilityAttr(string(c)), Op: scheduler.OpEqual, Value: "true"}
	}
	return out
}

// Outcome returns the task writes for a plan: sent are the tasks of the
// request in order, plan the scheduler's placements for them and invalid
// what scheduler.Validate said about the plan. A placed task becomes
// ASSIGNED to its node with an empty message; an unplaced one becomes
// PENDING with the reason as its message; with an invalid plan every task
// becomes PENDING with InvalidPlanPrefix and the error. Tasks already in
// that state with that message are left out: nothing is written for them.
func Outcome(sent []*apiv1.Task, plan []scheduler.Placement, invalid error, now time.Time) []*apiv1.Task {
	var out []*apiv1.Task
	if invalid != nil {
		msg := InvalidPlanPrefix + invalid.Error()
		for _, t := range sent {
			if w, ok := Pending(t, msg, now); ok {
				out = append(out, w)
			}
		}
		return out
	}
	for i, t := range sent {
		p := plan[i]
		if p.NodeID == "" {
			if w, ok := Pending(t, p.Reason, now); ok {
				out = append(out, w)
			}
			continue
		}
		w := proto.CloneOf(t)
		w.State = apiv1.TaskState_TASK_STATE_ASSIGNED
		w.NodeId = p.NodeID
		w.Message = ""
		w.UpdatedAt = timestamppb.New(now)
		out = append(out, w)
	}
	return out
}

// Pending returns t as PENDING with message msg, and false when it already
// is.
func Pending(t *apiv1.Task, msg string, now time.Time) (*apiv1.Task, bool) {
	if t.GetState() == apiv1.TaskState_TASK_STATE_PENDING && t.GetMessage() == msg {
		return t, false
	}
	w := proto.CloneOf(t)
	w.State = apiv1.TaskState_TASK_STATE_PENDING
	w.Message = msg
	w.UpdatedAt = timestamppb.New(now)
	return w, true
}
