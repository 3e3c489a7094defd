package api

import (
	"fmt"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// TestPageSizeBounds: a request without page_size gets the kind's largest
// page, a larger page_size is lowered to it, and a page still ends before
// MaxPageBytes.
func TestPageSizeBounds(t *testing.T) {
	var sorted []*apiv1.Task
	for i := range 12000 {
		sorted = append(sorted, &apiv1.Task{Id: fmt.Sprintf("t%05d", i), ServiceName: "web", Slot: uint64(i + 1)})
	}
	small := func(*apiv1.Task) int { return 100 }
	big := func(*apiv1.Task) int { return MaxPageBytes / 100 }
	for _, tt := range []struct {
		name     string
		pageSize uint32
		size     func(*apiv1.Task) int
		maxSize  int
		want     int
	}{
		{"no page size, MaxPageSize", 0, small, MaxPageSize, MaxPageSize},
		{"no page size, BASIC tasks", 0, small, MaxBasicTaskPageSize, MaxBasicTaskPageSize},
		{"larger than the bound", 20000, small, MaxBasicTaskPageSize, MaxBasicTaskPageSize},
		{"smaller than the bound", 5000, small, MaxBasicTaskPageSize, 5000},
		{"bytes end it first", 0, big, MaxBasicTaskPageSize, 99},
	} {
		t.Run(tt.name, func(t *testing.T) {
			page, next, err := taskPager.page(&apiv1.ListTasksRequest{PageSize: tt.pageSize}, sorted, nil, tt.size, tt.maxSize)
			if err != nil || len(page) != tt.want || next == "" {
				t.Fatalf("page of %d, next %q, err %v; want %d and a next page", len(page), next, err, tt.want)
			}
		})
	}
}
