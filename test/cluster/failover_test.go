package cluster

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// createService creates a service with no replicas through n's API and
// reports whether the write was acknowledged.
func createService(n *clustertest.Node, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.Client().CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{
		Name: name, Image: ctrtest.TestImage, Replicas: 0,
	}})
	return err
}

// services returns the names of the services n's API lists.
func services(t *testing.T, n *clustertest.Node) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := n.Client().ListServices(ctx, &apiv1.ListServicesRequest{})
	if err != nil {
		t.Fatalf("list services on %s: %v", n.Name, err)
	}
	out := map[string]bool{}
	for _, s := range resp.GetServices() {
		out[s.GetSpec().GetName()] = true
	}
	return out
}

// TestLeaderKilled kills the leader with SIGKILL while writes are
// acknowledged: a new leader is elected, writes are accepted again through
// the surviving managers, no acknowledged write is lost, and the killed
// manager comes back as a follower.
func TestLeaderKilled(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Form([]string{"m1", "m2", "m3"}, []string{"w1"})
	w1 := c.Node("w1")
	c.Leader().CLI(0, "service", "create", "app", "--image", ctrtest.TestImage, "--replicas", "2")
	testutil.Eventually(t, 60*time.Second, "2 containers on w1", func() bool { return len(w1.RunningOn()) == 2 })
	before := w1.RunningOn()

	acked := map[string]bool{}
	for round := 0; round < 2; round++ {
		leader := c.Leader()
		var others []*clustertest.Node
		for _, n := range c.Nodes {
			if n.Manager && n != leader {
				others = append(others, n)
			}
		}
		for i := 0; i < 5; i++ {
			name := fmt.Sprintf("pre-%d-%d", round, i)
			if err := createService(others[i%2], name); err != nil {
				t.Fatalf("create %s: %v", name, err)
			}
			acked[name] = true
		}
		killed := time.Now()
		leader.Kill9()
		// Writes through a survivor are accepted again once a new leader
		// is elected.
		var elected time.Duration
		testutil.Eventually(t, 30*time.Second, "a write accepted after the leader's death", func() bool {
			name := fmt.Sprintf("post-%d", round)
			if createService(others[0], name) != nil {
				return false
			}
			acked[name] = true
			elected = time.Since(killed)
			return true
		})
		t.Logf("round %d: leader %s killed; writes accepted again after %s", round, leader.Name, elected)
		if nl := c.Leader(leader); nl == leader {
			t.Fatalf("the killed manager is still the leader")
		}
		got := services(t, others[1])
		for name := range acked {
			if !got[name] {
				t.Fatalf("acknowledged service %s is missing after the leader's death", name)
			}
		}
		// The killed manager restarts from its data dir and catches up.
		leader.Start(context.Background())
		c.WaitMembers(others[0], 3)
		testutil.Eventually(t, 30*time.Second, "the restarted manager to list every service", func() bool {
			got := services(t, leader)
			for name := range acked {
				if !got[name] {
					return false
				}
			}
			return true
		})
	}
	if after := w1.RunningOn(); !maps.Equal(before, after) {
		t.Fatalf("containers changed through leader failovers: before %v after %v", before, after)
	}
	// The worker followed the leadership to a surviving manager.
	c.WaitReady(c.Leader(), 4)
}

// TestQuorumLossAndRecovery kills two of three managers: writes fail with
// a clear "no quorum" error while the worker keeps its containers running;
// then the survivor is recovered with -force-new-cluster, accepts writes,
// takes the worker back, and a new manager can join it.
func TestQuorumLossAndRecovery(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Form([]string{"m1", "m2", "m3"}, []string{"w1"})
	m1, m2, m3, w1 := c.Node("m1"), c.Node("m2"), c.Node("m3"), c.Node("w1")
	m1.CLI(0, "service", "create", "app", "--image", ctrtest.TestImage, "--replicas", "2")
	testutil.Eventually(t, 60*time.Second, "2 containers on w1", func() bool { return len(w1.RunningOn()) == 2 })
	before := w1.RunningOn()

	m2.Kill9()
	m3.Kill9()
	var msg string
	testutil.Eventually(t, 30*time.Second, "writes to fail with no quorum", func() bool {
		_, stderr, code := testutil.RunCLI(t, bin, m1.Socket, "service", "create", "--detach", "late", "--image", ctrtest.TestImage)
		msg = stderr
		return code != 0 && strings.Contains(stderr, "no quorum")
	})
	t.Logf("write without quorum: %s", strings.TrimSpace(msg))
	if out := m1.CLI(0, "cluster", "members"); !strings.Contains(out, "m1") {
		t.Fatalf("cluster members without quorum:\n%s", out)
	}
	// The worker keeps its containers for several heartbeat TTLs.
	deadline := time.Now().Add(3 * c.HeartbeatTTL)
	for time.Now().Before(deadline) {
		if now := w1.RunningOn(); !maps.Equal(before, now) {
			t.Fatalf("containers changed without quorum: before %v now %v", before, now)
		}
		time.Sleep(200 * time.Millisecond) // sampling what runs over a period, not waiting for a state
	}

	// Recover from the survivor's data.
	m1.Stop()
	m1.Args = []string{"-force-new-cluster"}
	m1.Start(context.Background())
	c.WaitMembers(m1, 1)
	m1.CLI(0, "service", "create", "--detach", "after", "--image", ctrtest.TestImage)
	got := services(t, m1)
	if !got["app"] || !got["after"] {
		t.Fatalf("services after recovery: %v", got)
	}
	// The worker finds the recovered manager and keeps its containers.
	testutil.Eventually(t, 30*time.Second, "w1 ready again", func() bool {
		out := m1.CLI(0, "node", "ls")
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[1] == "w1" && f[3] == "ready" {
				return true
			}
		}
		return false
	})
	if after := w1.RunningOn(); !maps.Equal(before, after) {
		t.Fatalf("containers changed through the recovery: before %v after %v", before, after)
	}
	// The dropped managers are recorded as gone; a new manager can join.
	if out := m1.CLI(0, "node", "inspect", "m2"); !strings.Contains(out, "force-new-cluster") {
		t.Fatalf("m2 after the recovery:\n%s", out)
	}
	m4 := c.Add("m4", clustertest.Spec{Manager: true, Join: c.Token(m1, "manager"), JoinAddrs: []string{m1.Addr()}})
	m4.Start(context.Background())
	c.WaitMembers(m1, 2)
	m4.CLI(0, "service", "create", "--detach", "via-m4", "--image", ctrtest.TestImage)
	if !services(t, m1)["via-m4"] {
		t.Fatal("a write through the new manager is missing")
	}
}
