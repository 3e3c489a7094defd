// Package binpack is a bin-packing scheduler for Warren: each task goes to
// the fullest node that still has room for it, so that work piles up on few
// nodes and the others stay empty (to be drained, powered down, or kept free
// for large tasks). It is the opposite of the built-in round-robin
// scheduler, which spreads tasks out.
//
// The rule, for each task of the batch in order:
//
//  1. Eligible nodes are those that are ready and active, satisfy all the
//     task's constraints, have room for its reservation and, when
//     max_tasks_per_node is set, hold fewer tasks than that. Tasks this
//     batch has already placed count.
//  2. Among them, pick the one with the least free memory (Total minus
//     Reserved). A node whose memory Total is 0 (unknown, so unlimited)
//     has more free memory than any node of known size.
//  3. On a tie, pick the one with the most tasks.
//  4. On a remaining tie, pick the lowest node ID.
//
// CPU is checked (a node without the CPU a task reserves is not eligible)
// but does not rank nodes. Nothing depends on the order of the request's
// nodes or on earlier calls, so the same request always yields the same
// plan, and concurrent calls share nothing.
//
// The package imports only Warren's sdk and the standard library, as any
// third-party plugin can.
package binpack

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Name and Version identify the plugin in Info.
const (
	Name    = "scheduler-binpack"
	Version = "0.1.0"
)

// AttrMaxTasksPerNode is the one attribute of the plugin's `config { }`
// block: the most tasks a node may hold, counting those it runs already. 0
// or unset means no limit.
const AttrMaxTasksPerNode = "max_tasks_per_node"

// maxTasksLimit bounds max_tasks_per_node; larger values are surely typos.
const maxTasksLimit = 1_000_000

// Scheduler is the bin-packing scheduler. Make one with New. Its only state
// is the configuration Configure sets, which the host does once per process
// start before any Schedule call, so Schedule may run concurrently with
// itself.
type Scheduler struct {
	maxTasks int // 0: no limit
}

var _ scheduler.Scheduler = (*Scheduler)(nil)

// New returns a bin-packing scheduler without a task limit, ready to
// Schedule.
func New() *Scheduler { return &Scheduler{} }

// Info reports kind scheduler, name scheduler-binpack, API version 1.
func (*Scheduler) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Kind:        sdk.KindScheduler,
		Name:        Name,
		Version:     Version,
		APIVersions: []uint32{sdk.APIVersion},
		Description: "packs each task onto the fullest eligible node (least free memory, then most tasks)",
	}, nil
}

// ConfigSchema reports the optional number max_tasks_per_node.
func (*Scheduler) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{{
		Name:        AttrMaxTasksPerNode,
		Type:        sdk.TypeNumber,
		Description: "most tasks a node may hold, counting those it runs already; 0 or unset: no limit",
	}}}, nil
}

// Configure reads the config block, which the host has already checked
// against ConfigSchema. A max_tasks_per_node that is not a whole number
// from 0 to 1,000,000 returns an error wrapping sdk.ErrInvalidArgument, as
// does any attribute the schema does not list.
func (s *Scheduler) Configure(_ context.Context, configJSON []byte) error {
	var cfg struct {
		// json.Number keeps the value as written, so 2.5 can be refused
		// with a message naming the attribute.
		MaxTasksPerNode json.Number `json:"max_tasks_per_node"`
	}
	if err := sdk.DecodeConfig(configJSON, &cfg); err != nil {
		return err
	}
	maxTasks := 0
	if cfg.MaxTasksPerNode != "" {
		n, err := strconv.Atoi(cfg.MaxTasksPerNode.String())
		if err != nil || n < 0 || n > maxTasksLimit {
			return fmt.Errorf("%s = %s: want a whole number from 0 to %d: %w",
				AttrMaxTasksPerNode, cfg.MaxTasksPerNode, maxTasksLimit, sdk.ErrInvalidArgument)
		}
		maxTasks = n
	}
	s.maxTasks = maxTasks
	return nil
}

// Schedule places req.Tasks by the rule in the package doc. Unplaceable
// tasks get a reason naming what stood in the way. It returns an error only
// for a request that fails scheduler.ValidateRequest or when ctx ends.
func (s *Scheduler) Schedule(ctx context.Context, req scheduler.Request) ([]scheduler.Placement, error) {
	if err := scheduler.ValidateRequest(req); err != nil {
		return nil, err
	}
	return s.plan(ctx, req)
}
