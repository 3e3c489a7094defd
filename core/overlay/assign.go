package overlay

import (
	"net/netip"
	"slices"
	"strings"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk/network"
)

// Assignment is one node subnet the leader should commit.
type Assignment struct {
	NodeID string
	Subnet netip.Prefix
}

// Assign decides which worker nodes get a subnet: every node that runs a
// worker and has no subnet gets the lowest free one of plan p, in node ID
// order. Taken are the subnets of every node (manager-only ones included)
// and the subnets of the addresses of non-terminal tasks whose node is gone,
// so a removed node's subnet is reused only once its tasks are gone. It
// returns the assignments made before the plan ran out, and the error of
// the first node that found it full.
func Assign(p network.Plan, nodes []*apiv1.Node, tasks []*apiv1.Task) ([]Assignment, error) {
	present := make(map[string]bool, len(nodes))
	var taken []netip.Prefix
	var want []*apiv1.Node
	for _, n := range nodes {
		present[n.GetId()] = true
		if pf, err := netip.ParsePrefix(n.GetNetwork().GetSubnet()); err == nil {
			taken = append(taken, pf)
		} else if n.GetWorker() {
			want = append(want, n)
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	for _, t := range tasks {
		if present[t.GetNodeId()] || state.Terminal(t.GetState()) {
			continue
		}
		if pf, err := netip.ParsePrefix(t.GetAddress()); err == nil {
			sub, err := pf.Addr().Prefix(p.NodePrefix)
			if err == nil {
				taken = append(taken, sub)
			}
		}
	}
	slices.SortFunc(want, func(a, b *apiv1.Node) int { return strings.Compare(a.GetId(), b.GetId()) })
	var out []Assignment
	for _, n := range want {
		sub, err := Allocate(p, taken)
		if err != nil {
			return out, err
		}
		out = append(out, Assignment{NodeID: n.GetId(), Subnet: sub})
		taken = append(taken, sub)
	}
	return out, nil
}

// PlanOf parses the cluster's stored overlay plan.
func PlanOf(n *apiv1.ClusterNetwork) (network.Plan, error) {
	return network.ParsePlan(n.GetOverlayRange(), int(n.GetNodePrefix()))
}
