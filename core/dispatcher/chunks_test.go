package dispatcher

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// sizedTask returns a task whose spec holds an env value of n bytes.
func sizedTask(id string, n int) *apiv1.Task {
	return &apiv1.Task{Id: id, NodeId: "n1", Spec: &apiv1.ServiceSpec{Name: "web", Image: "img", Env: map[string]string{"BIG": strings.Repeat("x", n)}}}
}

func TestSplitBoundsMessages(t *testing.T) {
	many := func(count, size int) []*apiv1.Task {
		var ts []*apiv1.Task
		for i := range count {
			ts = append(ts, sizedTask(fmt.Sprintf("t%03d", i), size))
		}
		return ts
	}
	tests := []struct {
		name        string
		in          *apiv1.Assignments
		limit       int
		wantMsgs    int
		wantDropped []string
	}{
		{"empty full set is one message", &apiv1.Assignments{Full: true}, 1 << 20, 1, nil},
		{"empty incremental is none", &apiv1.Assignments{}, 1 << 20, 0, nil},
		{"small full set is one message", &apiv1.Assignments{Full: true, Tasks: many(3, 100)}, 1 << 20, 1, nil},
		{"100 tasks of 45 KB", &apiv1.Assignments{Full: true, Tasks: many(100, 45_000)}, 1 << 20, 5, nil},
		{"incremental scale-down of 100 tasks of 45 KB", &apiv1.Assignments{Tasks: many(100, 45_000), Removed: []string{"a", "b"}}, 1 << 20, 5, nil},
		{"a task over the limit goes alone", &apiv1.Assignments{Full: true, Tasks: append(many(2, 10), sizedTask("big", 2<<20))}, 1 << 20, 2, nil},
		{"a task over what a worker receives is left out", &apiv1.Assignments{Full: true, Tasks: append(many(2, 10), sizedTask("huge", 5<<20))}, 1 << 20, 1, []string{"huge"}},
		{"removed IDs alone are chunked", &apiv1.Assignments{Removed: strings.Split(strings.Repeat("0123456789abcdef0123456789abcdef,", 100), ",")}, 1 << 10, 4, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs, dropped := split(tt.in, tt.limit, nil)
			if len(msgs) != tt.wantMsgs {
				t.Fatalf("%d messages, want %d", len(msgs), tt.wantMsgs)
			}
			var got []string
			for _, o := range dropped {
				got = append(got, o.taskID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantDropped) {
				t.Fatalf("dropped %v, want %v", got, tt.wantDropped)
			}
			var tasks, removed []string
			for i, m := range msgs {
				a := m.GetAssignments()
				if n := proto.Size(m); n > tt.limit && len(a.GetTasks()) > 1 {
					t.Errorf("message %d is %d bytes with %d tasks, over the %d limit", i, n, len(a.GetTasks()), tt.limit)
				}
				if a.GetFull() != tt.in.GetFull() {
					t.Errorf("message %d: full %v, want %v", i, a.GetFull(), tt.in.GetFull())
				}
				if wantMore := tt.in.GetFull() && i < len(msgs)-1; a.GetMore() != wantMore {
					t.Errorf("message %d of %d: more %v, want %v", i, len(msgs), a.GetMore(), wantMore)
				}
				for _, tk := range a.GetTasks() {
					tasks = append(tasks, tk.GetId())
				}
				removed = append(removed, a.GetRemoved()...)
			}
			var want []string
			for _, tk := range tt.in.GetTasks() {
				if proto.Size(tk)+messageOverhead <= MaxWorkerMessageBytes {
					want = append(want, tk.GetId())
				}
			}
			if fmt.Sprint(tasks) != fmt.Sprint(want) || fmt.Sprint(removed) != fmt.Sprint(tt.in.GetRemoved()) {
				t.Fatalf("split lost or reordered something: tasks %v removed %v", tasks, removed)
			}
		})
	}
}

func TestSplitSendsEachSpecOnce(t *testing.T) {
	cache := newSpecCache()
	withSpec := func(env string) []*apiv1.Task {
		var ts []*apiv1.Task
		for i := range 100 {
			tk := sizedTask(fmt.Sprintf("t%03d", i), 45_000)
			tk.Spec.Env["V"] = env
			ts = append(ts, tk)
		}
		return ts
	}
	v1, v2 := withSpec("1"), withSpec("2")
	ref1, ref2 := specRef(v1[0].GetSpec()), specRef(v2[0].GetSpec())
	steps := []struct {
		name       string
		in         *apiv1.Assignments
		wantMsgs   int
		wantSpecs  []string
		wantForget []string
	}{
		{"full set: the spec once", &apiv1.Assignments{Full: true, Tasks: v1}, 1, []string{ref1}, nil},
		{"the same tasks again: no spec", &apiv1.Assignments{Tasks: v1[:10]}, 1, nil, nil},
		{"an update: the new spec once, the old forgotten", &apiv1.Assignments{Tasks: v2}, 1, []string{ref2}, []string{ref1}},
		{"all removed: the spec forgotten", &apiv1.Assignments{Removed: []string{"t000", "t001"}}, 1, nil, nil},
		{"a full set starts afresh", &apiv1.Assignments{Full: true, Tasks: v2[2:]}, 1, []string{ref2}, nil},
	}
	for _, st := range steps {
		msgs, dropped := split(st.in, MaxAssignmentBytes, cache)
		if len(msgs) != st.wantMsgs || len(dropped) != 0 {
			t.Fatalf("%s: %d messages, %d dropped; want %d, none", st.name, len(msgs), len(dropped), st.wantMsgs)
		}
		var specs, forget []string
		for _, m := range msgs {
			a := m.GetAssignments()
			for ref := range a.GetSpecs() {
				specs = append(specs, ref)
			}
			forget = append(forget, a.GetForgetSpecs()...)
			for _, tk := range a.GetTasks() {
				if tk.GetSpec() != nil || a.GetSpecRefs()[tk.GetId()] == "" {
					t.Fatalf("%s: task %s sent with its spec or without a reference", st.name, tk.GetId())
				}
			}
			if n := proto.Size(m); n > MaxAssignmentBytes {
				t.Fatalf("%s: a message of %d bytes", st.name, n)
			}
		}
		if fmt.Sprint(specs) != fmt.Sprint(st.wantSpecs) || fmt.Sprint(forget) != fmt.Sprint(st.wantForget) {
			t.Fatalf("%s: specs %v forget %v, want %v and %v", st.name, specs, forget, st.wantSpecs, st.wantForget)
		}
	}
	if len(cache.byTask) != 98 || len(cache.users) != 1 || cache.users[ref2] != 98 {
		t.Fatalf("cache after the steps: %d tasks, users %v", len(cache.byTask), cache.users)
	}
}
