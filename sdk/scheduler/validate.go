package scheduler

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/warrenorch/warren/sdk"
)

// Fits reports whether node n has room for a reservation r: for each
// resource, r asks for nothing, or n's Total is 0 (unknown, so unlimited),
// or Total minus Reserved is at least r. It does not look at Ready or
// Availability (see Node.Schedulable).
//
// To ask about one resource alone, pass a Resources with only that field
// set: Fits(n, Resources{MemoryBytes: r.MemoryBytes}).
func Fits(n Node, r Resources) bool {
	return fits(n.Total.NanoCPUs, n.Reserved.NanoCPUs, r.NanoCPUs) &&
		fits(n.Total.MemoryBytes, n.Reserved.MemoryBytes, r.MemoryBytes)
}

func fits(total, reserved, need int64) bool {
	return need <= 0 || total <= 0 || total-reserved >= need
}

// shortfalls describes each resource of r that n has no room for, e.g.
// "insufficient memory: need 600MiB, 424MiB free".
func shortfalls(n Node, r Resources) []string {
	var out []string
	if !fits(n.Total.NanoCPUs, n.Reserved.NanoCPUs, r.NanoCPUs) {
		out = append(out, fmt.Sprintf("insufficient cpu: need %s, %s free",
			FormatNanoCPUs(r.NanoCPUs), FormatNanoCPUs(max(0, n.Total.NanoCPUs-n.Reserved.NanoCPUs))))
	}
	if !fits(n.Total.MemoryBytes, n.Reserved.MemoryBytes, r.MemoryBytes) {
		out = append(out, fmt.Sprintf("insufficient memory: need %s, %s free",
			FormatBytes(r.MemoryBytes), FormatBytes(max(0, n.Total.MemoryBytes-n.Reserved.MemoryBytes))))
	}
	return out
}

// ValidateRequest checks that req is well-formed: every node and task has a
// non-empty ID unique among its kind, every node's Availability is valid,
// no resource or task count is negative, no service's count on a node
// exceeds the node's, every attribute key passes CheckAttributeKey, and
// every constraint has a known
// key, a known operator and a non-empty value. Errors wrap
// sdk.ErrInvalidArgument and name the node or task.
func ValidateRequest(req Request) error {
	nodes := make(map[string]struct{}, len(req.Nodes))
	for i, n := range req.Nodes {
		if n.ID == "" {
			return fmt.Errorf("node %d (name %q): empty ID: %w", i, n.Name, sdk.ErrInvalidArgument)
		}
		if _, dup := nodes[n.ID]; dup {
			return fmt.Errorf("node %q: listed twice: %w", n.ID, sdk.ErrInvalidArgument)
		}
		nodes[n.ID] = struct{}{}
		if !n.Availability.Valid() {
			return fmt.Errorf("node %q: availability %q, want %s, %s or %s: %w",
				n.ID, n.Availability, AvailabilityActive, AvailabilityPause, AvailabilityDrain, sdk.ErrInvalidArgument)
		}
		if negative(n.Total) || negative(n.Reserved) || n.TaskCount < 0 {
			return fmt.Errorf("node %q: negative resources or task count: %w", n.ID, sdk.ErrInvalidArgument)
		}
		for svc, count := range n.ServiceTasks {
			if count < 0 || count > n.TaskCount {
				return fmt.Errorf("node %q: service %q: task count %d, want 0 to the node's %d: %w", n.ID, svc, count, n.TaskCount, sdk.ErrInvalidArgument)
			}
		}
		for key := range n.Attributes {
			if err := CheckAttributeKey(key); err != nil {
				return fmt.Errorf("node %q: %w", n.ID, err)
			}
		}
	}
	tasks := make(map[string]struct{}, len(req.Tasks))
	for i, t := range req.Tasks {
		if t.ID == "" {
			return fmt.Errorf("task %d (service %q): empty ID: %w", i, t.ServiceName, sdk.ErrInvalidArgument)
		}
		if _, dup := tasks[t.ID]; dup {
			return fmt.Errorf("task %q: listed twice: %w", t.ID, sdk.ErrInvalidArgument)
		}
		tasks[t.ID] = struct{}{}
		if negative(t.Reservation) {
			return fmt.Errorf("task %q: negative reservation: %w", t.ID, sdk.ErrInvalidArgument)
		}
		for _, c := range t.Constraints {
			if err := c.check(); err != nil {
				return fmt.Errorf("task %q: constraint %q: %w", t.ID, c.String(), err)
			}
		}
	}
	return nil
}

func negative(r Resources) bool { return r.NanoCPUs < 0 || r.MemoryBytes < 0 }

// Validate is the check the host runs on every plan before committing it.
// It returns nil when placements is a valid answer to req under the
// Scheduler contract:
//   - req passes ValidateRequest;
//   - there is exactly one placement per task, in order, with its task's ID;
//   - an unplaced task (NodeID "") has a non-empty Reason;
//   - a placed task's node is in req.Nodes, Ready and active, satisfies
//     every constraint of the task, and has room for its reservation once
//     the earlier placements of the same plan are counted.
//
// It stops at the first problem; the error wraps sdk.ErrInvalidArgument
// and names the task. Validate never changes req.
func Validate(req Request, placements []Placement) error {
	if err := ValidateRequest(req); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	if len(placements) != len(req.Tasks) {
		return fmt.Errorf("plan has %d placements for %d tasks: %w", len(placements), len(req.Tasks), sdk.ErrInvalidArgument)
	}
	// Working copies: earlier placements of the plan add to them.
	nodes := make(map[string]*Node, len(req.Nodes))
	for _, n := range req.Nodes {
		nodes[n.ID] = &n
	}
	for i, t := range req.Tasks {
		p := placements[i]
		if p.TaskID != t.ID {
			return fmt.Errorf("placement %d is for task %q, want task %q: %w", i, p.TaskID, t.ID, sdk.ErrInvalidArgument)
		}
		if p.NodeID == "" {
			if strings.TrimSpace(p.Reason) == "" {
				return fmt.Errorf("task %q: not placed and no reason given: %w", t.ID, sdk.ErrInvalidArgument)
			}
			continue
		}
		n, ok := nodes[p.NodeID]
		switch {
		case !ok:
			return fmt.Errorf("task %q: node %q is not in the request: %w", t.ID, p.NodeID, sdk.ErrInvalidArgument)
		case !n.Ready:
			return fmt.Errorf("task %q: node %q is not ready: %w", t.ID, p.NodeID, sdk.ErrInvalidArgument)
		case n.Availability != AvailabilityActive:
			return fmt.Errorf("task %q: node %q has availability %s and takes no new tasks: %w", t.ID, p.NodeID, n.Availability, sdk.ErrInvalidArgument)
		}
		for _, c := range t.Constraints {
			if !c.Matches(*n) {
				return fmt.Errorf("task %q: node %q does not satisfy constraint %s: %w", t.ID, p.NodeID, c, sdk.ErrInvalidArgument)
			}
		}
		if lacks := shortfalls(*n, t.Reservation); len(lacks) > 0 {
			return fmt.Errorf("task %q: node %q: %s: %w", t.ID, p.NodeID, strings.Join(lacks, "; "), sdk.ErrInvalidArgument)
		}
		n.Assign(t)
	}
	return nil
}

// FormatBytes formats a byte count with binary units, as people write
// memory sizes: 512B, 600MiB, 1GiB, 1.5GiB.
func FormatBytes(b int64) string {
	if b < 0 {
		return "-" + FormatBytes(-b)
	}
	const units = "KMGTPE"
	if b < 1024 {
		return strconv.FormatInt(b, 10) + "B"
	}
	unit, i := int64(1024), 0
	for b/unit >= 1024 && i < len(units)-1 {
		unit *= 1024
		i++
	}
	suffix := string(units[i]) + "iB"
	if b%unit == 0 {
		return strconv.FormatInt(b/unit, 10) + suffix
	}
	return trimZeros(strconv.FormatFloat(float64(b)/float64(unit), 'f', 1, 64)) + suffix
}

// FormatNanoCPUs formats a CPU amount in cores, to at most three decimals:
// 0.5 CPU, 2 CPU, 0.125 CPU.
func FormatNanoCPUs(n int64) string {
	return trimZeros(strconv.FormatFloat(float64(n)/1e9, 'f', 3, 64)) + " CPU"
}

func trimZeros(s string) string {
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
