package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"

	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestGlobalServiceJoinAndDrain: a global service runs one task on each
// worker; a worker that joins gets its task, a drained one loses it.
func TestGlobalServiceJoinAndDrain(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Form([]string{"m1"}, []string{"w1"})
	m1, w1 := c.Node("m1"), c.Node("w1")
	m1.CLI(0, "service", "create", "agent", "--image", ctrtest.TestImage, "--mode", "global", "--stop-signal", "KILL")
	testutil.Eventually(t, 60*time.Second, "the global task on w1", func() bool { return len(w1.RunningOn()) == 1 })

	w2 := c.Add("w2", clustertest.Spec{Worker: true, Join: c.Token(m1, "worker")})
	w2.Start(context.Background())
	ctrtest.ImportImages(t, w2.Client())
	c.WaitReady(m1, 3)
	testutil.Eventually(t, 60*time.Second, "a task on the worker that joined", func() bool { return len(w2.RunningOn()) == 1 })

	m1.CLI(0, "node", "update", "w2", "--availability", "drain")
	testutil.Eventually(t, 60*time.Second, "w2's task gone after the drain", func() bool { return len(w2.RunningOn()) == 0 })
	if n := len(w1.RunningOn()); n != 1 {
		t.Fatalf("w1 runs %d containers, want its one global task (nothing moved from w2)", n)
	}
}

// TestGlobalJobJoin: a global job runs one task to completion on each
// worker and is completed; a worker that joins later gets its own task,
// which completes too, while the first worker's task is not run again.
func TestGlobalJobJoin(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Form([]string{"m1"}, []string{"w1"})
	m1 := c.Node("m1")
	api := m1.Client()
	m1.CLI(0, "service", "create", "prep", "--image", ctrtest.TestImage, "--mode", "global-job", "--stop-signal", "KILL", "--", "sh", "-c", "true")
	// done returns the job status once it is COMPLETED with want
	// completions, and the job's tasks.
	done := func(want uint64) (*apiv1.JobStatus, []*apiv1.Task) {
		t.Helper()
		var (
			st    *apiv1.JobStatus
			tasks []*apiv1.Task
		)
		testutil.Eventually(t, 60*time.Second, fmt.Sprintf("the global job completed on %d nodes", want), func() bool {
			svc, err := api.GetService(context.Background(), &apiv1.GetServiceRequest{NameOrId: "prep"})
			if err != nil {
				return false
			}
			st = svc.GetService().GetJobStatus()
			resp, err := api.ListTasks(context.Background(), &apiv1.ListTasksRequest{Service: "prep", All: true, View: apiv1.TaskView_TASK_VIEW_FULL})
			if err != nil {
				return false
			}
			tasks = resp.GetTasks()
			return st.GetState() == apiv1.JobStatus_STATE_COMPLETED && st.GetCompleted() == want && st.GetTotal() == want
		})
		return st, tasks
	}
	_, tasks := done(1)
	if len(tasks) != 1 || tasks[0].GetState() != apiv1.TaskState_TASK_STATE_COMPLETE {
		t.Fatalf("tasks %v, want one COMPLETE on w1", tasks)
	}
	first, w1 := tasks[0].GetId(), tasks[0].GetNodeId()

	w2 := c.Add("w2", clustertest.Spec{Worker: true, Join: c.Token(m1, "worker")})
	w2.Start(context.Background())
	ctrtest.ImportImages(t, w2.Client())
	c.WaitReady(m1, 3)
	_, tasks = done(2)
	// w2's first tries may be rejected while its image is being imported
	// (it joins before ImportImages): count the slots' current tasks, and
	// w1's tasks, of which there is still one.
	nodes, onW1 := map[string]bool{}, 0
	for _, tk := range tasks {
		if tk.GetNodeId() == w1 {
			onW1++
		}
		if tk.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		if tk.GetState() != apiv1.TaskState_TASK_STATE_COMPLETE {
			t.Errorf("task %s on %s: %v, want COMPLETE", tk.GetId(), tk.GetNodeId(), tk.GetState())
		}
		nodes[tk.GetNodeId()] = true
	}
	if len(nodes) != 2 || onW1 != 1 || !slices.ContainsFunc(tasks, func(tk *apiv1.Task) bool {
		return tk.GetId() == first && tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING
	}) {
		t.Fatalf("tasks %v, want w1's first task kept as its only one and a completed one on w2", tasks)
	}
}
