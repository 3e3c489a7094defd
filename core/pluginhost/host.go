// Package pluginhost launches Warren's plugins, checks and configures them,
// supervises them, and hands the rest of the core a connection to each that
// survives restarts.
//
// A plugin is a separate executable speaking gRPC through hashicorp/go-plugin
// (see package sdk). For each one the host
//
//  1. starts the process (go-plugin handshake, automatic mutual TLS), its
//     JSON log lines on stderr forwarded into the agent's log under the
//     plugin's name;
//  2. calls Info and refuses a plugin of the wrong kind or without this
//     agent's API version;
//  3. calls ConfigSchema, checks the schema, decodes the operator's
//     `config { }` block against it (errors with file:line:col, as a
//     *ConfigError) and passes the result as JSON to Configure;
//  4. watches the process: when it exits or stops answering health checks
//     it is killed and started again with exponential backoff, steps 2 and 3
//     included, and the connection handed out by Plugin.Client switches to
//     the new process.
//
// Plugin processes die with the agent, even when it is kill -9'd. The host
// signals only the plugin process itself: whatever a plugin started (a
// runtime plugin's containerd and containers) is the plugin's business. A
// child that inherited the plugin's stdout or stderr keeps running after the
// plugin dies; its further output on them is discarded.
package pluginhost

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"

	"github.com/warrenorch/warren/sdk"
)

// EnvDataDir is the environment variable through which a plugin learns the
// agent's data directory (Options.DataDir).
const EnvDataDir = sdk.EnvDataDir

// Options tune a Host. Zero fields take the defaults documented on each.
type Options struct {
	// DataDir is passed to every plugin as $WARREN_DATA_DIR. Empty: not set.
	DataDir string

	// MinBackoff and MaxBackoff bound the wait before each restart attempt:
	// MinBackoff before the first, doubling up to MaxBackoff. Defaults 200ms
	// and 10s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// StableAfter is how long a process must have run for the backoff to
	// start again from MinBackoff after it dies. Default 1 minute.
	StableAfter time.Duration
	// MaxFailedStarts is how many restart attempts in a row may fail before
	// the plugin's state becomes failed. The host keeps trying at
	// MaxBackoff all the same. Default 10.
	MaxFailedStarts int

	// HealthInterval is the time between health checks of a running plugin;
	// three failed checks in a row, over at least 3 intervals and a timeout,
	// count as a hang: the process is killed and restarted. A check that
	// times out on an overloaded host (it ran late, or the plugin waits for
	// a CPU or the disk) is not counted, up to 30 intervals without an
	// answer. Default 2s.
	HealthInterval time.Duration
	// HealthTimeout bounds one health check. Default 2s.
	HealthTimeout time.Duration

	// StartTimeout bounds the go-plugin handshake of a new process. Default 30s.
	StartTimeout time.Duration
	// CallTimeout bounds each of Info, ConfigSchema and Configure. Default 30s.
	CallTimeout time.Duration
	// KillTimeout is how long a plugin is given to exit when asked before it
	// is killed, if the context passed to Stop allows that long: time for a
	// runtime to stop what it runs (stop_on_exit). Default 20s.
	KillTimeout time.Duration

	// OnRestart, if set, is called after a plugin was restarted and
	// configured, and before the host watches it again, so that the core can
	// re-sync with the new process (the store's applied index, a runtime's
	// task handles). It runs on the plugin's supervising goroutine: calls
	// through p.Client() work, but it must not call Host.Stop.
	OnRestart func(p *Plugin)

	// OnCall, if set, is told of every call the core makes through a
	// plugin's Client: the plugin's name, the full gRPC method, how long
	// the call (for a stream, opening it) took and its error, nil on
	// success. It runs on the caller's goroutine and must be quick
	// (metrics). The host's own calls (health, configure) are not included.
	OnCall func(plugin, method string, took time.Duration, err error)
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinBackoff, 200*time.Millisecond)
	def(&o.MaxBackoff, 10*time.Second)
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = o.MinBackoff
	}
	def(&o.StableAfter, time.Minute)
	if o.MaxFailedStarts <= 0 {
		o.MaxFailedStarts = 10
	}
	def(&o.HealthInterval, 2*time.Second)
	def(&o.HealthTimeout, 2*time.Second)
	def(&o.StartTimeout, 30*time.Second)
	def(&o.CallTimeout, 30*time.Second)
	def(&o.KillTimeout, 20*time.Second)
	return o
}

// Spec is what the configuration says about one plugin.
type Spec struct {
	// Name is the plugin block's name; it names the plugin in logs, errors
	// and Status, and must be unique within a Host.
	Name string
	// Kind is the kind the configuration asked this plugin to serve.
	Kind sdk.Kind
	// Use says where the configuration uses the plugin, for messages
	// ("manager.store"). Empty: "the configuration".
	Use string
	// Path is the absolute path of the executable.
	Path string
	// Args are extra command-line arguments.
	Args []string
	// Env are extra environment variables; they win over the agent's own
	// environment and WARREN_DATA_DIR.
	Env map[string]string
	// Config is the body of the plugin's `config { }` block; nil when there
	// is none.
	Config hcl.Body
	// ConfigRange is the range of the config block (or of the plugin block
	// when there is no config block). Diagnostics that HCL cannot place
	// better, such as a missing required attribute in an absent block,
	// point there.
	ConfigRange hcl.Range
}

func (s Spec) use() string {
	if s.Use == "" {
		return "the configuration"
	}
	return s.Use
}

// Host starts and supervises plugins. Its methods are safe for concurrent use.
type Host struct {
	log  hclog.Logger
	opts Options

	// socketDir holds the plugins' socket directories; "" for go-plugin's
	// default.
	socketDir string

	mu      sync.Mutex
	plugins map[string]*Plugin
	stopped bool
}

// New returns a Host that logs through logger (nil: no logging). Plugins'
// own logs appear under logger.Named(<plugin name>).
func New(logger hclog.Logger, opts Options) *Host {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	h := &Host{log: logger, opts: opts.withDefaults(), plugins: make(map[string]*Plugin)}
	h.socketDir = socketBase(opts.DataDir)
	if h.socketDir != "" {
		// Sockets left by agents that were killed or panicked go first.
		reapSocketDirs(logger, opts.DataDir)
		_ = os.RemoveAll(h.socketDir)
		if err := os.MkdirAll(h.socketDir, 0o700); err != nil {
			logger.Warn("plugin socket directory; using the default", "dir", h.socketDir, "error", err)
			h.socketDir = ""
		}
	}
	return h
}

// socketPrefix begins the names of the agents' plugin socket directories
// in os.TempDir().
const socketPrefix = "warren-plugins-"

// socketBase is where go-plugin makes the plugins' socket directories: one
// short directory per data dir and agent process (a unix socket path must
// stay under 108 bytes, so not inside the data dir itself), named
// warren-plugins-<data dir hash>-<agent pid>. Stop removes it; an agent
// killed with SIGKILL or by a panic cannot, so every host reaps, when it
// starts, the directories whose agent process is gone (reapSocketDirs).
func socketBase(dataDir string) string {
	if dataDir == "" {
		return ""
	}
	return fmt.Sprintf("%s-%d", legacySocketBase(dataDir), os.Getpid())
}

// legacySocketBase is the directory of a data dir before the name carried
// the agent's pid.
func legacySocketBase(dataDir string) string {
	sum := sha256.Sum256([]byte(dataDir))
	return filepath.Join(os.TempDir(), socketPrefix+hex.EncodeToString(sum[:5]))
}

// reapSocketDirs removes the plugin socket directories (socketBase) of
// agent processes that no longer run, and the directory an older Warren
// made for dataDir. Directories of running agents stay.
func reapSocketDirs(logger hclog.Logger, dataDir string) {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), socketPrefix+"*"))
	if err != nil {
		return
	}
	legacy := legacySocketBase(dataDir)
	for _, dir := range dirs {
		_, pidText, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), socketPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		switch {
		case !ok && dir != legacy:
			continue // an older Warren's, of another data dir
		case ok && (err != nil || pid <= 0 || processRuns(pid)):
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			logger.Warn("removing the plugin socket directory of an agent that is gone", "dir", dir, "error", err)
			continue
		}
		logger.Debug("removed the plugin socket directory of an agent that is gone", "dir", dir)
	}
}

// processRuns reports whether process pid exists and is not a zombie.
func processRuns(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, fs.ErrNotExist)
	}
	// The state letter follows the ") " that closes the command name.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// Start launches the plugin spec describes, checks its kind and API
// version, configures it, and supervises it until Stop. When Start returns
// an error no process is left behind; configuration errors are a
// *ConfigError.
func (h *Host) Start(ctx context.Context, spec Spec) (*Plugin, error) {
	if spec.Name == "" {
		return nil, errors.New("plugin with no name")
	}
	if !spec.Kind.Valid() {
		return nil, fmt.Errorf("plugin %q: unknown kind %q", spec.Name, spec.Kind)
	}
	p := newPlugin(h, spec)

	h.mu.Lock()
	switch {
	case h.stopped:
		h.mu.Unlock()
		return nil, fmt.Errorf("plugin %q: plugin host is stopped", spec.Name)
	case h.plugins[spec.Name] != nil:
		h.mu.Unlock()
		return nil, fmt.Errorf("plugin %q: already started", spec.Name)
	}
	h.plugins[spec.Name] = p
	h.mu.Unlock()

	if err := p.start(ctx); err != nil {
		h.mu.Lock()
		delete(h.plugins, spec.Name)
		h.mu.Unlock()
		return nil, err
	}
	return p, nil
}

// Get returns the plugin called name, or nil.
func (h *Host) Get(name string) *Plugin {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.plugins[name]
}

// List returns the status of every plugin, by name.
func (h *Host) List() []Status {
	h.mu.Lock()
	ps := make([]*Plugin, 0, len(h.plugins))
	for _, p := range h.plugins {
		ps = append(ps, p)
	}
	h.mu.Unlock()
	out := make([]Status, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.Status())
	}
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// StopPlugin stops the plugin called name (as Stop does) and forgets it,
// so that the same name can be started again; other plugins keep running.
// Stopping a name that is not running is not an error.
func (h *Host) StopPlugin(ctx context.Context, name string) error {
	h.mu.Lock()
	p := h.plugins[name]
	delete(h.plugins, name)
	h.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.stop(ctx)
}

// Stop stops every plugin: each is asked to exit and killed if it has not
// within Options.KillTimeout or before ctx ends. Stop returns once every
// process is gone; calls through plugins' clients fail from then on. Start
// fails after Stop. The error lists the plugins that had to be killed.
func (h *Host) Stop(ctx context.Context) error {
	h.mu.Lock()
	h.stopped = true
	ps := make([]*Plugin, 0, len(h.plugins))
	for _, p := range h.plugins {
		ps = append(ps, p)
	}
	h.mu.Unlock()

	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		wg.Go(func() { errs[i] = p.stop(ctx) })
	}
	wg.Wait()
	if h.socketDir != "" {
		_ = os.RemoveAll(h.socketDir)
	}
	return errors.Join(errs...)
}
