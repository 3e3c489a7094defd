package cluster

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestWorkerPartitioned cuts a worker off past the heartbeat TTL: its task
// is replaced on the other worker while it keeps running its container
// (edge sites lose links); when the link comes back, the worker stops the
// task that is no longer wanted, so no duplicate lasts.
func TestWorkerPartitioned(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	m1, w1, w2 := appOnTwoWorkers(t, c)
	onW2 := w2.RunningOn()

	cut := time.Now()
	w2.Host.Partition(t)
	testutil.Eventually(t, c.HeartbeatTTL+30*time.Second, "the lost task replaced on w1", func() bool {
		return len(w1.RunningOn()) == 2
	})
	t.Logf("w2's task running on w1 %s after the partition (TTL %s)", time.Since(cut).Round(time.Millisecond), c.HeartbeatTTL)
	if out := m1.CLI(0, "node", "ls"); !strings.Contains(out, "down") {
		t.Fatalf("w2 is not down:\n%s", out)
	}
	// Cut off, w2 keeps its container running.
	if now := w2.RunningOn(); !maps.Equal(onW2, now) {
		t.Fatalf("w2's containers changed while it was cut off: %v → %v", onW2, now)
	}

	w2.Host.Heal(t)
	testutil.Eventually(t, 60*time.Second, "w2 to stop its orphaned task", func() bool {
		return len(w2.RunningOn()) == 0
	})
	c.WaitReady(m1, 3)
	if n := len(w1.RunningOn()); n != 2 {
		t.Fatalf("w1 runs %d containers after the heal, want 2", n)
	}
	if ps := m1.CLI(0, "service", "ps", "app"); runningRows(ps) != 2 {
		t.Fatalf("service ps after the heal:\n%s", ps)
	}
}

// TestDrainAndLabels drains a worker (its task moves, the service never
// drops below its replicas) and places a service by a node label set
// through the API.
func TestDrainAndLabels(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	m1, w1, w2 := appOnTwoWorkers(t, c)

	m1.CLI(0, "node", "update", "w2", "--availability", "drain")
	minRunning := 2
	testutil.Eventually(t, 60*time.Second, "w2 drained onto w1", func() bool {
		n1, n2 := len(w1.RunningOn()), len(w2.RunningOn())
		minRunning = min(minRunning, n1+n2)
		return n1 == 2 && n2 == 0
	})
	if minRunning < 2 {
		t.Fatalf("the service dropped to %d running containers during the drain", minRunning)
	}

	// Labels set through the API place a constrained service.
	m1.CLI(0, "node", "update", "w2", "--availability", "active")
	m1.CLI(0, "node", "label", "add", "w2", "zone=edge-1")
	m1.CLI(0, "service", "create", "edge", "--image", ctrtest.TestImage, "--replicas", "2", "--constraint", "node.labels.zone==edge-1")
	testutil.Eventually(t, 60*time.Second, "the edge service on w2 only", func() bool {
		return len(w2.RunningOn()) == 2
	})
	if n := len(w1.RunningOn()); n != 2 {
		t.Fatalf("w1 runs %d containers, want only app's 2", n)
	}
}

// TestWorkerAgentRestartMovesNothing kills a worker's agent and starts it
// again within the heartbeat TTL: its containers keep running and none of
// its tasks is replaced.
func TestWorkerAgentRestartMovesNothing(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.HeartbeatTTL = 10 * time.Second
	m1, w1, _ := appOnTwoWorkers(t, c)
	before := w1.RunningOn()
	tasksBefore := firstColumn(m1.CLI(0, "task", "ls", "-a", "--service", "app"))

	w1.Kill9()
	w1.Start(context.Background())
	c.WaitReady(m1, 3)
	if after := w1.RunningOn(); !maps.Equal(before, after) {
		t.Fatalf("w1's containers changed through its agent's restart: %v → %v", before, after)
	}
	if tasksAfter := firstColumn(m1.CLI(0, "task", "ls", "-a", "--service", "app")); tasksAfter != tasksBefore {
		t.Fatalf("tasks changed through a worker agent's restart:\nbefore:\n%s\nafter:\n%s", tasksBefore, tasksAfter)
	}
	if out := m1.CLI(0, "node", "inspect", "w1"); strings.Contains(out, "down") {
		t.Fatalf("w1 was marked down:\n%s", out)
	}
}

// firstColumn returns the first field of every line of a table.
func firstColumn(table string) string {
	var b strings.Builder
	for _, line := range strings.Split(table, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			b.WriteString(f[0] + "\n")
		}
	}
	return b.String()
}

// appOnTwoWorkers forms a cluster of one manager and two workers and runs
// the service "app" with one replica on each worker.
func appOnTwoWorkers(t *testing.T, c *clustertest.Cluster) (m1, w1, w2 *clustertest.Node) {
	t.Helper()
	c.Form([]string{"m1"}, []string{"w1", "w2"})
	m1, w1, w2 = c.Node("m1"), c.Node("w1"), c.Node("w2")
	m1.CLI(0, "service", "create", "app", "--image", ctrtest.TestImage, "--replicas", "2")
	testutil.Eventually(t, 60*time.Second, "one container on each worker", func() bool {
		return len(w1.RunningOn()) == 1 && len(w2.RunningOn()) == 1
	})
	return m1, w1, w2
}
