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

// BenchmarkListTasksPages is one `task ls --service web` of 10,000 tasks:
// the ten pages of ListTasks, each from the state (its filter, gathering
// and order) as the API serves them, without gRPC.
func BenchmarkListTasksPages(b *testing.B) {
	srv := NewServer(Options{State: listBenchState(b)})
	ctx := context.Background()
	for b.Loop() {
		req := &apiv1.ListTasksRequest{Service: "web"}
		for pages := 0; ; pages++ {
			resp, err := srv.ListTasks(ctx, req)
			if err != nil {
				b.Fatal(err)
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
}

// BenchmarkListTasksPagesFloor is the floor of BenchmarkListTasksPages: the
// same ten pages cut from a list sorted once before the loop, so only the
// paging itself (token, search, sizes) is left.
func BenchmarkListTasksPagesFloor(b *testing.B) {
	st := listBenchState(b)
	svc, _ := st.ServiceByName("web")
	sorted := st.Tasks(state.TaskFilter{ServiceID: svc.GetId()})
	for b.Loop() {
		req := &apiv1.ListTasksRequest{Service: "web"}
		for {
			_, next, err := taskPager.page(req, sorted, Current)
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
}
