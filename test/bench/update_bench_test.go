package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// BenchmarkRollingUpdate10: a service of 10 replicas with update
// parallelism 2 (no delay, stop-first) is created (timed as create10-ms:
// starting 10 containers from scratch), then updated to a new env (timed:
// from UpdateService to the 10th task of the new spec RUNNING). Between
// iterations the service is removed, untimed.
func BenchmarkRollingUpdate10(b *testing.B) {
	r := startRunningAgent(b)
	var lat, create []time.Duration
	i := 0
	for b.Loop() {
		i++
		name := fmt.Sprintf("update10-%d", i)
		b.StopTimer()
		spec := benchSpec(name, 10)
		spec.UpdatePolicy = &apiv1.UpdatePolicy{Parallelism: 2}
		w := watchTasks(b, r.c, 5*time.Minute)
		start := time.Now()
		resp, err := r.c.CreateService(context.Background(), &apiv1.CreateServiceRequest{Spec: spec})
		if err != nil {
			b.Fatalf("create service %q: %v", name, err)
		}
		old, err := w.running(name, 10, nil)
		if err != nil {
			b.Fatal(err)
		}
		create = append(create, time.Since(start))
		spec.Env = map[string]string{"V": "2"}
		b.StartTimer()

		start = time.Now()
		if _, err := r.c.UpdateService(context.Background(), &apiv1.UpdateServiceRequest{NameOrId: name, Spec: spec, Version: resp.GetService().GetVersion()}); err != nil {
			b.Fatalf("update service %q: %v", name, err)
		}
		if _, err := w.running(name, 10, old); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))

		b.StopTimer()
		w.close()
		r.removeService(b, name)
		b.StartTimer()
	}
	reportLatency(b, lat)
	var sum time.Duration
	for _, d := range create {
		sum += d
	}
	if len(create) > 0 {
		b.ReportMetric(float64((sum/time.Duration(len(create))).Microseconds())/1000, "create10-ms")
	}
}
