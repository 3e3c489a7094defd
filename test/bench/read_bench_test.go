package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// BenchmarkServiceGet64: 64 clients reading one service: the API's own
// cost (gRPC, lookup) without Raft, for comparison with the write path.
func BenchmarkServiceGet64(b *testing.B) {
	a := startAgent(b)
	ctx := context.Background()
	if _, err := create(ctx, a.Client()); err != nil {
		b.Fatal(err)
	}
	name := fmt.Sprintf("bench-%d", seq.Load())
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 64 {
		wg.Add(1)
		c := a.Client()
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := c.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: name}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
}
