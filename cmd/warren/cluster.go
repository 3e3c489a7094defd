package main

import (
	"strconv"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newClusterCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Show and administer the cluster",
		Long:  `Show the cluster, print join tokens, list the managers and issue admin certificates.`,
		Example: `  warren cluster info
  warren cluster join-token worker
  warren cluster members
  warren cluster admin-cert --out ~/.warren`,
	}
	makeGroup(cmd)
	cmd.AddCommand(newClusterInfoCmd(g), newJoinTokenCmd(g), newMembersCmd(g), newAdminCertCmd(g))
	return cmd
}

type clusterInfoOptions struct {
	g *globalOptions
}

func newClusterInfoCmd(g *globalOptions) *cobra.Command {
	o := &clusterInfoOptions{g: g}
	return &cobra.Command{
		Use:   "info",
		Short: "Show the cluster's identity, leader and size",
		Long: `Show the cluster as the local agent sees it: the cluster and this node, the
Raft leader and this node's Raft state, how far this node has applied the Raft
log, the agent's version and how many services, tasks and nodes there are.`,
		Example: `  warren cluster info
  warren cluster info -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
}

func (o *clusterInfoOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	info, err := c.ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
	if err != nil {
		return err
	}
	if o.g.outputOr(outputTable) == outputJSON {
		return writeJSON(cmd.OutOrStdout(), info)
	}
	return writeFields(cmd.OutOrStdout(), clusterFields(info))
}

// clusterFields is `cluster info` as text.
func clusterFields(info *apiv1.ClusterInfoResponse) [][2]string {
	node := info.GetNodeName()
	if info.GetNodeId() != "" {
		node += " (" + shortID(info.GetNodeId()) + ")"
	}
	leader := info.GetLeader()
	if info.GetIsLeader() {
		leader += " (this node)"
	}
	u := func(n uint64) string { return strconv.FormatUint(n, 10) }
	return [][2]string{
		{"Cluster ID", info.GetClusterId()},
		{"Node", node},
		{"Leader", leader},
		{"Raft state", info.GetRaftState()},
		{"Applied index", u(info.GetAppliedIndex())},
		{"Last index", u(info.GetLastIndex())},
		{"Agent version", info.GetVersion()},
		{"Services", u(uint64(info.GetServices()))},
		{"Tasks", u(uint64(info.GetTasks()))},
		{"Nodes", u(uint64(info.GetNodes()))},
	}
}
