package main

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

type servicePsOptions struct {
	g       *globalOptions
	all     bool
	noTrunc bool
}

func newServicePsCmd(g *globalOptions) *cobra.Command {
	o := &servicePsOptions{g: g}
	cmd := &cobra.Command{
		Use:   "ps NAME|ID",
		Short: "List the tasks of a service",
		Long: `List the tasks of a service, by slot, as "docker service ps" does: the same
tasks as "warren task ls --service NAME", in another layout.

NAME is SERVICE.SLOT; with --all, the finished tasks kept as history follow
the current task of their slot, marked "\_ ". CURRENT STATE says since when a
task is where it is ("Running 5 seconds ago"); ERROR is why it failed, why it
is still pending, or, for a replacement that has not started yet, why the attempt
before it ended ("attempt 4, after rejected: ..."), cut to 60 characters (and IDs
to 12) unless --no-trunc.`,
		Example: `  warren service ps web
  warren service ps web --all
  warren service ps web --no-trunc`,
		Args: exactArgs(1, "one service NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "include finished tasks kept as history")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "show whole IDs, images and errors")
	return cmd
}

func (o *servicePsOptions) run(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	// Looked up first, so that a wrong name is an error, not an empty list.
	svc, err := c.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: name})
	if err != nil {
		return err
	}
	json := o.g.outputOr(outputTable) == outputJSON
	tasks, names, err := c.listTasksNamed(ctx, &apiv1.ListTasksRequest{Service: svc.GetService().GetId(), All: o.all, View: listView(json)})
	if err != nil {
		return err
	}
	sortTasks(tasks)
	if json {
		return writeJSONList(cmd.OutOrStdout(), tasks)
	}
	return writeTable(cmd.OutOrStdout(), servicePsHeader, servicePsRows(tasks, names, time.Now(), o.noTrunc))
}

var servicePsHeader = []string{"ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"}

// servicePsRows are the rows of `service ps` for tasks sorted by sortTasks;
// nodeNames maps node IDs to names. A task that follows another of the
// same slot is history, marked `\_ `.
func servicePsRows(tasks []*apiv1.Task, nodeNames map[string]string, now time.Time, noTrunc bool) [][]string {
	rows := make([][]string, 0, len(tasks))
	var prev *apiv1.Task
	for _, t := range tasks {
		name := taskName(t)
		if prev != nil && prev.GetServiceId() == t.GetServiceId() && prev.GetServiceName() == t.GetServiceName() && prev.GetSlot() == t.GetSlot() {
			name = `\_ ` + name
		}
		prev = t
		id, image, problem := t.GetId(), t.GetImage(), taskProblem(t)
		if !noTrunc {
			id = shortID(id)
			image, _, _ = strings.Cut(image, "@") // the digest, docker leaves out too
			problem = truncate(problem, errorWidth)
		}
		since := t.GetUpdatedAt()
		if since == nil {
			since = t.GetCreatedAt()
		}
		current := capitalize(enumText(t.GetState(), "-"))
		if since != nil {
			current += " " + ago(since, now)
		}
		current = withHealth(current, t)
		rows = append(rows, []string{
			id,
			name,
			image,
			taskNode(t, nodeNames, noTrunc),
			capitalize(enumText(t.GetDesiredState(), "-")),
			current,
			problem,
		})
	}
	return rows
}

// capitalize upper-cases the first letter of s: "running" is "Running".
func capitalize(s string) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(unicode.ToUpper(r)) + s[n:]
}
