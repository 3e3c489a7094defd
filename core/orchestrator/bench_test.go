package orchestrator

import (
	"fmt"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// BenchmarkReconcile reconciles one service with 1,000 tasks (and 1,000
// history tasks where noted).
func BenchmarkReconcile(b *testing.B) {
	const n = 1000
	running := func(version uint64) []*apiv1.Task {
		ts := make([]*apiv1.Task, 0, 2*n)
		for i := range n {
			ts = append(ts, task(fmt.Sprintf("t%04d", i), uint64(i+1), wantRunning, tsRunning, v(version)))
			ts = append(ts, task(fmt.Sprintf("h%04d", i), uint64(i+1), wantStop, tsFailed, v(version)))
		}
		return ts
	}
	cases := []struct {
		name  string
		svc   *apiv1.Service
		tasks []*apiv1.Task
	}{
		{"steady", service(1, n), running(1)},
		{"create", service(1, n), nil},
		{"update-all", service(2, n), running(1)},
		{"update-parallelism-10", service(2, n, updatePolicy(10, 0)), running(1)},
		{"scale-to-0", service(1, 0), running(1)},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			in := Input{Service: tc.svc, Tasks: tc.tasks, Now: t0}
			var actions int
			for b.Loop() {
				actions = len(Reconcile(in))
			}
			b.ReportMetric(float64(actions), "actions")
		})
	}
}
