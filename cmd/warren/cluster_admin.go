package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func parseRole(s string) (apiv1.NodeRole, error) {
	switch s {
	case "worker":
		return apiv1.NodeRole_NODE_ROLE_WORKER, nil
	case "manager":
		return apiv1.NodeRole_NODE_ROLE_MANAGER, nil
	}
	return 0, fmt.Errorf("role %q: must be worker or manager", s)
}

func newJoinTokenCmd(g *globalOptions) *cobra.Command {
	var rotate, quiet bool
	cmd := &cobra.Command{
		Use:   "join-token worker|manager",
		Short: "Print (or rotate) the token a node joins with",
		Long: `Print the join token of a role. A node joins with it in its configuration:

  join {
    addresses = ["<manager host:port>"]
    token     = "<token>"
  }

The token is WRN-1-<CA digest>-<secret>: the digest lets the joining node check
it talks to this cluster's CA, the secret admits it with the token's role.
--rotate replaces the secret first: the old token stops working at once (nodes
that already joined are not affected).`,
		Example: `  warren cluster join-token worker
  warren cluster join-token manager --rotate
  TOKEN=$(warren cluster join-token -q worker)`,
		Args: exactArgs(1, "a role: worker or manager"),
		RunE: func(cmd *cobra.Command, args []string) error {
			role, err := parseRole(args[0])
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Cluster.JoinToken(ctx, &apiv1.JoinTokenRequest{Role: role, Rotate: rotate})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if quiet || g.outputOr(outputTable) == outputJSON {
				if g.outputOr(outputTable) == outputJSON {
					return writeJSON(out, resp)
				}
				_, err = fmt.Fprintln(out, resp.GetToken())
				return err
			}
			if rotate {
				fmt.Fprintf(out, "The %s join token was rotated; the old one no longer works.\n", args[0])
			}
			_, err = fmt.Fprintf(out, "To add a %s to this cluster, give its agent this join block:\n\n  join {\n    addresses = [\"<this manager's advertise address>\"]\n    token     = %q\n  }\n", args[0], resp.GetToken())
			return err
		},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the token's secret first (the old token stops working)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the token only")
	return cmd
}

func newMembersCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the managers (Raft members), the leader and their health",
		Long: `List the Raft members: every manager, which is the leader, and whether the
leader hears from it. A cluster of N managers keeps working while a majority
(N/2+1) of them is reachable.`,
		Example: `  warren cluster members
  warren cluster members -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Cluster.Members(ctx, &apiv1.MembersRequest{})
			if err != nil {
				return err
			}
			if g.outputOr(outputTable) == outputJSON {
				return writeJSON(cmd.OutOrStdout(), resp)
			}
			now := time.Now()
			var rows [][]string
			for _, m := range resp.GetMembers() {
				leader, health := "", "reachable"
				if m.GetLeader() {
					leader = "leader"
				}
				if !m.GetReachable() {
					health = "unreachable"
					if m.GetLastContact() != nil {
						health += " (last contact " + ago(m.GetLastContact(), now) + ")"
					}
				}
				rows = append(rows, []string{shortID(m.GetNodeId()), m.GetName(), m.GetAddr(), m.GetSuffrage(), leader, health})
			}
			return writeTable(cmd.OutOrStdout(), []string{"ID", "NAME", "ADDRESS", "SUFFRAGE", "LEADER", "HEALTH"}, rows)
		},
	}
}

func newAdminCertCmd(g *globalOptions) *cobra.Command {
	var (
		out string
		ttl time.Duration
	)
	cmd := &cobra.Command{
		Use:   "admin-cert --out DIR",
		Short: "Issue a client certificate for using the CLI from another machine",
		Long: `Issue an admin client certificate signed by the cluster CA and write ca.pem,
cert.pem and key.pem (0600) into DIR. With them, the CLI reaches any manager's
cluster port over mutual TLS:

  warren --addr 10.0.0.1:7420 --cert-dir DIR service ls

Keep key.pem secret: it can do anything the local root user can.`,
		Example: `  warren cluster admin-cert --out ~/.warren
  warren cluster admin-cert --out ./ops --ttl 24h`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return fmt.Errorf("--out DIR is required")
			}
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.Cluster.IssueAdminCert(ctx, &apiv1.IssueAdminCertRequest{TtlSeconds: int64(ttl / time.Second)})
			if err != nil {
				return err
			}
			if err := os.MkdirAll(out, 0o700); err != nil {
				return err
			}
			for _, f := range []struct {
				name string
				data []byte
				mode os.FileMode
			}{{"ca.pem", resp.GetCaPem(), 0o644}, {"cert.pem", resp.GetCertPem(), 0o644}, {"key.pem", resp.GetKeyPem(), 0o600}} {
				if err := os.WriteFile(filepath.Join(out, f.name), f.data, f.mode); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Wrote ca.pem, cert.pem and key.pem to %s (valid until %s).\n", out, timeText(resp.GetNotAfter()))
			return err
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "`dir` to write the files into (created 0700)")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "certificate lifetime (default 720h, at most 8784h)")
	return cmd
}

func newNodePromoteCmd(g *globalOptions) *cobra.Command {
	return newNodeRoleCmd(g, "promote", "Make a worker node a manager",
		`Make a worker node a manager: it renews its certificate as a manager, starts
the manager's parts and enters the Raft configuration as a voter. Keep an odd
number of managers (1, 3, 5).`,
		func(ctx context.Context, c *agentClient, node string) (*apiv1.Node, error) {
			resp, err := c.Cluster.PromoteNode(ctx, &apiv1.PromoteNodeRequest{Node: node})
			return resp.GetNode(), err
		}, "manager")
}

func newNodeDemoteCmd(g *globalOptions) *cobra.Command {
	return newNodeRoleCmd(g, "demote", "Make a manager a worker",
		`Make a manager a worker: it leaves the Raft configuration and goes on as a
worker. Refused when the managers left could not keep a quorum, and for the
last manager.`,
		func(ctx context.Context, c *agentClient, node string) (*apiv1.Node, error) {
			resp, err := c.Cluster.DemoteNode(ctx, &apiv1.DemoteNodeRequest{Node: node})
			return resp.GetNode(), err
		}, "worker")
}

// newNodeRoleCmd is `warren node promote|demote`: change calls the API
// and the node's new role is printed.
func newNodeRoleCmd(g *globalOptions, verb, short, long string, change func(context.Context, *agentClient, string) (*apiv1.Node, error), role string) *cobra.Command {
	return &cobra.Command{
		Use:     verb + " NODE",
		Short:   short,
		Long:    long,
		Example: "  warren node " + verb + " edge-2",
		Args:    exactArgs(1, "a node name or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			n, err := change(ctx, c, args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "Node %s is now a %s.\n", n.GetName(), role)
			return err
		},
	}
}
