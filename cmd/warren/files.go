package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// maxFileDataBytes is the API's bound on a secret's or config's data
// (api.MaxDataBytes); the CLI reads one byte more so the agent refuses an
// oversized input with its own message.
const maxFileDataBytes = 500 << 10

// fileMeta is what `secret ls` and `config ls` show of one object.
type fileMeta struct {
	id, name         string
	revision, size   uint64
	created, updated *timestamppb.Timestamp
	msg              proto.Message
}

// fileKindOps are the API calls of one kind of file object (secret or
// config); the secret and config commands share everything else.
type fileKindOps struct {
	kind    string
	create  func(ctx context.Context, c *agentClient, name string, data []byte, labels map[string]string) (fileMeta, error)
	update  func(ctx context.Context, c *agentClient, name string, data []byte) (fileMeta, error)
	get     func(ctx context.Context, c *agentClient, name string) (fileMeta, error)
	list    func(ctx context.Context, c *agentClient) ([]fileMeta, error)
	remove  func(ctx context.Context, c *agentClient, name string) error
	longDoc string
}

func secretMetaOf(s *apiv1.Secret) fileMeta {
	return fileMeta{id: s.GetId(), name: s.GetName(), revision: s.GetRevision(), size: s.GetSize(), created: s.GetCreatedAt(), updated: s.GetUpdatedAt(), msg: s}
}

func configMetaOf(c *apiv1.Config) fileMeta {
	return fileMeta{id: c.GetId(), name: c.GetName(), revision: c.GetRevision(), size: uint64(len(c.GetData())), created: c.GetCreatedAt(), updated: c.GetUpdatedAt(), msg: c}
}

var secretOps = fileKindOps{
	kind: "secret",
	longDoc: `Secrets are sensitive data (at most 500 KiB) given to a service's tasks as
files on a tmpfs, /run/secrets/NAME unless the service says otherwise
(service create --secret). They are stored sealed under the managers' key,
sent only to the nodes that run a task using them, and never shown again:
inspect and ls give metadata only. update makes a new revision and rolls the
tasks of every service using the secret; rm is refused while one does.`,
	create: func(ctx context.Context, c *agentClient, name string, data []byte, labels map[string]string) (fileMeta, error) {
		r, err := c.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: name, Data: data, Labels: labels})
		return secretMetaOf(r.GetSecret()), err
	},
	update: func(ctx context.Context, c *agentClient, name string, data []byte) (fileMeta, error) {
		r, err := c.UpdateSecret(ctx, &apiv1.UpdateSecretRequest{NameOrId: name, Data: data})
		return secretMetaOf(r.GetSecret()), err
	},
	get: func(ctx context.Context, c *agentClient, name string) (fileMeta, error) {
		r, err := c.GetSecret(ctx, &apiv1.GetSecretRequest{NameOrId: name})
		return secretMetaOf(r.GetSecret()), err
	},
	list: func(ctx context.Context, c *agentClient) ([]fileMeta, error) {
		r, err := c.ListSecrets(ctx, &apiv1.ListSecretsRequest{})
		var out []fileMeta
		for _, s := range r.GetSecrets() {
			out = append(out, secretMetaOf(s))
		}
		return out, err
	},
	remove: func(ctx context.Context, c *agentClient, name string) error {
		_, err := c.RemoveSecret(ctx, &apiv1.RemoveSecretRequest{NameOrId: name})
		return err
	},
}

var configOps = fileKindOps{
	kind: "config",
	longDoc: `Configs are configuration files (at most 500 KiB) given to a service's tasks
read-only at the path the service gives (service create --config). Unlike
secrets they are stored as they are and inspect shows their data. update
makes a new revision and rolls the tasks of every service using the config;
rm is refused while one does.`,
	create: func(ctx context.Context, c *agentClient, name string, data []byte, labels map[string]string) (fileMeta, error) {
		r, err := c.CreateConfig(ctx, &apiv1.CreateConfigRequest{Name: name, Data: data, Labels: labels})
		return configMetaOf(r.GetConfig()), err
	},
	update: func(ctx context.Context, c *agentClient, name string, data []byte) (fileMeta, error) {
		r, err := c.UpdateConfig(ctx, &apiv1.UpdateConfigRequest{NameOrId: name, Data: data})
		return configMetaOf(r.GetConfig()), err
	},
	get: func(ctx context.Context, c *agentClient, name string) (fileMeta, error) {
		r, err := c.GetConfig(ctx, &apiv1.GetConfigRequest{NameOrId: name})
		return configMetaOf(r.GetConfig()), err
	},
	list: func(ctx context.Context, c *agentClient) ([]fileMeta, error) {
		r, err := c.ListConfigs(ctx, &apiv1.ListConfigsRequest{})
		var out []fileMeta
		for _, s := range r.GetConfigs() {
			out = append(out, configMetaOf(s))
		}
		return out, err
	},
	remove: func(ctx context.Context, c *agentClient, name string) error {
		_, err := c.RemoveConfig(ctx, &apiv1.RemoveConfigRequest{NameOrId: name})
		return err
	},
}

// newFileKindCmd is `warren secret` or `warren config`.
func newFileKindCmd(g *globalOptions, ops fileKindOps) *cobra.Command {
	k := ops.kind
	cmd := &cobra.Command{
		Use:   k,
		Short: "Manage " + k + "s",
		Long:  ops.longDoc,
		Example: fmt.Sprintf(`  printf 's3cr3t' | warren %[1]s create db-password -
  warren %[1]s create nginx-conf ./nginx.conf
  warren %[1]s ls
  warren %[1]s update nginx-conf ./nginx.conf
  warren %[1]s rm nginx-conf`, k),
	}
	makeGroup(cmd)
	var labels []string
	create := &cobra.Command{
		Use:   "create NAME FILE|-",
		Short: "Create a " + k + " from a file or standard input",
		Args:  exactArgs(2, "a "+k+" NAME and a FILE (- for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			lm, err := parseKV("--label", labels)
			if err != nil {
				return &usageError{msg: err.Error()}
			}
			return withFileData(cmd, g, args[1], func(ctx context.Context, c *agentClient, data []byte) error {
				m, err := ops.create(ctx, c, args[0], data, lm)
				if err == nil {
					fmt.Fprintln(cmd.OutOrStdout(), m.id)
				}
				return err
			})
		},
	}
	create.Flags().StringArrayVarP(&labels, "label", "l", nil, k+" label `KEY=VALUE` (repeatable)")
	update := &cobra.Command{
		Use:   "update NAME|ID FILE|-",
		Short: "Give a " + k + " new contents (a new revision) and roll the services using it",
		Args:  exactArgs(2, "a "+k+" NAME or ID and a FILE (- for standard input)"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFileData(cmd, g, args[1], func(ctx context.Context, c *agentClient, data []byte) error {
				m, err := ops.update(ctx, c, args[0], data)
				if err == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "%s revision %d\n", m.id, m.revision)
				}
				return err
			})
		},
	}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List " + k + "s",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			items, err := ops.list(ctx, c)
			if err != nil {
				return err
			}
			if g.outputOr(outputTable) == outputJSON {
				msgs := make([]proto.Message, len(items))
				for i, m := range items {
					msgs[i] = m.msg
				}
				return writeJSONList(cmd.OutOrStdout(), msgs)
			}
			now := time.Now()
			rows := make([][]string, len(items))
			for i, m := range items {
				rows[i] = []string{shortID(m.id), m.name, strconv.FormatUint(m.revision, 10), strconv.FormatUint(m.size, 10), age(m.created, now), age(m.updated, now)}
			}
			return writeTable(cmd.OutOrStdout(), []string{"ID", "NAME", "REVISION", "SIZE", "CREATED", "UPDATED"}, rows)
		},
	}
	inspect := &cobra.Command{
		Use:   "inspect NAME|ID",
		Short: "Show a " + k,
		Args:  exactArgs(1, "one "+k+" NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			m, err := ops.get(ctx, c, args[0])
			if err != nil {
				return err
			}
			if g.outputOr(outputJSON) == outputJSON {
				return writeJSONList(cmd.OutOrStdout(), []proto.Message{m.msg})
			}
			return writeFields(cmd.OutOrStdout(), [][2]string{
				{"ID", m.id}, {"Name", m.name}, {"Revision", strconv.FormatUint(m.revision, 10)},
				{"Size", strconv.FormatUint(m.size, 10)}, {"Created", timeText(m.created)}, {"Updated", timeText(m.updated)},
			})
		},
	}
	rm := &cobra.Command{
		Use:     "rm NAME|ID...",
		Aliases: []string{"remove"},
		Short:   "Remove " + k + "s no service uses",
		Args:    minArgs(1, "a "+k+" NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.dial(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			for _, name := range args {
				if err := ops.remove(ctx, c, name); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), name)
			}
			return nil
		},
	}
	cmd.AddCommand(create, update, ls, inspect, rm)
	return cmd
}

// withFileData reads FILE (or standard input for "-") and calls fn with a
// client and the data.
func withFileData(cmd *cobra.Command, g *globalOptions, file string, fn func(context.Context, *agentClient, []byte) error) error {
	var r io.Reader
	if file == "-" {
		r = cmd.InOrStdin()
	} else {
		fh, err := os.Open(file)
		if err != nil {
			return err
		}
		defer fh.Close()
		r = fh
	}
	data, err := io.ReadAll(io.LimitReader(r, maxFileDataBytes+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	ctx := cmd.Context()
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(ctx, c, data)
}
