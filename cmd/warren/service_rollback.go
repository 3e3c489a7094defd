package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// serviceRollbackOptions are the flags of `warren service rollback`.
type serviceRollbackOptions struct {
	g    *globalOptions
	wait convergeOptions
}

func newServiceRollbackCmd(g *globalOptions) *cobra.Command {
	o := &serviceRollbackOptions{g: g}
	cmd := &cobra.Command{
		Use:   "rollback NAME|ID",
		Short: "Return a service to its previous spec",
		Long: `Return a service to the spec it had before its last update that replaced
tasks, under its rollback policy (--rollback-* flags), and wait until it
converges, as "service update" does. It also resumes a paused update, by
undoing it. A service that was never updated has nothing to return to: that
is an error and changes nothing.`,
		Example: `  warren service rollback web`,
		Args:    exactArgs(1, "one service NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.wait.addFlags(cmd.Flags())
	return cmd
}

func (o *serviceRollbackOptions) run(cmd *cobra.Command, name string) error {
	ctx := cmd.Context()
	c, w, done, err := o.wait.connect(ctx, o.g)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: name, Rollback: true})
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), resp.GetService().GetSpec().GetName())
	return o.wait.wait(cmd, c, w, resp.GetService(), "rolled back")
}

// updateStatusText is a service's update status for ls and inspect: ""
// before its first update.
func updateStatusText(st *apiv1.UpdateStatus) string {
	if st.GetState() == apiv1.UpdateStatus_STATE_UNSPECIFIED {
		return ""
	}
	s := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(st.GetState().String(), "STATE_")), "_", " ")
	if m := st.GetMessage(); m != "" {
		s += ": " + m
	}
	return s
}
