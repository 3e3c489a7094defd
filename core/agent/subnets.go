package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/overlay"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/state"
)

// subnetResync is the safety-net period of allocateSubnets; node events
// wake it at once.
const subnetResync = 30 * time.Second

// allocateSubnets, on the leader, gives every worker node without an
// overlay subnet one (overlay.Assign decides, fsm.UpdateNode commits). It
// runs on node events and on a slow resync, and after a failed commit.
func allocateSubnets(ctx context.Context, node *raftnode.Node, view *state.State, bus *events.Broker, logger hclog.Logger) {
	wake, wait := bus.Notify(ctx, func(ev *apiv1.Event) bool { return ev.GetKind() == "node" }, 64)
	defer wait()
	t := time.NewTicker(subnetResync)
	defer t.Stop()
	var lastErr string
	for {
		if err := allocateOnce(ctx, node, view); err != nil && ctx.Err() == nil {
			if err.Error() != lastErr {
				logger.Error("allocate node subnets", "error", err)
			}
			lastErr = err.Error()
		} else {
			lastErr = ""
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-t.C:
		}
	}
}

func allocateOnce(ctx context.Context, node *raftnode.Node, view *state.State) error {
	plan, err := overlay.PlanOf(view.ClusterNetwork())
	if err != nil {
		return err
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
		return nil // the common case: no task scan
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
			return fmt.Errorf("node %s: commit subnet %s: %w", a.NodeID, a.Subnet, err)
		}
	}
	return allocErr
}
