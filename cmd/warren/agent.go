package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/spf13/cobra"

	"github.com/warrenorch/warren/config"
	"github.com/warrenorch/warren/core/agent"
	"github.com/warrenorch/warren/core/worker"
)

// logLevels are the values of --log-level, as of log_level.
var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// agentOptions are the flags of `warren agent`.
type agentOptions struct {
	config string
	dev    bool
	keep   bool
	// devNetwork is -dev-network: the -dev worker's network plugin.
	devNetwork string
	logLevel   string
	// check is -check: check the configuration and exit.
	check bool
	// forceNewCluster is --force-new-cluster.
	forceNewCluster bool

	// run starts the agent: agent.Run, or a stand-in in this package's tests.
	run func(context.Context, agent.Options) error
}

func newAgentCmd() *cobra.Command {
	return newAgentCmdWith(agent.Run)
}

// newAgentCmdWith is newAgentCmd starting the agent with run.
func newAgentCmdWith(run func(context.Context, agent.Options) error) *cobra.Command {
	o := &agentOptions{run: run}
	cmd := &cobra.Command{
		Use:   "agent (-config FILE|DIR | -dev)",
		Short: "Run the Warren agent on this machine",
		Long: `Run the Warren agent: the manager and/or worker that this machine is in the
cluster, as its configuration says. The agent serves the API that the other
warren commands use on a root-only unix socket (api_socket).

-config takes one HCL file or a directory whose *.hcl files are merged.
Configuration errors are printed with file:line:col and the agent does not start.

-dev runs a throwaway single-node cluster (manager and worker) on the default
configuration, with its data in a new temporary directory that is removed on
exit unless -keep is given. Its tasks are on the overlay of the default
network plugin, network-wireguard (addresses, DNS by service name;
docs/network.md), whose devices are removed on exit like the containers;
-dev-network none gives them loopback only, -dev-network NAME another
network plugin.

-force-new-cluster recovers from a lost quorum: run on one surviving manager
(agent stopped first), it restarts that manager as the only member of the
Raft configuration, keeping the cluster state. The other managers must then
join again with fresh data dirs (docs/operations.md).

-check loads and checks the whole configuration (plugin binaries included)
and exits: 0 when the agent would start, 1 with the errors otherwise. It
creates no file and binds no port. The agent runs the same checks itself
before it creates its data_dir or binds a port.

The agent stops cleanly on SIGINT or SIGTERM; running containers keep running.
It reloads nothing: on SIGHUP it logs that reload is not supported and keeps
running (restart it to apply a changed configuration).
The global flags (--socket, --output, --timeout) are for the other commands
and are refused here.`,
		Example: `  warren agent -config /etc/warren/cluster.hcl
  warren agent -config /etc/warren/conf.d -log-level debug
  warren agent -config /etc/warren/agent.hcl -check
  warren agent -dev
  warren agent -dev -dev-network none
  warren agent -config /etc/warren/cluster.hcl -force-new-cluster`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.runAgent(cmd)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "configuration `file`, or directory of *.hcl files")
	f.BoolVar(&o.dev, "dev", false, "run a single-node development cluster on the default configuration and a temporary data_dir")
	f.BoolVar(&o.keep, "keep", false, "with -dev: keep the temporary data_dir on exit")
	f.BoolVar(&o.check, "check", false, "check the configuration (plugin binaries included) and exit, without creating or binding anything")
	f.StringVar(&o.devNetwork, "dev-network", "", "with -dev: the worker's network `plugin` (default network-wireguard; none: loopback only)")
	f.BoolVar(&o.forceNewCluster, "force-new-cluster", false, "make this manager the only member of a new Raft configuration, keeping its state (quorum loss recovery)")
	f.Var(&choiceValue{p: &o.logLevel, choices: logLevels}, "log-level", "log level, overriding the configuration's log_level")
	return cmd
}

func (o *agentOptions) runAgent(cmd *cobra.Command) error {
	switch {
	case o.dev && o.config != "":
		return usageErrorf("-config and -dev cannot be used together")
	case !o.dev && o.config == "":
		return usageErrorf("no configuration: give -config FILE|DIR, or -dev for a throwaway single-node cluster")
	case o.keep && !o.dev:
		return usageErrorf("-keep only applies to -dev")
	case o.devNetwork != "" && !o.dev:
		return usageErrorf("-dev-network only applies to -dev: set worker { network = %q } in the configuration", o.devNetwork)
	case o.forceNewCluster && o.dev:
		return usageErrorf("-force-new-cluster needs the -config of an existing manager")
	case o.check && o.config == "":
		return usageErrorf("-check needs -config FILE|DIR")
	case o.check && o.forceNewCluster:
		return usageErrorf("-check and -force-new-cluster cannot be used together")
	}
	for _, name := range []string{"socket", "output", "timeout", "addr", "cert-dir"} {
		if cmd.Flags().Changed(name) {
			return usageErrorf("--%s is for the commands that talk to an agent; the agent itself takes its settings from -config (api_socket, log_level...)", name)
		}
	}
	stderr := cmd.ErrOrStderr()

	var (
		cfg      *config.Agent
		warnings []string
	)
	if o.dev {
		dir, err := os.MkdirTemp("", "warren-dev-")
		if err != nil {
			return fmt.Errorf("creating the -dev data directory: %w", err)
		}
		if !o.keep {
			defer func() {
				// The tasks' network namespaces are mounts in the
				// data dir: unmount them, or it cannot be removed.
				if _, err := worker.RemoveNetns(dir); err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "removing the -dev data directory: %v\n", err)
				}
				os.RemoveAll(dir)
			}()
		}
		var diags hcl.Diagnostics
		cfg, diags = config.Parse(devConfig(dir, o.keep, o.devNetwork), "warren-dev.hcl")
		if err := config.DiagnosticsError(cfg.Files(), diags); err != nil {
			return fmt.Errorf("the built-in -dev configuration is invalid (a bug): %w", err)
		}
	} else {
		var diags hcl.Diagnostics
		cfg, diags = config.Load(o.config)
		if err := config.DiagnosticsError(cfg.Files(), diags); err != nil {
			fmt.Fprintln(stderr, err)
			return &reportedError{code: 1}
		}
		for _, d := range diags {
			warnings = append(warnings, d.Error())
		}
	}

	if o.check {
		return checkConfig(cmd, o.config, cfg, warnings)
	}

	level := cfg.LogLevel
	if o.logLevel != "" {
		level = o.logLevel
	}
	// Plain lines, never colour codes: under systemd stderr goes to
	// journald as it is.
	logger := hclog.New(&hclog.LoggerOptions{
		Name:   "warren",
		Level:  hclog.LevelFromString(level),
		Output: stderr,
		Color:  hclog.ColorOff,
	})
	for _, w := range warnings {
		logger.Warn("configuration", "warning", w)
	}
	if o.dev {
		logger.Info("dev mode: single-node cluster with a temporary data directory",
			"data_dir", cfg.DataDir, "removed_on_exit", !o.keep)
	}

	ctx := cmd.Context()
	stopHUP := refuseReload(ctx, logger)
	defer stopHUP()
	err := o.run(ctx, agent.Options{Config: cfg, Logger: logger, ForceNewCluster: o.forceNewCluster})
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil // stopped by a signal, as asked
	}
	return err
}

// devConfig is the configuration of `warren agent -dev`: the defaults, a
// manager and a worker on network ("" for the default), with data under
// dir. Unless the data dir is kept, the runtime plugin removes the
// cluster's containers and its managed containerd, and network-wireguard
// its devices, when the agent stops: a -dev cluster is throwaway.
func devConfig(dir string, keep bool, network string) []byte {
	if network == "" {
		network = config.Default().Worker.Network
	}
	cfg := fmt.Sprintf(`
data_dir     = %q
node_name    = %q
metrics_addr = %q

manager {}
worker {
  network = %q
}

plugin "runtime-containerd" {
  config {
    stop_on_exit = %t
  }
}
`, dir, config.Default().NodeName, config.DevMetricsAddr, network, !keep)
	if network == config.Default().Worker.Network {
		cfg += fmt.Sprintf(`
plugin %q {
  config {
    teardown_on_exit = %t
  }
}
`, network, !keep)
	}
	return []byte(cfg)
}

// checkConfig is -check: cfg, loaded from path with warnings, is checked as
// the agent checks it before it starts, and the result printed.
func checkConfig(cmd *cobra.Command, path string, cfg *config.Agent, warnings []string) error {
	more, err := agent.CheckConfig(cfg)
	for _, w := range append(warnings, more...) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Warning: %s\n", w)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "configuration %s is valid\n", path)
	return nil
}

// refuseReload makes SIGHUP, which would otherwise end the process, a
// logged refusal: the agent reloads nothing. The returned func stops it.
func refuseReload(ctx context.Context, logger hclog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				logger.Warn("SIGHUP: reload is not supported; restart the agent (systemctl restart warren) to apply a changed configuration")
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
