package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// inTask runs a shell command of the machine's busybox in the network
// namespace of a task on worker n.
func inTask(t *testing.T, n *clustertest.Node, taskID, script string) (string, error) {
	t.Helper()
	ns := filepath.Join(n.DataDir, "netns", taskID)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+ns, "--", containerdtest.BusyboxPath, "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// overlayTasks returns the RUNNING tasks of a service that have an address.
func overlayTasks(t *testing.T, m *clustertest.Node, service string) []*apiv1.Task {
	t.Helper()
	resp, err := m.Client().ListTasks(context.Background(), &apiv1.ListTasksRequest{Service: service, View: apiv1.TaskView_TASK_VIEW_FULL})
	if err != nil {
		t.Fatal(err)
	}
	var out []*apiv1.Task
	for _, tk := range resp.GetTasks() {
		if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && tk.GetAddress() != "" {
			out = append(out, tk)
		}
	}
	return out
}

func addrOf(tk *apiv1.Task) string { return strings.SplitN(tk.GetAddress(), "/", 2)[0] }

// gatewayOf is the gateway of the task's node: its subnet's first address,
// where the node answers DNS.
func gatewayOf(tk *apiv1.Task) string {
	p, err := netip.ParsePrefix(tk.GetAddress())
	if err != nil {
		return ""
	}
	return p.Masked().Addr().Next().String()
}

// overlayCluster starts manager m1 and workers w1 and w2 on an overlay of
// overlayRange, with the test images imported, and waits until all three
// are ready.
func overlayCluster(t *testing.T, overlayRange string) (*clustertest.Cluster, *clustertest.Node) {
	t.Helper()
	return twoWorkers(t, func(c *clustertest.Cluster) {
		c.OverlayRange = overlayRange
		// Long enough that a worker agent restarted on this busy machine is
		// never declared down (which would replace its tasks elsewhere).
		c.HeartbeatTTL = 15 * time.Second
	})
}

func TestClusterOverlay(t *testing.T) {
	c, m1 := overlayCluster(t, "10.252.0.0/16")
	ctx := context.Background()
	w1 := c.Node("w1")

	m1.CLI(0, "service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "2", "--",
		"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www")
	var web []*apiv1.Task
	testutil.Eventually(t, 60*time.Second, "web's two tasks running with addresses on both workers", func() bool {
		web = overlayTasks(t, m1, "web")
		return len(web) == 2 && web[0].GetNodeId() != web[1].GetNodeId()
	})
	onW1, onW2 := web[0], web[1]
	// inTask runs the machine's busybox, whose applets the script uses.
	if len(w1.RunningOn()) == 0 || w1.RunningOn()[onW1.GetId()] == 0 {
		onW1, onW2 = onW2, onW1
	}

	t.Run("a task on one node reaches a task on another by address", func(t *testing.T) {
		out, err := inTask(t, w1, onW1.GetId(), fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080`, addrOf(onW2)))
		if err != nil || !strings.Contains(out, "web.") {
			t.Fatalf("from w1's web task to %s on w2: %v\n%s", onW2.GetAddress(), err, out)
		}
	})

	t.Run("and by service name", func(t *testing.T) {
		gw := gatewayOf(onW1)
		var out string
		testutil.Eventually(t, 10*time.Second, "both web addresses in w1's DNS", func() bool {
			out, _ = inTask(t, w1, onW1.GetId(), "nslookup web "+gw)
			return strings.Contains(out, addrOf(onW1)) && strings.Contains(out, addrOf(onW2))
		})
	})

	t.Run("names update within a second of a task starting elsewhere", func(t *testing.T) {
		m1.CLI(0, "service", "create", "late", "--detach", "--image", ctrtest.TestImage, "--constraint", "node.name==w2", "--", "sleep", "3600")
		var late []*apiv1.Task
		testutil.Eventually(t, 60*time.Second, "late's task running", func() bool {
			late = overlayTasks(t, m1, "late")
			return len(late) == 1
		})
		seen := time.Now()
		gw := gatewayOf(onW1)
		testutil.Eventually(t, 10*time.Second, "late in w1's DNS", func() bool {
			out, _ := inTask(t, w1, onW1.GetId(), "nslookup late "+gw)
			return strings.Contains(out, addrOf(late[0]))
		})
		d := time.Since(seen)
		t.Logf("w1's DNS answered late %s after its task showed RUNNING in the state", d)
		if d > time.Second {
			t.Fatalf("w1's DNS answered late %s after the state showed its task running, want within a second", d)
		}
	})

	overlayHostTests(t, c, m1, onW1, onW2)

	t.Run("a removed node vanishes from the others' peers", func(t *testing.T) {
		wg, err := wgctrl.New()
		if err != nil {
			t.Fatal(err)
		}
		defer wg.Close()
		peers := func() []string {
			d, err := wg.Device(ctrtest.OverlayInterface("w1"))
			if err != nil {
				t.Fatalf("w1's WireGuard device: %v", err)
			}
			var keys []string
			for _, p := range d.Peers {
				keys = append(keys, p.PublicKey.String())
			}
			return keys
		}
		nodes, err := m1.Client().ListNodes(ctx, &apiv1.ListNodesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var w2Key string
		for _, n := range nodes.GetNodes() {
			if n.GetName() == "w2" {
				w2Key = n.GetNetwork().GetPublicKey()
			}
		}
		if got := peers(); w2Key == "" || !slices.Equal(got, []string{w2Key}) {
			t.Fatalf("w1's peers %v, want w2's key %q", got, w2Key)
		}
		m1.CLI(0, "node", "rm", "--force", "w2")
		testutil.Eventually(t, 10*time.Second, "w2 gone from w1's peers", func() bool { return len(peers()) == 0 })
	})
}
