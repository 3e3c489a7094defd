package main

import (
	"fmt"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// servicePromoteOptions are the flags of `warren service promote`.
type servicePromoteOptions struct {
	g    *globalOptions
	wait convergeOptions
}

func newServicePromoteCmd(g *globalOptions) *cobra.Command {
	o := &servicePromoteOptions{g: g}
	cmd := &cobra.Command{
		Use:   "promote NAME|ID",
		Short: "Roll the rest of a canary update",
		Long: `Promote the canaries of a service's update (--update-canary): the update
leaves its canary state and the rest of the tasks are replaced under the
update policy, the canaries counting as updated slots; then wait until it
converges, as "service update" does. A service with no canary waiting for a
promote is an error and changes nothing.`,
		Example: `  warren service promote web`,
		Args:    exactArgs(1, "one service NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.wait.addFlags(cmd.Flags())
	return cmd
}

func (o *servicePromoteOptions) run(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, w, done, err := o.wait.connect(ctx, o.g)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.PromoteService(ctx, &apiv1.PromoteServiceRequest{NameOrId: name})
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), resp.GetService().GetSpec().GetName())
	return o.wait.wait(cmd, c, w, resp.GetService(), "promoted")
}
