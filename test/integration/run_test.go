package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ctd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	runtimectd "github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/netns"
	"github.com/warrenorch/warren/test/testutil"
)

// The tests in this file run services on real containers: a manager+worker
// agent, its runtime-containerd plugin and the managed containerd it
// starts. What runs is checked in containerd itself, not only in Warren's
// state.

// converge bounds the CLI's wait for a service to converge, so that a
// broken convergence fails a test well before the go test timeout.
const converge = "--timeout-converge=60s"

// quickStop shortens the stop of the services a test scales down, updates
// or removes: the test image's sleep runs as PID 1, which ignores SIGTERM,
// so every stop lasts the whole grace period (10s by default, as with
// docker) before SIGKILL ends it.
const quickStop = "--stop-grace-period=1s"

// node is a manager+worker agent running real containers, and what a test
// needs to look at it.
type node struct {
	t    *testing.T
	a    *testutil.Agent
	bin  string
	c    apiv1.WarrenClient
	ctd  *ctd.Client
	cctx context.Context
	// host is the network namespace of an overlay node (startOverlayNode),
	// nil for the others.
	host *netns.Host
}

// startNode starts a manager+worker agent in a fresh directory and imports
// the test images; the caller has checked that containers can run here
// (ctrtest.SkipWithoutContainerd). Whatever happens to the agent (a kill
// -9 included), the test leaves no container and no containerd behind.
func startNode(t *testing.T) *node {
	t.Helper()
	return startNodeWith(t, "")
}

// startNodeWith is startNode with managerExtra inside the manager block,
// and prepare (when given) called on the agent before it starts, to change
// its configuration.
func startNodeWith(t *testing.T, managerExtra string, prepare ...func(*testutil.Agent)) *node {
	t.Helper()
	bin := testutil.Install(t, ctrtest.WorkerPlugins...)
	a := ctrtest.NewWorkerAgent(t, bin, managerExtra)
	for _, p := range prepare {
		p(a)
	}
	return startAgentNode(t, bin, a)
}

// startAgentNode starts a, made from the binaries in bin, and imports the
// test images.
func startAgentNode(t *testing.T, bin string, a *testutil.Agent) *node {
	t.Helper()
	// Runs before the agent's data dir is removed: stop the agent (its
	// stop_on_exit removes every container and the managed containerd),
	// then remove what an agent killed by the test left.
	t.Cleanup(func() {
		a.Kill()
		sweep(t, a.DataDir)
	})
	a.Start(context.Background())
	n := &node{t: t, a: a, bin: bin, c: a.Client()}
	ctrtest.ImportImages(t, n.c)
	n.ctd, n.cctx = ctrtest.Containerd(t, a)
	return n
}

// sweep removes every container of Warren's namespace and stops the managed
// containerd of an agent's data dir, for an agent a test killed and did not
// start again; after a clean stop it finds nothing to do.
func sweep(t *testing.T, dataDir string) {
	dir := filepath.Join(dataDir, "runtime-containerd")
	sock := filepath.Join(dir, "containerd.sock")
	if _, err := os.Stat(sock); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := ctd.New(sock, ctd.WithTimeout(2*time.Second)); err == nil {
		nctx := namespaces.WithNamespace(ctx, "warren")
		cs, _ := c.Containers(nctx)
		for _, ctr := range cs {
			if tk, err := ctr.Task(nctx, nil); err == nil {
				_, _ = tk.Delete(nctx, ctd.WithProcessKill)
			}
			_ = ctr.Delete(nctx, ctd.WithSnapshotCleanup)
		}
		if len(cs) > 0 {
			t.Logf("cleanup: removed %d containers left behind", len(cs))
		}
		c.Close()
	}
	if err := runtimectd.ShutdownManaged(ctx, dir); err != nil {
		t.Logf("cleanup: stopping the managed containerd: %v", err)
	}
}

// cli runs the warren CLI against the agent and fails the test unless it
// exits 0.
func (n *node) cli(args ...string) string {
	n.t.Helper()
	out, errOut, code := testutil.RunCLI(n.t, n.bin, n.a.Socket, args...)
	if code != 0 {
		n.t.Fatalf("warren %s: exit %d\n%s%s\nagent output:\n%s", strings.Join(args, " "), code, out, errOut, tail(n.a.Output(), 60))
	}
	return out
}

// tasks lists a service's tasks (all: with their history), every page of
// them; service "" lists every task.
func (n *node) tasks(service string, all bool) []*apiv1.Task {
	n.t.Helper()
	var out []*apiv1.Task
	token := ""
	for {
		resp, err := n.c.ListTasks(context.Background(), &apiv1.ListTasksRequest{Service: service, All: all, PageToken: token, View: apiv1.TaskView_TASK_VIEW_FULL})
		if err != nil {
			n.t.Fatalf("list tasks of %q: %v", service, err)
		}
		out = append(out, resp.GetTasks()...)
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// runningTasks returns the IDs of a service's tasks that are RUNNING and
// wanted running.
func (n *node) runningTasks(service string) []string {
	n.t.Helper()
	var ids []string
	for _, tk := range n.tasks(service, false) {
		if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && tk.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING {
			ids = append(ids, tk.GetId())
		}
	}
	slices.Sort(ids)
	return ids
}

// running returns container ID → PID of the containers whose process runs,
// as containerd sees them.
func (n *node) running() map[string]uint32 {
	n.t.Helper()
	return ctrtest.RunningIn(n.t, n.ctd, n.cctx)
}

// containers returns the number of containers and of active snapshots.
func (n *node) containers() (containers, snapshots int) {
	n.t.Helper()
	return ctrtest.CountAll(n.t, n.ctd, n.cctx)
}

// waitConverged waits until containerd runs exactly want containers, holds
// no other container or active snapshot, and the service's RUNNING tasks
// are exactly those containers. It returns container ID → PID.
func (n *node) waitConverged(service string, want int) map[string]uint32 {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		run := n.running()
		ctrs, snaps := n.containers()
		tasks := n.runningTasks(service)
		if len(run) == want && ctrs == want && snaps == want && slices.Equal(tasks, sortedKeys(run)) {
			return run
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("%s: want %d running containers and as many RUNNING tasks; containerd runs %v (%d containers, %d active snapshots), RUNNING tasks %v\nagent output:\n%s",
				service, want, run, ctrs, snaps, tasks, tail(n.a.Output(), 60))
		}
		time.Sleep(20 * time.Millisecond) // polling containerd with a deadline
	}
}

// plugin returns the PID, restart count and state of the plugin of kind.
func (n *node) plugin(kind string) (pid int, restarts uint32, state string) {
	n.t.Helper()
	resp, err := n.c.ListPlugins(context.Background(), &apiv1.ListPluginsRequest{})
	if err != nil {
		n.t.Fatalf("list plugins: %v", err)
	}
	for _, p := range resp.GetPlugins() {
		if p.GetKind() == kind {
			return int(p.GetPid()), p.GetRestarts(), p.GetState()
		}
	}
	n.t.Fatalf("no %s plugin listed in %v", kind, resp.GetPlugins())
	return 0, 0, ""
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func TestRunReplicasStartRealContainers(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "3", converge)

	// The CLI waited until the service converged: it runs now, no polling.
	run := n.running()
	ctrs, snaps := n.containers()
	tasks := n.runningTasks("web")
	if len(run) != 3 || ctrs != 3 || snaps != 3 {
		t.Fatalf("containerd runs %v (%d containers, %d active snapshots), want 3", run, ctrs, snaps)
	}
	if !slices.Equal(tasks, sortedKeys(run)) {
		t.Fatalf("RUNNING tasks %v, containers running %v: want the same", tasks, sortedKeys(run))
	}
	for id, pid := range run {
		if pid == 0 || !testutil.Alive(int(pid)) {
			t.Errorf("container %s: process %d is not alive", id, pid)
		}
	}
	slots := map[uint64]bool{}
	for _, tk := range n.tasks("web", true) {
		slots[tk.GetSlot()] = true
		if tk.GetAttempt() > 1 {
			t.Errorf("task %s of slot %d is attempt %d: something failed", tk.GetId(), tk.GetSlot(), tk.GetAttempt())
		}
	}
	if len(slots) != 3 || !slots[1] || !slots[2] || !slots[3] {
		t.Fatalf("slots %v, want 1, 2 and 3", slots)
	}
}

func TestRunScaleUpAndDown(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "3", quickStop, converge)
	three := n.waitConverged("web", 3)

	n.cli("service", "scale", "web=5", converge)
	five := n.waitConverged("web", 5)
	for id := range three {
		if _, ok := five[id]; !ok {
			t.Errorf("scaling up replaced container %s", id)
		}
	}

	n.cli("service", "scale", "web=1", converge)
	one := n.waitConverged("web", 1)
	for id := range one {
		if _, ok := five[id]; !ok {
			t.Errorf("scaling down started a new container %s", id)
		}
	}
	// The scaled-down tasks are gone from the current list and were shut
	// down, not failed.
	for _, tk := range n.tasks("web", true) {
		if tk.GetSlot() > 1 && tk.GetState() != apiv1.TaskState_TASK_STATE_SHUTDOWN {
			t.Errorf("task %s of slot %d after scale down: %s %q", tk.GetId(), tk.GetSlot(), tk.GetState(), tk.GetError())
		}
	}
}

func TestRunUpdateEnvReplacesContainers(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "3", quickStop, converge)
	before := n.waitConverged("web", 3)

	n.cli("service", "update", "web", "--env-add", "A=1", converge)
	after := n.waitConverged("web", 3)
	for id := range after {
		if _, ok := before[id]; ok {
			t.Errorf("container %s survived the update", id)
		}
	}
	cs, err := n.ctd.Containers(n.cctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if _, ok := before[c.ID()]; ok {
			t.Errorf("old container %s still exists after the update", c.ID())
		}
		spec, err := c.Spec(n.cctx)
		if err != nil {
			t.Fatalf("spec of container %s: %v", c.ID(), err)
		}
		if !slices.Contains(spec.Process.Env, "A=1") {
			t.Errorf("container %s: env %v lacks A=1", c.ID(), spec.Process.Env)
		}
	}
	for _, tk := range n.tasks("web", false) {
		if tk.GetSpec().GetEnv()["A"] != "1" {
			t.Errorf("current task %s has env %v", tk.GetId(), tk.GetSpec().GetEnv())
		}
	}
}

func TestRunRemoveLeavesNothing(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "3", quickStop, converge)
	n.waitConverged("web", 3)

	n.cli("service", "rm", "web")
	var (
		ctrs, snaps int
		tasks       []*apiv1.Task
	)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctrs, snaps = n.containers()
		tasks = n.tasks("", true)
		if ctrs == 0 && snaps == 0 && len(tasks) == 0 && len(n.running()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after rm: %d containers, %d active snapshots, tasks %v\nagent output:\n%s", ctrs, snaps, tasks, tail(n.a.Output(), 60))
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

func TestRunKilledContainerIsReplaced(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "2", converge)
	n.killOne("web", 2, "")
}

// killOne kills the process of one of a service's containers (victim, or
// any when "") with SIGKILL (the PID from containerd) and checks that a new task replaces it in its
// slot, the other containers untouched, and that the killed task is kept
// as history: FAILED with exit code 137.
func (n *node) killOne(service string, replicas int, victim string) {
	n.t.Helper()
	before := n.waitConverged(service, replicas)
	if victim == "" {
		victim = sortedKeys(before)[0]
	}
	pid, ok := before[victim]
	if !ok {
		n.t.Fatalf("container %s does not run: %v", victim, before)
	}
	var slot uint64
	for _, tk := range n.tasks(service, false) {
		if tk.GetId() == victim {
			slot = tk.GetSlot()
		}
	}
	if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
		n.t.Fatalf("kill -9 %d: %v", pid, err)
	}
	testutil.Eventually(n.t, 30*time.Second, "a replacement of the killed container", func() bool {
		ids := n.runningTasks(service)
		return len(ids) == replicas && !slices.Contains(ids, victim)
	})
	after := n.waitConverged(service, replicas)
	for id, p := range before {
		if id != victim && after[id] != p {
			n.t.Errorf("container %s: process %d became %d, yet only %s was killed", id, p, after[id], victim)
		}
	}

	var old *apiv1.Task
	for _, tk := range n.tasks(service, true) {
		switch {
		case tk.GetId() == victim:
			old = tk
		case before[tk.GetId()] == 0 && (tk.GetSlot() != slot || tk.GetAttempt() != 2):
			n.t.Errorf("new task %s is slot %d attempt %d, want a replacement in slot %d, attempt 2", tk.GetId(), tk.GetSlot(), tk.GetAttempt(), slot)
		}
	}
	switch {
	case old == nil:
		n.t.Fatalf("the killed task %s is not kept as history", victim)
	case old.GetState() != apiv1.TaskState_TASK_STATE_FAILED || old.GetExitCode() != 137:
		n.t.Fatalf("killed task: state %s, exit code %d, error %q; want FAILED with 137", old.GetState(), old.GetExitCode(), old.GetError())
	case old.GetDesiredState() != apiv1.TaskState_TASK_STATE_SHUTDOWN:
		n.t.Fatalf("killed task: desired state %s, want SHUTDOWN", old.GetDesiredState())
	case !strings.Contains(old.GetError(), "137"):
		n.t.Fatalf("killed task: error %q does not give the exit code", old.GetError())
	}
}

func TestRunCrashLoopBacksOff(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	start := time.Now()
	n.cli("service", "create", "crash", "--image", ctrtest.TestImage, "--detach", "--", "sh", "-c", "exit 1")

	// History beyond task_history_limit is removed: collect every task
	// seen while polling.
	seen := map[string]*apiv1.Task{}
	for time.Since(start) < 5*time.Second {
		for _, tk := range n.tasks("crash", true) {
			seen[tk.GetId()] = tk
		}
		time.Sleep(20 * time.Millisecond) // sampling for a fixed 5s on purpose
	}
	attempts := slices.SortedFunc(maps.Values(seen), func(a, b *apiv1.Task) int { return int(a.GetAttempt()) - int(b.GetAttempt()) })
	var lines []string
	for _, tk := range attempts {
		lines = append(lines, fmt.Sprintf("%s attempt %d %s not_before %s updated %s %s", tk.GetId(), tk.GetAttempt(), tk.GetState(),
			tk.GetNotBefore().AsTime().Format("15:04:05.000"), tk.GetUpdatedAt().AsTime().Format("15:04:05.000"), tk.GetError()))
	}
	report := strings.Join(lines, "\n")
	t.Logf("%d attempts in 5s:\n%s", len(attempts), report)
	if len(attempts) < 4 {
		t.Fatalf("%d attempts in 5s, want several:\n%s", len(attempts), report)
	}
	if len(attempts) >= 10 {
		t.Fatalf("%d attempts in 5s: the crash loop spins:\n%s", len(attempts), report)
	}
	for i, tk := range attempts {
		if tk.GetAttempt() != uint32(i+1) || tk.GetSlot() != 1 {
			t.Fatalf("task %d is slot %d attempt %d, want slot 1 attempt %d:\n%s", i, tk.GetSlot(), tk.GetAttempt(), i+1, report)
		}
		if tk.GetState() == apiv1.TaskState_TASK_STATE_FAILED && tk.GetExitCode() != 1 {
			t.Errorf("attempt %d failed with exit code %d, want 1", tk.GetAttempt(), tk.GetExitCode())
		}
	}
	// not_before = failure + delay × 2^(attempt−2), delay 100ms: the wait
	// from an attempt's last update (its failure, or its shutdown in the
	// round that replaced it) to its replacement's not_before is at least
	// that backoff, and grows with each attempt. (Measured from the
	// failure, not from the previous not_before: how long a container takes
	// to start and fail varies by hundreds of milliseconds on a busy
	// machine, more than the backoff's steps.)
	var prev time.Duration
	for i := 2; i < len(attempts); i++ {
		if attempts[i].GetNotBefore() == nil {
			t.Fatalf("attempt %d has no not_before:\n%s", i+1, report)
		}
		wait := attempts[i].GetNotBefore().AsTime().Sub(attempts[i-1].GetUpdatedAt().AsTime())
		floor := 100 * time.Millisecond << (i - 1) // attempts[i] is attempt i+1
		if wait < floor-10*time.Millisecond {
			t.Errorf("attempt %d → %d: waits %s after the failure, want at least %s", i, i+1, wait, floor)
		}
		if wait <= prev {
			t.Errorf("attempt %d → %d: waits %s after the failure, no more than the wait before (%s): no backoff", i, i+1, wait, prev)
		}
		prev = wait
	}
}

func TestRunKill9RuntimePlugin(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "3", converge)
	before := n.waitConverged("web", 3)
	pid, restarts, _ := n.plugin("runtime")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 the runtime plugin (%d): %v", pid, err)
	}
	testutil.Eventually(t, 60*time.Second, "the runtime plugin restarted", func() bool {
		p, r, state := n.plugin("runtime")
		return p != pid && r > restarts && state == "running"
	})
	// The containers kept running through it, the very same processes, and
	// nothing was started twice.
	if got := n.waitConverged("web", 3); !maps.Equal(got, before) {
		t.Fatalf("containers after the plugin restart %v, before %v", got, before)
	}
	// The restarted plugin is in use: new work happens, and the exit of a
	// container that started before the restart is seen.
	n.cli("service", "scale", "web=4", converge)
	after := n.waitConverged("web", 4)
	for id, pid := range before {
		if after[id] != pid {
			t.Errorf("container %s: process %d became %d", id, pid, after[id])
		}
	}
	n.killOne("web", 4, sortedKeys(before)[0])
}

func TestRunKill9AgentRecoversContainers(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "3", converge)
	before := n.waitConverged("web", 3)
	tasksBefore := n.runningTasks("web")

	plugins := testutil.PluginPIDs(n.bin)
	n.a.Kill9()
	testutil.Eventually(t, 10*time.Second, "the plugins to exit with the agent", func() bool {
		for _, pid := range plugins {
			if testutil.Alive(pid) {
				return false
			}
		}
		return true
	})
	// The managed containerd and the containers outlive the agent: the
	// client opened before still reaches it.
	if got := n.running(); !maps.Equal(got, before) {
		t.Fatalf("after the agent's kill -9 containerd runs %v, want %v", got, before)
	}

	n.a.Start(context.Background())
	n.c = n.a.Client()
	if got := n.waitConverged("web", 3); !maps.Equal(got, before) {
		t.Fatalf("after the restart containerd runs %v, want the same containers %v", got, before)
	}
	if got := n.runningTasks("web"); !slices.Equal(got, tasksBefore) {
		t.Fatalf("RUNNING tasks after the restart %v, want %v", got, tasksBefore)
	}
	for _, tk := range n.tasks("web", true) {
		if !slices.Contains(tasksBefore, tk.GetId()) {
			t.Errorf("a task was replaced across the restart: %s %s %q", tk.GetId(), tk.GetState(), tk.GetError())
		}
	}
	n.cli("service", "scale", "web=4", converge)
	after := n.waitConverged("web", 4)
	for id, pid := range before {
		if after[id] != pid {
			t.Errorf("container %s: process %d became %d", id, pid, after[id])
		}
	}
	// The exit of a recovered container is seen.
	n.killOne("web", 4, sortedKeys(before)[0])
}

func TestRunServiceLogs(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	n.cli("service", "create", "hello", "--image", ctrtest.TestImage, converge, "--", "sh", "-c", "echo hello-warren; sleep 3600")
	n.waitConverged("hello", 1)

	// The echo runs right after the start the CLI waited for: poll.
	var out string
	testutil.Eventually(t, 10*time.Second, "hello-warren in `service logs`", func() bool {
		out = n.cli("service", "logs", "hello")
		return strings.Contains(out, "hello-warren")
	})
	if !strings.Contains(out, "hello.1@") {
		t.Errorf("service logs lines lack the hello.1@NODE prefix:\n%s", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := n.c.TaskLogs(ctx, &apiv1.TaskLogsRequest{Service: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("TaskLogs: %v", err)
		}
		if chunk.GetSlot() != 1 || chunk.GetTaskId() == "" {
			t.Errorf("chunk of task %q slot %d", chunk.GetTaskId(), chunk.GetSlot())
		}
		got.Write(chunk.GetData())
	}
	if got.String() != "hello-warren\n" {
		t.Fatalf("TaskLogs sent %q, want %q", got.String(), "hello-warren\n")
	}
}

func TestRunBadInput(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)

	t.Run("unknown image", func(t *testing.T) {
		n := *n
		n.t = t
		n.cli("service", "create", "ghost", "--image", "busybox:does-not-exist", "--detach")
		var bad *apiv1.Task
		testutil.Eventually(t, 60*time.Second, "the task to be rejected", func() bool {
			for _, tk := range n.tasks("ghost", true) {
				if s := tk.GetState(); s == apiv1.TaskState_TASK_STATE_REJECTED || s == apiv1.TaskState_TASK_STATE_FAILED {
					bad = tk
					return true
				}
			}
			return false
		})
		if !strings.Contains(bad.GetError(), "busybox:does-not-exist") {
			t.Fatalf("task %s %s with error %q, want it to name the image", bad.GetId(), bad.GetState(), bad.GetError())
		}
		t.Logf("%s: %s", bad.GetState(), bad.GetError())
		if len(n.running()) != 0 {
			t.Fatalf("containers run for an image that does not exist: %v", n.running())
		}
		n.cli("service", "rm", "ghost")
	})

	t.Run("bad memory size", func(t *testing.T) {
		out, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, "service", "create", "big", "--image", ctrtest.TestImage, "--memory", "12XB")
		if code != 1 || !strings.Contains(errOut, "12XB") || !strings.Contains(errOut, "--memory") {
			t.Fatalf("--memory 12XB: exit %d, stdout %q, stderr %q; want exit 1 naming the flag and the value", code, out, errOut)
		}
		t.Logf("stderr: %s", strings.TrimSpace(errOut))
		svcs, err := n.c.ListServices(context.Background(), &apiv1.ListServicesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range svcs.GetServices() {
			if s.GetSpec().GetName() == "big" {
				t.Fatalf("a rejected create made service %v", s)
			}
		}
	})

	t.Run("image without a command", func(t *testing.T) {
		n := *n
		n.t = t
		n.cli("service", "create", "nocmd", "--image", ctrtest.NoCmdImage, "--detach")
		var bad *apiv1.Task
		testutil.Eventually(t, 30*time.Second, "the task to be rejected", func() bool {
			for _, tk := range n.tasks("nocmd", true) {
				if tk.GetState() >= apiv1.TaskState_TASK_STATE_RUNNING {
					bad = tk
					return true
				}
			}
			return false
		})
		if bad.GetState() != apiv1.TaskState_TASK_STATE_REJECTED || !strings.Contains(bad.GetError(), "no command") {
			t.Fatalf("task %s: %s with error %q; want REJECTED saying the image has no command", bad.GetId(), bad.GetState(), bad.GetError())
		}
		t.Logf("%s: %s", bad.GetState(), bad.GetError())
		n.cli("service", "rm", "nocmd")
	})

	// Nothing of the bad services is left.
	testutil.Eventually(t, 30*time.Second, "no container and no task left", func() bool {
		ctrs, snaps := n.containers()
		return ctrs == 0 && snaps == 0 && len(n.tasks("", true)) == 0
	})
}

// TestRunRefusedImageEndsTheWait: a service whose image cannot be had is
// refused on every attempt; the slots back off under the restart policy,
// their current rows say why, service ls says why, and the create's wait
// ends with that reason once every slot has failed the same way three
// times in a row, well before its timeout.
func TestRunRefusedImageEndsTheWait(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	// A registry that refuses the connection at once, on loopback.
	const image = "127.0.0.1:1/nothing/here:1"
	out, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, "service", "create", "nope", "--image", image,
		"--replicas", "2", "--restart-delay", "50ms", "--timeout-converge=120s")
	if code == 0 || !strings.Contains(errOut, "every slot failed 3 times in a row with rejected") {
		t.Fatalf("create: exit %d, want an early end naming the refusal\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "not converged after") {
		t.Fatalf("create waited for its timeout:\n%s", errOut)
	}
	ps := n.cli("service", "ps", "nope", "--no-trunc")
	if !strings.Contains(ps, "after rejected:") || !strings.Contains(ps, "127.0.0.1:1") {
		t.Fatalf("service ps does not say why the slots do not run:\n%s", ps)
	}
	ls := n.cli("service", "ls")
	if !strings.Contains(ls, "0/2: rejected:") {
		t.Fatalf("service ls does not say why nope does not run:\n%s", ls)
	}
	// The attempts back off: the current tasks are not started before
	// their not_before, which grows.
	for _, tk := range n.tasks("nope", false) {
		if tk.GetAttempt() >= 3 && tk.GetNotBefore() == nil {
			t.Errorf("attempt %d of slot %d has no backoff", tk.GetAttempt(), tk.GetSlot())
		}
	}
}
