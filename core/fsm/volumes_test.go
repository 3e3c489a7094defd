package fsm

import (
	"strings"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// TestVolumeBindingRace: placements that race for one volume on no node
// yet, in one entry or in two, put it on the first task's node; the others
// go back to PENDING with no node, and a task already taken up by its
// worker is left where it is.
func TestVolumeBindingRace(t *testing.T) {
	task := func(id, node string, state apiv1.TaskState) *apiv1.Task {
		return &apiv1.Task{Id: id, ServiceId: "s1", NodeId: node, State: state, DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
			Spec: &apiv1.ServiceSpec{Name: "db", Mounts: []*apiv1.Mount{{Type: "volume", Source: "data", Target: "/data"}}}}
	}
	assigned := apiv1.TaskState_TASK_STATE_ASSIGNED
	cases := []struct {
		name    string
		entries [][]*apiv1.Task
		want    map[string]string // task → node ("" is pending)
	}{
		{"one entry", [][]*apiv1.Task{{task("a", "n1", assigned), task("b", "n2", assigned), task("c", "n1", assigned)}},
			map[string]string{"a": "n1", "b": "", "c": "n1"}},
		{"two entries", [][]*apiv1.Task{{task("a", "n2", assigned)}, {task("b", "n1", assigned)}},
			map[string]string{"a": "n2", "b": ""}},
		{"running elsewhere is left alone", [][]*apiv1.Task{{task("a", "n1", assigned)}, {task("b", "n2", apiv1.TaskState_TASK_STATE_RUNNING)}},
			map[string]string{"a": "n1", "b": "n2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, openStore(t, t.TempDir()))
			for _, n := range []string{"n1", "n2"} {
				if err, ok := h.apply(t, &fsmpb.UpsertNode{Node: &apiv1.Node{Id: n, Name: "node-" + n}}).(error); ok {
					t.Fatal(err)
				}
			}
			if err, ok := h.apply(t, &fsmpb.UpsertVolume{Volume: &apiv1.Volume{Id: "v1", Name: "data"}}).(error); ok {
				t.Fatal(err)
			}
			for _, e := range tc.entries {
				if err, ok := h.apply(t, &fsmpb.UpsertTasks{Tasks: e}).(error); ok {
					t.Fatal(err)
				}
			}
			v, _ := h.state.VolumeByName("data")
			if want := tc.entries[0][0].GetNodeId(); v.GetNodeId() != want {
				t.Fatalf("volume on %q, want %q", v.GetNodeId(), want)
			}
			for id, node := range tc.want {
				got, ok := h.state.Task(id)
				if !ok || got.GetNodeId() != node {
					t.Fatalf("task %s on %q, want %q", id, got.GetNodeId(), node)
				}
				if node == "" && (got.GetState() != apiv1.TaskState_TASK_STATE_PENDING || !strings.HasPrefix(got.GetMessage(), VolumeElsewherePrefix)) {
					t.Fatalf("task %s: %s %q, want PENDING with the volume's reason", id, got.GetState(), got.GetMessage())
				}
			}
			// The store holds what the state holds.
			h.fsm.Flush()
			fresh := newHarness(t, h.store)
			for id, node := range tc.want {
				if got, _ := fresh.state.Task(id); got.GetNodeId() != node {
					t.Fatalf("stored task %s on %q, want %q", id, got.GetNodeId(), node)
				}
			}
		})
	}
}
