package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newNodeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Show the cluster's nodes",
		Long:  `Show the machines in the cluster: managers, which hold the cluster state, and workers, which run tasks.`,
		Example: `  warren node ls
  warren node inspect edge-1`,
	}
	makeGroup(cmd)
	cmd.AddCommand(newNodeListCmd(g), newNodeInspectCmd(g))
	return cmd
}

type nodeListOptions struct {
	g *globalOptions
}

func newNodeListCmd(g *globalOptions) *cobra.Command {
	o := &nodeListOptions{g: g}
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List nodes",
		Long: `List the nodes, sorted by name. ROLE is manager, worker, or manager+worker for
a manager that also runs tasks. STATUS is ready, down or unknown; AVAILABILITY
is active, pause (no new tasks) or drain (tasks moved away).`,
		Example: `  warren node ls
  warren node ls -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
}

func (o *nodeListOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	resp, err := c.ListNodes(ctx, &apiv1.ListNodesRequest{})
	if err != nil {
		return err
	}
	nodes := resp.GetNodes()
	slices.SortFunc(nodes, func(a, b *apiv1.Node) int { return strings.Compare(a.GetName(), b.GetName()) })
	if o.g.outputOr(outputTable) == outputJSON {
		return writeJSONList(cmd.OutOrStdout(), nodes)
	}
	return writeTable(cmd.OutOrStdout(), nodeListHeader, nodeRows(nodes))
}

var nodeListHeader = []string{"ID", "NAME", "ROLE", "STATUS", "AVAILABILITY", "ADDR"}

func nodeRows(nodes []*apiv1.Node) [][]string {
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, []string{
			shortID(n.GetId()),
			n.GetName(),
			nodeRole(n),
			enumText(n.GetStatus(), "unknown"),
			enumText(n.GetAvailability(), "active"),
			n.GetAddr(),
		})
	}
	return rows
}

// nodeRole is "manager", "worker" or "manager+worker".
func nodeRole(n *apiv1.Node) string {
	role := enumText(n.GetRole(), "")
	if role == "manager" && n.GetWorker() {
		return "manager+worker"
	}
	return role
}

type nodeInspectOptions struct {
	g *globalOptions
}

func newNodeInspectCmd(g *globalOptions) *cobra.Command {
	o := &nodeInspectOptions{g: g}
	return &cobra.Command{
		Use:   "inspect NAME|ID",
		Short: "Show a node in detail",
		Long: `Show a node in detail: JSON by default (an array, as docker does), or a
readable summary with -o table.`,
		Example: `  warren node inspect edge-1
  warren node inspect edge-1 -o table`,
		Args: exactArgs(1, "one node NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
}

func (o *nodeInspectOptions) run(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	resp, err := c.GetNode(ctx, &apiv1.GetNodeRequest{NameOrId: name})
	if err != nil {
		return err
	}
	if o.g.outputOr(outputJSON) == outputJSON {
		return writeJSONList(cmd.OutOrStdout(), []*apiv1.Node{resp.GetNode()})
	}
	return writeFields(cmd.OutOrStdout(), nodeFields(resp.GetNode()))
}

// nodeFields is a node as `node inspect -o table` shows it.
func nodeFields(n *apiv1.Node) [][2]string {
	return [][2]string{
		{"ID", n.GetId()},
		{"Name", n.GetName()},
		{"Role", nodeRole(n)},
		{"Status", enumText(n.GetStatus(), "unknown")},
		{"Message", n.GetMessage()},
		{"Availability", enumText(n.GetAvailability(), "active")},
		{"Address", n.GetAddr()},
		{"Labels", pairs(n.GetLabels())},
		{"Resources", resourcesText(n.GetResources())},
		{"Platform", strings.Trim(n.GetOs()+"/"+n.GetArch(), "/")},
		{"Agent", n.GetAgentVersion()},
		{"Runtime", n.GetRuntimeVersion()},
		{"Version", fmt.Sprint(n.GetVersion())},
		{"Created", timeText(n.GetCreatedAt())},
		{"Updated", timeText(n.GetUpdatedAt())},
	}
}
