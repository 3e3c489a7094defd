package cluster

import (
	"context"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestVolumeKeepsItsTasksTogether: the two replicas of a service mounting
// a volume on no node yet, placed in one round on a cluster of two workers
// (where round-robin would spread them), both run on one node, the one the
// volume is put on. volume ls measures the volume through that worker's
// tunnel, and says why it cannot once the worker is down.
func TestVolumeKeepsItsTasksTogether(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	c, m1 := twoWorkers(t, nil)
	ctx := context.Background()
	api := m1.Client()

	m1.CLI(0, "volume", "create", "shared")
	m1.CLI(0, "service", "create", "pair", "--image", ctrtest.TestImage, "--replicas", "2",
		"--mount", "type=volume,source=shared,target=/data", "--stop-grace-period=1s", "--detach")
	var nodes map[string]int
	testutil.Eventually(t, 60*time.Second, "both tasks of pair running", func() bool {
		resp, err := api.ListTasks(ctx, &apiv1.ListTasksRequest{Service: "pair", View: apiv1.TaskView_TASK_VIEW_FULL})
		if err != nil {
			return false
		}
		nodes = map[string]int{}
		running := 0
		for _, tk := range resp.GetTasks() {
			if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING {
				running++
				nodes[tk.GetNodeId()]++
			}
		}
		return running == 2
	})
	if len(nodes) != 1 {
		t.Fatalf("the tasks of pair run on %d nodes (%v), want one", len(nodes), nodes)
	}
	v, err := api.GetVolume(ctx, &apiv1.GetVolumeRequest{NameOrId: "shared"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := nodes[v.GetVolume().GetNodeId()]; !ok {
		t.Fatalf("volume shared is on node %q, its tasks on %v", v.GetVolume().GetNodeId(), nodes)
	}
	size := func() *apiv1.VolumeResponse {
		t.Helper()
		resp, err := api.ListVolumes(ctx, &apiv1.ListVolumesRequest{})
		if err != nil || len(resp.GetVolumes()) != 1 {
			t.Fatalf("volume ls: %v, %v", resp.GetVolumes(), err)
		}
		return resp.GetVolumes()[0]
	}
	if got := size(); got.GetSizeError() != "" || got.GetSizeBytes() <= 0 {
		t.Fatalf("volume shared measured on its node: %d bytes, %q; want its directory's size", got.GetSizeBytes(), got.GetSizeError())
	}
	n, err := api.GetNode(ctx, &apiv1.GetNodeRequest{NameOrId: v.GetVolume().GetNodeId()})
	if err != nil {
		t.Fatal(err)
	}
	holder := c.Node(n.GetNode().GetName())
	holder.Kill9()
	testutil.Eventually(t, 30*time.Second, "volume ls saying the volume's node is down", func() bool {
		return size().GetSizeError() == "node "+holder.Name+" is down"
	})
}

// twoWorkers starts a cluster of a manager m1 (running no tasks) and two
// workers w1 and w2 with the test images, tweak (when not nil) applied to
// the cluster before any node starts.
func twoWorkers(t *testing.T, tweak func(*clustertest.Cluster)) (*clustertest.Cluster, *clustertest.Node) {
	t.Helper()
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	if tweak != nil {
		tweak(c)
	}
	ctx := context.Background()
	m1 := c.Add("m1", clustertest.Spec{Manager: true})
	m1.Start(ctx)
	wtok := c.Token(m1, "worker")
	for _, name := range []string{"w1", "w2"} {
		w := c.Add(name, clustertest.Spec{Worker: true, Join: wtok})
		w.Start(ctx)
		ctrtest.ImportImages(t, w.Client())
	}
	c.WaitReady(m1, 3)
	return c, m1
}
