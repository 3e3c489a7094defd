package cluster

import (
	"context"
	"testing"
	"time"

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
