// Package spread is a scheduler for Warren that spreads each service's
// tasks evenly over the values of one node label, such as a zone or a rack,
// the way Docker Swarm's spread placement preference does. A service with 4
// tasks in zone a, scaled to 8 over zones a and b, ends 4/4: the host tells
// the scheduler how many tasks of each service of the batch every node
// already runs (scheduler.Node.ServiceTasks).
//
// The rule, for each task of the batch in order:
//
//  1. Eligible nodes are those that are ready and active, satisfy all the
//     task's constraints and have room for its reservation (counting the
//     tasks this batch has already placed).
//  2. Nodes are grouped by their value of the label; nodes without the
//     label form one group of their own. Among the groups with an eligible
//     node, pick the one whose ready nodes run the fewest tasks of the
//     task's service.
//  3. Within the group, pick the eligible node with the fewest tasks of the
//     service, then the fewest tasks in all, then the lowest ID.
//
// Nothing depends on the order of the request's nodes or on earlier calls,
// so the same request always yields the same plan. The package imports only
// Warren's sdk and the standard library, as any third-party plugin can.
package spread

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Name and Version identify the plugin in Info.
const (
	Name    = "scheduler-spread"
	Version = "0.1.0"
)

// AttrLabel is the attribute of the plugin's `config { }` block naming the
// node label to spread over.
const AttrLabel = "label"

// Scheduler is the spreading scheduler. Make one with New. Its only state
// is the configuration Configure sets before any Schedule call, so Schedule
// may run concurrently with itself.
type Scheduler struct {
	label string // "" until configured: every node is in one group
}

var _ scheduler.Scheduler = (*Scheduler)(nil)

// New returns an unconfigured spreading scheduler: until Configure names a
// label, all nodes form one group and it spreads each service over nodes.
func New() *Scheduler { return &Scheduler{} }

// Info reports kind scheduler, name scheduler-spread, API version 1.
func (*Scheduler) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Kind:        sdk.KindScheduler,
		Name:        Name,
		Version:     Version,
		APIVersions: []uint32{sdk.APIVersion},
		Description: "spreads each service's tasks evenly over the values of a node label",
	}, nil
}

// ConfigSchema reports the required string label.
func (*Scheduler) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{{
		Name:        AttrLabel,
		Type:        sdk.TypeString,
		Required:    true,
		Description: "the node label whose values tasks are spread over, such as \"zone\"",
	}}}, nil
}

// Configure reads the config block. An empty label returns an error
// wrapping sdk.ErrInvalidArgument.
func (s *Scheduler) Configure(_ context.Context, configJSON []byte) error {
	var cfg struct {
		Label string `json:"label"`
	}
	if err := sdk.DecodeConfig(configJSON, &cfg); err != nil {
		return err
	}
	if strings.TrimSpace(cfg.Label) == "" {
		return fmt.Errorf("%s: want the name of a node label, such as \"zone\": %w", AttrLabel, sdk.ErrInvalidArgument)
	}
	s.label = cfg.Label
	return nil
}

// Schedule places req.Tasks by the rule in the package doc. It returns an
// error only for a request that fails scheduler.ValidateRequest or when ctx
// ends.
func (s *Scheduler) Schedule(ctx context.Context, req scheduler.Request) ([]scheduler.Placement, error) {
	if err := scheduler.ValidateRequest(req); err != nil {
		return nil, err
	}
	// Working copies in ID order; Assign updates them as tasks are placed.
	nodes := slices.Clone(req.Nodes)
	slices.SortFunc(nodes, func(a, b scheduler.Node) int { return strings.Compare(a.ID, b.ID) })
	out := make([]scheduler.Placement, len(req.Tasks))
	for i, t := range req.Tasks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		out[i].TaskID = t.ID
		best := s.choose(nodes, t)
		if best < 0 {
			out[i].Reason = reason(nodes, t)
			continue
		}
		nodes[best].Assign(t)
		out[i].NodeID = nodes[best].ID
	}
	return out, nil
}

// choose returns the position of the node for t, or -1 when none can take
// it.
func (s *Scheduler) choose(nodes []scheduler.Node, t scheduler.Task) int {
	// The service's tasks per group, on the group's ready nodes.
	inGroup := map[string]int{}
	for _, n := range nodes {
		if n.Ready {
			inGroup[n.Labels[s.label]] += n.ServiceCount(t.ServiceID)
		}
	}
	best := -1
	less := func(p, q int) bool {
		a, b := nodes[p], nodes[q]
		if ga, gb := inGroup[a.Labels[s.label]], inGroup[b.Labels[s.label]]; ga != gb {
			return ga < gb
		}
		if sa, sb := a.ServiceCount(t.ServiceID), b.ServiceCount(t.ServiceID); sa != sb {
			return sa < sb
		}
		return a.TaskCount < b.TaskCount // then ID order: nodes are sorted
	}
	for p, n := range nodes {
		if eligible(n, t) && (best < 0 || less(p, best)) {
			best = p
		}
	}
	return best
}

func eligible(n scheduler.Node, t scheduler.Task) bool {
	return n.Schedulable() && scheduler.MatchesAll(n, t.Constraints) && scheduler.Fits(n, t.Reservation)
}

// reason says, for the operator, why no node can take t.
func reason(nodes []scheduler.Node, t scheduler.Task) string {
	var schedulable, matching int
	for _, n := range nodes {
		if !n.Schedulable() {
			continue
		}
		schedulable++
		if scheduler.MatchesAll(n, t.Constraints) {
			matching++
		}
	}
	switch {
	case schedulable == 0:
		return fmt.Sprintf("no ready, active worker among %d nodes", len(nodes))
	case matching == 0:
		cs := make([]string, len(t.Constraints))
		for i, c := range t.Constraints {
			cs[i] = c.String()
		}
		return fmt.Sprintf("no ready, active worker satisfies %s", strings.Join(cs, ", "))
	}
	return fmt.Sprintf("no room for the reservation (%s) on the %d eligible nodes", t.Reservation, matching)
}
