package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// holds reports whether a file under dir contains needle.
func holds(t *testing.T, dir string, needle []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, needle) {
				found = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return found
}

// TestSecretGoesOnlyWhereItsTaskRuns: of two workers, only the one running
// the task that uses a secret holds it; a drain moves the task and the
// secret goes with it, and leaves the old node.
func TestSecretGoesOnlyWhereItsTaskRuns(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	_, m1 := twoWorkers(t, nil)
	ctx := context.Background()
	api := m1.Client()
	nodes, err := api.ListNodes(ctx, &apiv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	filesOf := map[string]string{} // node ID → its worker's tmpfs
	nameOf := map[string]string{}
	for _, n := range nodes.GetNodes() {
		dir := filepath.Join(worker.DefaultFilesRoot, n.GetId())
		filesOf[n.GetId()], nameOf[n.GetId()] = dir, n.GetName()
		t.Cleanup(func() {
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
				t.Errorf("unmount %s: %v", dir, err)
			}
			_ = os.Remove(dir)
		})
	}

	plain := []byte(fmt.Sprintf("only-here-%d", time.Now().UnixNano()))
	if _, err := api.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: "token", Data: plain}); err != nil {
		t.Fatal(err)
	}
	m1.CLI(0, "service", "create", "app", "--image", ctrtest.TestImage, "--secret", "token", "--stop-grace-period=1s", "--detach")
	running := func(except string) *apiv1.Task {
		var got *apiv1.Task
		testutil.Eventually(t, 60*time.Second, "app's task running", func() bool {
			resp, err := api.ListTasks(ctx, &apiv1.ListTasksRequest{Service: "app", View: apiv1.TaskView_TASK_VIEW_FULL})
			if err != nil {
				return false
			}
			for _, tk := range resp.GetTasks() {
				if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && tk.GetNodeId() != except {
					got = tk
					return true
				}
			}
			return false
		})
		return got
	}
	first := running("")
	var other string
	for id, name := range nameOf {
		if name != "m1" && id != first.GetNodeId() {
			other = id
		}
	}
	if !holds(t, filesOf[first.GetNodeId()], plain) {
		t.Fatalf("the node running the task (%s) does not hold its secret in %s", nameOf[first.GetNodeId()], filesOf[first.GetNodeId()])
	}
	if holds(t, filesOf[other], plain) {
		t.Fatalf("the other worker (%s) holds the secret of a task it does not run", nameOf[other])
	}

	// Drain the node: the task moves, the secret with it.
	m1.CLI(0, "node", "update", "--availability", "drain", nameOf[first.GetNodeId()])
	moved := running(first.GetNodeId())
	if moved.GetNodeId() != other {
		t.Fatalf("the task moved to %s, want %s", moved.GetNodeId(), other)
	}
	testutil.Eventually(t, 30*time.Second, "the secret on the new node and gone from the drained one", func() bool {
		return holds(t, filesOf[other], plain) && !holds(t, filesOf[first.GetNodeId()], plain)
	})
}
