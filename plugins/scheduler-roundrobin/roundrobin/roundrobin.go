// Package roundrobin is Warren's default scheduler: each task goes to the
// eligible node with the fewest tasks of its service, then the fewest tasks
// in all, and ties rotate through the nodes in ID order, as in the original
// Warren. The order of the first two is Docker Swarm's: spreading a
// service's replicas over nodes comes before balancing the nodes' load.
//
// The rule, for each task of the batch in order:
//
//  1. Eligible nodes are those that are ready and active, satisfy all the
//     task's constraints and have room for its reservation (counting the
//     tasks this batch has already placed).
//  2. Among them, pick the one with the fewest tasks of the same service
//     (Node.ServiceTasks: the ones it already runs plus what this batch has
//     placed on it), so that a service's replicas spread across nodes
//     before any node takes a second one, also when the service is scaled
//     up in a later batch over nodes that run other services.
//  3. On a tie, pick the one with the fewest tasks: its TaskCount plus what
//     this batch has placed on it.
//  4. On a remaining tie, pick the first node after the previously chosen
//     one in ID order, wrapping around (the first node by ID for the
//     batch's first task). Repeated ties therefore rotate over the nodes
//     instead of piling onto the lowest ID.
//
// Everything is derived from the request, so the same request always yields
// the same plan and concurrent calls share nothing.
package roundrobin

import (
	"context"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Name and Version identify the plugin in Info.
const (
	Name    = "scheduler-roundrobin"
	Version = "0.1.0"
)

// Scheduler is the round-robin scheduler. It has no configuration and no
// state; the zero value is ready to use.
type Scheduler struct{}

var _ scheduler.Scheduler = (*Scheduler)(nil)

// New returns a round-robin scheduler.
func New() *Scheduler { return &Scheduler{} }

// Info reports kind scheduler, name scheduler-roundrobin, API version 1.
func (*Scheduler) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Kind:        sdk.KindScheduler,
		Name:        Name,
		Version:     Version,
		APIVersions: []uint32{sdk.APIVersion},
		Description: "places each task on the eligible node with the fewest tasks; ties rotate in node ID order",
	}, nil
}

// ConfigSchema reports an empty schema: the plugin takes no configuration.
func (*Scheduler) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{}, nil
}

// Configure accepts an empty object and rejects any attribute with an error
// wrapping sdk.ErrInvalidArgument.
func (*Scheduler) Configure(_ context.Context, configJSON []byte) error {
	var cfg struct{}
	return sdk.DecodeConfig(configJSON, &cfg)
}

// Schedule places req.Tasks by the rule in the package doc. Unplaceable
// tasks get a reason naming what stood in the way. It returns an error only
// for a request that fails scheduler.ValidateRequest or when ctx ends.
func (*Scheduler) Schedule(ctx context.Context, req scheduler.Request) ([]scheduler.Placement, error) {
	if err := scheduler.ValidateRequest(req); err != nil {
		return nil, err
	}
	return plan(ctx, req)
}
