package bench

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// The benchmarks in this file run services for real: one manager+worker
// agent with its own managed containerd (stop_on_exit removes every
// container when the agent stops), the busybox test image imported once,
// and latencies taken from an API call or a kill to the moment the Events
// stream reports the tasks RUNNING, that is once the worker has started
// the containers and the manager has committed its report.
//
// They use b.Loop, so that each benchmark starts its agent once, also with
// -benchtime Nx (a b.N loop would run the whole function twice).

// runningAgent is a manager+worker agent ready to run the test image.
type runningAgent struct {
	a   *testutil.Agent
	bin string
	c   apiv1.WarrenClient
	// containers counts the containers in Warren's containerd namespace.
	containers func() int
	// running maps the container ID (the task ID) of every running
	// container to its PID.
	running func() map[string]uint32
}

// startRunningAgent starts a manager+worker agent, waits for its node to be
// ready and imports the test images.
func startRunningAgent(b *testing.B) *runningAgent {
	b.Helper()
	ctrtest.SkipWithoutContainerd(b)
	bin := testutil.Install(b, ctrtest.WorkerPlugins...)
	a := ctrtest.NewWorkerAgent(b, bin, "")
	a.Start(context.Background())
	c := a.Client()
	testutil.Eventually(b, 60*time.Second, "a ready worker node", func() bool {
		resp, err := c.ListNodes(context.Background(), &apiv1.ListNodesRequest{})
		if err != nil {
			return false
		}
		for _, n := range resp.GetNodes() {
			if n.GetWorker() && n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY {
				return true
			}
		}
		return false
	})
	ctrtest.ImportImages(b, c)
	cc, cctx := ctrtest.Containerd(b, a)
	return &runningAgent{
		a: a, bin: bin, c: c,
		containers: func() int { n, _ := ctrtest.CountAll(b, cc, cctx); return n },
		running:    func() map[string]uint32 { return ctrtest.RunningIn(b, cc, cctx) },
	}
}

// benchSpec is the spec of a benchmark service running the test image.
// Its stop signal is SIGKILL: the image's `sleep` runs as PID 1 and ignores
// SIGTERM, so each removal would otherwise wait out the 10s grace period.
// Removals are never timed; the signal changes nothing that is.
func benchSpec(name string, replicas uint64) *apiv1.ServiceSpec {
	return &apiv1.ServiceSpec{
		Name: name, Image: ctrtest.TestImage, Replicas: replicas,
		StopSignal: "SIGKILL",
		Labels:     map[string]string{"bench": "run"},
	}
}

// taskWatch is a subscription to task events, opened before the change it
// waits for so that no transition can be missed.
type taskWatch struct {
	stream apiv1.Warren_EventsClient
	cancel context.CancelFunc
	// reached is when the last task of the service reached each state,
	// as the events arrived.
	reached map[apiv1.TaskState]time.Time
}

// watchTasks subscribes to task events; the subscription ends after
// timeout or at close.
func watchTasks(b *testing.B, c apiv1.WarrenClient, timeout time.Duration) *taskWatch {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	stream, err := c.Events(ctx, &apiv1.EventsRequest{Kinds: []string{"task"}})
	if err != nil {
		cancel()
		b.Fatalf("subscribe to task events: %v", err)
	}
	if _, err := stream.Header(); err != nil { // subscribed once headers arrive
		cancel()
		b.Fatalf("subscribe to task events: %v", err)
	}
	return &taskWatch{stream: stream, cancel: cancel, reached: map[apiv1.TaskState]time.Time{}}
}

func (w *taskWatch) close() { w.cancel() }

// milestones collects, over iterations, when the last task reached each
// state on its way to RUNNING, counted from the iteration's start.
type milestones map[apiv1.TaskState][]time.Duration

// add records w's states, counted from start.
func (m milestones) add(w *taskWatch, start time.Time) {
	for st, at := range w.reached {
		m[st] = append(m[st], at.Sub(start))
	}
}

// report reports the median of each state before RUNNING as
// <state>-ms (assigned-ms, preparing-ms, starting-ms): where the time to
// RUNNING goes.
func (m milestones) report(b *testing.B) {
	b.Helper()
	for _, st := range []apiv1.TaskState{apiv1.TaskState_TASK_STATE_ASSIGNED, apiv1.TaskState_TASK_STATE_PREPARING, apiv1.TaskState_TASK_STATE_STARTING} {
		if lat := m[st]; len(lat) > 0 {
			name := strings.ToLower(strings.TrimPrefix(st.String(), "TASK_STATE_"))
			b.ReportMetric(quantileMS(lat, 0.50), name+"-ms")
		}
	}
}

// running reads events until n distinct tasks of service, none of them in
// skip, have been reported RUNNING, and returns their IDs.
func (w *taskWatch) running(service string, n int, skip map[string]bool) (map[string]bool, error) {
	seen := map[string]bool{}
	for len(seen) < n {
		ev, err := w.stream.Recv()
		if err != nil {
			return seen, fmt.Errorf("service %q: %d of %d tasks running: %w", service, len(seen), n, err)
		}
		t := ev.GetTask()
		if ev.GetAction() == apiv1.EventAction_EVENT_ACTION_DELETED || t.GetServiceName() != service || skip[t.GetId()] {
			continue
		}
		if t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING {
			w.reached[t.GetState()] = time.Now()
		}
		if t.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING {
			seen[t.GetId()] = true
		}
	}
	return seen, nil
}

// removeService removes a service and waits until the worker has removed
// every container, so that nothing of it overlaps what is measured next.
func (r *runningAgent) removeService(b *testing.B, name string) {
	b.Helper()
	if _, err := r.c.RemoveService(context.Background(), &apiv1.RemoveServiceRequest{NameOrId: name}); err != nil {
		b.Fatalf("remove service %q: %v", name, err)
	}
	testutil.Eventually(b, 2*time.Minute, "the containers of "+name+" to be removed", func() bool {
		return r.containers() == 0
	})
}

// reportLatency reports the median and the 99th percentile (nearest rank,
// so with few samples p99 is the slowest) in milliseconds.
func reportLatency(b *testing.B, lat []time.Duration) {
	b.Helper()
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(quantileMS(lat, 0.50), "p50-ms")
	b.ReportMetric(quantileMS(lat, 0.99), "p99-ms")
}

// reportVsFloor reports lat as reportLatency does, the floor's median and
// 99th percentile (floor-p50-ms, floor-p99-ms) and the ratio of the two
// medians (x-floor).
func reportVsFloor(b *testing.B, lat, floor []time.Duration) {
	b.Helper()
	reportLatency(b, lat)
	if len(lat) == 0 || len(floor) == 0 {
		return
	}
	f50 := quantileMS(floor, 0.50)
	b.ReportMetric(f50, "floor-p50-ms")
	b.ReportMetric(quantileMS(floor, 0.99), "floor-p99-ms")
	b.ReportMetric(quantileMS(lat, 0.50)/f50, "x-floor")
}

// quantileMS sorts lat and returns its p quantile (nearest rank) in
// milliseconds.
func quantileMS(lat []time.Duration, p float64) float64 {
	slices.Sort(lat)
	i := max(int(math.Ceil(p*float64(len(lat))))-1, 0)
	return float64(lat[i].Microseconds()) / 1000
}

// BenchmarkCreate3Replicas: from CreateService with 3 replicas to all three
// containers RUNNING. Between iterations the service is removed and its
// containers waited for, untimed. Each iteration also times its floor:
// three parallel bare containerd starts on the same containerd (see
// startFloor), reported as floor-p50-ms next to Warren's p50-ms.
func BenchmarkCreate3Replicas(b *testing.B) {
	r := startRunningAgent(b)
	f := newStartFloor(b, r)
	var lat, floor []time.Duration
	ms := milestones{}
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("create3-%d", i)
		b.StopTimer()
		w := watchTasks(b, r.c, time.Minute)
		b.StartTimer()

		start := time.Now()
		if _, err := r.c.CreateService(context.Background(), &apiv1.CreateServiceRequest{Spec: benchSpec(name, 3)}); err != nil {
			b.Fatalf("create service %q: %v", name, err)
		}
		if _, err := w.running(name, 3, nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		ms.add(w, start)

		b.StopTimer()
		w.close()
		r.removeService(b, name)
		b.StartTimer()
		floor = append(floor, f.start(b, 3))
	}
	reportVsFloor(b, lat, floor)
	ms.report(b)
}

// BenchmarkReplaceKilledTask: a one-replica service; each iteration kills
// its container's process with SIGKILL and measures until the replacement
// task is RUNNING.
//
// Restart policy: window = 1ns, everything else default. The default window
// (10s) counts a task that ran less than 10s as a crash loop: its
// replacement gets attempt + 1 and a not_before of 100ms × 2^(attempt−2),
// so back-to-back kills would measure a growing backoff, not the restart
// path. With a 1ns window every kill takes the path the default policy
// takes for a task that ran longer than 10s (attempt 1, no not_before),
// without waiting 10s per iteration (see restartOf in
// core/orchestrator/reconcile.go).
//
// Each iteration also times its floor: one bare containerd start on the
// same containerd (see startFloor), reported as floor-p50-ms.
func BenchmarkReplaceKilledTask(b *testing.B) {
	r := startRunningAgent(b)
	f := newStartFloor(b, r)
	const name = "replace-killed"
	spec := benchSpec(name, 1)
	spec.RestartPolicy = &apiv1.RestartPolicy{Window: durationpb.New(time.Nanosecond)}

	w := watchTasks(b, r.c, time.Minute)
	if _, err := r.c.CreateService(context.Background(), &apiv1.CreateServiceRequest{Spec: spec}); err != nil {
		b.Fatalf("create service %q: %v", name, err)
	}
	ids, err := w.running(name, 1, nil)
	w.close()
	if err != nil {
		b.Fatal(err)
	}
	current := only(ids)

	var lat, floor []time.Duration
	ms := milestones{}
	for b.Loop() {
		floor = append(floor, f.start(b, 1))
		b.StopTimer()
		// The killed task's container is gone and the current one runs.
		testutil.Eventually(b, time.Minute, "one container, running", func() bool {
			return r.containers() == 1 && r.running()[current] != 0
		})
		pid := r.running()[current]
		w := watchTasks(b, r.c, time.Minute)
		b.StartTimer()

		start := time.Now()
		if err := syscall.Kill(int(pid), syscall.SIGKILL); err != nil {
			b.Fatalf("kill task %s (pid %d): %v", current, pid, err)
		}
		ids, err := w.running(name, 1, map[string]bool{current: true})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		ms.add(w, start)

		b.StopTimer()
		w.close()
		current = only(ids)
		b.StartTimer()
	}
	reportVsFloor(b, lat, floor)
	ms.report(b)
}

// only returns the one key of a set.
func only(ids map[string]bool) string {
	for id := range ids {
		return id
	}
	return ""
}

// BenchmarkScale100: from CreateService with 100 replicas to all hundred
// containers RUNNING; then, with them running, the resident memory of the
// agent and of each plugin process (and, for reference, of the managed
// containerd). Run it with -benchtime 1x.
func BenchmarkScale100(b *testing.B) {
	r := startRunningAgent(b)
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("scale100-%d", i)
		b.StopTimer()
		w := watchTasks(b, r.c, 5*time.Minute)
		b.StartTimer()

		start := time.Now()
		if _, err := r.c.CreateService(context.Background(), &apiv1.CreateServiceRequest{Spec: benchSpec(name, 100)}); err != nil {
			b.Fatalf("create service %q: %v", name, err)
		}
		if _, err := w.running(name, 100, nil); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))

		b.StopTimer()
		w.close()
		r.reportRSS(b)
		r.removeService(b, name)
		b.StartTimer()
	}
	reportLatency(b, lat)
}

// reportRSS reports the resident memory of the agent, of each plugin
// (named by its kind: store-bolt → store-rss-MB) and of the runtime
// plugin's managed containerd. With several iterations the last one's
// values are reported.
func (r *runningAgent) reportRSS(b *testing.B) {
	b.Helper()
	b.ReportMetric(rssMB(b, r.a.PID()), "agent-rss-MB")
	for _, pid := range testutil.PluginPIDs(r.bin) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			b.Fatalf("plugin pid %d: %v", pid, err)
		}
		kind, _, _ := strings.Cut(filepath.Base(exe), "-")
		b.ReportMetric(rssMB(b, pid), kind+"-rss-MB")
		if kind == "runtime" {
			for _, child := range children(pid, "containerd") {
				b.ReportMetric(rssMB(b, child), "containerd-rss-MB")
			}
		}
	}
}

// rssMB returns VmRSS of a process in MiB.
func rssMB(b *testing.B, pid int) float64 {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("pid %d: %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
		if err != nil {
			b.Fatalf("pid %d: VmRSS %q: %v", pid, v, err)
		}
		return kb / 1024
	}
	b.Fatalf("pid %d: no VmRSS in /proc/%d/status", pid, pid)
	return 0
}

// children returns the PIDs of parent's child processes named comm.
func children(parent int, comm string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		lp, rp := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if lp < 0 || rp < lp {
			continue
		}
		fields := strings.Fields(s[rp+1:])
		if len(fields) < 2 || s[lp+1:rp] != comm {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil && ppid == parent {
			pids = append(pids, pid)
		}
	}
	return pids
}
