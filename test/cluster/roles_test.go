package cluster

import (
	"context"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
	"google.golang.org/grpc/codes"
)

// TestPromoteDemote promotes a worker to manager and demotes it again: it
// enters and leaves the Raft configuration, its containers keep running
// throughout, and demoting a manager that would break quorum is refused.
func TestPromoteDemote(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	// Demoting w1 restarts its agent as a worker, which takes seconds on a
	// loaded machine (7 s seen in CI): past the short default TTL, w1 would
	// be declared down and its tasks replaced, which is not what this test
	// is about.
	c.HeartbeatTTL = 15 * time.Second
	m1, w1, _ := appOnTwoWorkers(t, c)
	before := w1.RunningOn()
	tasksBefore := firstColumn(m1.CLI(0, "task", "ls", "-a", "--service", "app"))

	// The last manager cannot be demoted.
	if out := m1.CLI(1, "node", "demote", "m1"); !strings.Contains(out, "last manager") {
		t.Fatalf("demote the only manager:\n%s", out)
	}

	m1.CLI(0, "node", "promote", "w1")
	c.WaitMembers(m1, 2)
	testutil.Eventually(t, 30*time.Second, "w1 to serve the API as a manager", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := w1.Client().ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
		return err == nil && info.GetRaftState() == "Follower"
	})
	w1.CLI(0, "service", "create", "--detach", "via-w1", "--image", ctrtest.TestImage)
	if !services(t, m1)["via-w1"] {
		t.Fatal("a write through the promoted node is missing")
	}
	if after := w1.RunningOn(); !maps.Equal(before, after) {
		t.Fatalf("w1's containers changed through its promotion: %v → %v", before, after)
	}
	if tasksAfter := firstColumn(m1.CLI(0, "task", "ls", "-a", "--service", "app")); tasksAfter != tasksBefore {
		t.Fatalf("tasks changed through the promotion:\nbefore:\n%s\nafter:\n%s", tasksBefore, tasksAfter)
	}

	// With two managers and one of them cut off, demoting the other would
	// leave a configuration without a reachable majority.
	w1.Host.Partition(t)
	testutil.Eventually(t, 30*time.Second, "m1 to see w1 unreachable or to lose leadership", func() bool {
		_, stderr, code := testutil.RunCLI(t, bin, m1.Socket, "node", "demote", "m1")
		return code != 0 && (strings.Contains(stderr, "quorum") || strings.Contains(stderr, "no quorum"))
	})
	w1.Host.Heal(t)
	c.WaitMembers(m1, 2)
	// Cut off past its TTL, w1 had its task replaced: the demotion starts
	// from here.
	c.WaitReady(m1, 3)
	// The heal sets off w1's catching up (its replaced task stopped, a new
	// placement started): wait until its containers are the running tasks
	// the cluster places on it, and nothing is on its way.
	testutil.Eventually(t, 60*time.Second, "w1 to run exactly the tasks placed on it", func() bool {
		return maps.Equal(w1.RunningOn(), runningTasksOn(t, m1, "w1", w1.RunningOn()))
	})
	before = w1.RunningOn()
	tasksBefore = firstColumn(m1.CLI(0, "task", "ls", "-a", "--service", "app"))

	m1.CLI(0, "node", "demote", "w1")
	c.WaitMembers(m1, 1)
	testutil.Eventually(t, 30*time.Second, "w1 back to a worker", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		info, err := w1.Client().ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
		return err == nil && strings.HasPrefix(info.GetRaftState(), "worker")
	})
	c.WaitReady(m1, 3)
	if after := w1.RunningOn(); !maps.Equal(before, after) {
		t.Fatalf("w1's containers changed through its demotion: %v → %v", before, after)
	}
	if out := m1.CLI(0, "node", "ls"); !strings.Contains(out, "worker") {
		t.Fatalf("node ls after the demotion:\n%s", out)
	}
	// No task was replaced through the demotion.
	if tasksAfter := firstColumn(m1.CLI(0, "task", "ls", "-a", "--service", "app")); tasksAfter != tasksBefore {
		t.Fatalf("tasks changed through the demotion:\nbefore:\n%s\nafter:\n%s", tasksBefore, tasksAfter)
	}
}

// TestCertificatesRenew gives node certificates a 30s lifetime: every node
// renews its own before it expires and the cluster keeps working on the
// new ones.
func TestCertificatesRenew(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.NodeCertTTL = 30 * time.Second
	c.Form([]string{"m1", "m2"}, []string{"w1"})
	first := map[string]string{}
	for _, n := range c.Nodes {
		first[n.Name] = certSerial(t, n)
	}
	w1 := c.Node("w1")
	oldWorker := certConfig(t, w1)
	_, oldPEM, _, err := pki.Dir(filepath.Join(w1.DataDir, "certs")).Load()
	if err != nil {
		t.Fatal(err)
	}
	oldLeaf, err := pki.ParseCertPEM(oldPEM)
	if err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 45*time.Second, "every node to renew its certificate", func() bool {
		for _, n := range c.Nodes {
			if certSerial(t, n) == first[n.Name] {
				return false
			}
		}
		return true
	})
	m2 := c.Node("m2")
	m2.CLI(0, "service", "create", "after-renewal", "--image", ctrtest.TestImage, "--replicas", "1")
	testutil.Eventually(t, 60*time.Second, "a task on w1", func() bool { return len(c.Node("w1").RunningOn()) == 1 })
	c.WaitMembers(c.Node("m1"), 2)

	// w1's first certificate, once expired, is refused in the handshake.
	testutil.Eventually(t, time.Minute, "w1's first certificate to expire", func() bool {
		return time.Now().After(oldLeaf.NotAfter.Add(time.Second))
	})
	intruder := c.Net.AddHost(t, "x1")
	renew := rpc{name: apiv1.NodeCA_Renew_FullMethodName}
	if code := call(t, intruder, m2.Addr(), oldWorker, renew); code != codes.Unavailable {
		t.Fatalf("Renew with an expired certificate: %s, want Unavailable (handshake refused)", code)
	}
	if code := call(t, intruder, m2.Addr(), certConfig(t, w1), renew); code == codes.Unauthenticated || code == codes.PermissionDenied || code == codes.Unavailable {
		t.Fatalf("Renew with w1's current certificate: %s", code)
	}
}

func certSerial(t *testing.T, n *clustertest.Node) string {
	t.Helper()
	_, certPEM, _, err := pki.Dir(filepath.Join(n.DataDir, "certs")).Load()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert.SerialNumber.String()
}

// runningTasksOn returns the entries of containers (task ID → PID) that
// are tasks the cluster has on node, desired and reported running, or nil
// when a task there is still on its way up or down.
func runningTasksOn(t *testing.T, m *clustertest.Node, node string, containers map[string]uint32) map[string]uint32 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := m.Client().ListTasks(ctx, &apiv1.ListTasksRequest{Node: node, View: apiv1.TaskView_TASK_VIEW_FULL})
	if err != nil {
		return nil
	}
	out := map[string]uint32{}
	for _, tk := range resp.GetTasks() {
		running := tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING
		if running != (tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING) {
			return nil
		}
		pid, ok := containers[tk.GetId()]
		switch {
		case running && !ok:
			return nil // reported running, its container not seen yet
		case running:
			out[tk.GetId()] = pid
		}
	}
	return out
}
