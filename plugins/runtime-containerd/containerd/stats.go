package containerd

import (
	"context"
	"fmt"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// TaskStats reads a running task's CPU and memory use from its cgroup.
func (r *Runtime) TaskStats(ctx context.Context, taskID string) (_ runtime.TaskStats, err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return runtime.TaskStats{}, err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	v, err := r.inspect(ctx, be, taskID)
	if err != nil {
		return runtime.TaskStats{}, err
	}
	if st := v.status(); st.State != runtime.StateRunning {
		return runtime.TaskStats{}, fmt.Errorf("task %q is %s, not running: %w", taskID, st.State, sdk.ErrFailedPrecondition)
	}
	m, err := be.cgroupMetrics(ctx, taskID)
	if err != nil {
		return runtime.TaskStats{}, err
	}
	return statsFromMetrics(m), nil
}

// statsFromMetrics converts cgroup v1 or v2 metrics.
func statsFromMetrics(m any) runtime.TaskStats {
	switch s := m.(type) {
	case *cgroup1stats.Metrics:
		mem := s.GetMemory()
		usage := mem.GetUsage().GetUsage()
		if c := mem.GetTotalInactiveFile(); c < usage {
			usage -= c // like docker stats: page cache the kernel can drop is not use
		}
		limit := mem.GetUsage().GetLimit()
		if limit >= 1<<62 {
			limit = 0 // cgroup v1 shows "no limit" as a huge number
		}
		return runtime.TaskStats{CPUUsageNanos: s.GetCPU().GetUsage().GetTotal(), MemoryBytes: usage, MemoryLimitBytes: limit}
	case *cgroup2stats.Metrics:
		mem := s.GetMemory()
		usage := mem.GetUsage()
		if c := mem.GetInactiveFile(); c < usage {
			usage -= c
		}
		limit := mem.GetUsageLimit()
		if limit >= 1<<62 {
			limit = 0 // "max"
		}
		return runtime.TaskStats{CPUUsageNanos: s.GetCPU().GetUsageUsec() * 1000, MemoryBytes: usage, MemoryLimitBytes: limit}
	}
	return runtime.TaskStats{}
}
