package orchestrator_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// setNode commits a change to a node as the dispatcher or the API would.
func (c *cluster) setNode(t *testing.T, id string, change func(*apiv1.Node)) {
	t.Helper()
	n, ok := c.state.Node(id)
	if !ok {
		t.Fatalf("node %s not found", id)
	}
	n = proto.CloneOf(n)
	change(n)
	n.UpdatedAt = timestamppb.Now()
	c.apply(t, &fsmpb.UpsertNode{Node: n})
}

// placedAway waits for one of the service's wanted tasks to be assigned to a
// node other than not and returns it.
func (c *cluster) placedAway(t *testing.T, serviceID, not string) *apiv1.Task {
	t.Helper()
	var got *apiv1.Task
	c.waitFor(t, "a task placed on another node", func() bool {
		for _, tk := range c.tasks(serviceID, wanted) {
			if tk.GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED && tk.GetNodeId() != not {
				got = tk
				return true
			}
		}
		return false
	})
	return got
}

func TestLoopsMoveTasksOffLostAndDrainedNodes(t *testing.T) {
	c := newCluster(t)
	c.start(t)
	first := c.addWorker(t, "worker-a")
	svc := c.createService(t, "web", 1)
	c.waitFor(t, "the task assigned", func() bool {
		ts := c.tasks(svc.GetId(), wanted)
		return len(ts) == 1 && ts[0].GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED
	})
	lost := c.tasks(svc.GetId(), wanted)[0]
	c.report(t, lost.GetId(), apiv1.TaskState_TASK_STATE_RUNNING)
	second := c.addWorker(t, "worker-b")

	// The node goes down: its task is orphaned and replaced at once.
	c.setNode(t, first, func(n *apiv1.Node) {
		n.Status = apiv1.NodeStatus_NODE_STATUS_DOWN
		n.Message = "no heartbeat within 10s"
	})
	moved := c.placedAway(t, svc.GetId(), first)
	if moved.GetNodeId() != second || moved.GetSlot() != 1 || moved.GetAttempt() != 1 || moved.GetNotBefore() != nil {
		t.Errorf("replacement: node %s slot %d attempt %d not_before %v; want worker-b, slot 1, attempt 1, at once",
			moved.GetNodeId(), moved.GetSlot(), moved.GetAttempt(), moved.GetNotBefore())
	}
	old, _ := c.state.Task(lost.GetId())
	if old.GetState() != apiv1.TaskState_TASK_STATE_ORPHANED || old.GetDesiredState() != apiv1.TaskState_TASK_STATE_SHUTDOWN ||
		old.GetMessage() != "node worker-a down: no heartbeat within 10s" {
		t.Errorf("lost task: state %s desired %s message %q", old.GetState(), old.GetDesiredState(), old.GetMessage())
	}
	c.report(t, moved.GetId(), apiv1.TaskState_TASK_STATE_RUNNING)

	// worker-a comes back; worker-b is drained: the replacement starts on
	// worker-a before the task on worker-b is stopped.
	c.setNode(t, first, func(n *apiv1.Node) { n.Status, n.Message = apiv1.NodeStatus_NODE_STATUS_READY, "" })
	c.setNode(t, second, func(n *apiv1.Node) { n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN })
	back := c.placedAway(t, svc.GetId(), second)
	if cur, _ := c.state.Task(moved.GetId()); cur.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING {
		t.Fatalf("the drained task was stopped before its replacement ran:\n%s", c.dump())
	}
	c.report(t, back.GetId(), apiv1.TaskState_TASK_STATE_RUNNING)
	c.waitFor(t, "the drained task desired SHUTDOWN", func() bool {
		cur, _ := c.state.Task(moved.GetId())
		return cur.GetDesiredState() == apiv1.TaskState_TASK_STATE_SHUTDOWN
	})

	// A removed node's tasks are orphaned too.
	c.setNode(t, second, func(n *apiv1.Node) { n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE })
	c.apply(t, &fsmpb.RemoveNode{Id: first})
	c.waitFor(t, "the removed node's task orphaned and replaced on worker-b", func() bool {
		cur, _ := c.state.Task(back.GetId())
		if cur.GetState() != apiv1.TaskState_TASK_STATE_ORPHANED {
			return false
		}
		for _, tk := range c.tasks(svc.GetId(), wanted) {
			if tk.GetNodeId() == second && tk.GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED {
				return true
			}
		}
		return false
	})
}

func TestLoopsPausedNodeKeepsItsTasksAndTakesNoNewOnes(t *testing.T) {
	c := newCluster(t)
	c.start(t)
	paused := c.addWorker(t, "worker-a")
	first := c.createService(t, "web", 1)
	c.waitFor(t, "the first task assigned", func() bool {
		ts := c.tasks(first.GetId(), wanted)
		return len(ts) == 1 && ts[0].GetNodeId() == paused
	})
	kept := c.tasks(first.GetId(), wanted)[0]
	c.report(t, kept.GetId(), apiv1.TaskState_TASK_STATE_RUNNING)
	c.setNode(t, paused, func(n *apiv1.Node) { n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE })
	active := c.addWorker(t, "worker-b")

	second := c.createService(t, "api", 3)
	c.waitFor(t, "the new service's tasks assigned to the active node", func() bool {
		n := 0
		for _, tk := range c.tasks(second.GetId(), wanted) {
			if tk.GetState() != apiv1.TaskState_TASK_STATE_ASSIGNED {
				return false
			}
			if tk.GetNodeId() != active {
				t.Fatalf("task %s placed on the paused node:\n%s", tk.GetId(), c.dump())
			}
			n++
		}
		return n == 3
	})
	if cur, _ := c.state.Task(kept.GetId()); cur.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING || cur.GetNodeId() != paused {
		t.Errorf("the paused node's task changed: desired %s node %s", cur.GetDesiredState(), cur.GetNodeId())
	}
	if n := len(c.tasks(first.GetId(), func(*apiv1.Task) bool { return true })); n != 1 {
		t.Errorf("%d tasks for the first service, want 1:\n%s", n, c.dump())
	}
}
