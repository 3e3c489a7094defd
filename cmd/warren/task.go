package main

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// errorWidth is how much of a task's error `task ls` shows.
const errorWidth = 60

type taskListOptions struct {
	g       *globalOptions
	service string
	node    string
	all     bool
}

func newTaskCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Show tasks, the running replicas of services",
		Long:  `Show tasks: each task is one replica (slot) of a service placed on a node.`,
		Example: `  warren task ls --service web
  warren task logs 3f2a9c1b7d4e`,
	}
	makeGroup(cmd)
	cmd.AddCommand(newTaskListCmd(g), newTaskInspectCmd(g), newTaskLogsCmd(g), newTaskExecCmd(g))
	return cmd
}

func newTaskListCmd(g *globalOptions) *cobra.Command {
	o := &taskListOptions{g: g}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list", "ps"},
		Short:   "List tasks",
		Long: `List tasks, by service and slot (newest first within a slot). Finished tasks
kept as history are shown with --all.

SERVICE.SLOT names the replica; DESIRED is what the cluster wants (running or
shutdown), STATE where the task is; AGE counts from its creation. ERROR is why
it failed, or why it is still pending.`,
		Example: `  warren task ls
  warren task ls --service web --all
  warren task ls --node edge-1`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.service, "service", "", "only the tasks of this `service` (name or ID)")
	f.StringVar(&o.node, "node", "", "only the tasks on this `node` (name or ID)")
	f.BoolVarP(&o.all, "all", "a", false, "include finished tasks kept as history")
	return cmd
}

func (o *taskListOptions) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	json := o.g.outputOr(outputTable) == outputJSON
	tasks, names, err := c.listTasksNamed(ctx, &apiv1.ListTasksRequest{Service: o.service, Node: o.node, All: o.all, View: listView(json)})
	if err != nil {
		return err
	}
	sortTasks(tasks)
	if json {
		return writeJSONList(cmd.OutOrStdout(), tasks)
	}
	return writeTable(cmd.OutOrStdout(), taskListHeader, taskRows(tasks, names, time.Now()))
}

// nodeNames maps the IDs of the cluster's nodes to their names, for the
// tables that show where tasks run.
func nodeNames(ctx context.Context, c *agentClient) (map[string]string, error) {
	nodes, err := c.listNodes(ctx)
	if err != nil {
		return nil, err
	}
	names := map[string]string{}
	for _, n := range nodes {
		names[n.GetId()] = n.GetName()
	}
	return names, nil
}

// sortTasks orders tasks by service name, slot, then newest first.
func sortTasks(tasks []*apiv1.Task) {
	slices.SortStableFunc(tasks, func(a, b *apiv1.Task) int {
		return cmp.Or(
			cmp.Compare(a.GetServiceName(), b.GetServiceName()),
			cmp.Compare(a.GetSlot(), b.GetSlot()),
			b.GetCreatedAt().AsTime().Compare(a.GetCreatedAt().AsTime()),
			cmp.Compare(a.GetId(), b.GetId()),
		)
	})
}

var taskListHeader = []string{"ID", "SERVICE.SLOT", "NODE", "DESIRED", "STATE", "AGE", "ERROR"}

// taskRows are the rows of `task ls`; nodeNames maps node IDs to names.
func taskRows(tasks []*apiv1.Task, nodeNames map[string]string, now time.Time) [][]string {
	rows := make([][]string, 0, len(tasks))
	for _, t := range tasks {
		rows = append(rows, []string{
			shortID(t.GetId()),
			taskName(t),
			taskNode(t, nodeNames, false),
			enumText(t.GetDesiredState(), "-"),
			withHealth(enumText(t.GetState(), "-"), t),
			age(t.GetCreatedAt(), now),
			truncate(taskProblem(t), errorWidth),
		})
	}
	return rows
}

// taskName is SERVICE.SLOT, e.g. web.2 (the service's short ID when the
// task does not carry its name).
func taskName(t *apiv1.Task) string {
	service := t.GetServiceName()
	if service == "" {
		service = shortID(t.GetServiceId())
	}
	return fmt.Sprintf("%s.%d", service, t.GetSlot())
}

// taskNode is the name of the node t is on, or its (short) ID when the node
// is not known; empty when t is not placed.
func taskNode(t *apiv1.Task, nodeNames map[string]string, fullID bool) string {
	if name := nodeNames[t.GetNodeId()]; name != "" {
		return name
	}
	if fullID {
		return t.GetNodeId()
	}
	return shortID(t.GetNodeId())
}

// taskProblem is why t failed, or why it is still pending.
func taskProblem(t *apiv1.Task) string {
	msg, previous := slotProblem(t)
	if previous {
		// Not running yet: say why the slot's last attempt ended.
		msg = fmt.Sprintf("attempt %d, after %s", t.GetAttempt(), msg)
	}
	return msg
}

// slotProblem is what keeps t from running: its error, why it is pending,
// or (previous true) why the attempt before it in its slot ended, while t
// has not started.
func slotProblem(t *apiv1.Task) (msg string, previous bool) {
	msg = t.GetError()
	if msg == "" && (t.GetState() == apiv1.TaskState_TASK_STATE_PENDING || (!started(t) && strings.HasPrefix(t.GetMessage(), waitingPrefix))) {
		msg = t.GetMessage()
	}
	if msg == "" && !started(t) && t.GetPreviousError() != "" {
		return t.GetPreviousError(), true
	}
	return msg, false
}

// waitingPrefix starts the message a worker gives a task that waits for
// something it retries (its runtime plugin restarting).
const waitingPrefix = "waiting for "

// started reports whether t has got as far as running (or beyond).
func started(t *apiv1.Task) bool {
	return t.GetState() >= apiv1.TaskState_TASK_STATE_RUNNING
}

// newNodePsCmd is `node ps [NODE]`: `task ls --node NODE`, the local
// agent's node when none is named.
func newNodePsCmd(g *globalOptions) *cobra.Command {
	o := &taskListOptions{g: g}
	cmd := &cobra.Command{
		Use:   "ps [NODE]",
		Short: "List the tasks on a node",
		Long: `List the tasks placed on a node (name or ID; default: the node of the agent
the CLI talks to), with the columns of "task ls". Finished tasks kept as
history are shown with --all.`,
		Example: `  warren node ps
  warren node ps edge-1 --all`,
		Args: maxArgs(1, "at most one NODE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.node = args[0]
			} else {
				c, err := g.dial(cmd.Context())
				if err != nil {
					return err
				}
				info, err := c.ClusterInfo(cmd.Context(), &apiv1.ClusterInfoRequest{})
				c.Close()
				if err != nil {
					return err
				}
				o.node = info.GetNodeId()
			}
			if _, err := o.lookupNode(cmd); err != nil {
				return err
			}
			return o.run(cmd)
		},
	}
	cmd.Flags().BoolVarP(&o.all, "all", "a", false, "include finished tasks kept as history")
	return cmd
}

// lookupNode checks that o.node names a node, so that a typo is an error
// rather than an empty list.
func (o *taskListOptions) lookupNode(cmd *cobra.Command) (*apiv1.Node, error) {
	c, err := o.g.dial(cmd.Context())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	resp, err := c.GetNode(cmd.Context(), &apiv1.GetNodeRequest{NameOrId: o.node})
	if err != nil {
		return nil, err
	}
	return resp.GetNode(), nil
}

// withHealth adds a running task's health to its state: "running
// (healthy)", as docker ps does.
func withHealth(state string, t *apiv1.Task) string {
	if h := healthName(t.GetHealth()); h != "" && t.GetState() == apiv1.TaskState_TASK_STATE_RUNNING {
		return state + " (" + h + ")"
	}
	return state
}
