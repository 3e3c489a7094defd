// Package ctrtest holds the test helpers that need containerd: agents with
// a worker, test images, and a view of what really runs. It is apart from
// testutil so that core's test harnesses never depend on a plugin.
package ctrtest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ctd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/test/testutil"
)

// WorkerPlugins are the plugins a manager+worker agent starts, its
// default network plugin included.
var WorkerPlugins = []string{"store-bolt", "scheduler-roundrobin", "runtime-containerd", "network-wireguard"}

// TestImage is the image tests run: busybox, command sleep 3600.
const TestImage = "warren.test/busybox:1"

// NoCmdImage is an image with no command at all.
const NoCmdImage = "warren.test/nocmd:1"

// HealthImage is TestImage with a HEALTHCHECK of its own: CMD-SHELL
// "test -f /tmp/ok" every 200ms, unhealthy after 2 failures. Its command
// (sleep 3600) never creates /tmp/ok.
const HealthImage = "warren.test/health:1"

// HealthImageCheck is the health check the runtime reports for HealthImage.
var HealthImageCheck = containerdtest.Healthcheck{
	Test:     []string{"CMD-SHELL", "test -f /tmp/ok"},
	Interval: 200 * time.Millisecond,
	Retries:  2,
}

// SkipWithoutContainerd skips a test on a machine that cannot run
// containers (not root, no containerd or runc, no busybox-static).
func SkipWithoutContainerd(t testing.TB) {
	t.Helper()
	if why := containerdtest.Unavailable(); why != "" {
		t.Skip(why)
	}
}

// NewWorkerAgent prepares a manager+worker agent whose runtime plugin runs
// a managed containerd in the agent's data dir and removes every container
// and that containerd when the agent stops cleanly (stop_on_exit), so a test
// leaves nothing behind. Its worker is on the default network plugin with
// an overlay range of its own (testutil.OverlayRange, unless managerExtra
// sets overlay_range) and NetworkPluginBlock. managerExtra goes inside the
// manager block.
func NewWorkerAgent(t testing.TB, bin, managerExtra string) *testutil.Agent {
	t.Helper()
	return NewWorkerAgentWith(t, bin, managerExtra, "", "")
}

// NewWorkerAgentWith is NewWorkerAgent with workerExtra inside the worker
// block and runtimeExtra inside the runtime-containerd plugin's config
// block (such as short deadlines).
func NewWorkerAgentWith(t testing.TB, bin, managerExtra, workerExtra, runtimeExtra string) *testutil.Agent {
	t.Helper()
	// The test's temp dir first, so that its removal runs after the sweep
	// below, which unmounts the task namespaces in it.
	_ = t.TempDir()
	// Registered before the agent's own clean-up, so it runs after it.
	var dataDir string
	t.Cleanup(func() {
		if dataDir != "" {
			SweepRuntime(t, dataDir)
			SweepNetwork(t, dataDir)
			SweepNetns(t, dataDir)
		}
	})
	if !strings.Contains(managerExtra, "overlay_range") {
		managerExtra += fmt.Sprintf("\n  overlay_range = %q\n", testutil.OverlayRange(t))
	}
	a := testutil.NewAgent(t, bin, managerExtra)
	dataDir = a.DataDir
	extra := fmt.Sprintf(`
worker {
%s
}

plugin "runtime-containerd" {
  config {
    stop_on_exit = true
%s
  }
}
`, workerExtra, runtimeExtra) + NetworkPluginBlock(t)
	f, err := os.OpenFile(a.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(extra); err != nil {
		t.Fatal(err)
	}
	return a
}

// SweepRuntime removes whatever the runtime plugin of the agent with that
// data_dir left running (see containerdtest.Sweep); run it once the agent
// has stopped.
func SweepRuntime(t testing.TB, dataDir string) {
	if err := containerdtest.Sweep(filepath.Join(dataDir, "runtime-containerd"), containerd.DefaultNamespace); err != nil {
		t.Logf("sweeping the runtime of %s: %v", dataDir, err)
	}
}

// ContainerdPid returns the pid of the managed containerd of the agent
// with that data_dir, or 0.
func ContainerdPid(dataDir string) int {
	return containerdtest.ManagedPid(filepath.Join(dataDir, "runtime-containerd"))
}

// ImageArchive returns an OCI archive of an image built from the machine's
// busybox-static: TestImage (sleep 3600), NoCmdImage (no command) or
// HealthImage (sleep 3600 and a HEALTHCHECK).
func ImageArchive(t testing.TB, ref string) []byte {
	t.Helper()
	img := containerdtest.Image{Ref: ref}
	if ref != NoCmdImage {
		img.Cmd = []string{"sleep", "3600"}
	}
	if ref == HealthImage {
		hc := HealthImageCheck
		img.Healthcheck = &hc
	}
	built, err := img.Build()
	if err != nil {
		t.Fatalf("build image %s: %v", ref, err)
	}
	data, err := built.OCIArchive()
	if err != nil {
		t.Fatalf("archive image %s: %v", ref, err)
	}
	return data
}

// ImportImages imports TestImage, NoCmdImage and HealthImage through the
// agent's API.
func ImportImages(t testing.TB, c apiv1.WarrenClient) {
	t.Helper()
	for _, ref := range []string{TestImage, NoCmdImage, HealthImage} {
		data := ImageArchive(t, ref)
		if _, err := api.ImportArchive(context.Background(), c, "", nil, bytes.NewReader(data), nil); err != nil {
			t.Fatalf("import %s: %v", ref, err)
		}
	}
}

// Containerd connects to the agent's managed containerd, in the namespace
// Warren uses, to check what really runs.
func Containerd(t testing.TB, a *testutil.Agent) (*ctd.Client, context.Context) {
	t.Helper()
	sock := filepath.Join(a.DataDir, "runtime-containerd", "containerd.sock")
	c, err := ctd.New(sock)
	if err != nil {
		t.Fatalf("connect to containerd at %s: %v", sock, err)
	}
	t.Cleanup(func() { c.Close() })
	return c, namespaces.WithNamespace(context.Background(), "warren")
}

// RunningContainers returns the IDs of containers whose task is running.
func RunningContainers(t testing.TB, a *testutil.Agent) map[string]uint32 {
	t.Helper()
	c, ctx := Containerd(t, a)
	return RunningIn(t, c, ctx)
}

// RunningIn returns container ID → PID of running tasks.
func RunningIn(t testing.TB, c *ctd.Client, ctx context.Context) map[string]uint32 {
	t.Helper()
	resp, err := c.TaskService().List(ctx, nil)
	if err != nil {
		t.Fatalf("list containerd tasks: %v", err)
	}
	out := map[string]uint32{}
	for _, tk := range resp.Tasks {
		if tk.Status.String() == "RUNNING" {
			out[tk.ID] = tk.Pid
		}
	}
	return out
}

// CountAll returns the number of containers and of active snapshots in
// Warren's namespace, to check that nothing leaks.
func CountAll(t testing.TB, c *ctd.Client, ctx context.Context) (containers, activeSnapshots int) {
	t.Helper()
	cs, err := c.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = c.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if info.Kind.String() == "Active" {
			activeSnapshots++
		}
		return nil
	})
	if err != nil {
		t.Fatal(fmt.Errorf("walk snapshots: %w", err))
	}
	return len(cs), activeSnapshots
}
