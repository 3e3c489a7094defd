package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/loadgen"
)

// The scenarios of `warren bench`, in the order they run.
var benchScenarios = []string{"create-one", "idle", "reads", "create-many", "loss", "restart"}

// benchDefault are the scenarios run when --scenario is not given: all but
// restart, which needs --managers 3.
var benchDefault = []string{"create-one", "idle", "reads", "create-many", "loss"}

type benchOptions struct {
	g          *globalOptions
	joinAddr   string
	token      string
	leaderPID  int
	nodes      int
	tasks      int
	perService int
	scenarios  []string
	startDelay time.Duration
	ttl        time.Duration
	loss       float64
	lossMode   string
	idle       time.Duration
	reads      int
	exitAfter  time.Duration
	exitFrac   float64
	managers   int
	clients    int
}

func newBenchCmd(g *globalOptions) *cobra.Command {
	o := &benchOptions{g: g}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test the managers with simulated worker nodes",
		Long: `Load-test the managers: one process opens --nodes simulated worker sessions
over the real worker protocol (worker join token, NodeCA Join with a CSR,
mutual TLS, the dispatcher's session stream, heartbeats, status reports) and
runs scenarios, printing their figures (docs/benchmarks.md, "Fleet scale").

The simulated nodes run nothing: a task is reported STARTING when it arrives
and RUNNING after --start-delay. This is a load generator for the managers
only; never point it at a cluster whose nodes matter.

Without --join-addr it starts a throwaway manager-only agent from the warren
binary it is (plugins from the plugins/ folder next to it, a temporary
data_dir, heartbeat_ttl --heartbeat-ttl) and stops it at the end. With
--join-addr it joins the cluster whose manager listens there (its API
reached with --socket or --addr as any command) and removes the services it
made; the simulated nodes stay listed DOWN.

Scenarios (--scenario, default all, in this order): create-one (one service
of --tasks replicas), idle (leader CPU, Raft entries/s, RSS over --idle),
reads (service ls and task ls --service X, --reads times each; again after
create-many), create-many (--tasks/--per-service services of --per-service), loss (--loss of the nodes
die at once, silently as in a power loss or, with --loss-mode ended, as
agents that stop; time until every task runs again), restart (with
--managers 3 only, not run by default: a rolling restart of the managers,
followers first, under the create-many load; every task must keep running
and no slot may run twice).`,
		Example: `  warren bench
  warren bench --nodes 50 --tasks 500 --scenario create-one,loss
  warren bench --managers 3 --nodes 300 --tasks 3000 --scenario restart
  warren bench --join-addr 10.0.0.1:7946 --leader-pid 1234`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd) },
	}
	f := cmd.Flags()
	f.StringVar(&o.joinAddr, "join-addr", "", "a running manager's cluster `host:port` to join (default: start a throwaway local manager)")
	f.StringVar(&o.token, "token", "", "with --join-addr: a worker join `token` (default: asked of the API)")
	f.IntVar(&o.leaderPID, "leader-pid", 0, "with --join-addr: the leader agent's `pid` on this machine, for its CPU and RSS")
	f.IntVar(&o.nodes, "nodes", 1000, "simulated worker nodes")
	f.IntVar(&o.tasks, "tasks", 10000, "tasks of the create scenarios")
	f.IntVar(&o.perService, "per-service", 10, "replicas of each service of create-many")
	f.StringSliceVar(&o.scenarios, "scenario", benchDefault, "scenarios to run ("+strings.Join(benchScenarios, ", ")+")")
	f.IntVar(&o.clients, "clients", loadgen.DefaultClients, "CreateService calls the create scenarios have in flight at once")
	f.IntVar(&o.managers, "managers", 1, "throwaway managers to start: 1, or 3 for a cluster (the restart scenario)")
	f.DurationVar(&o.startDelay, "start-delay", 100*time.Millisecond, "simulated time from STARTING to RUNNING")
	f.DurationVar(&o.ttl, "heartbeat-ttl", 10*time.Second, "the managers' heartbeat_ttl (set on the throwaway manager)")
	f.Float64Var(&o.loss, "loss", 0.1, "fraction of the nodes the loss scenario kills")
	f.StringVar(&o.lossMode, "loss-mode", "silent", "how the loss scenario's nodes die: silent (power loss: no more heartbeats) or ended (their sessions end, as agents that stop)")
	f.DurationVar(&o.idle, "idle", 30*time.Second, "how long the idle scenario measures")
	f.IntVar(&o.reads, "reads", 200, "calls of each kind in the reads scenario")
	f.DurationVar(&o.exitAfter, "exit-after", 0, "inject exits: a task of --exit-fraction fails this long after it runs")
	f.Float64Var(&o.exitFrac, "exit-fraction", 0, "fraction of the tasks that fail after --exit-after")
	return cmd
}

func (o *benchOptions) check() error {
	for _, s := range o.scenarios {
		if !slices.Contains(benchScenarios, s) {
			return usageErrorf("--scenario: unknown scenario %q (known: %s)", s, strings.Join(benchScenarios, ", "))
		}
	}
	switch {
	case o.nodes <= 0 || o.tasks <= 0 || o.perService <= 0 || o.reads <= 0 || o.clients <= 0:
		return usageErrorf("--nodes, --tasks, --per-service, --reads and --clients must be positive")
	case o.tasks%o.perService != 0:
		return usageErrorf("--tasks (%d) must be a multiple of --per-service (%d)", o.tasks, o.perService)
	case o.loss <= 0 || o.loss >= 1:
		return usageErrorf("--loss must be between 0 and 1, not %g", o.loss)
	case o.lossMode != "silent" && o.lossMode != "ended":
		return usageErrorf("--loss-mode must be silent or ended, not %q", o.lossMode)
	case o.exitFrac < 0 || o.exitFrac > 1:
		return usageErrorf("--exit-fraction must be between 0 and 1, not %g", o.exitFrac)
	case o.joinAddr == "" && (o.token != "" || o.leaderPID != 0):
		return usageErrorf("--token and --leader-pid only apply with --join-addr")
	case o.managers != 1 && o.managers != 3:
		return usageErrorf("--managers must be 1 or 3, not %d", o.managers)
	case o.managers != 1 && o.joinAddr != "":
		return usageErrorf("--managers starts throwaway managers: it cannot be used with --join-addr")
	case slices.Contains(o.scenarios, "restart") && o.managers != 3:
		return usageErrorf("--scenario restart needs --managers 3 (it restarts the managers it started)")
	}
	return nil
}

func (o *benchOptions) run(cmd *cobra.Command) (err error) {
	if err := o.check(); err != nil {
		return err
	}
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	b := &loadgen.Bench{Out: out, TTL: o.ttl, Clients: o.clients}
	addr, token := o.joinAddr, o.token
	var managers []*loadgen.Manager
	var others []string
	if addr == "" {
		self, xerr := os.Executable()
		if xerr != nil {
			return fmt.Errorf("find the warren binary: %w", xerr)
		}
		if managers, err = loadgen.StartManagers(ctx, self, "", o.managers, o.ttl); err != nil {
			return err
		}
		defer func() {
			for _, m := range managers {
				if err != nil { // the named result: run failed
					// What the managers said last is what explains most
					// failures under load (an election, a refused session).
					fmt.Fprintf(cmd.ErrOrStderr(), "---- manager pid %d at %s, its last lines ----\n%s\n", m.PID(), m.Addr, m.Tail(30))
				}
				m.Stop()
			}
		}()
		m := managers[0]
		b.API, b.Cluster, b.LeaderPID, addr = m.API, m.Cluster, m.PID(), m.Addr
		for _, m := range managers {
			fmt.Fprintf(out, "manager: throwaway agent pid %d at %s (%s)\n", m.PID(), m.Addr, filepath.Dir(m.Socket))
			if m.Addr != addr {
				others = append(others, m.Addr)
			}
		}
	} else {
		c, err := o.g.dial(ctx)
		if err != nil {
			return err
		}
		defer c.Close()
		b.API, b.Cluster, b.LeaderPID = c.WarrenClient, c.Cluster, o.leaderPID
	}
	if token == "" {
		t, err := b.Cluster.JoinToken(ctx, &apiv1.JoinTokenRequest{Role: apiv1.NodeRole_NODE_ROLE_WORKER})
		if err != nil {
			return fmt.Errorf("get a worker join token: %w", err)
		}
		token = t.GetToken()
	}
	f, err := loadgen.New(loadgen.Options{Addr: addr, Managers: others, Token: token, Nodes: o.nodes, StartDelay: o.startDelay,
		ExitAfter: o.exitAfter, ExitFraction: o.exitFrac, Prefix: fmt.Sprintf("sim%d", time.Now().Unix()%100000)})
	if err != nil {
		return err
	}
	b.Fleet = f
	b.Attach()
	fmt.Fprintf(out, "machine: %d CPUs, load average %s; %s\n", runtime.NumCPU(), loadgen.LoadAverage(), time.Now().UTC().Format(time.RFC3339))
	if err := f.Start(ctx); err != nil {
		return err
	}
	defer f.Stop()
	if err := b.Connect(ctx); err != nil {
		return err
	}
	want := func(s string) bool { return slices.Contains(o.scenarios, s) }
	// step runs one figure and prints the load average it was taken under.
	step := func(fn func() error) error {
		if err := fn(); err != nil {
			return err
		}
		fmt.Fprintf(out, "load average %s\n", loadgen.LoadAverage())
		return nil
	}
	// phase creates services×replicas tasks, checks them, and runs then
	// (with the services' names) under that load before it removes them.
	phase := func(prefix string, services, replicas int, then ...func([]string) error) error {
		var made []string
		err := step(func() (err error) {
			if made, err = b.Create(ctx, prefix, services, replicas); err != nil {
				return err
			}
			if err := b.Check(ctx); err != nil {
				return err
			}
			return b.RSS()
		})
		if err != nil {
			return err
		}
		for _, fn := range then {
			if err := step(func() error { return fn(made) }); err != nil {
				return err
			}
		}
		return b.Remove(ctx, made)
	}
	reads := func(made []string) error { return b.Reads(ctx, o.reads, made) }
	if want("create-one") || want("idle") || want("reads") {
		var then []func([]string) error
		if want("idle") {
			then = append(then, func([]string) error { return b.Idle(ctx, o.idle) })
		}
		if want("reads") {
			then = append(then, reads)
		}
		if err := phase("bench-one", 1, o.tasks, then...); err != nil {
			return err
		}
	}
	if want("create-many") || want("loss") || want("restart") {
		var then []func([]string) error
		if want("reads") {
			then = append(then, reads)
		}
		if want("restart") {
			then = append(then, func([]string) error { return b.RollingRestart(ctx, managers) })
		}
		if want("loss") {
			then = append(then, func([]string) error {
				if _, err := b.Loss(ctx, o.loss, o.lossMode == "silent"); err != nil {
					return err
				}
				return b.Check(ctx)
			})
		}
		if err := phase("bench-many", o.tasks/o.perService, o.perService, then...); err != nil {
			return err
		}
	}
	return nil
}
