package main

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// serviceUpdateOptions are the flags of `warren service update`.
type serviceUpdateOptions struct {
	g *globalOptions

	force    bool
	image    string
	replicas uint64
	maxConc  uint64
	envAdd   []string
	envRm    []string
	labelAdd []string
	labelRm  []string
	args     string
	command  string
	mode     string
	network  string
	pubAdd   []string
	pubRm    []string
	health   healthOptions
	update   policyOptions
	rollback policyOptions
	more     updateMoreOptions
	wait     convergeOptions
}

// updateFlags are the flags that change something; at least one is needed.
var updateFlags = slices.Concat([]string{"force", "image", "replicas", "max-concurrent", "env-add", "env-rm", "label-add", "label-rm", "args", "command", "network", "publish-add", "publish-rm"}, healthFlags,
	(&policyOptions{prefix: "update"}).flagNames(), (&policyOptions{prefix: "rollback"}).flagNames(), updateMoreFlags)

func newServiceUpdateCmd(g *globalOptions) *cobra.Command {
	o := &serviceUpdateOptions{g: g}
	cmd := &cobra.Command{
		Use:   "update NAME|ID [flags]",
		Short: "Change a service",
		Long: `Change a service: only what the flags say changes, the rest of its spec stays.

The update is sent with the version of the service it was made from, so a
change made by someone else in between is never overwritten: on such a
conflict the service is fetched again and the change retried once.

--args replaces the container's arguments and --command its command (the
image's entrypoint, as the COMMAND after "--" of create does); each is one
string split into words as a shell would (quotes group words, no
expansion). --args "" and --command "" return to the image's own.

Lists change with --X-add and --X-rm: --env-add/--env-rm,
--label-add/--label-rm, --constraint-add/--constraint-rm,
--publish-add/--publish-rm PUBLISHED[/PROTO], --mount-add/--mount-rm TARGET,
--secret-add/--secret-rm NAME and --config-add/--config-rm NAME. --force
replaces every task under the update policy even when nothing else changes
(as after a change of the image): a way to restart a service's tasks in a
rolling fashion, or to run a job again. An add
replaces the item of the same key; an --X-rm of something the service does
not have, and an add and a rm of the same key, are refused and nothing
changes. The mode (--mode) cannot change: remove the service and create it
again.

Then, as "service create" does, it waits until the service converges: every
slot runs a task of the new spec and the replaced tasks have stopped
(--detach returns at once, --quiet prints no progress, --timeout-converge
sets how long to wait).`,
		Example: `  warren service update web --image nginx:1.27.1
  warren service update web --env-add LOG_LEVEL=debug --env-rm OLD_FLAG
  warren service update web --label-add tier=front --replicas 4
  warren service update sleeper --args "sleep 7200"
  warren service update sleeper --command "sh -c" --args "'sleep 7200'"
  warren service update db --secret-add db-password --mount-add type=tmpfs,target=/cache --mount-rm /old
  warren service update web --publish-add 8443:443 --publish-rm 8080
  warren service update nightly-report --force`,
		Args: exactArgs(1, "one service NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *serviceUpdateOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.force, "force", false, "replace every task even when nothing else changes (a job runs again)")
	f.StringVar(&o.image, "image", "", "new image")
	f.Var(newUintValue(&o.replicas, 0), "replicas", "new number of tasks")
	f.Var(newUintValue(&o.maxConc, 0), "max-concurrent", "replicated-job: new most of its tasks that run at once (0: all; the job does not run again)")
	f.StringArrayVar(&o.envAdd, "env-add", nil, "add or change an environment variable `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&o.envRm, "env-rm", nil, "remove the environment variable `KEY` (repeatable)")
	f.StringArrayVar(&o.labelAdd, "label-add", nil, "add or change a label `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&o.labelRm, "label-rm", nil, "remove the label `KEY` (repeatable)")
	f.StringVar(&o.args, "args", "", "new container `arguments`, e.g. \"sleep 7200\" (\"\": the image's)")
	f.StringVar(&o.command, "command", "", "new container `command`, replacing the image's entrypoint, e.g. \"/bin/api serve\" (\"\": the image's)")
	f.StringVar(&o.mode, "mode", "", "refused: a service's mode is set when it is created")
	_ = f.MarkHidden("mode")
	f.Var(&choiceValue{p: &o.network, choices: []string{"overlay", "host", "none"}}, "network", networkFlagUsage)
	f.StringArrayVar(&o.pubAdd, "publish-add", nil, publishFlagUsage+"; replaces a published port of the same number and protocol")
	f.StringArrayVar(&o.pubRm, "publish-rm", nil, "stop publishing the port `PUBLISHED[/tcp|udp]` (repeatable)")
	o.health.addFlags(f)
	o.update.prefix, o.rollback.prefix = "update", "rollback"
	o.update.addFlags(f)
	o.rollback.addFlags(f)
	o.more.addFlags(f)
	o.wait.addFlags(f)
}

// serviceChanges is what an update does to a spec, checked up front.
type serviceChanges struct {
	force    bool
	image    *string
	replicas *uint64
	maxConc  *uint64
	envAdd   map[string]string
	envRm    []string
	labelAdd map[string]string
	labelRm  []string
	args     *[]string
	command  *[]string
	network  *apiv1.NetworkMode
	ports    listEdit[*apiv1.PortConfig]
	// health makes the new health check of the old one; nil: unchanged.
	health func(old *apiv1.HealthCheck) (*apiv1.HealthCheck, error)
	// update and rollback make the new policies of the old ones.
	update, rollback func(old *apiv1.UpdatePolicy) (*apiv1.UpdatePolicy, error)
	// more makes the other changes (constraints, limits, user...); nil: none.
	more func(*apiv1.ServiceSpec) error
}

// changes checks the flags in f (parsed into o) and returns what they change.
func (o *serviceUpdateOptions) changes(f *pflag.FlagSet) (*serviceChanges, error) {
	if f.Changed("mode") {
		return nil, usageErrorf("--mode cannot be used on update: a service's mode is set when it is created; remove the service and create it again with the mode it should have")
	}
	if !slices.ContainsFunc(updateFlags, f.Changed) {
		return nil, usageErrorf("nothing to update: give at least one flag that changes the service, such as --image, --replicas or --env-add ('warren service update --help' lists them all)")
	}
	var (
		ch  serviceChanges
		err error
	)
	ch.force = o.force
	if f.Changed("image") {
		if o.image == "" {
			return nil, usageErrorf("--image cannot be empty")
		}
		ch.image = &o.image
	}
	if f.Changed("replicas") {
		ch.replicas = &o.replicas
	}
	if f.Changed("max-concurrent") {
		ch.maxConc = &o.maxConc
	}
	if ch.envAdd, err = parseKV("--env-add", o.envAdd); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if ch.labelAdd, err = parseKV("--label-add", o.labelAdd); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	for _, k := range o.envRm {
		if k == "" {
			return nil, usageErrorf("invalid --env-rm: the KEY is empty")
		}
	}
	for _, k := range o.labelRm {
		if k == "" {
			return nil, usageErrorf("invalid --label-rm: the KEY is empty")
		}
	}
	if err := addRmConflict("--env-add", "--env-rm", slices.Collect(maps.Keys(ch.envAdd)), o.envRm); err != nil {
		return nil, err
	}
	if err := addRmConflict("--label-add", "--label-rm", slices.Collect(maps.Keys(ch.labelAdd)), o.labelRm); err != nil {
		return nil, err
	}
	ch.envRm, ch.labelRm = o.envRm, o.labelRm
	for _, w := range []struct {
		flag string
		v    string
		dst  **[]string
	}{{"args", o.args, &ch.args}, {"command", o.command, &ch.command}} {
		if !f.Changed(w.flag) {
			continue
		}
		words, err := splitWords(w.v)
		if err != nil {
			return nil, usageErrorf("invalid --%s %q: %v", w.flag, w.v, err)
		}
		*w.dst = &words
	}
	if f.Changed("network") {
		mode := networkModes[o.network]
		ch.network = &mode
	}
	pubAdd, err := parsePublishes("--publish-add", o.pubAdd)
	if err != nil {
		return nil, err
	}
	var pubRm []string // port keys, "8080/tcp"
	for _, v := range o.pubRm {
		k, err := parsePublishRm(v)
		if err != nil {
			return nil, err
		}
		pubRm = append(pubRm, k)
	}
	ch.ports = publishEdit(pubAdd, pubRm)
	if err := ch.ports.check(); err != nil {
		return nil, err
	}
	if slices.ContainsFunc(healthFlags, f.Changed) {
		ch.health = func(old *apiv1.HealthCheck) (*apiv1.HealthCheck, error) {
			c, _, err := o.health.check(f, old)
			return c, err
		}
	}
	if ch.more, err = o.more.edit(f); err != nil {
		return nil, err
	}
	ch.update = func(old *apiv1.UpdatePolicy) (*apiv1.UpdatePolicy, error) { return o.update.policy(f, old) }
	ch.rollback = func(old *apiv1.UpdatePolicy) (*apiv1.UpdatePolicy, error) { return o.rollback.policy(f, old) }
	return &ch, nil
}

// apply makes the changes to spec. It fails, leaving spec half changed,
// when a removal names something spec does not have.
func (ch *serviceChanges) apply(spec *apiv1.ServiceSpec) error {
	if ch.force {
		spec.ForceUpdate++
	}
	if ch.image != nil {
		spec.Image = *ch.image
	}
	if ch.replicas != nil {
		spec.Replicas = *ch.replicas
	}
	if ch.maxConc != nil {
		spec.MaxConcurrent = *ch.maxConc
	}
	var err error
	if spec.Env, err = editMap("--env-rm", spec.GetName(), "environment variable", spec.Env, ch.envRm, ch.envAdd); err != nil {
		return err
	}
	if spec.Labels, err = editMap("--label-rm", spec.GetName(), "label", spec.Labels, ch.labelRm, ch.labelAdd); err != nil {
		return err
	}
	if ch.args != nil {
		spec.Args = *ch.args
		if len(spec.Args) == 0 {
			spec.Args = nil
		}
	}
	if ch.command != nil {
		spec.Command = *ch.command
		if len(spec.Command) == 0 {
			spec.Command = nil
		}
	}
	if ch.network != nil {
		spec.NetworkMode = *ch.network
	}
	if spec.Ports, err = ch.ports.apply(spec.GetName(), spec.GetPorts()); err != nil {
		return err
	}
	if ch.health != nil {
		c, err := ch.health(spec.GetHealthCheck())
		if err != nil {
			return err
		}
		spec.HealthCheck = c
	}
	if ch.more != nil {
		if err := ch.more(spec); err != nil {
			return err
		}
	}
	if ch.update != nil {
		if spec.UpdatePolicy, err = ch.update(spec.GetUpdatePolicy()); err != nil {
			return err
		}
	}
	if ch.rollback != nil {
		if spec.RollbackPolicy, err = ch.rollback(spec.GetRollbackPolicy()); err != nil {
			return err
		}
	}
	return nil
}

func (o *serviceUpdateOptions) run(cmd *cobra.Command, name string) error {
	ch, err := o.changes(cmd.Flags())
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, w, done, err := o.wait.connect(ctx, o.g)
	if err != nil {
		return err
	}
	defer done()
	for attempt := 1; ; attempt++ {
		got, err := c.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: name})
		if err != nil {
			return err
		}
		svc := got.GetService()
		spec := proto.Clone(svc.GetSpec()).(*apiv1.ServiceSpec)
		if err := ch.apply(spec); err != nil {
			return err
		}
		if proto.Equal(spec, svc.GetSpec()) {
			fmt.Fprintln(cmd.ErrOrStderr(), "nothing changed")
			fmt.Fprintln(cmd.OutOrStdout(), spec.GetName())
			return nil
		}
		resp, err := c.UpdateService(ctx, &apiv1.UpdateServiceRequest{
			NameOrId: svc.GetId(),
			Spec:     spec,
			Version:  svc.GetVersion(),
		})
		if status.Code(err) == codes.Aborted && attempt < 2 {
			continue // changed since we read it: read it again and redo the change
		}
		if err != nil {
			if status.Code(err) == codes.Aborted {
				return errors.Join(err, fmt.Errorf("service %q kept changing while updating it: try again", name))
			}
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), spec.GetName())
		return o.wait.wait(cmd, c, w, resp.GetService(), "updated")
	}
}

// joinFlags writes names as "a, --b or --c" (the caller writes the first
// dashes).
func joinFlags(names []string) string {
	s := names[0]
	for i, n := range names[1:] {
		if i == len(names)-2 {
			s += " or --" + n
		} else {
			s += ", --" + n
		}
	}
	return s
}
