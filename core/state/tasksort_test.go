package state

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func sortTask(id, svc, node string, slot uint64) *apiv1.Task {
	return &apiv1.Task{Id: id, ServiceId: svc, ServiceName: "svc-" + svc, NodeId: node, Slot: slot}
}

func taskIDs(ts []*apiv1.Task) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.GetId()
	}
	return out
}

// TestTasksCachedOrder checks that the sorted lists Tasks reuses between
// writes follow every kind of write: a put, a move to another node, a
// delete, a reset, and that a caller's changes to its slice do not reach
// the next caller.
func TestTasksCachedOrder(t *testing.T) {
	s := New()
	s.PutTasks([]*apiv1.Task{sortTask("c", "a", "n1", 3), sortTask("a", "a", "n1", 1), sortTask("z", "b", "n2", 1)})
	tests := []struct {
		name  string
		write func()
		f     TaskFilter
		want  []string
	}{
		{"first listing", func() {}, TaskFilter{ServiceID: "a"}, []string{"a", "c"}},
		{"put into the service", func() { s.PutTasks([]*apiv1.Task{sortTask("b", "a", "n2", 2)}) }, TaskFilter{ServiceID: "a"}, []string{"a", "b", "c"}},
		{"all tasks", func() {}, TaskFilter{}, []string{"a", "b", "c", "z"}},
		{"node n1", func() {}, TaskFilter{NodeID: "n1"}, []string{"a", "c"}},
		{"moved to n1", func() { s.PutTasks([]*apiv1.Task{sortTask("z", "b", "n1", 1)}) }, TaskFilter{NodeID: "n1"}, []string{"a", "c", "z"}},
		{"moved off n2", func() {}, TaskFilter{NodeID: "n2"}, []string{"b"}},
		{"service and node", func() {}, TaskFilter{ServiceID: "a", NodeID: "n1"}, []string{"a", "c"}},
		{"slot change reorders", func() { s.PutTasks([]*apiv1.Task{sortTask("a", "a", "n1", 9)}) }, TaskFilter{ServiceID: "a"}, []string{"b", "c", "a"}},
		{"deleted", func() { s.DeleteTasks([]string{"c"}) }, TaskFilter{ServiceID: "a"}, []string{"b", "a"}},
		{"deleted from all", func() {}, TaskFilter{}, []string{"b", "a", "z"}},
		{"last of a service deleted", func() { s.DeleteTasks([]string{"z"}) }, TaskFilter{ServiceID: "b"}, []string{}},
		{"service back", func() { s.PutTasks([]*apiv1.Task{sortTask("y", "b", "n3", 1)}) }, TaskFilter{ServiceID: "b"}, []string{"y"}},
		{"reset", func() { s.Reset() }, TaskFilter{ServiceID: "a"}, []string{}},
		{"reloaded", func() { s.PutTasks([]*apiv1.Task{sortTask("q", "a", "n1", 1)}) }, TaskFilter{ServiceID: "a"}, []string{"q"}},
	}
	for _, tt := range tests {
		tt.write()
		got := s.Tasks(tt.f)
		if ids := taskIDs(got); !slices.Equal(ids, tt.want) {
			t.Fatalf("%s: Tasks(%+v) = %v, want %v", tt.name, tt.f, ids, tt.want)
		}
		if tt.f == (TaskFilter{}) {
			un := s.TasksUnordered()
			slices.SortFunc(un, CompareTasks)
			if ids := taskIDs(un); !slices.Equal(ids, tt.want) {
				t.Fatalf("%s: TasksUnordered = %v, want the tasks %v", tt.name, ids, tt.want)
			}
		}
		// The slice is the caller's: scribbling on it changes no later answer.
		for i := range got {
			got[i] = nil
		}
		if ids := taskIDs(s.Tasks(tt.f)); !slices.Equal(ids, tt.want) {
			t.Fatalf("%s: after the caller changed its slice, Tasks = %v, want %v", tt.name, ids, tt.want)
		}
	}
}

// TestTasksCachedOrderConcurrent lists while writers put and delete (run
// with -race): every answer is sorted and holds each task once, and once
// the writers stop, the cached answer equals a fresh sort of the state.
func TestTasksCachedOrderConcurrent(t *testing.T) {
	s := New()
	for i := range 200 {
		s.PutTasks([]*apiv1.Task{sortTask(fmt.Sprintf("t%03d", i), "a", fmt.Sprintf("n%d", i%4), uint64(i))})
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("w%d-%d", w, i%50)
				if i%3 == 2 {
					s.DeleteTasks([]string{id})
				} else {
					s.PutTasks([]*apiv1.Task{sortTask(id, "a", fmt.Sprintf("n%d", i%4), uint64(1000+i%50))})
				}
			}
		})
	}
	for range 300 {
		for _, f := range []TaskFilter{{ServiceID: "a"}, {NodeID: "n1"}, {}} {
			got := s.Tasks(f)
			if !slices.IsSortedFunc(got, CompareTasks) {
				t.Fatalf("Tasks(%+v) not sorted", f)
			}
			seen := map[string]bool{}
			for _, tk := range got {
				if seen[tk.GetId()] {
					t.Fatalf("Tasks(%+v) lists %s twice", f, tk.GetId())
				}
				seen[tk.GetId()] = true
			}
		}
	}
	close(stop)
	wg.Wait()
	for _, f := range []TaskFilter{{ServiceID: "a"}, {NodeID: "n1"}, {}} {
		got := s.Tasks(f)
		s.mu.RLock()
		var fresh []*apiv1.Task
		for _, tk := range s.tasks.list() {
			if (f.ServiceID == "" || tk.GetServiceId() == f.ServiceID) && (f.NodeID == "" || tk.GetNodeId() == f.NodeID) {
				fresh = append(fresh, tk)
			}
		}
		s.mu.RUnlock()
		slices.SortFunc(fresh, CompareTasks)
		if !slices.Equal(taskIDs(got), taskIDs(fresh)) {
			t.Fatalf("Tasks(%+v) after the writes = %d tasks, a fresh sort %d", f, len(got), len(fresh))
		}
	}
}
