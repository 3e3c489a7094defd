package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
)

// taskInspectOptions are the flags of `warren task inspect`.
type taskInspectOptions struct {
	g *globalOptions
}

func newTaskInspectCmd(g *globalOptions) *cobra.Command {
	o := &taskInspectOptions{g: g}
	return &cobra.Command{
		Use:   "inspect ID...",
		Short: "Show tasks in detail",
		Long: `Show one or more tasks in detail, named by ID or a unique prefix of one: a
JSON array by default, or a readable summary with -o table that includes the
task's health and its last health check's output.`,
		Example: `  warren task inspect 3f2a9c1b7d4e
  warren task inspect 3f2a -o table`,
		Args: minArgs(1, "at least one task ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
}

func (o *taskInspectOptions) run(cmd *cobra.Command, ids []string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	all, err := c.listTasks(ctx, &apiv1.ListTasksRequest{All: true, View: apiv1.TaskView_TASK_VIEW_FULL})
	if err != nil {
		return err
	}
	var (
		tasks []*apiv1.Task
		errs  []error
	)
	for _, id := range ids {
		var found []*apiv1.Task
		for _, t := range all {
			if t.GetId() == id {
				found = []*apiv1.Task{t}
				break
			}
			if id != "" && strings.HasPrefix(t.GetId(), id) {
				found = append(found, t)
			}
		}
		switch len(found) {
		case 0:
			errs = append(errs, fmt.Errorf("task %q: %w", id, sdk.ErrNotFound))
		case 1:
			tasks = append(tasks, found[0])
		default:
			errs = append(errs, fmt.Errorf("task %q: the prefix matches %d tasks: %w", id, len(found), sdk.ErrInvalidArgument))
		}
	}
	return writeInspect(cmd.OutOrStdout(), o.g.outputOr(outputJSON) == outputJSON, tasks, taskFields, errs)
}

// taskFields is a task as `task inspect -o table` shows it.
func taskFields(t *apiv1.Task) [][2]string {
	f := [][2]string{
		{"ID", t.GetId()},
		{"Service", taskName(t)},
		{"Node", t.GetNodeId()},
		{"Desired state", enumText(t.GetDesiredState(), "-")},
		{"State", enumText(t.GetState(), "-")},
		{"Message", t.GetMessage()},
		{"Error", t.GetError()},
		{"Exit code", strconv.Itoa(int(t.GetExitCode()))},
		{"Address", t.GetAddress()},
		{"Image", t.GetSpec().GetImage()},
		{"Service version", strconv.FormatUint(t.GetServiceVersion(), 10)},
	}
	if hc := taskHealthText(t); hc != "" {
		f = append(f, [2]string{"Health check", hc},
			[2]string{"Health", healthName(t.GetHealth())},
			[2]string{"Health output", t.GetHealthOutput()})
	}
	return append(f, [2]string{"Created", timeText(t.GetCreatedAt())}, [2]string{"Updated", timeText(t.GetUpdatedAt())})
}
