package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newServicePromoteCmd(g *globalOptions) *cobra.Command {
	return newServiceChangeCmd(g, &cobra.Command{
		Use:   "promote NAME|ID",
		Short: "Roll the rest of a canary update",
		Long: `Promote the canaries of a service's update (--update-canary): the update
leaves its canary state and the rest of the tasks are replaced under the
update policy, the canaries counting as updated slots; then wait until it
converges, as "service update" does. A service with no canary waiting for a
promote is an error and changes nothing.`,
		Example: `  warren service promote web`,
	}, "promoted", func(ctx context.Context, c *agentClient, name string) (*apiv1.Service, error) {
		resp, err := c.PromoteService(ctx, &apiv1.PromoteServiceRequest{NameOrId: name})
		return resp.GetService(), err
	})
}

// serviceChangeOptions are the flags of a command that changes one service
// with one call and waits for it to converge (rollback, promote).
type serviceChangeOptions struct {
	g    *globalOptions
	wait convergeOptions
}

// newServiceChangeCmd completes cmd (use and help set) as a command on one
// service NAME or ID: change makes the change, then the command prints the
// service's name and waits, as "service update" does (verb says what was
// done, for its messages).
func newServiceChangeCmd(g *globalOptions, cmd *cobra.Command, verb string, change func(ctx context.Context, c *agentClient, name string) (*apiv1.Service, error)) *cobra.Command {
	o := &serviceChangeOptions{g: g}
	cmd.Args = exactArgs(1, "one service NAME or ID")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		c, w, done, err := o.wait.connect(ctx, o.g)
		if err != nil {
			return err
		}
		defer done()
		svc, err := change(ctx, c, args[0])
		if err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), svc.GetSpec().GetName())
		return o.wait.wait(cmd, c, w, svc, verb)
	}
	o.wait.addFlags(cmd.Flags())
	return cmd
}
