package overlay

import (
	"fmt"
	"strings"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/network"
)

func TestAssign(t *testing.T) {
	plan, err := network.ParsePlan("10.88.0.0/22", 24) // four node subnets
	if err != nil {
		t.Fatal(err)
	}
	worker := func(id, subnet string) *apiv1.Node {
		n := &apiv1.Node{Id: id, Worker: true}
		if subnet != "" {
			n.Network = &apiv1.NodeNetwork{Subnet: subnet}
		}
		return n
	}
	manager := func(id string) *apiv1.Node { return &apiv1.Node{Id: id, Role: apiv1.NodeRole_NODE_ROLE_MANAGER} }
	task := func(node, addr string, st apiv1.TaskState) *apiv1.Task {
		return &apiv1.Task{Id: "t-" + addr, NodeId: node, Address: addr, State: st}
	}
	running, failed := apiv1.TaskState_TASK_STATE_RUNNING, apiv1.TaskState_TASK_STATE_FAILED
	for _, tc := range []struct {
		name    string
		nodes   []*apiv1.Node
		tasks   []*apiv1.Task
		want    string
		wantErr string
	}{
		{name: "nothing to do", nodes: []*apiv1.Node{worker("a", "10.88.0.0/24")}, want: ""},
		{name: "a new worker gets the lowest free", nodes: []*apiv1.Node{worker("a", "10.88.0.0/24"), worker("b", "")}, want: "b=10.88.1.0/24"},
		{name: "several in node ID order", nodes: []*apiv1.Node{worker("c", ""), worker("a", "10.88.1.0/24"), worker("b", "")}, want: "b=10.88.0.0/24 c=10.88.2.0/24"},
		{name: "a manager without a worker gets none", nodes: []*apiv1.Node{manager("m"), worker("a", "")}, want: "a=10.88.0.0/24"},
		{name: "a removed node's live task keeps its subnet", nodes: []*apiv1.Node{worker("b", "")},
			tasks: []*apiv1.Task{task("gone", "10.88.0.5/24", running)}, want: "b=10.88.1.0/24"},
		{name: "a removed node's terminal task frees it", nodes: []*apiv1.Node{worker("b", "")},
			tasks: []*apiv1.Task{task("gone", "10.88.0.5/24", failed)}, want: "b=10.88.0.0/24"},
		{name: "a present node's tasks are under its own subnet", nodes: []*apiv1.Node{worker("a", "10.88.2.0/24"), worker("b", "")},
			tasks: []*apiv1.Task{task("a", "10.88.2.7/24", running)}, want: "b=10.88.0.0/24"},
		{name: "full: the ones that fit and an error", nodes: []*apiv1.Node{worker("a", "10.88.0.0/24"), worker("b", "10.88.1.0/24"), worker("c", ""), worker("d", ""), worker("e", "")},
			want: "c=10.88.2.0/24 d=10.88.3.0/24", wantErr: "overlay 10.88.0.0/22 (/24 per node) is full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			as, err := Assign(plan, tc.nodes, tc.tasks)
			var got []string
			for _, a := range as {
				got = append(got, fmt.Sprintf("%s=%s", a.NodeID, a.Subnet))
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("Assign = %q; want %q", s, tc.want)
			}
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("Assign error = %v; want %q", err, tc.wantErr)
			}
		})
	}
}
