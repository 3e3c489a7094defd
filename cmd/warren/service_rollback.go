package main

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newServiceRollbackCmd(g *globalOptions) *cobra.Command {
	return newServiceChangeCmd(g, &cobra.Command{
		Use:   "rollback NAME|ID",
		Short: "Return a service to its previous spec",
		Long: `Return a service to the spec it had before its last update that replaced
tasks, under its rollback policy (--rollback-* flags), and wait until it
converges, as "service update" does. It also resumes a paused update, by
undoing it, and ends an update waiting on its canaries (stopping them, the
old tasks untouched). A service that was never updated has nothing to return to: that
is an error and changes nothing.`,
		Example: `  warren service rollback web`,
	}, "rolled back", func(ctx context.Context, c *agentClient, name string) (*apiv1.Service, error) {
		resp, err := c.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: name, Rollback: true})
		return resp.GetService(), err
	})
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
