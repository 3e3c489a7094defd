package api_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/state"
)

// withoutOutputFields is t without the fields ListTasks fills in, as the
// state holds it.
func withoutOutputFields(t *apiv1.Task) *apiv1.Task {
	c := proto.CloneOf(t)
	c.Image, c.SpecDigest, c.HealthChecked = "", "", false
	return c
}

// TestListTasksViews: FULL lists each task as the state holds it, with the
// output fields filled in; BASIC (and an unspecified view) the same without
// the spec, with what list callers read of it: the image, the digest the
// CLI's wait compares with its service's, and whether a health check
// decides that the task serves.
func TestListTasksViews(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	spec := &apiv1.ServiceSpec{Name: "web", Image: "busybox:1.36", Replicas: 3, Env: map[string]string{"A": "1"},
		HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80}}
	created, err := e.client.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		t.Fatal(err)
	}
	dispatchertest.Eventually(t, "3 tasks", func() bool {
		return len(e.m.State.Tasks(state.TaskFilter{ServiceID: created.GetService().GetId()})) == 3
	})
	digest := state.SpecDigest(created.GetService().GetSpec())
	for _, tt := range []struct {
		name     string
		view     apiv1.TaskView
		wantSpec bool
	}{
		{"unspecified is basic", apiv1.TaskView_TASK_VIEW_UNSPECIFIED, false},
		{"basic", apiv1.TaskView_TASK_VIEW_BASIC, false},
		{"full", apiv1.TaskView_TASK_VIEW_FULL, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.client.ListTasks(ctx, &apiv1.ListTasksRequest{Service: "web", View: tt.view})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetTasks()) != 3 {
				t.Fatalf("listed %d tasks, want 3", len(resp.GetTasks()))
			}
			for _, got := range resp.GetTasks() {
				rec, ok := e.m.State.Task(got.GetId())
				if !ok {
					t.Fatalf("task %s listed, not in the state", got.GetId())
				}
				if got.GetImage() != "busybox:1.36" || got.GetSpecDigest() != digest || !got.GetHealthChecked() {
					t.Errorf("task %s: image %q, spec digest %q, health checked %v; want busybox:1.36, %q (the service's), true",
						got.GetId(), got.GetImage(), got.GetSpecDigest(), got.GetHealthChecked(), digest)
				}
				if state.Serving(got) != state.Serving(rec) {
					t.Errorf("task %s: Serving listed %v, of the state's task %v", got.GetId(), state.Serving(got), state.Serving(rec))
				}
				want := rec
				if !tt.wantSpec {
					want = proto.CloneOf(rec)
					want.Spec = nil
				}
				// A task that changed between the list and the read is
				// compared at its next version: read again.
				if g := withoutOutputFields(got); !proto.Equal(g, want) && got.GetVersion() == rec.GetVersion() {
					t.Errorf("task %s listed as\n%v\nwant\n%v", got.GetId(), g, want)
				}
			}
		})
	}
	_, err = e.client.ListTasks(ctx, &apiv1.ListTasksRequest{View: apiv1.TaskView(7)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "view 7") {
		t.Errorf("view 7: got %v, want InvalidArgument naming the view", err)
	}
}

// TestListTasksPagesViews: in either view, the pages list every task once,
// in the state's order, and a view's token serves only that view.
func TestListTasksPagesViews(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createServices(t, "web", 2, 5, nil)
	dispatchertest.Eventually(t, "10 tasks", func() bool { return e.m.State.NumTasks() == 10 })
	var want []string
	for _, task := range e.m.State.Tasks(state.TaskFilter{}) {
		want = append(want, task.GetId())
	}
	for _, view := range []apiv1.TaskView{apiv1.TaskView_TASK_VIEW_BASIC, apiv1.TaskView_TASK_VIEW_FULL} {
		t.Run(view.String(), func(t *testing.T) {
			req := &apiv1.ListTasksRequest{All: true, PageSize: 3, View: view}
			var got []string
			for {
				resp, err := e.client.ListTasks(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				for _, task := range resp.GetTasks() {
					got = append(got, task.GetId())
					if (task.GetSpec() != nil) != (view == apiv1.TaskView_TASK_VIEW_FULL) {
						t.Errorf("task %s in view %s: has a spec %v", task.GetId(), view, task.GetSpec() != nil)
					}
				}
				if resp.GetNextPageToken() == "" {
					break
				}
				req = proto.CloneOf(req)
				req.PageToken = resp.GetNextPageToken()
			}
			if !slices.Equal(got, want) {
				t.Errorf("listed %v, want %v", got, want)
			}
		})
	}
	first, err := e.client.ListTasks(ctx, &apiv1.ListTasksRequest{PageSize: 1, View: apiv1.TaskView_TASK_VIEW_BASIC})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.client.ListTasks(ctx, &apiv1.ListTasksRequest{PageToken: first.GetNextPageToken(), View: apiv1.TaskView_TASK_VIEW_FULL})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a BASIC list's token for FULL: got %v, want InvalidArgument", err)
	}
}
