package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/leaderloop"
	"github.com/warrenorch/warren/core/overlay"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/state"
)

// Subnet allocator timings: node events wake it after subnetBatchWindow
// (nodes joining together are given their subnets in one round), and a
// round over every node runs each subnetResync as a safety net.
const (
	subnetBatchWindow = 20 * time.Millisecond
	subnetResync      = 30 * time.Second
)

// allocateSubnets, on the leader, gives every worker node without an
// overlay subnet one (overlay.Assign decides, fsm.UpdateNode commits). It
// is a leader loop (leaderloop.Run): a round on node events, on a slow
// resync, and a failed round retried with backoff. It returns nil when ctx
// ends, an error when the event broker closes.
func allocateSubnets(ctx context.Context, node *raftnode.Node, view *state.State, bus *events.Broker, logger hclog.Logger) error {
	nodes := bus.Notify(ctx, func(ev *apiv1.Event) bool { return ev.GetKind() == "node" }, 64)
	defer nodes.Wait()
	var lastFull string
	return leaderloop.Run(ctx, leaderloop.Loop{
		Name: "subnet allocator", Round: "subnet round", Logger: logger,
		BatchWindow: subnetBatchWindow, Resync: subnetResync,
		Wake: nodes.C, Ended: nodes.Ended, Full: nodes.Poke,
		Run: func(ctx context.Context) error {
			full, err := allocateOnce(ctx, node, view)
			if full == nil {
				lastFull = ""
			} else if msg := full.Error(); msg != lastFull {
				logger.Error("overlay range full: a worker node has no subnet until another node leaves", "error", full)
				lastFull = msg
			}
			return err
		},
	})
}

// allocateOnce gives a subnet to each worker node that has none and
// commits it. A failed commit is err (the loop retries the round with
// backoff); a range too small for every node is full, not a failure: the
// nodes that got a subnet keep it, and the next node event (one leaving)
// or resync tries again.
func allocateOnce(ctx context.Context, node *raftnode.Node, view *state.State) (full, err error) {
	plan, err := overlay.PlanOf(view.ClusterNetwork())
	if err != nil {
		return nil, err
	}
	nodes := view.Nodes()
	missing := false
	for _, n := range nodes {
		if n.GetWorker() && n.GetNetwork().GetSubnet() == "" {
			missing = true
			break
		}
	}
	if !missing {
		return nil, nil // the common case: no task scan
	}
	as, allocErr := overlay.Assign(plan, nodes, view.Tasks(state.TaskFilter{}))
	for _, a := range as {
		_, err := fsm.UpdateNode(ctx, node.Apply, view, a.NodeID, func(n *apiv1.Node) (bool, error) {
			if n.GetNetwork().GetSubnet() != "" {
				return false, nil
			}
			if n.Network == nil {
				n.Network = &apiv1.NodeNetwork{}
			}
			n.Network.Subnet = a.Subnet.String()
			return true, nil
		})
		if err != nil {
			return allocErr, fmt.Errorf("node %s: commit subnet %s: %w", a.NodeID, a.Subnet, err)
		}
	}
	return allocErr, nil
}
