package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// Size of BenchmarkManagerRestart10k's state: restartServices services of
// restartReplicas tasks, each scaled down to half and back once before
// the restarts, so the Raft log holds the entries of every step (a scale
// down removes pending tasks outright: the rows stay 10,000).
const (
	restartServices = 10
	restartReplicas = 1000
)

// BenchmarkManagerRestart10k: a manager (no worker: the tasks stay
// pending) holding 10,000 tasks and their history is stopped (sub-benchmark
// stop: SIGTERM; kill9: SIGKILL, nothing flushed) and started again; per iteration, from the start of the process to its API
// answering (serve-p50-ms), and to a write accepted (write-p50-ms: it has
// taken office as leader and commits). The floor is the same restart of a
// manager holding nothing (floor-serve-p50-ms, floor-write-p50-ms), taken
// in the same run.
func BenchmarkManagerRestart10k(b *testing.B) {
	bin := testutil.Install(b, "store-bolt", "scheduler-roundrobin")
	ctx := context.Background()

	empty := testutil.NewAgent(b, bin, "")
	empty.Start(ctx)
	full := testutil.NewAgent(b, bin, "")
	full.Start(ctx)
	rows := fillRestartState(b, full)
	for _, stop := range []struct {
		name string
		stop func(*testutil.Agent)
	}{{"stop", (*testutil.Agent).Stop}, {"kill9", (*testutil.Agent).Kill9}} {
		b.Run(stop.name, func(b *testing.B) {
			benchRestarts(b, full, empty, stop.stop)
			b.ReportMetric(float64(rows), "task-rows")
		})
	}
}

// benchRestarts restarts full and empty b.N times each with stop and
// reports the figures of BenchmarkManagerRestart10k.
func benchRestarts(b *testing.B, full, empty *testutil.Agent, stop func(*testutil.Agent)) {
	ctx := context.Background()
	var serve, write, floorServe, floorWrite []time.Duration
	b.ResetTimer()
	for range b.N {
		for _, r := range []struct {
			a            *testutil.Agent
			serve, write *[]time.Duration
		}{{full, &serve, &write}, {empty, &floorServe, &floorWrite}} {
			b.StopTimer()
			stop(r.a)
			b.StartTimer()
			start := time.Now()
			r.a.Start(ctx)
			*r.serve = append(*r.serve, time.Since(start))
			c := r.a.Client()
			for {
				wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, err := c.CreateService(wctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{
					Name: fmt.Sprintf("after-restart-%d", seq.Add(1)), Image: ctrtest.TestImage,
				}})
				cancel()
				if err == nil {
					break
				}
				if time.Since(start) > 2*time.Minute {
					b.Fatalf("no write accepted 2 minutes after the restart: %v\n%s", err, r.a.Output())
				}
				time.Sleep(5 * time.Millisecond) // retry period of the probing client
			}
			*r.write = append(*r.write, time.Since(start))
		}
	}
	b.StopTimer()
	b.ReportMetric(quantileMS(serve, 0.5), "serve-p50-ms")
	b.ReportMetric(quantileMS(write, 0.5), "write-p50-ms")
	b.ReportMetric(quantileMS(floorServe, 0.5), "floor-serve-p50-ms")
	b.ReportMetric(quantileMS(floorWrite, 0.5), "floor-write-p50-ms")
	if n := countTasks(b, full.Client(), false); n != restartServices*restartReplicas {
		b.Fatalf("%d current tasks after the restarts, want %d", n, restartServices*restartReplicas)
	}
}

// fillRestartState creates the services of BenchmarkManagerRestart10k and
// waits for their tasks, scales each to half and back, and waits again. It
// returns the number of task rows kept, ended ones included.
func fillRestartState(b *testing.B, a *testutil.Agent) int {
	b.Helper()
	ctx := context.Background()
	c := a.Client()
	for i := range restartServices {
		spec := &apiv1.ServiceSpec{Name: fmt.Sprintf("restart-%02d", i), Image: ctrtest.TestImage, Replicas: restartReplicas,
			Env: map[string]string{"HISTORY": "kept"}}
		if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec}); err != nil {
			b.Fatal(err)
		}
	}
	for _, n := range []uint64{restartReplicas, restartReplicas / 2, restartReplicas} {
		for i := range restartServices {
			if _, err := c.ScaleService(ctx, &apiv1.ScaleServiceRequest{NameOrId: fmt.Sprintf("restart-%02d", i), Replicas: n}); err != nil {
				b.Fatal(err)
			}
		}
		live := restartServices * int(n)
		testutil.Eventually(b, 3*time.Minute, fmt.Sprintf("%d current tasks", live), func() bool { return countTasks(b, c, false) == live })
	}
	return countTasks(b, c, true)
}

// countTasks counts the tasks the API lists: the current ones, or all
// with the history kept.
func countTasks(b *testing.B, c apiv1.WarrenClient, all bool) int {
	b.Helper()
	n, tok := 0, ""
	for {
		resp, err := c.ListTasks(context.Background(), &apiv1.ListTasksRequest{All: all, PageToken: tok, View: apiv1.TaskView_TASK_VIEW_FULL})
		if err != nil {
			b.Fatal(err)
		}
		n += len(resp.GetTasks())
		if tok = resp.GetNextPageToken(); tok == "" {
			return n
		}
	}
}
