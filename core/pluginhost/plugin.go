package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"github.com/hashicorp/hcl/v2"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/warrenorch/warren/sdk"
)

// State is where a plugin is in its life.
type State string

// The states a plugin goes through.
const (
	// StateStarting: the first process is being launched and configured.
	StateStarting State = "starting"
	// StateRunning: a configured process is serving calls.
	StateRunning State = "running"
	// StateRestarting: the process died or hung; a new one is on its way.
	StateRestarting State = "restarting"
	// StateCrashLooping: the process keeps dying soon after it starts
	// (CrashLoopAfter times in a row, each within Options.StableAfter of its
	// start). The host keeps restarting it with backoff; the state stays
	// until a process runs StableAfter.
	StateCrashLooping State = "crash-looping"
	// StateFailed: Options.MaxFailedStarts restart attempts in a row failed.
	// The host keeps trying at the maximum backoff.
	StateFailed State = "failed"
	// StateStopped: the host stopped the plugin; no process is left.
	StateStopped State = "stopped"
)

// Status is a snapshot of a plugin, for `warren plugin ls`.
type Status struct {
	Name    string
	Kind    sdk.Kind
	Version string // as the plugin reported it
	Path    string
	PID     int // 0 while no process is serving
	State   State
	// Restarts counts the processes started after the first one.
	Restarts int
	// LastError is the last thing that went wrong: why the process died or
	// why a restart attempt failed. It stays after a successful restart.
	LastError string
	// StartedAt is when the current process was started.
	StartedAt time.Time
}

// Plugin is one supervised plugin. Its methods are safe for concurrent use.
type Plugin struct {
	host *Host
	spec Spec
	log  hclog.Logger
	conn *switchConn

	ctx      context.Context // ends when the plugin is being stopped
	cancel   context.CancelFunc
	stopOnce sync.Once
	stopCtx  context.Context // Stop's context; written before cancel
	stopErr  error           // written before done is closed
	done     chan struct{}   // closed once no process is left and none will be

	mu        sync.Mutex
	info      sdk.Info
	state     State
	pid       int
	restarts  int
	lastErr   string
	startedAt time.Time
}

func newPlugin(h *Host, spec Spec) *Plugin {
	spec.Args = slices.Clone(spec.Args)
	spec.Env = maps.Clone(spec.Env)
	ctx, cancel := context.WithCancel(context.Background())
	conn := newSwitchConn(spec.Name, spec.Kind, h.log.Named(spec.Name))
	conn.onCall = h.opts.OnCall
	return &Plugin{
		host:   h,
		spec:   spec,
		log:    h.log.Named(spec.Name),
		conn:   conn,
		ctx:    ctx,
		cancel: cancel,
		done:   make(chan struct{}),
		state:  StateStarting,
	}
}

// Name returns the plugin's name (its plugin block's label).
func (p *Plugin) Name() string { return p.spec.Name }

// Kind returns the kind the plugin serves.
func (p *Plugin) Kind() sdk.Kind { return p.spec.Kind }

// Info returns what the current process (or the last one) reported about
// itself.
func (p *Plugin) Info() sdk.Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Client returns a connection that always leads to the plugin's current
// process. Wrap it once in the kind's client and keep that:
//
//	st := store.NewClient(p.Client())
//
// While no process is serving (restarting, failed, stopped) calls fail at
// once with an error wrapping sdk.ErrPluginUnavailable; so do calls cut off
// by the process dying. They never wait for a restart.
func (p *Plugin) Client() grpc.ClientConnInterface { return p.conn }

// Status returns a snapshot of the plugin's state.
func (p *Plugin) Status() Status {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Status{
		Name:      p.spec.Name,
		Kind:      p.spec.Kind,
		Version:   p.info.Version,
		Path:      p.spec.Path,
		PID:       p.pid,
		State:     p.state,
		Restarts:  p.restarts,
		LastError: p.lastErr,
		StartedAt: p.startedAt,
	}
}

// instance is one process of a plugin.
type instance struct {
	client  *plugin.Client
	run     *procRunner
	cc      *grpc.ClientConn
	info    sdk.Info
	started time.Time
}

// kill kills the process at once and releases everything go-plugin holds
// for it. For processes that are dead or hung.
func (in *instance) kill() {
	_ = in.run.Kill(context.Background())
	in.client.Kill()
}

// stop asks the process to exit and kills it if it has not within grace or
// before ctx ends. It reports whether it had to kill.
//
// go-plugin's own Kill gives a process 2 s after asking it to stop, too
// short for a plugin that releases real resources on its way out (a
// runtime stopping its containers): stop asks through go-plugin's shutdown
// call itself and waits for the exit for the whole grace period; Kill then
// only reaps what is left.
func (in *instance) stop(ctx context.Context, grace time.Duration) (killed bool) {
	t := time.NewTimer(grace)
	defer t.Stop()
	if rpc, err := in.client.Client(); err == nil {
		// The plugin's gRPC server stops, then its Close runs. The call
		// returns when the process is gone: a hung process keeps it until
		// it is killed below.
		closed := make(chan struct{})
		go func() {
			_ = rpc.Close()
			close(closed)
		}()
		select {
		case <-in.run.exited:
		case <-t.C:
			killed = true
		case <-ctx.Done():
			killed = true
		}
		if !killed {
			// The process exited as asked and its connection is closing:
			// go-plugin's Kill has nothing left to stop, and would only log
			// that closing the connection again failed and that the
			// process "failed to exit gracefully".
			select {
			case <-closed:
				return false
			case <-t.C:
			case <-ctx.Done():
			}
		}
	}
	if killed {
		_ = in.run.Kill(context.Background())
	}
	done := make(chan struct{})
	go func() {
		in.client.Kill()
		close(done)
	}()
	select {
	case <-done:
		return killed
	case <-t.C:
	case <-ctx.Done():
	}
	_ = in.run.Kill(context.Background())
	<-done
	return true
}

// start launches the first process and hands it to the supervisor.
func (p *Plugin) start(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()

	inst, err := p.launch(ctx)
	if err != nil {
		p.mu.Lock()
		p.state = StateStopped
		p.lastErr = err.Error()
		p.mu.Unlock()
		p.conn.setDown("failed to start")
		p.cancel()
		close(p.done)
		return err
	}
	p.up(inst, false)
	go p.supervise(inst)
	return nil
}

// stop ends supervision and the process; it returns once no process is left.
func (p *Plugin) stop(ctx context.Context) error {
	p.stopOnce.Do(func() {
		p.stopCtx = ctx
		p.cancel()
	})
	<-p.done
	return p.stopErr
}

// up makes inst the serving process.
func (p *Plugin) up(inst *instance, restarted bool) {
	pid := inst.run.PID()
	p.mu.Lock()
	p.info = inst.info
	p.state = StateRunning
	p.pid = pid
	p.startedAt = inst.started
	if restarted {
		p.restarts++
	}
	p.mu.Unlock()
	p.conn.set(inst.cc)
	p.log.Info("plugin running", "pid", pid, "version", inst.info.Version, "path", p.spec.Path)
}

// down records that no process is serving and why.
// CrashLoopAfter is how many times in a row a plugin's process must die
// within Options.StableAfter of its start for the plugin to be shown as
// crash-looping.
const CrashLoopAfter = 3

// restartingState is the state of a plugin whose processes were lost lost
// times in a row, each within stable of its start, and what a call to it
// is told meanwhile.
func restartingState(lost int, stable time.Duration, why string) (State, string) {
	if lost < CrashLoopAfter {
		return StateRestarting, "restarting"
	}
	return StateCrashLooping, fmt.Sprintf("crash-looping: its process was lost %d times in a row, each within %s of its start; last: %s; restarting", lost, stable, why)
}

// markCrashLooping shows a restarted plugin as crash-looping while inst
// is younger than stable: it goes back to running if inst lasts.
func (p *Plugin) markCrashLooping(inst *instance, stable time.Duration) {
	pid := inst.run.PID()
	p.mu.Lock()
	p.state = StateCrashLooping
	p.mu.Unlock()
	time.AfterFunc(stable, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.state == StateCrashLooping && p.pid == pid {
			p.state = StateRunning
		}
	})
}

func (p *Plugin) down(state State, lastErr, why string) {
	p.mu.Lock()
	p.state = state
	p.pid = 0
	if lastErr != "" {
		p.lastErr = lastErr
	}
	p.mu.Unlock()
	p.conn.setDown(why)
}

// supervise watches inst, and each process after it, until the plugin is
// stopped: a process that exits or hangs is killed and replaced.
func (p *Plugin) supervise(inst *instance) {
	defer close(p.done)
	opts := p.host.opts
	attempt := 0 // restarts since the last process that ran StableAfter
	lost := 0    // processes lost in a row, each before it ran StableAfter
	for {
		why := p.watch(inst)
		if why == "" {
			p.finish(inst)
			return
		}
		if time.Since(inst.started) >= opts.StableAfter {
			attempt, lost = 0, 0
		}
		lost++
		p.log.Warn("plugin process lost; restarting it", "pid", inst.run.PID(), "reason", why)
		state, restarting := restartingState(lost, opts.StableAfter, why)
		p.down(state, why, fmt.Sprintf("%s (attempt %d)", restarting, attempt+1))
		inst.kill()

		inst = nil
		failed := 0
		for inst == nil {
			attempt++
			if failed >= opts.MaxFailedStarts {
				p.down(StateFailed, "", fmt.Sprintf("failed to start %d times in a row, retrying (attempt %d); last error: %s", failed, attempt, p.Status().LastError))
			} else {
				state, restarting := restartingState(lost, opts.StableAfter, p.Status().LastError)
				p.down(state, "", fmt.Sprintf("%s (attempt %d)", restarting, attempt))
			}
			t := time.NewTimer(backoff(opts.MinBackoff, opts.MaxBackoff, attempt))
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				p.finish(nil)
				return
			}
			next, err := p.launch(p.ctx)
			if err != nil {
				if p.ctx.Err() != nil {
					p.finish(nil)
					return
				}
				failed++
				p.log.Error("plugin restart failed", "attempt", attempt, "error", err)
				p.mu.Lock()
				p.lastErr = err.Error()
				p.mu.Unlock()
				continue
			}
			inst = next
		}
		p.up(inst, true)
		if lost >= CrashLoopAfter {
			p.markCrashLooping(inst, opts.StableAfter)
		}
		if opts.OnRestart != nil {
			opts.OnRestart(p)
		}
	}
}

// backoff returns the wait before restart attempt n (1-based): lo, doubling
// with each attempt, capped at hi.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// finish stops inst (if any) for good once the plugin is being stopped.
func (p *Plugin) finish(inst *instance) {
	p.conn.setDown("stopped")
	if inst != nil {
		ctx := p.stopCtx
		if ctx == nil {
			ctx = context.Background()
		}
		if inst.stop(ctx, p.host.opts.KillTimeout) {
			p.stopErr = fmt.Errorf("plugin %q did not exit when asked; killed it", p.spec.Name)
			p.log.Warn("plugin did not exit when asked; killed it")
		}
	}
	p.mu.Lock()
	p.state = StateStopped
	p.pid = 0
	p.mu.Unlock()
}

// watch returns when inst's process exits (why says how), is found hung by
// its health checks (healthTracker: several failures in a row over a
// window, not counting timeouts on an overloaded host), or the plugin is
// being stopped (why is "").
func (p *Plugin) watch(inst *instance) (why string) {
	opts := p.host.opts
	health := newHealthTracker(policyFor(opts), time.Now())
	t := time.NewTimer(opts.HealthInterval)
	defer t.Stop()
	for {
		planned := time.Now().Add(opts.HealthInterval)
		t.Reset(opts.HealthInterval)
		select {
		case <-p.ctx.Done():
			return ""
		case <-inst.run.exited:
			return "exited: " + exitReason(inst.run.waitErr)
		case <-t.C:
		}
		start := time.Now()
		ctx, cancel := context.WithTimeout(p.ctx, opts.HealthTimeout)
		_, err := healthpb.NewHealthClient(inst.cc).Check(ctx, &healthpb.HealthCheckRequest{Service: plugin.GRPCServiceName})
		cancel()
		end := time.Now()
		check := healthCheck{At: end, Err: err, Late: max(start.Sub(planned), end.Sub(start)-opts.HealthTimeout)}
		if err != nil {
			select {
			case <-p.ctx.Done():
				return ""
			case <-inst.run.exited:
				return "exited: " + exitReason(inst.run.waitErr)
			default:
			}
			check.ProcState = procState(inst.run.PID())
		}
		v := health.observe(check)
		switch {
		case v.Restart:
			return v.Reason
		case v.Excused:
			p.log.Warn("plugin answered no health check in time on an overloaded host; not counted", "pid", inst.run.PID(), "late", check.Late, "process_state", string(rune(check.ProcState)), "error", err)
		case err != nil:
			p.log.Warn("plugin did not answer a health check", "pid", inst.run.PID(), "misses", v.Misses, "late", check.Late, "process_state", string(rune(check.ProcState)), "error", err)
		}
	}
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// launch starts a process, checks and configures it. On error no process is
// left.
func (p *Plugin) launch(ctx context.Context) (*instance, error) {
	spec := p.spec
	if err := checkExecutable(spec); err != nil {
		return nil, err
	}
	run, err := newProcRunner(exec.Command(spec.Path, spec.Args...))
	if err != nil {
		return nil, fmt.Errorf("plugin %q: starting %s: %w", spec.Name, spec.Path, err)
	}
	run.cmd.SysProcAttr = sysProcAttr()
	stdout := p.log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Info})
	stderr := p.log.StandardWriter(&hclog.StandardLoggerOptions{InferLevels: true, ForceLevel: hclog.Warn})
	cfg := sdk.ClientConfig(nil, pluginLogger{p.log})
	cfg.RunnerFunc = func(_ hclog.Logger, cmd *exec.Cmd, _ string) (runner.Runner, error) {
		// cmd carries only go-plugin's variables (SkipHostEnv).
		run.cmd.Env = p.env(cmd.Env)
		return run, nil
	}
	cfg.SkipHostEnv = true
	cfg.UnixSocketConfig = p.host.unixSocketConfig()
	cfg.Managed = false
	cfg.StartTimeout = p.host.opts.StartTimeout
	cfg.SyncStdout = stdout
	cfg.SyncStderr = stderr
	client := plugin.NewClient(cfg)

	// The handshake does not take a context: kill the process if ctx ends
	// first, which ends the handshake.
	stopKill := context.AfterFunc(ctx, func() { _ = run.Kill(context.Background()) })
	rpc, err := client.Client()
	stopKill()
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		client.Kill()
		switch {
		case ctx.Err() != nil:
			err = ctx.Err()
		case run.exitedOnItsOwn():
			// go-plugin's complaint about the missing handshake line is
			// noise then: the process ended, and its log says why.
			err = fmt.Errorf("exited before the handshake (%s)", exitReason(run.waitErr))
		}
		return nil, fmt.Errorf("plugin %q: starting %s: %w", spec.Name, spec.Path, err)
	}
	raw, err := rpc.Dispense(sdk.DispenseName)
	if err != nil {
		client.Kill()
		return nil, fmt.Errorf("plugin %q at %s: %w", spec.Name, spec.Path, err)
	}
	cc, ok := raw.(*grpc.ClientConn)
	if !ok {
		client.Kill()
		return nil, fmt.Errorf("plugin %q at %s: dispensed %T, not a gRPC connection", spec.Name, spec.Path, raw)
	}
	inst := &instance{client: client, run: run, cc: cc, started: time.Now()}
	if err := p.configure(ctx, inst); err != nil {
		inst.kill()
		return nil, err
	}
	return inst, nil
}

// configure runs Info, ConfigSchema and Configure on a new process.
func (p *Plugin) configure(ctx context.Context, inst *instance) error {
	spec := p.spec
	base := sdk.NewBaseClient(inst.cc)
	call := func(f func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, p.host.opts.CallTimeout)
		defer cancel()
		return f(ctx)
	}

	var info sdk.Info
	err := call(func(ctx context.Context) (err error) { info, err = base.Info(ctx); return err })
	if err != nil {
		return fmt.Errorf("plugin %q at %s: Info: %w", spec.Name, spec.Path, err)
	}
	if info.Kind != spec.Kind {
		return fmt.Errorf("plugin %q at %s is a %s plugin, but %s needs a %s plugin", spec.Name, spec.Path, info.Kind, spec.use(), spec.Kind)
	}
	if !slices.Contains(info.APIVersions, sdk.APIVersion) {
		return fmt.Errorf("plugin %q at %s supports plugin API versions %v, but this agent speaks version %d", spec.Name, spec.Path, info.APIVersions, sdk.APIVersion)
	}
	inst.info = info

	var schema sdk.Schema
	err = call(func(ctx context.Context) (err error) { schema, err = base.ConfigSchema(ctx); return err })
	if err != nil {
		return fmt.Errorf("plugin %q at %s: ConfigSchema: %w", spec.Name, spec.Path, err)
	}
	if err := checkSchema(schema); err != nil {
		return fmt.Errorf("plugin %q at %s reports an invalid config schema: %w", spec.Name, spec.Path, err)
	}
	js, diags := decodeConfig(spec.Config, spec.ConfigRange, schema)
	if diags.HasErrors() {
		return &ConfigError{Plugin: spec.Name, Diags: diags}
	}
	err = call(func(ctx context.Context) error { return base.Configure(ctx, js) })
	switch {
	case errors.Is(err, sdk.ErrInvalidArgument):
		return &ConfigError{Plugin: spec.Name, Diags: hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Plugin refused its configuration",
			Detail:   err.Error(),
			Subject:  subject(spec.ConfigRange),
		}}}
	case err != nil:
		return fmt.Errorf("plugin %q at %s: Configure: %w", spec.Name, spec.Path, err)
	}
	return nil
}

// env is the plugin's environment: the agent's, WARREN_DATA_DIR, the spec's
// variables, then go-plugin's own, later entries winning.
func (p *Plugin) env(pluginEnv []string) []string {
	env := os.Environ()
	if dir := p.host.opts.DataDir; dir != "" {
		env = append(env, EnvDataDir+"="+dir)
	}
	keys := make([]string, 0, len(p.spec.Env))
	for k := range p.spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+p.spec.Env[k])
	}
	return append(env, pluginEnv...)
}

// checkExecutable reports a plugin path that cannot be run, naming the
// plugin block to fix.
func checkExecutable(s Spec) error {
	hint := fmt.Sprintf("check path in the plugin %q block", s.Name)
	if !filepath.IsAbs(s.Path) {
		return fmt.Errorf("plugin %q: executable path %q is not absolute (%s)", s.Name, s.Path, hint)
	}
	fi, err := os.Stat(s.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("plugin %q: executable %s: %w (%s)", s.Name, s.Path, fs.ErrNotExist, hint)
	case err != nil:
		return fmt.Errorf("plugin %q: executable %s: %w", s.Name, s.Path, err)
	case fi.IsDir():
		return fmt.Errorf("plugin %q: executable %s is a directory (%s)", s.Name, s.Path, hint)
	case fi.Mode()&0o111 == 0:
		return fmt.Errorf("plugin %q: %s is not executable (mode %v; %s)", s.Name, s.Path, fi.Mode(), hint)
	}
	return nil
}

// pluginLogger keeps the loggers go-plugin derives for a plugin (its
// forwarded stderr, its stdio) under the plugin's name rather than appending
// the executable's.
type pluginLogger struct{ hclog.Logger }

func (l pluginLogger) Named(string) hclog.Logger { return l }

func (h *Host) unixSocketConfig() *plugin.UnixSocketConfig {
	if h.socketDir == "" {
		return nil
	}
	return &plugin.UnixSocketConfig{TempDir: h.socketDir}
}
