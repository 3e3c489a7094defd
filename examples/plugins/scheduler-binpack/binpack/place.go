package binpack

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/warrenorch/warren/sdk/scheduler"
)

// ctxCheckEvery is how many tasks plan places between looks at ctx.
const ctxCheckEvery = 256

// plan places the tasks of a request that passed ValidateRequest.
func (s *Scheduler) plan(ctx context.Context, req scheduler.Request) ([]scheduler.Placement, error) {
	// Working copies in ID order, so that ties go to the lowest ID whatever
	// the request's order; Assign updates them as tasks are placed.
	nodes := slices.Clone(req.Nodes)
	slices.SortFunc(nodes, func(a, b scheduler.Node) int { return strings.Compare(a.ID, b.ID) })
	var ready []int // positions of the ready, active nodes
	for p, n := range nodes {
		if n.Schedulable() {
			ready = append(ready, p)
		}
	}
	out := make([]scheduler.Placement, len(req.Tasks))
	for i, t := range req.Tasks {
		if i%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out[i].TaskID = t.ID
		best := -1
		for _, p := range ready {
			n := nodes[p]
			if !scheduler.MatchesAll(n, t.Constraints) || !scheduler.Fits(n, t.Reservation) || s.atLimit(n) {
				continue
			}
			if best < 0 || fuller(n, nodes[best]) {
				best = p
			}
		}
		if best < 0 {
			out[i].Reason = s.explain(nodes, ready, t)
			continue
		}
		nodes[best].Assign(t)
		out[i].NodeID = nodes[best].ID
	}
	return out, nil
}

// atLimit reports whether n holds max_tasks_per_node tasks already.
func (s *Scheduler) atLimit(n scheduler.Node) bool {
	return s.maxTasks > 0 && n.TaskCount >= s.maxTasks
}

// fuller reports whether a ranks before b: less free memory, where a node
// of unknown size has more than any node of known size; then more tasks.
// Equal nodes rank neither way, and the caller keeps the lower ID.
func fuller(a, b scheduler.Node) bool {
	aKnown, bKnown := a.Total.MemoryBytes > 0, b.Total.MemoryBytes > 0
	if aKnown != bKnown {
		return aKnown
	}
	if aKnown {
		aFree := a.Total.MemoryBytes - a.Reserved.MemoryBytes
		bFree := b.Total.MemoryBytes - b.Reserved.MemoryBytes
		if aFree != bFree {
			return aFree < bFree
		}
	}
	return a.TaskCount > b.TaskCount
}

// explain says why no node can take t: no ready worker, constraints no
// ready worker satisfies, or what each node that satisfies them lacks.
func (s *Scheduler) explain(nodes []scheduler.Node, ready []int, t scheduler.Task) string {
	if len(ready) == 0 {
		if len(nodes) == 0 {
			return "no ready worker (the cluster has no worker nodes)"
		}
		return fmt.Sprintf("no ready worker (%d %s, none ready and active)", len(nodes), plural(len(nodes), "node", "nodes"))
	}
	var matching []scheduler.Node
	for _, p := range ready {
		if scheduler.MatchesAll(nodes[p], t.Constraints) {
			matching = append(matching, nodes[p])
		}
	}
	if len(matching) == 0 {
		return constraintReason(nodes, ready, t.Constraints)
	}
	var noMemory, noCPU, full int
	for _, n := range matching {
		if !scheduler.Fits(n, scheduler.Resources{MemoryBytes: t.Reservation.MemoryBytes}) {
			noMemory++
		}
		if !scheduler.Fits(n, scheduler.Resources{NanoCPUs: t.Reservation.NanoCPUs}) {
			noCPU++
		}
		if s.atLimit(n) {
			full++
		}
	}
	of := fmt.Sprintf("%d %s", len(matching), plural(len(matching), "eligible node", "eligible nodes"))
	var parts []string
	if noMemory > 0 {
		parts = append(parts, fmt.Sprintf("insufficient memory (need %s) on %d of %s",
			scheduler.FormatBytes(t.Reservation.MemoryBytes), noMemory, of))
	}
	if noCPU > 0 {
		parts = append(parts, fmt.Sprintf("insufficient cpu (need %s) on %d of %s",
			scheduler.FormatNanoCPUs(t.Reservation.NanoCPUs), noCPU, of))
	}
	if full > 0 {
		parts = append(parts, fmt.Sprintf("task limit (%s = %d) reached on %d of %s",
			AttrMaxTasksPerNode, s.maxTasks, full, of))
	}
	return strings.Join(parts, "; ")
}

// constraintReason names each constraint that no ready worker satisfies on
// its own or, when each is satisfied somewhere, the combination.
func constraintReason(nodes []scheduler.Node, ready []int, cs []scheduler.Constraint) string {
	var failing []string
	for _, c := range cs {
		if !slices.ContainsFunc(ready, func(p int) bool { return c.Matches(nodes[p]) }) {
			failing = append(failing, "no node satisfies constraint "+c.String())
		}
	}
	if len(failing) > 0 {
		return strings.Join(failing, "; ")
	}
	all := make([]string, len(cs))
	for i, c := range cs {
		all[i] = c.String()
	}
	return "no node satisfies constraints " + strings.Join(all, ", ") + " together"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
