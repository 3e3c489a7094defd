package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newVolumeCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "volume",
		Short: "Manage named volumes",
		Long: `A named volume is a directory on one node (under the worker's volumes_dir,
<data_dir>/volumes by default) that keeps a service's data across task
replacements, agent restarts and service updates. It lives on the node given
to create, or on the node of the first task that mounts it; every task that
mounts it runs on that node only, and waits while the node is down. rm is
refused while a service mounts the volume, and leaves its directory on the
node.`,
		Example: `  warren volume create pgdata
  warren volume create pgdata --node edge-1
  warren service create db --image postgres:16 --mount type=volume,source=pgdata,target=/var/lib/postgresql/data
  warren volume ls
  warren volume rm pgdata`,
	}
	makeGroup(cmd)
	var node string
	var labels []string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a named volume",
		Args:  exactArgs(1, "a volume NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseKV("--label", labels)
			if err != nil {
				return &usageError{msg: err.Error()}
			}
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.CreateVolume(ctx, &apiv1.CreateVolumeRequest{Name: args[0], Node: node, Labels: lm})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), resp.GetVolume().GetId())
			return nil
		},
	}
	create.Flags().StringVar(&node, "node", "", "the `NODE` (name or ID) to put the volume on; default: the node of its first task")
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, "volume label `KEY=VALUE` (repeatable)")
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List volumes with their node, size and the services that use them",
		Long: `List volumes with their node, the disk space their directory uses there
(measured by the node as du counts it, at the time of the listing; "-" with
the reason when the node cannot say, e.g. while it is down) and the services
that mount them.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.ListVolumes(ctx, &apiv1.ListVolumesRequest{})
			if err != nil {
				return err
			}
			if g.outputOr(outputTable) == outputJSON {
				return writeJSONList(cmd.OutOrStdout(), resp.GetVolumes())
			}
			names, err := nodeNames(ctx, c)
			if err != nil {
				return err
			}
			rows := make([][]string, 0, len(resp.GetVolumes()))
			for _, v := range resp.GetVolumes() {
				rows = append(rows, []string{shortID(v.GetVolume().GetId()), v.GetVolume().GetName(), volumeNode(v.GetVolume(), names), volumeSize(v), strings.Join(v.GetUsers(), ",")})
			}
			return writeTable(cmd.OutOrStdout(), []string{"ID", "NAME", "NODE", "SIZE", "USERS"}, rows)
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect NAME|ID",
		Short: "Show a volume",
		Args:  exactArgs(1, "one volume NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			resp, err := c.GetVolume(ctx, &apiv1.GetVolumeRequest{NameOrId: args[0]})
			if err != nil {
				return err
			}
			if g.outputOr(outputJSON) == outputJSON {
				return writeJSONList(cmd.OutOrStdout(), []proto.Message{resp})
			}
			v := resp.GetVolume()
			names, err := nodeNames(ctx, c)
			if err != nil {
				return err
			}
			return writeFields(cmd.OutOrStdout(), [][2]string{
				{"ID", v.GetId()}, {"Name", v.GetName()}, {"Driver", v.GetDriver()},
				{"Node", volumeNode(v, names)}, {"Users", strings.Join(resp.GetUsers(), ", ")}, {"Created", timeText(v.GetCreatedAt())},
			})
		},
	}
	rm := &cobra.Command{
		Use:     "rm NAME|ID...",
		Aliases: []string{"remove"},
		Short:   "Remove volumes no service uses (their directories stay on the node)",
		Args:    minArgs(1, "a volume NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, name := range args {
				if _, err := c.RemoveVolume(ctx, &apiv1.RemoveVolumeRequest{NameOrId: name}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return nil
		},
	}
	cmd.AddCommand(create, ls, inspect, rm)
	return cmd
}

// volumeNode is the node column of a volume.
func volumeNode(v *apiv1.Volume, names map[string]string) string {
	switch id := v.GetNodeId(); {
	case id == "":
		return "(first use)"
	case names[id] != "":
		return names[id]
	default:
		return shortID(id)
	}
}

// volumeSize is the size column of a volume.
func volumeSize(v *apiv1.VolumeResponse) string {
	if e := v.GetSizeError(); e != "" {
		return "- (" + e + ")"
	}
	return humanSize(v.GetSizeBytes())
}
