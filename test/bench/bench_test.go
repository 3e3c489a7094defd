// Package bench measures Warren end to end on real binaries. Run it with
// `make bench`; results go in docs/benchmarks.md.
package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

var seq atomic.Int64

func startAgent(b *testing.B) *testutil.Agent {
	b.Helper()
	bin := testutil.Install(b, "store-bolt", "scheduler-roundrobin")
	a := testutil.NewAgent(b, bin, "")
	a.Start(context.Background())
	return a
}

// replicas of the services the write benchmarks create. With 0 they measure
// the write path itself (API → Raft → FSM → store plugin); with more, each
// create also makes the orchestrator and scheduling loop commit tasks.
var replicas = uint64(0)

func create(ctx context.Context, c apiv1.WarrenClient) (time.Duration, error) {
	name := fmt.Sprintf("bench-%d", seq.Add(1))
	start := time.Now()
	_, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{
		Name: name, Image: "registry.local/app:1.2.3", Replicas: replicas,
		Env:    map[string]string{"MODE": "bench", "LEVEL": "info"},
		Labels: map[string]string{"team": "edge"},
	}})
	return time.Since(start), err
}

func report(b *testing.B, lat []time.Duration, elapsed time.Duration) {
	slices.Sort(lat)
	// Nearest rank: the smallest latency with at least p of them at or below it.
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return float64(lat[max(i, 0)].Microseconds()) / 1000
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "writes/s")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkServiceCreate: one client, each create committed through
// API → Raft → FSM → store plugin before the next.
func BenchmarkServiceCreate(b *testing.B) {
	c := startAgent(b).Client()
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		d, err := create(ctx, c)
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
	}
	report(b, lat, time.Since(start))
}

// BenchmarkServiceCreate64: 64 concurrent clients, each with its own
// connection, as 64 separate CLI or API users would have.
func BenchmarkServiceCreate64(b *testing.B) {
	a := startAgent(b)
	createConcurrently(b, clientsOwnConn(func() apiv1.WarrenClient { return a.Client() }))
}

// BenchmarkServiceCreate64Shared: 64 concurrent callers sharing one
// connection, as the goroutines of one API user (a controller, a CI job)
// would, and as gRPC load tools such as ghz run by default.
func BenchmarkServiceCreate64Shared(b *testing.B) {
	a := startAgent(b)
	createConcurrently(b, clientsSharedConn(func() apiv1.WarrenClient { return a.Client() }))
}

// BenchmarkServiceCreate64Replicas3: the same with 3 replicas per service
// and no worker: each create also makes the control loops commit 3 tasks
// (NEW, then PENDING "no ready worker").
func BenchmarkServiceCreate64Replicas3(b *testing.B) {
	replicas = 3
	defer func() { replicas = 0 }()
	a := startAgent(b)
	createConcurrently(b, clientsOwnConn(func() apiv1.WarrenClient { return a.Client() }))
}

// clientCount is 64, or $BENCH_CLIENTS.
func clientCount() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_CLIENTS")); err == nil && n > 0 {
		return n
	}
	return 64
}

// clientsOwnConn makes clientCount clients, each on a connection of its own.
func clientsOwnConn(dial func() apiv1.WarrenClient) []apiv1.WarrenClient {
	cs := make([]apiv1.WarrenClient, clientCount())
	for i := range cs {
		cs[i] = dial()
	}
	return cs
}

// clientsSharedConn makes clientCount clients on one connection.
func clientsSharedConn(dial func() apiv1.WarrenClient) []apiv1.WarrenClient {
	c := dial()
	cs := make([]apiv1.WarrenClient, clientCount())
	for i := range cs {
		cs[i] = c
	}
	return cs
}

// createConcurrently has the clients create b.N services between them, each
// waiting for its create to commit before the next, and reports writes/s
// and latency.
func createConcurrently(b *testing.B, clients []apiv1.WarrenClient) {
	ctx := context.Background()
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, b.N)
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for next.Add(1) <= int64(b.N) {
				d, err := create(ctx, c)
				if err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	report(b, lat, time.Since(start))
}
