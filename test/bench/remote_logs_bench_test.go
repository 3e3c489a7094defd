package bench

import (
	"bytes"
	"context"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// BenchmarkRemoteLogsFollow: `service logs -f` through a manager (m1, no
// worker of its own) of a task on another node (w1) that writes lines as
// fast as its shell can, over the worker's tunnel to the manager. Per
// iteration: open a follow from now on (tail 0) and time its first line,
// then count the lines that arrive in 2 s.
func BenchmarkRemoteLogsFollow(b *testing.B) {
	bin := testutil.Install(b, clustertest.Plugins...)
	c := clustertest.New(b, bin)
	c.Form([]string{"m1"}, []string{"w1"})
	m1 := c.Node("m1")
	m1.CLI(0, "service", "create", "flood", "--image", ctrtest.TestImage, "--",
		"sh", "-c", "i=0; while :; do echo line-$i-of-a-task-that-logs-a-lot; i=$((i+1)); done")
	cl := m1.Client()
	const window = 2 * time.Second
	var first []time.Duration
	var lines int
	var spent time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		opened := time.Now()
		stream, err := cl.TaskLogs(ctx, &apiv1.TaskLogsRequest{Service: "flood", Follow: true, Tail: 0})
		if err != nil {
			b.Fatal(err)
		}
		var got time.Time
		for {
			chunk, err := stream.Recv()
			if err != nil {
				b.Fatalf("follow: %v", err)
			}
			n := bytes.Count(chunk.GetData(), []byte("\n"))
			if n == 0 {
				continue
			}
			if got.IsZero() {
				got = time.Now()
				first = append(first, got.Sub(opened))
			}
			lines += n
			if time.Since(got) >= window {
				break
			}
		}
		spent += time.Since(got)
		cancel()
	}
	b.StopTimer()
	reportLatency(b, first)
	b.ReportMetric(float64(lines)/spent.Seconds(), "lines/s")
}
