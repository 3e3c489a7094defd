package cluster

import (
	"testing"
	"time"

	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestMetricsLeaderChange stops the leader of three managers and reads a
// survivor's /metrics: it counts the leader change, its term rises, and
// the new leader reports itself as leader.
func TestMetricsLeaderChange(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Metrics = true
	c.Form([]string{"m1", "m2", "m3"}, nil)
	leader := c.Leader()
	var survivor *clustertest.Node
	for _, n := range c.Nodes {
		if n != leader {
			survivor = n
			break
		}
	}
	if v, _ := leader.Scrape().Value("warren_raft_state", "state", "Leader"); v != 1 {
		t.Fatalf(`%s: warren_raft_state{state="Leader"} = %v, want 1`, leader.Name, v)
	}
	before := survivor.Scrape()
	if v, _ := before.Value("warren_raft_state", "state", "Follower"); v != 1 {
		t.Fatalf(`%s: warren_raft_state{state="Follower"} = %v, want 1`, survivor.Name, v)
	}
	changes0, _ := before.Value("warren_raft_leader_changes_total")
	term0, _ := before.Value("warren_raft_term")

	leader.Stop()
	next := c.Leader(leader)
	var changes, term float64
	testutil.Eventually(t, 30*time.Second, "the leader change in "+survivor.Name+"'s /metrics", func() bool {
		got := survivor.Scrape()
		changes, _ = got.Value("warren_raft_leader_changes_total")
		term, _ = got.Value("warren_raft_term")
		return changes > changes0 && term > term0
	})
	t.Logf("%s: leader changes %v → %v, term %v → %v; new leader %s", survivor.Name, changes0, changes, term0, term, next.Name)
	if v, _ := next.Scrape().Value("warren_raft_state", "state", "Leader"); v != 1 {
		t.Fatalf(`new leader %s: warren_raft_state{state="Leader"} = %v, want 1`, next.Name, v)
	}
}
