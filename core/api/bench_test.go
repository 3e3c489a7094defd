package api

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

// listBenchTasks is the size of the service BenchmarkListTasksPages lists:
// the fleet-scale figure's `task ls --service X` of 10,000 tasks.
const listBenchTasks = 10_000

// listBenchState holds one service of listBenchTasks running tasks, each
// with its spec copy and a node, as the fleet-scale bench leaves them.
func listBenchState(b *testing.B) *state.State {
	b.Helper()
	st := state.New()
	spec := &apiv1.ServiceSpec{Name: "web", Image: "registry.local/web:1.2.3", Replicas: listBenchTasks,
		Env: map[string]string{"A": "1", "B": "2"}, Labels: map[string]string{"team": "edge"}}
	st.PutService(&apiv1.Service{Id: "svc-web", Spec: spec, Version: 1})
	tasks := make([]*apiv1.Task, 0, listBenchTasks)
	now := timestamppb.Now()
	for i := range listBenchTasks {
		tasks = append(tasks, &apiv1.Task{
			Id: fmt.Sprintf("task-%05d", i), ServiceId: "svc-web", ServiceName: "web", Slot: uint64(i + 1),
			ServiceVersion: 1, Spec: spec, NodeId: fmt.Sprintf("node-%04d", i%1000),
			DesiredState: apiv1.TaskState_TASK_STATE_RUNNING, State: apiv1.TaskState_TASK_STATE_RUNNING,
			CreatedAt: now, UpdatedAt: now, Version: 3,
		})
	}
	st.PutTasks(tasks)
	return st
}

// listBenchViews are the views BenchmarkListTasksPages lists in.
var listBenchViews = []struct {
	name string
	view apiv1.TaskView
}{{"basic", apiv1.TaskView_TASK_VIEW_BASIC}, {"full", apiv1.TaskView_TASK_VIEW_FULL}}

// BenchmarkListTasksPages is one `task ls --service web` of 10,000 tasks:
// the ten pages of ListTasks, each from the state (its filter, gathering
// and order) as the API serves them, without gRPC, in each view. "warm"
// lists again what was listed before (the task views cached, as for
// repeated reads of a settled service); "cold" lists with no view made yet
// (as after every task changed); "wire" is warm, answered as the gRPC
// server answers (the response encoded from the cached tasks' wire forms),
// plus the client's decoding of each page.
func BenchmarkListTasksPages(b *testing.B) {
	st := listBenchState(b)
	ctx := context.Background()
	for _, v := range listBenchViews {
		for _, mode := range []string{"warm", "cold", "wire"} {
			b.Run(v.name+"/"+mode, func(b *testing.B) {
				srv := NewServer(Options{State: st})
				for b.Loop() {
					if mode == "cold" {
						srv = NewServer(Options{State: st})
					}
					req := &apiv1.ListTasksRequest{Service: "web", View: v.view, PageSize: MaxPageSize}
					for pages := 0; ; pages++ {
						var resp *apiv1.ListTasksResponse
						if mode == "wire" {
							wire, err := srv.listTasksWire(req)
							if err != nil {
								b.Fatal(err)
							}
							resp = &apiv1.ListTasksResponse{}
							if err := proto.Unmarshal(wire, resp); err != nil {
								b.Fatal(err)
							}
						} else {
							var err error
							if resp, err = srv.ListTasks(ctx, req); err != nil {
								b.Fatal(err)
							}
						}
						if resp.GetNextPageToken() == "" {
							if pages != listBenchTasks/MaxPageSize-1 {
								b.Fatalf("%d pages", pages+1)
							}
							break
						}
						req = proto.CloneOf(req)
						req.PageToken = resp.GetNextPageToken()
					}
				}
			})
		}
	}
}

// BenchmarkListTasksPagesFloor is the floor of BenchmarkListTasksPages: the
// same ten pages cut from the sorted list of the state's tasks, with the
// sizes of their views taken once before the loop, so only the paging
// itself (token, search, sizes) is left.
func BenchmarkListTasksPagesFloor(b *testing.B) {
	st := listBenchState(b)
	svc, _ := st.ServiceByName("web")
	for _, v := range listBenchViews {
		b.Run(v.name, func(b *testing.B) {
			sorted := st.Tasks(state.TaskFilter{ServiceID: svc.GetId()})
			sizes := make(map[*apiv1.Task]int, len(sorted))
			for _, t := range sorted {
				sizes[t] = proto.Size(taskView(t, v.view, summarize(t.GetSpec())))
			}
			size := func(t *apiv1.Task) int { return sizes[t] }
			for b.Loop() {
				req := &apiv1.ListTasksRequest{Service: "web", View: v.view, PageSize: MaxPageSize}
				for {
					_, next, err := taskPager.page(req, sorted, Current, size, MaxPageSize)
					if err != nil {
						b.Fatal(err)
					}
					if next == "" {
						break
					}
					req = proto.CloneOf(req)
					req.PageToken = next
				}
			}
		})
	}
}
