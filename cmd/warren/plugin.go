package main

import (
	"cmp"
	"slices"
	"strconv"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newPluginCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "plugin",
		Short:   "Show the local agent's plugins",
		Long:    `Show the plugins the local agent runs (store, scheduler, runtime, network...).`,
		Example: `  warren plugin ls`,
	}
	makeGroup(cmd)
	cmd.AddCommand(newPluginListCmd(g))
	return cmd
}

type pluginListOptions struct {
	g    *globalOptions
	node string
}

func newPluginListCmd(g *globalOptions) *cobra.Command {
	o := &pluginListOptions{g: g}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the plugins of the agent and of every worker",
		Long: `List plugins by kind and name: the version each reported, its process ID,
its state, how many times it was restarted after a crash, and the binary it
runs. On a manager the list holds the manager's plugins and every worker's
(a NODE column then says whose; a worker that does not answer is one row in
state "unreachable" saying why); --node lists one node's. On a worker-only
node, its own. -o json includes each plugin's last error.`,
		Example: `  warren plugin ls
  warren plugin ls --node edge-2
  warren plugin ls -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	cmd.Flags().StringVar(&o.node, "node", "", "list the plugins of this `NODE` (name or ID) only")
	return cmd
}

func (o *pluginListOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	resp, err := c.ListPlugins(ctx, &apiv1.ListPluginsRequest{Node: o.node})
	if err != nil {
		return err
	}
	plugins := resp.GetPlugins()
	slices.SortFunc(plugins, func(a, b *apiv1.PluginStatus) int {
		return cmp.Or(cmp.Compare(a.GetNode(), b.GetNode()), cmp.Compare(a.GetKind(), b.GetKind()), cmp.Compare(a.GetName(), b.GetName()))
	})
	if o.g.outputOr(outputTable) == outputJSON {
		return writeJSONList(cmd.OutOrStdout(), plugins)
	}
	rows := pluginRows(plugins)
	header := pluginListHeader
	if manyNodes(plugins) {
		header = append([]string{"NODE"}, header...)
		for i, p := range plugins {
			rows[i] = append([]string{p.GetNode()}, rows[i]...)
		}
	}
	return writeTable(cmd.OutOrStdout(), header, rows)
}

// manyNodes reports whether plugins come from more than one node.
func manyNodes(plugins []*apiv1.PluginStatus) bool {
	for _, p := range plugins {
		if p.GetNode() != plugins[0].GetNode() {
			return true
		}
	}
	return false
}

var pluginListHeader = []string{"NAME", "KIND", "VERSION", "PID", "STATE", "RESTARTS", "PATH", "LAST ERROR"}

func pluginRows(plugins []*apiv1.PluginStatus) [][]string {
	rows := make([][]string, 0, len(plugins))
	for _, p := range plugins {
		pid := "-"
		if p.GetPid() > 0 {
			pid = strconv.FormatInt(p.GetPid(), 10)
		}
		rows = append(rows, []string{
			p.GetName(), p.GetKind(), p.GetVersion(), pid, p.GetState(),
			strconv.FormatUint(uint64(p.GetRestarts()), 10), p.GetPath(), p.GetLastError(),
		})
	}
	return rows
}
