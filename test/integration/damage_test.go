package integration

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/store/boltcheck/boltchecktest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// compacting makes Raft snapshot and compact its log within the few
// hundred writes of a test.
const compacting = "snapshot_threshold = 32\n  snapshot_interval = \"1s\"\n  trailing_logs = 8"

// The files a manager keeps its state in, under its data dir.
func storeFile(a *testutil.Agent) string { return filepath.Join(a.DataDir, "store-bolt", "state.db") }
func raftLog(a *testutil.Agent) string   { return filepath.Join(a.DataDir, "raft", "raft.db") }

// fillServices creates n services of 0 replicas, waits for a Raft snapshot
// on disk, then creates 5 more (entries after the snapshot), and returns
// the services by name.
func fillServices(t *testing.T, a *testutil.Agent, n int) map[string]*apiv1.Service {
	t.Helper()
	c := a.Client()
	ctx := context.Background()
	create := func(name string) {
		if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: name, Image: ctrtest.TestImage}}); err != nil {
			t.Fatalf("create %s: %v", name, err)
		}
	}
	for i := range n {
		create(fmt.Sprintf("svc-%02d", i))
	}
	snapDir := filepath.Join(a.DataDir, "raft", "snapshots")
	testutil.Eventually(t, 30*time.Second, "a raft snapshot on disk", func() bool {
		m, _ := filepath.Glob(filepath.Join(snapDir, "*", "state.bin"))
		return len(m) > 0
	})
	for i := range 5 {
		create(fmt.Sprintf("late-%d", i))
	}
	return serviceNames(t, c)
}

// sameServices fails the test unless got holds exactly want, IDs and
// versions included.
func sameServices(t *testing.T, got, want map[string]*apiv1.Service) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d services, want %d", len(got), len(want))
	}
	for name, s := range want {
		if got[name].GetId() != s.GetId() || got[name].GetVersion() != s.GetVersion() {
			t.Fatalf("service %s = %v, want %v", name, got[name], s)
		}
	}
}

// TestDamagedStateAtStart damages a stopped manager's state store or Raft
// log on disk and starts it again: it either comes back with every service
// (the store rebuilt from Raft's snapshot and log, the damaged file kept
// aside), or refuses to start with an error naming the damaged file and
// saying what to do. It never panics, and never starts on a state it
// cannot trust (in the issue: 0 of 81 services, running tasks destroyed).
func TestDamagedStateAtStart(t *testing.T) {
	bin := testutil.Install(t, managerPlugins...)
	cases := []struct {
		name   string
		damage func(t *testing.T, a *testutil.Agent)
		refuse func(a *testutil.Agent) []string // what the refusal says; nil: the agent comes back whole
	}{
		{
			name:   "store: 16 bytes flipped in 4 pages",
			damage: func(t *testing.T, a *testutil.Agent) { boltchecktest.FlipPages(t, storeFile(a), 4, 4) },
		},
		{
			name:   "store: truncated",
			damage: func(t *testing.T, a *testutil.Agent) { boltchecktest.Truncate(t, storeFile(a), 0.5) },
		},
		{
			name: "store: damaged, and the log compacted with its snapshot gone",
			damage: func(t *testing.T, a *testutil.Agent) {
				boltchecktest.FlipPages(t, storeFile(a), 4, 4)
				if err := os.RemoveAll(filepath.Join(a.DataDir, "raft", "snapshots")); err != nil {
					t.Fatal(err)
				}
			},
			refuse: func(a *testutil.Agent) []string {
				return []string{storeFile(a) + " is damaged", "Raft cannot rebuild it", "entries 1 to"}
			},
		},
		{
			name:   "raft.db: bytes flipped",
			damage: func(t *testing.T, a *testutil.Agent) { boltchecktest.FlipPages(t, raftLog(a), 2, 8) },
			refuse: func(a *testutil.Agent) []string { return []string{raftLog(a) + " is damaged", "-force-new-cluster"} },
		},
		{
			name:   "raft.db: truncated",
			damage: func(t *testing.T, a *testutil.Agent) { boltchecktest.Truncate(t, raftLog(a), 0.5) },
			refuse: func(a *testutil.Agent) []string { return []string{raftLog(a) + " is damaged", "-force-new-cluster"} },
		},
		{
			name: "raft.db: emptied next to its snapshot, the store ahead of it",
			damage: func(t *testing.T, a *testutil.Agent) {
				if err := os.Truncate(raftLog(a), 0); err != nil {
					t.Fatal(err)
				}
			},
			refuse: func(a *testutil.Agent) []string { return []string{raftLog(a), "ahead of Raft", "-force-new-cluster"} },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := testutil.NewAgent(t, bin, compacting)
			a.Start(context.Background())
			want := fillServices(t, a, 81)
			a.Stop()
			tc.damage(t, a)

			if tc.refuse == nil {
				a.Start(context.Background())
				sameServices(t, serviceNames(t, a.Client()), want)
				if !strings.Contains(a.Output(), "rebuilding it from Raft") {
					t.Fatalf("the agent did not say it rebuilt the store:\n%s", tail(a.Output(), 40))
				}
				if aside, _ := filepath.Glob(storeFile(a) + ".corrupt-*"); len(aside) != 1 {
					t.Fatalf("damaged store kept aside as %v, want one %s.corrupt-<time>", aside, storeFile(a))
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, errOut, code := runWithContext(ctx, t, bin, "agent", "-config", a.Config)
			if code == 0 {
				t.Fatalf("the agent started on a damaged state:\n%s%s", out, errOut)
			}
			for _, w := range tc.refuse(a) {
				if !strings.Contains(errOut, w) {
					t.Errorf("the refusal lacks %q:\n%s", w, tail(errOut, 30))
				}
			}
			if code == 2 || strings.Contains(errOut, "\ngoroutine ") {
				t.Errorf("the agent crashed:\n%s", tail(errOut, 40))
			}
			t.Logf("refused (exit %d): %s", code, tail(errOut, 3))
			if pids := testutil.PluginPIDs(bin); len(pids) != 0 {
				t.Fatalf("plugin processes left behind: %v", pids)
			}
		})
	}
}

// TestRunDamagedStoreKeepsContainers is the case: a manager+worker
// running containers is killed, its store file is damaged, and it starts
// again. The store is rebuilt from Raft and the running containers are
// kept: same containers, same processes, same tasks.
func TestRunDamagedStoreKeepsContainers(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNodeWith(t, compacting)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "3", converge)
	before := n.waitConverged("web", 3)
	tasksBefore := n.runningTasks("web")
	want := fillServices(t, n.a, 80)

	plugins := testutil.PluginPIDs(n.bin)
	n.a.Kill9()
	testutil.Eventually(t, 10*time.Second, "the plugins to exit with the agent", func() bool {
		return !slices.ContainsFunc(plugins, testutil.Alive)
	})
	boltchecktest.FlipPages(t, storeFile(n.a), 4, 4)

	n.a.Start(context.Background())
	n.c = n.a.Client()
	sameServices(t, serviceNames(t, n.c), want)
	if got := n.waitConverged("web", 3); !maps.Equal(got, before) {
		t.Fatalf("after the rebuild containerd runs %v, want the same containers %v", got, before)
	}
	if got := n.runningTasks("web"); !slices.Equal(got, tasksBefore) {
		t.Fatalf("RUNNING tasks after the rebuild %v, want %v", got, tasksBefore)
	}
	for _, tk := range n.tasks("web", true) {
		if !slices.Contains(tasksBefore, tk.GetId()) {
			t.Errorf("a task was replaced across the rebuild: %s %s %q", tk.GetId(), tk.GetState(), tk.GetError())
		}
	}
}
