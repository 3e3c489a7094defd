package main

import (
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func TestStatsRows(t *testing.T) {
	const sec = int64(1e9)
	base := &apiv1.TaskStatsSample{TaskId: "aaaaaaaaaaaaaaaa", ServiceName: "web", Slot: 1, Node: "w1", CpuUsageNs: 5e9, MemoryBytes: 1 << 20, SampledUnixNano: 10 * sec}
	tests := []struct {
		name string
		prev *apiv1.TaskStatsSample
		cur  *apiv1.TaskStatsSample
		want []string
	}{
		{"half a CPU over one second, no limit", base,
			&apiv1.TaskStatsSample{TaskId: base.TaskId, ServiceName: "web", Slot: 1, Node: "w1", CpuUsageNs: 5e9 + 5e8, MemoryBytes: 1 << 20, SampledUnixNano: 11 * sec},
			[]string{"aaaaaaaaaaaa", "web.1", "w1", "50.00%", "1MiB / -", "-", ""}},
		{"two CPUs over two seconds, with a limit", base,
			&apiv1.TaskStatsSample{TaskId: base.TaskId, ServiceName: "web", Slot: 1, Node: "w1", CpuUsageNs: 5e9 + 4e9, MemoryBytes: 64 << 20, MemoryLimitBytes: 256 << 20, SampledUnixNano: 12 * sec},
			[]string{"aaaaaaaaaaaa", "web.1", "w1", "200.00%", "64MiB / 256MiB", "25.00%", ""}},
		{"first sample: no rate yet", nil, base,
			[]string{"aaaaaaaaaaaa", "web.1", "w1", "-", "1MiB / -", "-", ""}},
		{"a restarted task's counter went back", base,
			&apiv1.TaskStatsSample{TaskId: base.TaskId, ServiceName: "web", Slot: 1, Node: "w1", CpuUsageNs: 1e9, SampledUnixNano: 11 * sec},
			[]string{"aaaaaaaaaaaa", "web.1", "w1", "-", "0B / -", "-", ""}},
		{"a node that did not answer", base,
			&apiv1.TaskStatsSample{TaskId: base.TaskId, ServiceName: "web", Slot: 1, Node: "w2", Error: "node w2 (n2) is down"},
			[]string{"aaaaaaaaaaaa", "web.1", "w2", "-", "-", "-", "node w2 (n2) is down"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var prev []*apiv1.TaskStatsSample
			if tt.prev != nil {
				prev = append(prev, tt.prev)
			}
			rows := statsRows(prev, []*apiv1.TaskStatsSample{tt.cur})
			if len(rows) != 1 {
				t.Fatalf("%d rows, want 1", len(rows))
			}
			for i := range tt.want {
				if rows[0][i] != tt.want[i] {
					t.Fatalf("row %q, want %q", rows[0], tt.want)
				}
			}
		})
	}
}
