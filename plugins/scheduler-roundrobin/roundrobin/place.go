package roundrobin

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/warrenorch/warren/sdk/scheduler"
)

// ctxCheckEvery is how many tasks plan places between looks at ctx.
const ctxCheckEvery = 256

// rank orders candidate nodes for one task; lower is better.
type rank struct {
	service int // the task's service's tasks on the node, this batch's included
	tasks   int // TaskCount plus this batch's placements
	turn    int // distance after the previously chosen node in ID order
}

func (r rank) less(o rank) bool {
	if r.service != o.service {
		return r.service < o.service
	}
	if r.tasks != o.tasks {
		return r.tasks < o.tasks
	}
	return r.turn < o.turn
}

// plan places the tasks of a request that passed ValidateRequest.
func plan(ctx context.Context, req scheduler.Request) ([]scheduler.Placement, error) {
	// Working copies in ID order; Assign updates them as tasks are placed.
	nodes := slices.Clone(req.Nodes)
	slices.SortFunc(nodes, func(a, b scheduler.Node) int { return strings.Compare(a.ID, b.ID) })
	var ready []int // positions of the ready, active nodes
	for p, n := range nodes {
		if n.Schedulable() {
			ready = append(ready, p)
		}
	}
	// Constraints only look at a node's ID, name and labels, which placing
	// tasks does not change: work out each distinct set's matching nodes
	// once per call.
	matching := map[string][]int{"": ready}
	out := make([]scheduler.Placement, len(req.Tasks))
	last := -1 // position of the previously chosen node
	for i, t := range req.Tasks {
		if i%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		out[i].TaskID = t.ID
		key := constraintKey(t.Constraints)
		candidates, ok := matching[key]
		if !ok {
			for _, p := range ready {
				if scheduler.MatchesAll(nodes[p], t.Constraints) {
					candidates = append(candidates, p)
				}
			}
			matching[key] = candidates
		}
		best, bestRank := -1, rank{}
		for _, p := range candidates {
			n := &nodes[p]
			if !scheduler.Fits(*n, t.Reservation) {
				continue
			}
			r := rank{tasks: n.TaskCount, service: n.ServiceCount(t.ServiceID), turn: (p - last - 1 + len(nodes)) % len(nodes)}
			if best < 0 || r.less(bestRank) {
				best, bestRank = p, r
			}
		}
		if best < 0 {
			out[i].Reason = explain(nodes, ready, candidates, t)
			continue
		}
		nodes[best].Assign(t)
		out[i].NodeID = nodes[best].ID
		last = best
	}
	return out, nil
}

// constraintKey identifies a list of constraints unambiguously (each part
// is length-prefixed); "" for none.
func constraintKey(cs []scheduler.Constraint) string {
	if len(cs) == 0 {
		return ""
	}
	var b []byte
	for _, c := range cs {
		for _, part := range []string{c.Key, string(c.Op), c.Value} {
			b = strconv.AppendInt(b, int64(len(part)), 10)
			b = append(b, ':')
			b = append(b, part...)
		}
	}
	return string(b)
}

// explain says why no node can take t, looking at the same working copies
// plan chose from: no ready worker at all, a constraint no ready worker
// satisfies, or the resources each eligible node lacks. matching holds the
// ready nodes that satisfy t's constraints.
func explain(nodes []scheduler.Node, ready, matching []int, t scheduler.Task) string {
	if len(ready) == 0 {
		if len(nodes) == 0 {
			return "no ready worker (the cluster has no worker nodes)"
		}
		return fmt.Sprintf("no ready worker (%d %s: %s)", len(nodes), plural(len(nodes), "node", "nodes"), unavailability(nodes))
	}
	if len(matching) == 0 {
		return constraintReason(nodes, ready, t.Constraints)
	}
	var noCPU, noMemory int
	for _, p := range matching {
		if !scheduler.Fits(nodes[p], scheduler.Resources{NanoCPUs: t.Reservation.NanoCPUs}) {
			noCPU++
		}
		if !scheduler.Fits(nodes[p], scheduler.Resources{MemoryBytes: t.Reservation.MemoryBytes}) {
			noMemory++
		}
	}
	eligible := plural(len(matching), "eligible node", "eligible nodes")
	var parts []string
	if noMemory > 0 {
		parts = append(parts, fmt.Sprintf("insufficient memory (need %s) on %d of %d %s",
			scheduler.FormatBytes(t.Reservation.MemoryBytes), noMemory, len(matching), eligible))
	}
	if noCPU > 0 {
		parts = append(parts, fmt.Sprintf("insufficient cpu (need %s) on %d of %d %s",
			scheduler.FormatNanoCPUs(t.Reservation.NanoCPUs), noCPU, len(matching), eligible))
	}
	return strings.Join(parts, "; ")
}

// constraintReason names the constraints that rule out every ready worker:
// each one that no ready worker satisfies on its own, or, when each is
// satisfied somewhere, the combination. It adds the unavailable nodes that
// would match, since draining or restarting them is often the fix.
func constraintReason(nodes []scheduler.Node, ready []int, cs []scheduler.Constraint) string {
	var failing []string
	for _, c := range cs {
		if !slices.ContainsFunc(ready, func(p int) bool { return c.Matches(nodes[p]) }) {
			if capability, ok := c.Capability(); ok {
				failing = append(failing, "no ready worker's runtime supports "+capability)
			} else {
				failing = append(failing, "no node satisfies constraint "+c.String())
			}
		}
	}
	reason := strings.Join(failing, "; ")
	if len(failing) == 0 {
		all := make([]string, len(cs))
		for i, c := range cs {
			all[i] = c.String()
		}
		reason = "no node satisfies constraints " + strings.Join(all, ", ") + " together"
	}
	var unavailable []scheduler.Node
	for _, n := range nodes {
		if !n.Schedulable() && scheduler.MatchesAll(n, cs) {
			unavailable = append(unavailable, n)
		}
	}
	if len(unavailable) > 0 {
		reason += fmt.Sprintf(" (%d matching %s unavailable: %s)", len(unavailable),
			plural(len(unavailable), "node is", "nodes are"), unavailability(unavailable))
	}
	return reason
}

// unavailability counts why nodes take no new tasks: "1 not ready, 2
// draining". A node that is both down and draining counts as not ready.
func unavailability(nodes []scheduler.Node) string {
	var down, paused, draining, active int
	for _, n := range nodes {
		switch {
		case !n.Ready:
			down++
		case n.Availability == scheduler.AvailabilityPause:
			paused++
		case n.Availability == scheduler.AvailabilityDrain:
			draining++
		default:
			active++
		}
	}
	var parts []string
	for _, c := range []struct {
		n    int
		what string
	}{{down, "not ready"}, {paused, "paused"}, {draining, "draining"}, {active, "ready"}} {
		if c.n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c.n, c.what))
		}
	}
	return strings.Join(parts, ", ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
