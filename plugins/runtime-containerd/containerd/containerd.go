// Package containerd is Warren's default runtime: tasks are containerd
// containers run by runc through containerd's io.containerd.runc.v2 shim.
//
// # Where tasks live
//
// Every task is one containerd container (ID = task ID) in the plugin's
// containerd namespace (default "warren"), labelled warren.task-id, with an
// overlayfs snapshot of the same key and one task (process). The plugin
// keeps no state of its own: containers, their labels and containerd's
// tasks are the truth, so a new plugin process sees everything an earlier
// one started. A task's process belongs to its shim, not to the plugin or to
// containerd, so tasks keep running when the plugin (or the warren agent, or
// containerd itself) stops.
//
// Labels the plugin keeps on each container, besides the task's own:
// the log file, the stop signal and grace period, when the process started
// and, once it has exited, its exit code, exit time and whether the OOM
// killer ended it. When a task's process exits the plugin records that on
// the container and deletes the containerd task, which ends the shim and
// flushes the last output to the log; an exited task holds no process.
//
// # containerd
//
// With `socket` the plugin uses that containerd. Otherwise (or with
// `managed = true`) it runs its own: root, state, socket and config under
// data_dir ($WARREN_DATA_DIR/runtime-containerd by default), in its own
// process group so that it outlives the plugin. A new plugin process reuses
// a managed containerd that answers on its socket (its pid is in
// containerd.pid) instead of starting a second one, and restarts it when it
// died. ShutdownManaged stops it.
//
// # Deadlines
//
// No call waits on containerd for ever: each has call_timeout (image
// transfers: call_timeout without progress), and Health asks containerd's
// version within at most 2s. deadline.go has the details.
//
// # Logs
//
// The shim writes a task's stdout and stderr to one file (containerd's
// file:// log URI), under log_dir, so output is kept while the plugin is
// down. The two streams are merged in that file: TaskLogs delivers every
// chunk as StreamStdout. That is a known limitation of this runtime.
//
// # Limits
//
// Memory limits also forbid swap; CPU limits are CFS quotas over a 100ms
// period. Both need the cgroup controller; without it StartTask refuses a
// limit with ErrUnsupported. Tasks get a network namespace of their own with
// only loopback unless the spec names one to join; /etc/resolv.conf and
// /etc/hosts are whatever the image holds.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/identifiers"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/remotes"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/opencontainers/go-digest"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Name and Version identify the plugin.
const (
	Name    = "runtime-containerd"
	Version = "0.1.0"
)

// DataDirEnv names the environment variable holding Warren's data
// directory; data_dir defaults to $WARREN_DATA_DIR/runtime-containerd.
const DataDirEnv = sdk.EnvDataDir

// DefaultNamespace is the containerd namespace tasks live in by default.
const DefaultNamespace = "warren"

const (
	// snapshotter unpacks images and holds task filesystems.
	snapshotter = "overlayfs"
	// runcShim is the containerd runtime (shim) every task uses.
	runcShim = "io.containerd.runc.v2"
	// dialTimeout bounds connecting to containerd in Configure.
	dialTimeout = 10 * time.Second
)

// Config is the plugin's `config { }` block.
type Config struct {
	// Socket is the address of an existing containerd. Empty: the plugin
	// runs its own (see Managed).
	Socket string `json:"socket,omitempty"`
	// Managed makes the plugin run and supervise its own containerd, as it
	// does when Socket is empty. It cannot be combined with Socket.
	Managed bool `json:"managed,omitempty"`
	// ContainerdPath is the containerd binary a managed containerd runs;
	// empty: "containerd" looked up in PATH.
	ContainerdPath string `json:"containerd_path,omitempty"`
	// DataDir holds a managed containerd (root, state, socket, config) and,
	// by default, the logs. Default: $WARREN_DATA_DIR/runtime-containerd.
	DataDir string `json:"data_dir,omitempty"`
	// Namespace is the containerd namespace of the plugin's tasks and
	// images. Default: "warren".
	Namespace string `json:"namespace,omitempty"`
	// LogDir holds the tasks' output. Default: DataDir/logs.
	LogDir string `json:"log_dir,omitempty"`
	// InsecureRegistries are registry hosts ("127.0.0.1:5000") pulled from
	// over plain HTTP.
	InsecureRegistries []string `json:"insecure_registries,omitempty"`
	// StopOnExit makes a clean shutdown of the plugin destroy every task
	// and stop a managed containerd: for throwaway clusters such as
	// `warren agent -dev`. Default false: tasks and a managed containerd
	// outlive the plugin, so restarts never stop containers.
	StopOnExit bool `json:"stop_on_exit,omitempty"`
	// CallTimeout bounds each runtime call's work with containerd, as a Go
	// duration ("30s"); a stop's grace period comes on top, and image pulls
	// and imports are bounded by progress instead (see deadline.go).
	// Default DefaultCallTimeout.
	CallTimeout string `json:"call_timeout,omitempty"`
}

// settings is a Config resolved and checked.
type settings struct {
	address    string
	namespace  string
	logDir     string
	managed    *managedPaths // nil: an external containerd
	binary     string        // the containerd binary, when managed
	insecure   []string
	stopOnExit bool
	dataDir    string
	// callTimeout bounds one call's work with containerd (call_timeout).
	callTimeout time.Duration
}

// resolve applies the defaults and checks what the schema cannot.
func (c Config) resolve() (settings, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%s: %s: %w", Name, fmt.Sprintf(format, args...), sdk.ErrInvalidArgument)
	}
	s := settings{namespace: c.Namespace, logDir: c.LogDir}
	if s.namespace == "" {
		s.namespace = DefaultNamespace
	}
	if err := identifiers.Validate(s.namespace); err != nil {
		return s, bad("namespace %q: %v", s.namespace, err)
	}
	dataDir := c.DataDir
	if dataDir == "" {
		if env := os.Getenv(DataDirEnv); env != "" {
			dataDir = filepath.Join(env, Name)
		}
	}
	if dataDir != "" && !filepath.IsAbs(dataDir) {
		return s, bad("data_dir %q is not an absolute path", dataDir)
	}
	if s.logDir == "" && dataDir != "" {
		s.logDir = filepath.Join(dataDir, "logs")
	}
	if s.logDir == "" {
		return s, bad("log_dir is not set and there is no data_dir ($%s is not set either)", DataDirEnv)
	}
	if !filepath.IsAbs(s.logDir) {
		return s, bad("log_dir %q is not an absolute path", s.logDir)
	}
	for _, h := range c.InsecureRegistries {
		if h == "" || strings.ContainsAny(h, "/ ") {
			return s, bad("insecure_registries: %q is not a registry host like 127.0.0.1:5000", h)
		}
	}
	s.callTimeout = DefaultCallTimeout
	if c.CallTimeout != "" {
		d, err := time.ParseDuration(c.CallTimeout)
		if err != nil || d <= 0 {
			return s, bad("call_timeout %q is not a positive duration like \"30s\"", c.CallTimeout)
		}
		s.callTimeout = d
	}
	s.insecure = c.InsecureRegistries
	s.stopOnExit = c.StopOnExit
	s.dataDir = dataDir

	switch {
	case c.Socket != "" && c.Managed:
		return s, bad("set socket (use that containerd) or managed = true (run one), not both")
	case c.Socket != "":
		if c.ContainerdPath != "" {
			return s, bad("containerd_path is only used by a managed containerd, and socket is set")
		}
		s.address = c.Socket
		return s, nil
	}

	if dataDir == "" {
		return s, bad("a managed containerd needs data_dir ($%s is not set)", DataDirEnv)
	}
	p := newManagedPaths(dataDir)
	if len(p.socket)+len(".ttrpc") >= 108 {
		return s, bad("data_dir %q is too long for a unix socket path inside it", dataDir)
	}
	s.managed = &p
	s.address = p.socket
	s.binary = c.ContainerdPath
	if s.binary == "" {
		bin, err := exec.LookPath("containerd")
		if err != nil {
			return s, bad("containerd is not in PATH; install it or set containerd_path")
		}
		s.binary = bin
	} else if !filepath.IsAbs(s.binary) {
		return s, bad("containerd_path %q is not an absolute path", s.binary)
	} else if fi, err := os.Stat(s.binary); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
		return s, bad("containerd_path %q is not an executable file", s.binary)
	}
	for _, need := range []string{"containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(need); err != nil {
			return s, bad("%s is not in PATH; a managed containerd needs it", need)
		}
	}
	return s, nil
}

// Runtime drives containerd. Create it with New; the host calls Configure
// before anything else.
type Runtime struct {
	log sdk.Logger

	configureMu sync.Mutex
	be          atomic.Pointer[backend]

	locks keyedMutex // serializes changes to one task
	hub   hub        // task event subscribers

	// logger is this binary, which the shims run as the tasks' loggers
	// (RunLogger); empty when it cannot be found: the shims then write
	// plain log files, without times.
	logger string
}

// backend is what Configure sets up.
type backend struct {
	s        settings
	client   *containerd.Client
	resolver remotes.Resolver
	cgroups  cgroupInfo
	// ctx lives as long as the backend; cancel ends the event monitor.
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when the monitor has ended

	// starting is held for reading by every StartTask; Close sets closing,
	// then takes it to wait for the starts in flight, so that none creates
	// a task after stop_on_exit has listed the tasks to destroy.
	starting sync.RWMutex
	closing  atomic.Bool

	// facts holds imageFacts by the image's target digest.
	factsMu sync.Mutex
	facts   map[digest.Digest]imageFacts
}

// errClosing refuses a start on a plugin that is shutting down.
var errClosing = fmt.Errorf("%s: shutting down: %w", Name, sdk.ErrFailedPrecondition)

// beginStart admits a StartTask; the returned function ends it.
func (be *backend) beginStart() (end func(), err error) {
	if be.closing.Load() {
		// Refused at once: a read lock would wait behind Close's.
		return nil, errClosing
	}
	be.starting.RLock()
	if be.closing.Load() {
		be.starting.RUnlock()
		return nil, errClosing
	}
	return be.starting.RUnlock, nil
}

// drainStarts refuses new starts and waits for those in flight.
func (be *backend) drainStarts() {
	be.closing.Store(true)
	be.starting.Lock()
	be.starting.Unlock() // nothing to do inside: taking the lock was the wait
}

var _ runtime.Runtime = (*Runtime)(nil)

var errNotReady = fmt.Errorf("%s: not configured: %w", Name, sdk.ErrFailedPrecondition)

// New returns an unconfigured runtime.
func New() *Runtime {
	r := &Runtime{log: sdk.NewLogger(Name)}
	if exe, err := os.Executable(); err == nil {
		r.logger = exe
	}
	return r
}

// Info reports the plugin's identity.
func (r *Runtime) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Kind:        sdk.KindRuntime,
		Name:        Name,
		Version:     Version,
		APIVersions: []uint32{sdk.APIVersion},
		Description: "runs tasks as containerd containers (runc), with a managed containerd or a given one",
	}, nil
}

// ConfigSchema reports the plugin's config attributes.
func (r *Runtime) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{
		{Name: "socket", Type: sdk.TypeString, Description: "address of an existing containerd to use; empty: run a managed one"},
		{Name: "managed", Type: sdk.TypeBool, Description: "run and supervise a containerd of the plugin's own (the default when socket is empty)"},
		{Name: "containerd_path", Type: sdk.TypeString, Description: "containerd binary of the managed containerd (default: containerd in PATH)"},
		{Name: "data_dir", Type: sdk.TypeString, Description: "directory of the managed containerd and the logs (default: $WARREN_DATA_DIR/runtime-containerd)"},
		{Name: "namespace", Type: sdk.TypeString, Description: `containerd namespace of tasks and images (default "warren")`},
		{Name: "log_dir", Type: sdk.TypeString, Description: "directory of task output (default: data_dir/logs)"},
		{Name: "insecure_registries", Type: sdk.TypeListString, Description: `registry hosts pulled from over plain HTTP, e.g. ["127.0.0.1:5000"]`},
		{Name: "call_timeout", Type: sdk.TypeString, Description: `how long one call may wait on containerd, e.g. "30s" (default 30s); a stop's grace period comes on top, image pulls and imports fail after that long without progress`},
		{Name: "stop_on_exit", Type: sdk.TypeBool, Description: "on a clean plugin shutdown destroy every task and stop a managed containerd (throwaway clusters such as warren agent -dev)"},
	}}, nil
}

// Configure connects to containerd, starting the managed one if needed
// (or reusing it when it answers already), and starts watching task events.
func (r *Runtime) Configure(ctx context.Context, configJSON []byte) error {
	var c Config
	if err := sdk.DecodeConfig(configJSON, &c); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	s, err := c.resolve()
	if err != nil {
		return err
	}

	r.configureMu.Lock()
	defer r.configureMu.Unlock()
	if r.be.Load() != nil {
		return fmt.Errorf("%s: Configure was called already: %w", Name, sdk.ErrFailedPrecondition)
	}
	if err := os.MkdirAll(s.logDir, 0o700); err != nil {
		return fmt.Errorf("%s: log_dir: %v: %w", Name, err, sdk.ErrInvalidArgument)
	}
	if s.managed != nil {
		if err := ensureManaged(ctx, s.binary, *s.managed, r.log); err != nil {
			return err
		}
	}
	if strings.HasPrefix(s.address, "/") {
		if _, err := os.Stat(s.address); err != nil {
			return fmt.Errorf("%s: containerd socket %s: %v: %w", Name, s.address, err, sdk.ErrFailedPrecondition)
		}
	}
	client, err := containerd.New(s.address,
		containerd.WithDefaultNamespace(s.namespace),
		containerd.WithDefaultRuntime(runcShim),
		containerd.WithTimeout(dialTimeout))
	if err != nil {
		return fmt.Errorf("%s: connecting to containerd at %s: %v: %w", Name, s.address, err, sdk.ErrFailedPrecondition)
	}
	vctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	if _, err := client.Version(vctx); err != nil {
		client.Close()
		return fmt.Errorf("%s: containerd at %s does not answer: %v: %w", Name, s.address, err, sdk.ErrFailedPrecondition)
	}

	bctx, bcancel := context.WithCancel(namespaces.WithNamespace(context.Background(), s.namespace))
	be := &backend{
		s:       s,
		client:  client,
		cgroups: detectCgroups(),
		ctx:     bctx,
		cancel:  bcancel,
		done:    make(chan struct{}),
	}
	be.resolver = docker.NewResolver(docker.ResolverOptions{
		Hosts: docker.ConfigureDefaultRegistries(
			docker.WithAuthorizer(docker.NewDockerAuthorizer()),
			docker.WithPlainHTTP(func(host string) (bool, error) {
				return slices.Contains(s.insecure, host), nil
			}),
		),
	})
	r.be.Store(be)
	go func() {
		defer close(be.done)
		r.monitor(be)
	}()
	return nil
}

// Close stops watching events and closes the connection to containerd. It
// stops nothing else: tasks and a managed containerd keep running (see
// ShutdownManaged). The plugin process never needs it; tests do.
func (r *Runtime) Close() error {
	r.configureMu.Lock()
	defer r.configureMu.Unlock()
	be := r.be.Load()
	if be == nil {
		return nil
	}
	be.drainStarts()
	if be.s.stopOnExit {
		r.stopEverything(be)
	}
	r.be.Store(nil)
	be.cancel()
	<-be.done
	r.hub.setDown()
	return be.client.Close()
}

// stopEverything destroys every task and stops a managed containerd; Close
// calls it when stop_on_exit is set.
func (r *Runtime) stopEverything(be *backend) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tasks, err := r.ListTasks(ctx)
	if err != nil {
		r.log.Error("stop_on_exit: listing tasks", "error", err)
	}
	// In parallel: go-plugin gives a stopping plugin about 2s before it
	// kills it.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for _, t := range tasks {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := r.DestroyTask(ctx, t.TaskID, true); err != nil {
				r.log.Error("stop_on_exit: destroying task", "task", t.TaskID, "error", err)
			}
		}()
	}
	wg.Wait()
	if be.s.managed != nil {
		if err := ShutdownManaged(ctx, be.s.dataDir); err != nil {
			r.log.Error("stop_on_exit: stopping the managed containerd", "error", err)
		}
	}
}

// backend returns the configured backend and a context carrying the
// plugin's containerd namespace.
func (r *Runtime) backend(ctx context.Context) (*backend, context.Context, error) {
	be := r.be.Load()
	if be == nil {
		return nil, ctx, errNotReady
	}
	return be, namespaces.WithNamespace(ctx, be.s.namespace), nil
}

// keyedMutex is a mutex per key, held while a task is created, reaped or
// destroyed.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu   sync.Mutex
	refs int
}

// lock locks key and returns its unlock function.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[string]*keyedEntry)
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// errNotFound reports whether err says something does not exist.
func errNotFound(err error) bool {
	return errors.Is(classify(err), sdk.ErrNotFound)
}
