// Package plugintest starts a plugin binary for its author's tests exactly
// as the Warren agent does: go-plugin with the sdk's handshake and plugin
// sets, AutoMTLS, gRPC, the same message size limit (sdk.ClientConfig), then
// Info (the API version is checked) and Configure with a JSON config.
//
//	p := plugintest.Start(t, bin, plugintest.WithConfig(map[string]any{"path": dir}))
//	st := store.NewClient(p.Conn)
//
// The process is killed when the test ends, also when it fails. It is quiet:
// go-plugin's lines and the plugin's log are kept and shown through t.Log
// only if the test fails, or always when WARREN_PLUGIN_LOGS is set (1: info
// and above; debug or trace: that level and above).
package plugintest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/warrenorch/warren/sdk"
)

// EnvLogs is the environment variable that makes every test show its
// plugins' logs, not only a failed one: 1 (info), debug or trace.
const EnvLogs = "WARREN_PLUGIN_LOGS"

// callTimeout bounds each of Info and Configure at start.
const callTimeout = time.Minute

// maxLog bounds the log kept per plugin process; older lines are dropped.
const maxLog = 1 << 20

// Option changes how Start launches and configures a plugin.
type Option func(*options)

type options struct {
	config    []byte
	configure bool
	env       []string
	command   func(path string) *exec.Cmd
}

// WithConfig sets the configuration passed to Configure: a []byte or
// json.RawMessage is sent as it is, anything else is marshalled to JSON (a
// map[string]any mirrors the operator's config block). Without it the
// plugin is configured with {}, as the agent does for a plugin block without
// a config block.
func WithConfig(cfg any) Option {
	return func(o *options) {
		switch c := cfg.(type) {
		case []byte:
			o.config = c
		case json.RawMessage:
			o.config = c
		default:
			b, err := json.Marshal(c)
			if err != nil {
				panic(fmt.Sprintf("plugintest.WithConfig(%T): %v", cfg, err))
			}
			o.config = b
		}
	}
}

// WithoutConfigure leaves the plugin unconfigured, for a test that checks
// what the plugin does before Configure or calls Configure itself.
func WithoutConfigure() Option {
	return func(o *options) { o.configure = false }
}

// WithEnv adds KEY=value variables to the plugin's environment, after the
// test process's own.
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// WithDataDir sets $WARREN_DATA_DIR (sdk.EnvDataDir) for the plugin, as the
// agent does with its data directory.
func WithDataDir(dir string) Option {
	return WithEnv(sdk.EnvDataDir + "=" + dir)
}

// WithCommand builds the plugin's command from its path, for a plugin run
// some other way (inside a network namespace, under a wrapper). f is called
// for every process (Restart too), so it must return a new, unstarted
// command each time. Its Env, if nil, is the test process's environment;
// WithEnv's variables are added.
func WithCommand(f func(path string) *exec.Cmd) Option {
	return func(o *options) { o.command = f }
}

// Plugin is one plugin binary under test. Conn and Client refer to its
// current process; Restart replaces them.
type Plugin struct {
	// Conn is the gRPC connection to the plugin: wrap it in the kind's
	// client (store.NewClient(p.Conn), runtime.NewClient(p.Conn), ...).
	Conn *grpc.ClientConn
	// Client is go-plugin's handle on the process.
	Client *plugin.Client
	// Info is what the plugin reported at start.
	Info sdk.Info

	t       testing.TB
	path    string
	opts    options
	cmd     *exec.Cmd
	started int     // processes started, to tell their logs apart
	logs    []*logs // one per process
}

// Start launches the plugin binary at path, checks that it speaks
// sdk.APIVersion and configures it. It fails the test if any step fails.
func Start(t testing.TB, path string, opts ...Option) *Plugin {
	t.Helper()
	p := &Plugin{t: t, path: path, opts: options{config: []byte("{}"), configure: true}}
	for _, o := range opts {
		o(&p.opts)
	}
	// One cleanup, at Start's place in the test's cleanup order, for every
	// process: one started by Restart is killed after the test's later
	// cleanups (destroying what it made through the new process) have run.
	t.Cleanup(func() {
		if p.Client != nil {
			p.Client.Kill()
		}
		if !t.Failed() && os.Getenv(EnvLogs) == "" {
			return
		}
		for _, l := range p.logs {
			l.show(t)
		}
	})
	p.start()
	return p
}

// PID is the current process's ID.
func (p *Plugin) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the current process has exited.
func (p *Plugin) Exited() bool { return p.Client.Exited() }

// Kill stops the current process: go-plugin asks it to exit, then kills
// it. It is safe to call more than once.
func (p *Plugin) Kill() { p.Client.Kill() }

// Kill9 kills the current process with SIGKILL, as a crash would, and
// returns once it has exited. Conn stays open, so calls on it fail as they
// would in the agent after a crash: with sdk.ErrPluginUnavailable.
func (p *Plugin) Kill9() {
	p.t.Helper()
	if err := syscall.Kill(p.PID(), syscall.SIGKILL); err != nil {
		p.t.Fatalf("kill -9 plugin %s (pid %d): %v", p.path, p.PID(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !p.Client.Exited() {
		if time.Now().After(deadline) {
			p.t.Fatalf("plugin %s (pid %d) still running 10s after SIGKILL", p.path, p.PID())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Restart stops the current process if it still runs (Kill) and starts a
// new one with the same options, configured the same way, as the agent
// does after a plugin crashed. Conn, Client and Info then refer to the new
// process: wrap Conn again.
func (p *Plugin) Restart() *Plugin {
	p.t.Helper()
	p.Client.Kill()
	p.start()
	return p
}

func (p *Plugin) start() {
	t := p.t
	t.Helper()
	var cmd *exec.Cmd
	if p.opts.command != nil {
		cmd = p.opts.command(p.path)
	} else {
		cmd = exec.Command(p.path)
	}
	p.started++
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, p.opts.env...)

	logs := &logs{name: fmt.Sprintf("%s (process %d)", filepath.Base(p.path), p.started)}
	p.logs = append(p.logs, logs)
	logger := hclog.New(&hclog.LoggerOptions{Name: filepath.Base(p.path), Level: logLevel(), Output: logs})
	cfg := sdk.ClientConfig(cmd, logger)
	cfg.SyncStdout = logs
	cfg.SyncStderr = logs
	client := plugin.NewClient(cfg)
	p.cmd, p.Client = cmd, client

	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin %s: %v", p.path, err)
	}
	raw, err := rpc.Dispense(sdk.DispenseName)
	if err != nil {
		t.Fatalf("plugin %s: dispense: %v", p.path, err)
	}
	conn, ok := raw.(*grpc.ClientConn)
	if !ok {
		t.Fatalf("plugin %s: dispensed %T, not a gRPC connection", p.path, raw)
	}
	p.Conn = conn

	base := sdk.NewBaseClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	info, err := base.Info(ctx)
	if err != nil {
		t.Fatalf("plugin %s: Info: %v", p.path, err)
	}
	if !slices.Contains(info.APIVersions, sdk.APIVersion) {
		t.Fatalf("plugin %s supports plugin API versions %v, but the agent speaks version %d", p.path, info.APIVersions, sdk.APIVersion)
	}
	p.Info = info
	if p.opts.configure {
		if err := base.Configure(ctx, p.opts.config); err != nil {
			t.Fatalf("plugin %s: Configure(%s): %v", p.path, p.opts.config, err)
		}
	}
}

func logLevel() hclog.Level {
	switch v := os.Getenv(EnvLogs); v {
	case "", "0", "1":
		return hclog.Info
	default:
		if l := hclog.LevelFromString(v); l != hclog.NoLevel {
			return l
		}
		return hclog.Info
	}
}

// logs keeps one process's log, shown when the test ends if it failed or
// EnvLogs is set.
type logs struct {
	name    string
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int
}

// show hands the log to t.Log.
func (l *logs) show(t testing.TB) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.buf.Len() == 0:
	case l.dropped > 0:
		t.Logf("log of plugin %s (first %d bytes dropped):\n%s", l.name, l.dropped, l.buf.String())
	default:
		t.Logf("log of plugin %s:\n%s", l.name, l.buf.String())
	}
}

// Write keeps b, dropping the oldest bytes beyond maxLog.
func (l *logs) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(b)
	if over := l.buf.Len() - maxLog; over > 0 {
		l.buf.Next(over)
		l.dropped += over
	}
	return len(b), nil
}
