package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestRunHungContainerd freezes the agent's managed containerd (SIGSTOP):
// an image import fails within the runtime's call_timeout, a new task ends
// FAILED with an error naming the runtime instead of sitting in PREPARING,
// and the node shows a runtime condition; after SIGCONT the condition
// clears and the service's task runs.
func TestRunHungContainerd(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	bin := testutil.Install(t, ctrtest.WorkerPlugins...)
	a := ctrtest.NewWorkerAgentWith(t, bin, "",
		`heartbeat_interval = "200ms"
runtime_timeout = "3s"`,
		`call_timeout = "1s"`)
	n := startAgentNode(t, bin, a)
	ctx := t.Context()

	thaw := containerdtest.Freeze(t, ctrtest.ContainerdPid(a.DataDir))

	// An import fails after call_timeout (1s) without progress, instead of
	// hanging for as long as containerd does: the error says which bound
	// ended it, and it ends well before the call's own 60s.
	archive := ctrtest.ImageArchive(t, ctrtest.NoCmdImage)
	start := time.Now()
	ictx, cancel := context.WithTimeout(ctx, time.Minute) // far above the limit
	err := importArchive(ictx, n.c, archive)
	callEnded := ictx.Err()
	cancel()
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no progress for 1s") {
		t.Errorf("image import with a frozen containerd = %v, want an error saying it made no progress for 1s", err)
	}
	if callEnded != nil {
		t.Errorf("image import with a frozen containerd ran into the call's own deadline (%v): the runtime's bound did not end it", took)
	}
	t.Logf("import: %v after %v", err, took.Round(time.Millisecond))

	// A new task fails, naming the runtime and what did not answer.
	n.cli("service", "create", "hung", "--image", ctrtest.TestImage, "--detach")
	var failed *apiv1.Task
	testutil.Eventually(t, 20*time.Second, "a task of the service FAILED because the runtime did not answer", func() bool {
		for _, tk := range n.tasks("hung", true) {
			if tk.GetState() == apiv1.TaskState_TASK_STATE_FAILED {
				failed = tk
				return true
			}
		}
		return false
	})
	if msg := failed.GetError(); !strings.Contains(msg, "runtime containerd") || !strings.Contains(msg, "did not answer") {
		t.Errorf("task error = %q, want it to name the runtime and say it did not answer", msg)
	}
	t.Logf("task %s: %s", failed.GetId(), failed.GetError())

	// The node shows the runtime condition.
	nodeConditions := func() []*apiv1.NodeCondition {
		resp, err := n.c.GetNode(ctx, &apiv1.GetNodeRequest{NameOrId: "test-manager"})
		if err != nil {
			t.Fatalf("GetNode: %v", err)
		}
		return resp.GetNode().GetConditions()
	}
	var cond *apiv1.NodeCondition
	testutil.Eventually(t, 20*time.Second, "the node shows a runtime condition", func() bool {
		for _, c := range nodeConditions() {
			if c.GetType() == "runtime" {
				cond = c
				return true
			}
		}
		return false
	})
	if !strings.Contains(cond.GetMessage(), "containerd") || !strings.Contains(cond.GetMessage(), "did not answer") || cond.GetSince() == nil {
		t.Errorf("runtime condition = %v, want it to say containerd did not answer, with since", cond)
	}
	t.Logf("condition: %s", cond.GetMessage())

	// Thawed, the condition clears and the service runs.
	thaw()
	testutil.Eventually(t, 20*time.Second, "the runtime condition clears", func() bool {
		return len(nodeConditions()) == 0
	})
	n.waitConverged("hung", 1)
}

// importArchive imports an image archive through the API.
func importArchive(ctx context.Context, c apiv1.WarrenClient, data []byte) error {
	_, err := api.ImportArchive(ctx, c, "", nil, bytes.NewReader(data), nil)
	return err
}
