package schedloop

import (
	"fmt"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

// fleet returns a state with nodes worker nodes (8 CPUs, 16GiB each) and
// perNode assigned, running tasks on each.
func fleet(nodes, perNode int) *state.State {
	st := state.New()
	var tasks []*apiv1.Task
	for i := range nodes {
		n := worker(fmt.Sprintf("node-%04d", i), ready, 0)
		n.Resources = res(8e9, 16<<30)
		n.Labels = map[string]string{"zone": fmt.Sprintf("z%d", i%4)}
		st.PutNode(n)
		for j := range perNode {
			tasks = append(tasks, on(fmt.Sprintf("run-%04d-%02d", i, j), n.GetId(), tsRunning, res(1e8, 64<<20)))
		}
	}
	st.PutTasks(tasks)
	return st
}

func newTasks(n int) []*apiv1.Task {
	out := make([]*apiv1.Task, n)
	for i := range out {
		t := unplaced(fmt.Sprintf("new-%05d", i), uint64(i+1), "node.labels.zone!=z3")
		t.Spec.Reservations = res(1e8, 64<<20)
		out[i] = t
	}
	return out
}

// BenchmarkRound is one scheduling round's decision (view building, one
// call of the real scheduler-roundrobin process, Validate, outcome) on
// 1,000 nodes: placing 10,000 new tasks on an empty fleet, and placing 100
// on a fleet already running 10,000.
func BenchmarkRound(b *testing.B) {
	sched := roundRobin(b)
	cases := []struct {
		name    string
		st      *state.State
		batch   int
		running int
	}{
		{"place-10000-on-1000-nodes", fleet(1000, 0), 10000, 0},
		{"place-100-on-1000-nodes-running-10000", fleet(1000, 10), 100, 10000},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			l := &loop{Deps: Deps{State: tc.st, Scheduler: sched, Logger: testLogger}}
			batch := newTasks(tc.batch)
			for b.Loop() {
				writes, err := l.schedule(b.Context(), batch, t0)
				if err != nil {
					b.Fatal(err)
				}
				if len(writes) != tc.batch || writes[0].GetState() != tsAssigned {
					b.Fatalf("%d writes, first %v", len(writes), writes[0])
				}
			}
			b.ReportMetric(float64(b.N*tc.batch)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
	b.Run("view-only-10000-running-1000-nodes", func(b *testing.B) {
		st := fleet(1000, 10)
		batch := newTasks(100)
		tasksOn := func(id string) []*apiv1.Task { return st.Tasks(state.TaskFilter{NodeID: id}) }
		for b.Loop() {
			BuildRequest(st.Nodes(), tasksOn, batch, nil)
		}
	})
}
