package pluginhost

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk/store"
)

// BenchmarkPluginCall measures one unary call (a store Get of a small value)
// from the host's client wrapper to a real plugin process and back, over
// go-plugin's mutual-TLS gRPC on a unix socket. It reports the median and
// 99th-percentile round trip.
func BenchmarkPluginCall(b *testing.B) {
	h, _ := newHost(b, testOptions())
	p := startPlugin(b, h, testSpec(b, "store-bench", nil))
	st := store.NewClient(p.Client())
	ctx := context.Background()
	if _, err := st.Apply(ctx, store.Batch{Index: 1, Ops: []store.Op{{Type: store.OpPut, Bucket: "b", Key: "k", Value: make([]byte, 64)}}}); err != nil {
		b.Fatalf("Apply: %v", err)
	}
	var durs []time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := st.Get(ctx, "b", "k"); err != nil {
			b.Fatalf("Get: %v", err)
		}
		durs = append(durs, time.Since(start))
	}
	slices.Sort(durs)
	pct := func(q float64) float64 {
		return float64(durs[int(q*float64(len(durs)-1))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
}
