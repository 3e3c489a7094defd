package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newNodeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Show and manage the cluster's nodes",
		Long: `Show the machines in the cluster: managers, which hold the cluster state, and
workers, which run tasks; drain or pause them, label them, remove them.`,
		Example: `  warren node ls
  warren node inspect edge-1
  warren node update --availability drain edge-1
  warren node label add edge-1 zone=edge-1 disk=ssd
  warren node rm edge-7`,
	}
	makeGroup(cmd)
	cmd.AddCommand(newNodeListCmd(g), newNodePsCmd(g), newNodeInspectCmd(g), newNodeUpdateCmd(g), newNodeLabelCmd(g), newNodeRemoveCmd(g), newNodePromoteCmd(g), newNodeDemoteCmd(g))
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
a manager that also runs tasks. STATUS is ready, down or unknown, followed by
the types of the node's conditions in parentheses when it has a problem, as
in "ready (assignment)": node inspect says what. AVAILABILITY is active,
pause (no new tasks) or drain (tasks moved away).`,
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

	nodes, err := c.listNodes(ctx)
	if err != nil {
		return err
	}
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
			nodeStatusText(n),
			enumText(n.GetAvailability(), "active"),
			n.GetAddr(),
		})
	}
	return rows
}

// nodeStatusText is the node's status, with the types of its conditions
// in parentheses: "ready (assignment, runtime)".
func nodeStatusText(n *apiv1.Node) string {
	st := enumText(n.GetStatus(), "unknown")
	if len(n.GetConditions()) == 0 {
		return st
	}
	types := make([]string, 0, len(n.GetConditions()))
	for _, c := range n.GetConditions() {
		types = append(types, c.GetType())
	}
	return st + " (" + strings.Join(types, ", ") + ")"
}

// conditionsText is the node's conditions, one "type: message (since
// time)" each.
func conditionsText(n *apiv1.Node) string {
	var out []string
	for _, c := range n.GetConditions() {
		out = append(out, fmt.Sprintf("%s: %s (since %s)", c.GetType(), c.GetMessage(), timeText(c.GetSince())))
	}
	return strings.Join(out, "; ")
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
		{"Conditions", conditionsText(n)},
		{"Availability", enumText(n.GetAvailability(), "active")},
		{"Address", n.GetAddr()},
		{"Labels", pairs(n.GetLabels())},
		{"Agent labels", pairs(n.GetAgentLabels())},
		{"Resources", resourcesText(n.GetResources())},
		{"Platform", strings.Trim(n.GetOs()+"/"+n.GetArch(), "/")},
		{"Agent", n.GetAgentVersion()},
		{"Runtime", n.GetRuntimeVersion()},
		{"Attributes", pairs(n.GetAttributes())},
		{"Version", fmt.Sprint(n.GetVersion())},
		{"Created", timeText(n.GetCreatedAt())},
		{"Updated", timeText(n.GetUpdatedAt())},
	}
}

// availabilities maps the words of --availability to the API's values.
var availabilities = map[string]apiv1.NodeAvailability{
	"active": apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
	"pause":  apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE,
	"drain":  apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN,
}

// nodeUpdateOptions are the flags of `warren node update`.
type nodeUpdateOptions struct {
	g *globalOptions

	availability string
	labelAdd     []string
	labelRm      []string
}

// nodeUpdateFlags are the flags that change something; at least one is needed.
var nodeUpdateFlags = []string{"availability", "label-add", "label-rm"}

func newNodeUpdateCmd(g *globalOptions) *cobra.Command {
	o := &nodeUpdateOptions{g: g}
	cmd := &cobra.Command{
		Use:   "update NAME|ID --availability active|pause|drain [--label-add KEY=VALUE...] [--label-rm KEY...]",
		Short: "Change a node's availability or labels",
		Long: `Change what the cluster does with a node:

  active  the node takes new tasks (the default)
  pause   the node keeps its tasks but takes no new ones
  drain   the node's tasks move to other nodes: each one keeps running until
          its replacement runs elsewhere, so the service never goes down;
          a task whose replacement cannot be placed anywhere stays (its
          message in "warren task ls -o json" says why)

Setting a node active again moves nothing back: new tasks go to it as they
come. --label-add and --label-rm change the node's labels as "warren node
label" does. The node's name is printed; with -o json or -o table, the node
as it is after the change.`,
		Example: `  warren node update edge-1 --availability drain
  warren node update edge-1 --availability active
  warren node update edge-1 --label-add zone=edge-1 --label-rm old`,
		Args: exactArgs(1, "one node NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := o.request(cmd.Flags(), args[0])
			if err != nil {
				return err
			}
			return updateNode(cmd, o.g, req)
		},
	}
	f := cmd.Flags()
	f.Var(&choiceValue{p: &o.availability, choices: []string{"active", "pause", "drain"}}, "availability", "active, pause (no new tasks) or drain (move its tasks to other nodes)")
	f.StringArrayVar(&o.labelAdd, "label-add", nil, "add or change a label `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&o.labelRm, "label-rm", nil, "remove the label `KEY` (repeatable)")
	return cmd
}

// request checks the flags in f (parsed into o) and returns the request.
func (o *nodeUpdateOptions) request(f *pflag.FlagSet, node string) (*apiv1.UpdateNodeRequest, error) {
	if !slices.ContainsFunc(nodeUpdateFlags, f.Changed) {
		return nil, usageErrorf("nothing to update: give at least one of --%s", joinFlags(nodeUpdateFlags))
	}
	req := &apiv1.UpdateNodeRequest{Node: node}
	if f.Changed("availability") {
		a := availabilities[o.availability]
		req.Availability = &a
	}
	var err error
	if req.LabelsAdd, err = parseKV("--label-add", o.labelAdd); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if req.LabelsRm, err = labelKeys("--label-rm", o.labelRm); err != nil {
		return nil, err
	}
	return req, nil
}

// labelKeys checks label keys given to what (a flag or "label key"): not
// empty, and not KEY=VALUE by mistake.
func labelKeys(what string, keys []string) ([]string, error) {
	for _, k := range keys {
		switch {
		case k == "":
			return nil, usageErrorf("invalid %s: the KEY is empty", what)
		case strings.Contains(k, "="):
			return nil, usageErrorf("invalid %s %q: give the KEY alone, without =VALUE", what, k)
		}
	}
	return keys, nil
}

// updateNode sends req and prints the node: its name, or with -o the node
// as node inspect shows it.
func updateNode(cmd *cobra.Command, g *globalOptions, req *apiv1.UpdateNodeRequest) error {
	ctx := cmd.Context()
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.UpdateNode(ctx, req)
	if err != nil {
		return err
	}
	return printNodes(cmd, g, []*apiv1.Node{resp.GetNode()})
}

// printNodes prints the names of nodes a command changed, or with -o the
// nodes themselves: a JSON array, or each node's fields.
func printNodes(cmd *cobra.Command, g *globalOptions, nodes []*apiv1.Node) error {
	w := cmd.OutOrStdout()
	switch g.output {
	case outputJSON:
		return writeJSONList(w, nodes)
	case outputTable:
		for i, n := range nodes {
			if i > 0 {
				fmt.Fprintln(w)
			}
			if err := writeFields(w, nodeFields(n)); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range nodes {
		fmt.Fprintln(w, n.GetName())
	}
	return nil
}

func newNodeLabelCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "label",
		Short: "Add or remove node labels",
		Long: `Add or remove the labels of a node, which placement constraints such as
node.labels.zone==edge-1 test.

A node's labels are those of its agent configuration (worker { labels }) with
the labels set here laid over them: a label set here wins over the
configuration's value and survives agent restarts and re-registrations,
while a label of the configuration follows the configuration. "label rm"
removes a label set here (a configured value, if any, comes back); a label
that only the configuration sets cannot be removed here: change the
configuration. "warren node inspect" shows both sets.`,
		Example: `  warren node label add edge-1 zone=edge-1 disk=ssd
  warren node label rm edge-1 disk`,
	}
	makeGroup(cmd)
	cmd.AddCommand(newNodeLabelAddCmd(g), newNodeLabelRemoveCmd(g))
	return cmd
}

func newNodeLabelAddCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "add NAME|ID KEY=VALUE...",
		Short: "Add or change node labels",
		Long: `Add or change labels of a node. A key is 1-63 letters, digits and . _ / -,
starting and ending with a letter or digit; a value is at most 63 characters
and may be empty (zone=). The node's name is printed; with -o json or -o table,
the node as it is after the change.`,
		Example: `  warren node label add edge-1 zone=edge-1
  warren node label add edge-1 disk=ssd gpu=`,
		Args: minArgs(2, "a node NAME or ID and at least one KEY=VALUE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			labels, err := parseKV("label", args[1:])
			if err != nil {
				return &usageError{msg: err.Error()}
			}
			return updateNode(cmd, g, &apiv1.UpdateNodeRequest{Node: args[0], LabelsAdd: labels})
		},
	}
}

func newNodeLabelRemoveCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NAME|ID KEY...",
		Aliases: []string{"remove"},
		Short:   "Remove node labels",
		Long: `Remove labels set with "warren node label add" (a missing one is fine). A
label that also comes from the node's agent configuration goes back to the
configured value; one that only comes from the configuration is refused. The
node's name is printed; with -o json or -o table, the node as it is after the
change.`,
		Example: `  warren node label rm edge-1 disk
  warren node label rm edge-1 disk gpu`,
		Args: minArgs(2, "a node NAME or ID and at least one label KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := labelKeys("label key", args[1:])
			if err != nil {
				return err
			}
			return updateNode(cmd, g, &apiv1.UpdateNodeRequest{Node: args[0], LabelsRm: keys})
		},
	}
}

// nodeRemoveOptions are the flags of `warren node rm`.
type nodeRemoveOptions struct {
	g     *globalOptions
	force bool
}

func newNodeRemoveCmd(g *globalOptions) *cobra.Command {
	o := &nodeRemoveOptions{g: g}
	cmd := &cobra.Command{
		Use:     "rm NAME|ID...",
		Aliases: []string{"remove"},
		Short:   "Remove nodes from the cluster",
		Long: `Remove worker nodes from the cluster; their tasks are replaced on other nodes,
as when a node goes down. Each removed node's name is printed (with -o json,
the removed nodes); a node that cannot be removed is reported and the others
are still removed.

A node that is ready (its agent is connected) is refused unless --force: stop
its agent first. Removing a node revokes it: its certificate is honoured only
while the node is in the cluster state, so an agent still running there is
refused until it joins again with a token and a fresh data_dir. A manager is
always refused: demote it first (warren node demote NAME).`,
		Example: `  warren node rm edge-7
  warren node rm --force edge-7`,
		Args: minArgs(1, "at least one node NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	cmd.Flags().BoolVarP(&o.force, "force", "f", false, "remove a node even though it is ready")
	return cmd
}

func (o *nodeRemoveOptions) run(cmd *cobra.Command, names []string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	var errs []error
	var removed []*apiv1.Node
	for _, name := range names {
		resp, err := c.RemoveNode(ctx, &apiv1.RemoveNodeRequest{Node: name, Force: o.force})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, resp.GetNode())
	}
	if len(removed) > 0 || o.g.output == outputJSON {
		if err := printNodes(cmd, o.g, removed); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}
