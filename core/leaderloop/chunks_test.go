package leaderloop

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func TestChunks(t *testing.T) {
	task := func(n int) *apiv1.Task { return &apiv1.Task{Id: strings.Repeat("x", n)} }
	size := func(ts []*apiv1.Task) int {
		s := 0
		for _, t := range ts {
			s += proto.Size(t) + 8
		}
		return s
	}
	tests := []struct {
		name  string
		items []*apiv1.Task
		max   int
		want  []int // the length of each run
	}{
		{"none", nil, 100, nil},
		{"one run", []*apiv1.Task{task(10), task(10)}, 100, []int{2}},
		{"split", []*apiv1.Task{task(40), task(40), task(40)}, 100, []int{2, 1}},
		{"an item past max is alone", []*apiv1.Task{task(10), task(200), task(10)}, 100, []int{1, 1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Chunks(tt.items, tt.max)
			if len(got) != len(tt.want) {
				t.Fatalf("%d runs, want %d", len(got), len(tt.want))
			}
			total := 0
			for i, run := range got {
				if len(run) != tt.want[i] {
					t.Errorf("run %d has %d items, want %d", i, len(run), tt.want[i])
				}
				if len(run) > 1 && size(run) > tt.max {
					t.Errorf("run %d is %d bytes, past %d", i, size(run), tt.max)
				}
				total += len(run)
			}
			if total != len(tt.items) {
				t.Errorf("%d items in runs, want %d", total, len(tt.items))
			}
		})
	}
}
