package main

import (
	"fmt"
	"maps"
	"slices"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// serviceCreateOptions are the flags of `warren service create`.
type serviceCreateOptions struct {
	g *globalOptions

	image         string
	replicas      uint64
	env           []string
	labels        []string
	constraints   []string
	resources     resourceOptions
	workdir       string
	user          string
	restart       restartOptions
	stop          stopOptions
	update        policyOptions
	rollback      policyOptions
	network       string
	publish       []string
	secrets       []string
	mounts        []string
	configs       []string
	health        healthOptions
	mode          string
	maxConcurrent uint64
	wait          convergeOptions
}

var (
	updateOrders = map[string]apiv1.UpdatePolicy_Order{
		"stop-first":  apiv1.UpdatePolicy_ORDER_STOP_FIRST,
		"start-first": apiv1.UpdatePolicy_ORDER_START_FIRST,
	}
	// networkModes are the values of --network.
	networkModes = map[string]apiv1.NetworkMode{
		"overlay": apiv1.NetworkMode_NETWORK_MODE_OVERLAY,
		"host":    apiv1.NetworkMode_NETWORK_MODE_HOST,
		"none":    apiv1.NetworkMode_NETWORK_MODE_NONE,
	}
)

// networkFlagUsage is the help text of --network on create and update.
const networkFlagUsage = "the tasks' network: overlay (an address on the cluster's overlay, found by service name), host (the node's own) or none (loopback only); default: overlay on a worker with a network plugin, none elsewhere"

func newServiceCreateCmd(g *globalOptions) *cobra.Command {
	o := &serviceCreateOptions{g: g}
	cmd := &cobra.Command{
		Use:   "create NAME --image IMAGE [flags] [-- COMMAND [ARG...]]",
		Short: "Create a service",
		Long: `Create a service, print its ID and wait until its tasks run.

The wait shows each slot's progress (a line per task as it is updated on a
terminal, the overall progress otherwise) and every task failure as it
happens; it ends with "verify: Service converged", or with an error after
--timeout-converge. --detach returns at once, --quiet prints only the ID.
Interrupting the wait (Ctrl-C) leaves the service in place.

The container runs COMMAND with ARGs when they are given after "--" (COMMAND
replaces the image's entrypoint, the ARGs its default arguments); otherwise
it runs what the image says.

Sizes are bytes or a number with a unit: 512MiB, 1GiB, 100M, 1g (all units are
powers of 1024, as with docker). CPUs are decimal: 0.5, 1.5, 2.

The restart, update and stop flags that are left out stay unset in the spec:
the agent's defaults apply.`,
		Example: `  warren service create web --image nginx:1.27 --replicas 3
  warren service create web --image nginx:1.27 --detach
  warren service create api --image registry.local/api:2.1 \
      --env DB_HOST=db --env LOG_LEVEL=info --label team=edge \
      --constraint node.labels.zone==edge-1 --cpus 1.5 --memory 512MiB
  warren service create sleeper --image busybox -- sleep 3600
  warren service create web --image nginx:1.27 --replicas 3 --publish 8080:80
  warren service create dns --image coredns --publish published=53,target=53,protocol=udp,mode=host`,
		Args: func(cmd *cobra.Command, args []string) error {
			_, _, err := createArgs(cmd.CommandPath(), args, cmd.ArgsLenAtDash())
			return err
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *serviceCreateOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.image, "image", "", "image to run (required)")
	f.Var(newUintValue(&o.replicas, 1), "replicas", "number of tasks to run")
	f.StringArrayVarP(&o.env, "env", "e", nil, "environment variable `KEY=VALUE` (repeatable)")
	f.StringArrayVarP(&o.labels, "label", "l", nil, "service label `KEY=VALUE` (repeatable)")
	f.StringArrayVar(&o.constraints, "constraint", nil, "placement `constraint` such as node.labels.zone==edge-1 (repeatable; all must hold)")
	o.resources.addFlags(f)
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory inside the container")
	f.StringVarP(&o.user, "user", "u", "", "user to run as (name, UID or UID:GID)")
	o.restart.addFlags(f)
	o.stop.addFlags(f)
	o.update.prefix, o.rollback.prefix = "update", "rollback"
	o.update.addFlags(f)
	o.rollback.addFlags(f)
	f.Var(&choiceValue{p: &o.network, choices: []string{"overlay", "host", "none"}}, "network", networkFlagUsage)
	f.StringArrayVarP(&o.publish, "publish", "p", nil, publishFlagUsage)
	f.StringArrayVar(&o.mounts, "mount", nil, "mount `type=volume|bind|tmpfs,source=...,target=PATH`[,readonly][,tmpfs-size=64MiB,tmpfs-mode=1777] (repeatable)")
	f.StringArrayVar(&o.secrets, "secret", nil, "give the tasks a secret: `NAME` at /run/secrets/NAME, or source=NAME,target=PATH,uid=N,gid=N,mode=0400 (repeatable)")
	f.StringArrayVar(&o.configs, "config", nil, "give the tasks a config read-only: `src=NAME,target=PATH`[,uid=N,gid=N,mode=0444] (repeatable)")
	o.health.addFlags(f)
	f.Var(&choiceValue{p: &o.mode, choices: slices.Sorted(maps.Keys(serviceModes))}, "mode", "replicated (--replicas tasks), global (one task on every eligible node; no wait for convergence), replicated-job (--replicas tasks that run to completion) or global-job (one on every eligible node)")
	f.Var(newUintValue(&o.maxConcurrent, 0), "max-concurrent", "replicated-job: run at most this many tasks at once (default: --replicas)")
	o.wait.addFlags(f)
}

// createArgs splits the positional arguments of create: NAME, then the
// container command after "--" (dash is where "--" was, or -1).
func createArgs(path string, args []string, dash int) (name string, command []string, err error) {
	before := len(args)
	if dash >= 0 {
		before = dash
	}
	switch {
	case before == 0:
		return "", nil, usageErrorf("%q needs a service NAME", path)
	case before > 1:
		return "", nil, usageErrorf("unexpected argument %q: the container command goes after --, as in: %s web --image busybox -- sleep 3600", args[1], path)
	case dash >= 0 && len(args) == dash:
		return "", nil, usageErrorf("nothing after --: give the command to run, or leave out --")
	}
	if dash >= 0 {
		command = args[dash:]
	}
	return args[0], command, nil
}

// spec builds the service spec from the flags in f (parsed into o) for the
// service name running command. Only the flags given are set: the agent
// fills in its defaults for the rest.
func (o *serviceCreateOptions) spec(f *pflag.FlagSet, name string, command []string) (*apiv1.ServiceSpec, error) {
	if o.image == "" && len(command) == 0 {
		return nil, usageErrorf("--image is required: the image to run, e.g. --image nginx:1.27 (or, for a runtime without images, the program after --)")
	}
	env, err := parseKV("--env", o.env)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	labels, err := parseKV("--label", o.labels)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	for _, c := range o.constraints {
		if err := checkConstraint(c); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
	}
	ports, err := parsePublishes("--publish", o.publish)
	if err != nil {
		return nil, err
	}
	spec := &apiv1.ServiceSpec{
		Name:        name,
		Image:       o.image,
		Replicas:    o.replicas,
		WorkingDir:  o.workdir,
		User:        o.user,
		Constraints: o.constraints,
		NetworkMode: networkModes[o.network],
		Ports:       ports,
	}
	if len(command) > 0 {
		spec.Command = command[:1]
		spec.Args = command[1:]
		if len(spec.Args) == 0 {
			spec.Args = nil
		}
	}
	if len(env) > 0 {
		spec.Env = env
	}
	if len(labels) > 0 {
		spec.Labels = labels
	}
	for _, v := range o.mounts {
		m, err := parseMount("--mount", v)
		if err != nil {
			return nil, &usageError{msg: err.Error()}
		}
		spec.Mounts = append(spec.Mounts, m)
	}
	for _, v := range o.secrets {
		ref, err := parseFileRef("--secret", v)
		if err != nil {
			return nil, &usageError{msg: err.Error()}
		}
		spec.Secrets = append(spec.Secrets, ref)
	}
	for _, v := range o.configs {
		ref, err := parseFileRef("--config", v)
		if err != nil {
			return nil, &usageError{msg: err.Error()}
		}
		spec.Configs = append(spec.Configs, ref)
	}
	o.resources.apply(f, spec)
	if spec.RestartPolicy, err = o.restart.policy(f, nil); err != nil {
		return nil, err
	}
	if spec.UpdatePolicy, err = o.update.policy(f, nil); err != nil {
		return nil, err
	}
	if spec.RollbackPolicy, err = o.rollback.policy(f, nil); err != nil {
		return nil, err
	}
	stop, err := o.stop.edit(f)
	if err != nil {
		return nil, err
	}
	stop(spec)
	if err := o.setMode(f, spec); err != nil {
		return nil, err
	}
	hc, _, err := o.health.check(f, nil)
	if err != nil {
		return nil, err
	}
	spec.HealthCheck = hc
	return spec, nil
}

// serviceModes are the values of --mode.
var serviceModes = map[string]apiv1.ServiceMode{
	"replicated":     apiv1.ServiceMode_SERVICE_MODE_REPLICATED,
	"global":         apiv1.ServiceMode_SERVICE_MODE_GLOBAL,
	"replicated-job": apiv1.ServiceMode_SERVICE_MODE_REPLICATED_JOB,
	"global-job":     apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB,
}

// setMode sets spec's mode from --mode and --max-concurrent, refusing the
// flags the mode does not take: --replicas for a global mode,
// --max-concurrent but for a replicated job, and for a job the update and
// rollback policy flags (an update re-runs a job) and --restart-condition
// any (a completed task would run again).
func (o *serviceCreateOptions) setMode(f *pflag.FlagSet, spec *apiv1.ServiceSpec) error {
	if o.mode == "" || o.mode == "replicated" {
		if f.Changed("max-concurrent") {
			return usageErrorf("--max-concurrent is for --mode replicated-job: the most of its tasks that run at once")
		}
		return nil
	}
	mode := serviceModes[o.mode]
	spec.Mode = mode
	if apiv1.IsGlobal(mode) {
		if f.Changed("replicas") {
			return usageErrorf("--replicas cannot be used with --mode %s: it runs one task on every eligible node", o.mode)
		}
		spec.Replicas = 0
	}
	if !apiv1.IsJob(mode) {
		if f.Changed("max-concurrent") {
			return usageErrorf("--max-concurrent is for --mode replicated-job: the most of its tasks that run at once")
		}
		return nil
	}
	if mode == apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB && f.Changed("max-concurrent") {
		return usageErrorf("--max-concurrent cannot be used with --mode global-job: it runs one task on every eligible node")
	}
	for _, name := range append(o.update.flagNames(), o.rollback.flagNames()...) {
		if f.Changed(name) {
			return usageErrorf("--%s cannot be used with --mode %s: a job has no rolling update (an update runs it again)", name, o.mode)
		}
	}
	if f.Changed("restart-condition") && o.restart.condition == "any" {
		return usageErrorf("--restart-condition any cannot be used with --mode %s: a task that completed would run again; use on-failure (the default for a job) or none", o.mode)
	}
	spec.MaxConcurrent = o.maxConcurrent
	return nil
}

func (o *serviceCreateOptions) run(cmd *cobra.Command, args []string) error {
	name, command, err := createArgs(cmd.CommandPath(), args, cmd.ArgsLenAtDash())
	if err != nil {
		return err
	}
	spec, err := o.spec(cmd.Flags(), name, command)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, w, done, err := o.wait.connect(ctx, o.g)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec})
	if err != nil {
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), resp.GetService().GetId())
	return o.wait.wait(cmd, c, w, resp.GetService(), "created")
}
