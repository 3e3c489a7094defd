package api

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

// outputFields are the Task fields taskView fills in from the spec.
var outputFields = map[protoreflect.Name]bool{"image": true, "spec_digest": true, "health_checked": true}

// everyField is a task with every field but the output ones set, so that a
// field added to Task and not to taskView's copy fails
// TestTaskViewCopiesEveryField.
func everyField(t *testing.T) *apiv1.Task {
	t.Helper()
	task := &apiv1.Task{}
	m := task.ProtoReflect()
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if outputFields[fd.Name()] {
			continue
		}
		var v protoreflect.Value
		switch fd.Kind() {
		case protoreflect.StringKind:
			v = protoreflect.ValueOfString("x-" + string(fd.Name()))
		case protoreflect.BoolKind:
			v = protoreflect.ValueOfBool(true)
		case protoreflect.EnumKind:
			v = protoreflect.ValueOfEnum(1)
		case protoreflect.Uint64Kind:
			v = protoreflect.ValueOfUint64(uint64(fd.Number()))
		case protoreflect.Uint32Kind:
			v = protoreflect.ValueOfUint32(uint32(fd.Number()))
		case protoreflect.Int32Kind:
			v = protoreflect.ValueOfInt32(int32(fd.Number()))
		case protoreflect.MessageKind:
			switch fd.Message().FullName() {
			case "google.protobuf.Timestamp":
				v = protoreflect.ValueOfMessage(timestamppb.New(time.Unix(int64(fd.Number())*1000, 0)).ProtoReflect())
			case "warren.api.v1.ServiceSpec":
				v = protoreflect.ValueOfMessage((&apiv1.ServiceSpec{Name: "web", Image: "nginx:1",
					HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80}}).ProtoReflect())
			default:
				t.Fatalf("Task field %s: a message of type %s the test does not fill", fd.Name(), fd.Message().FullName())
			}
		default:
			t.Fatalf("Task field %s: kind %s the test does not fill", fd.Name(), fd.Kind())
		}
		m.Set(fd, v)
	}
	return task
}

// TestTaskViewCopiesEveryField: FULL is the task with the output fields
// filled in; BASIC the same without its spec.
func TestTaskViewCopiesEveryField(t *testing.T) {
	task := everyField(t)
	sum := summarize(task.GetSpec())
	for _, view := range []apiv1.TaskView{apiv1.TaskView_TASK_VIEW_BASIC, apiv1.TaskView_TASK_VIEW_FULL} {
		t.Run(view.String(), func(t *testing.T) {
			got := taskView(task, view, sum)
			want := proto.CloneOf(task)
			want.Image, want.SpecDigest, want.HealthChecked = "nginx:1", state.SpecDigest(task.GetSpec()), true
			if view == apiv1.TaskView_TASK_VIEW_BASIC {
				want.Spec = nil
			}
			if !proto.Equal(got, want) {
				t.Errorf("taskView(%s) =\n%v\nwant\n%v", view, got, want)
			}
		})
	}
}

// TestTaskViewsCache: a record's view is made and encoded once; a new
// record of the task (a write) gets a new view; records not listed for a
// generation are dropped, so the cache stays within a few times the
// state's tasks.
func TestTaskViewsCache(t *testing.T) {
	c := newTaskViews(func() int { return 10 })
	get := func(rec *apiv1.Task, view apiv1.TaskView) *listedTask {
		t.Helper()
		l, err := c.get(rec, view)
		if err != nil {
			t.Fatal(err)
		}
		var decoded apiv1.Task
		if err := proto.Unmarshal(l.wire, &decoded); err != nil || !proto.Equal(&decoded, l.task) {
			t.Fatalf("wire form %v (%v), want the view %v", &decoded, err, l.task)
		}
		return l
	}
	spec := &apiv1.ServiceSpec{Name: "web", Image: "nginx:1"}
	rec := &apiv1.Task{Id: "t1", ServiceId: "s1", ServiceVersion: 1, Spec: spec, State: apiv1.TaskState_TASK_STATE_PENDING}
	basic := get(rec, apiv1.TaskView_TASK_VIEW_BASIC)
	if again := get(rec, apiv1.TaskView_TASK_VIEW_BASIC); again != basic {
		t.Error("a second get of one record made another view")
	}
	if full := get(rec, apiv1.TaskView_TASK_VIEW_FULL).task; full.GetSpec() != spec || full.GetSpecDigest() != basic.task.GetSpecDigest() {
		t.Errorf("FULL view %v, want the spec and the BASIC view's digest", full)
	}
	next := proto.CloneOf(rec)
	next.State = apiv1.TaskState_TASK_STATE_RUNNING
	if v := get(next, apiv1.TaskView_TASK_VIEW_BASIC).task; v.GetState() != apiv1.TaskState_TASK_STATE_RUNNING || v.GetImage() != "nginx:1" {
		t.Errorf("view of the new record %v, want RUNNING with image nginx:1", v)
	}
	for i := range 3 * minViewGeneration {
		if _, err := c.get(&apiv1.Task{Id: fmt.Sprint(i), ServiceId: "s1", ServiceVersion: 1, Spec: spec}, apiv1.TaskView_TASK_VIEW_BASIC); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	_, inCur := c.cur[rec]
	_, inPrev := c.prev[rec]
	n := len(c.cur) + len(c.prev)
	c.mu.Unlock()
	if inCur || inPrev {
		t.Error("a record not listed for two generations is still cached")
	}
	if n > 2*minViewGeneration {
		t.Errorf("%d views cached, want at most %d", n, 2*minViewGeneration)
	}
}

// TestListTasksWire: the gRPC server's encoded answer is ListTasks'
// response, page token and the names of the page's nodes included.
func TestListTasksWire(t *testing.T) {
	st := state.New()
	spec := &apiv1.ServiceSpec{Name: "web", Image: "nginx:1"}
	st.PutService(&apiv1.Service{Id: "s1", Spec: spec, Version: 1})
	st.PutNode(&apiv1.Node{Id: "n1", Name: "edge-1"})
	st.PutNode(&apiv1.Node{Id: "n2", Name: "edge-2"})
	onNode := []string{"n1", "n2", "n1", "gone", ""} // gone: removed since
	var tasks []*apiv1.Task
	for i := range 5 {
		tasks = append(tasks, &apiv1.Task{Id: fmt.Sprint("t", i), ServiceId: "s1", ServiceName: "web", Slot: uint64(i + 1),
			ServiceVersion: 1, Spec: spec, DesiredState: apiv1.TaskState_TASK_STATE_RUNNING, NodeId: onNode[i]})
	}
	st.PutTasks(tasks)
	wantNames := []map[string]string{{"n1": "edge-1", "n2": "edge-2"}, nil} // by page
	srv := NewServer(Options{State: st})
	for _, view := range []apiv1.TaskView{apiv1.TaskView_TASK_VIEW_BASIC, apiv1.TaskView_TASK_VIEW_FULL} {
		req := &apiv1.ListTasksRequest{Service: "web", View: view, PageSize: 3}
		for page := 0; page < 2; page++ {
			want, err := srv.ListTasks(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			wire, err := srv.listTasksWire(req)
			if err != nil {
				t.Fatal(err)
			}
			got := &apiv1.ListTasksResponse{}
			if err := proto.Unmarshal(wire, got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, want) {
				t.Errorf("%s page %d: wire form %v, want %v", view, page, got, want)
			}
			if !maps.Equal(want.GetNodeNames(), wantNames[page]) {
				t.Errorf("%s page %d: node names %v, want %v", view, page, want.GetNodeNames(), wantNames[page])
			}
			req = proto.CloneOf(req)
			req.PageToken = want.GetNextPageToken()
		}
	}
}
