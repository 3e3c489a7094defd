// Package config loads the Warren agent configuration from HCL files.
//
// A configuration is one file or a directory of *.hcl files merged together.
// Load and Parse return hcl.Diagnostics carrying file:line:col ranges;
// DiagnosticsError renders them, with source snippets, as an error for the
// command line. Every attribute is optional and has a default (see Default and
// docs/config.md), but an agent needs at least one of the manager { } and
// worker { } blocks.
//
// This package only describes the configuration. It starts nothing and does not
// look at the file system beyond reading the configuration files: whether a
// plugin binary exists, or whether data_dir is writable, is checked by the code
// that uses them. The body of a plugin's config { } block is not decoded here
// either: the plugin host validates it against the schema the plugin reports.
package config

import (
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/warrenorch/warren/sdk/network"
)

// Agent is the whole agent configuration.
type Agent struct {
	// DataDir is `data_dir`, an absolute path. Default "/var/lib/warren".
	DataDir string
	// BindAddr is `bind_addr`, the host:port the Raft/cluster transport listens
	// on. Default "127.0.0.1:7420".
	BindAddr string
	// Advertise is `advertise`, the host:port other nodes use to reach this one.
	// Its host cannot be unspecified (0.0.0.0 or ::). Default: BindAddr.
	Advertise string
	// APISocket is `api_socket`, the absolute path of the API's Unix socket.
	// Default "/run/warren/warren.sock".
	APISocket string
	// APISocketGroup is `api_socket_group`, a group name or numeric ID whose
	// members may use the API socket besides root: the socket is then
	// 0660 with that group. Empty (the default) means root only (0600).
	// The agent checks every connection's peer credentials against it and
	// refuses to start when the group does not exist.
	APISocketGroup string
	// PluginDir is `plugin_dir`, an absolute path. Empty (the default) means
	// DefaultPluginDir(); use PluginPath to resolve a plugin's binary.
	PluginDir string
	// LogLevel is `log_level`: trace, debug, info, warn or error. Default "info".
	LogLevel string
	// MetricsAddr is `metrics_addr`, the host:port where the agent serves
	// Prometheus metrics over HTTP at /metrics. Empty (the default) means no
	// metrics endpoint; `warren agent -dev` uses DevMetricsAddr. The agent
	// refuses to start when it cannot listen there.
	MetricsAddr string
	// NodeName is `node_name`, a DNS label. Default: the host name, lowercased
	// and cut at the first dot.
	NodeName string
	// MemoryLimit is `memory_limit`, the agent's soft memory limit in bytes
	// (Go's runtime/debug.SetMemoryLimit): past it the garbage collector
	// runs more often; nothing fails. The GOMEMLIMIT environment variable,
	// when set, wins. Default 209715200 (200 MiB), at least 67108864.
	MemoryLimit uint64
	// Manager is the `manager { }` block; nil means this agent is not a manager.
	Manager *Manager
	// Worker is the `worker { }` block; nil means this agent is not a worker.
	Worker *Worker
	// Join is the `join { }` block: the cluster to join on first start. nil
	// means this agent bootstraps a new cluster (it then needs a manager
	// block). Once the agent holds its certificate, Join is not used again.
	Join *Join
	// Plugins are the `plugin "<name>" { }` blocks in the order they were
	// declared (files in name order). Names are unique.
	Plugins []*Plugin

	files map[string]*hcl.File
}

// Manager is the `manager { }` block.
type Manager struct {
	// Store is `store`, the name of the plugin serving the store kind.
	// Default "store-bolt".
	Store string
	// Scheduler is `scheduler`, the name of the scheduler plugin.
	// Default "scheduler-roundrobin".
	Scheduler string
	// HeartbeatTTL is `heartbeat_ttl`: a worker that has not sent a heartbeat
	// for this long is down. Default 10s, at least 1s.
	HeartbeatTTL time.Duration
	// SnapshotThreshold is `snapshot_threshold`, the number of Raft log entries
	// between snapshots. Default 8192, at least 1.
	SnapshotThreshold uint64
	// SnapshotInterval is `snapshot_interval`, how often Raft checks whether to
	// snapshot. Default 2m, at least 1s.
	SnapshotInterval time.Duration
	// TrailingLogs is `trailing_logs`, the number of Raft log entries kept after
	// a snapshot. Default 10240.
	TrailingLogs uint64
	// NodeCertTTL is `node_cert_ttl`, the lifetime of the node certificates
	// this cluster's CA issues; nodes renew theirs at two thirds of it.
	// Default 2160h (90 days), at least 30s. Read when the cluster is
	// bootstrapped.
	NodeCertTTL time.Duration
	// OverlayRange is `overlay_range`, the cluster's overlay network: task
	// addresses come from it, one subnet per node. Default 10.88.0.0/16.
	// Read when the cluster is bootstrapped.
	OverlayRange string
	// OverlayNodePrefix is `overlay_node_prefix`, the prefix length of each
	// node's subnet of OverlayRange. Default 24. Read at bootstrap.
	OverlayNodePrefix int
	// ClusterDomain is `cluster_domain`: service web is found as web and as
	// web.<ClusterDomain>. Default "warren". Read at bootstrap.
	ClusterDomain string
	// EventSubscriberBytes is `event_subscriber_bytes`: how many bytes of
	// events (their protobuf size) may wait for one API event stream
	// before the agent ends it as fallen behind. Default 4194304 (4 MiB),
	// at least 65536.
	EventSubscriberBytes uint64
}

// Join is the `join { }` block.
type Join struct {
	// Addresses is `addresses`, the host:port of one or more managers of
	// the cluster (their advertise addresses). At least one.
	Addresses []string
	// Token is `token`, the join token printed by `warren cluster
	// join-token worker|manager`; its role decides what this node becomes.
	Token string
}

// Worker is the `worker { }` block.
type Worker struct {
	// Runtime is `runtime`, the name of the runtime plugin.
	// Default "runtime-containerd".
	Runtime string
	// Network is `network`, the name of the network plugin. Default
	// "network-wireguard". `network = "none"` (stored as "") runs the
	// worker without one: no overlay; each task gets its own network
	// namespace with only loopback.
	Network string
	// Labels is `labels`, the node labels the scheduler can match on. Never nil
	// once loaded.
	Labels map[string]string
	// HeartbeatInterval is `heartbeat_interval`, how often the worker reports
	// to the managers. Default 2s, at least 100ms.
	HeartbeatInterval time.Duration
	// RuntimeTimeout is `runtime_timeout`, how long the worker waits for
	// one call into the runtime plugin (plus a stop's grace period) before
	// it fails the task with "runtime ... did not answer". Default 30s, at
	// least 100ms.
	RuntimeTimeout time.Duration
	// VolumesDir is `volumes_dir`, the absolute path under which the
	// node's named volumes are directories (<volumes_dir>/<name>).
	// Default "": <data_dir>/volumes.
	VolumesDir string
}

// Plugin is a `plugin "<name>" { }` block.
type Plugin struct {
	// Name is the block label, a DNS label such as "store-bolt".
	Name string
	// Path is `path`, the absolute path of the plugin binary. Empty means
	// <plugin_dir>/<name>; use Agent.PluginPath to resolve it.
	Path string
	// Args is `args`, extra arguments for the plugin process.
	Args []string
	// Env is `env`, extra environment variables for the plugin process.
	Env map[string]string
	// Config is the body of the nested `config { }` block, not decoded: the
	// plugin host validates it against the schema the plugin reports. It is
	// hcl.EmptyBody() when the block is absent.
	Config hcl.Body
	// ConfigRange is the config block's DefRange, or DeclRange when the block
	// is absent; use it as the Subject of diagnostics about the whole config.
	ConfigRange hcl.Range
	// DeclRange is the plugin block's DefRange.
	DeclRange hcl.Range
}

// NoNetwork is the `network` value that runs a worker without a network
// plugin.
const NoNetwork = "none"

// DevMetricsAddr is the metrics_addr of `warren agent -dev`.
const DevMetricsAddr = "127.0.0.1:9420"

// Defaults. docs/config.md lists the same values; keep the two in step.
const (
	defaultDataDir   = "/var/lib/warren"
	defaultBindAddr  = "127.0.0.1:7420"
	defaultAPISocket = "/run/warren/warren.sock"
	defaultLogLevel  = "info"
	// defaultMemoryLimit keeps a manager of 1,000 nodes and 10,000 tasks
	// (about 110 MiB live) under 256 MiB of RSS (docs/benchmarks.md).
	defaultMemoryLimit = 200 << 20

	defaultStore             = "store-bolt"
	defaultScheduler         = "scheduler-roundrobin"
	defaultHeartbeatTTL      = 10 * time.Second
	defaultSnapshotThreshold = 8192
	defaultSnapshotInterval  = 2 * time.Minute
	defaultTrailingLogs      = 10240
	defaultNodeCertTTL       = 90 * 24 * time.Hour
	defaultClusterDomain     = "warren"
	defaultEventSubBytes     = 4 << 20

	defaultRuntime           = "runtime-containerd"
	defaultNetwork           = "network-wireguard"
	defaultHeartbeatInterval = 2 * time.Second
	defaultRuntimeTimeout    = 30 * time.Second
)

// Default returns the configuration with every default filled in and both the
// Manager and the Worker blocks present: what `warren agent -dev` starts from.
// NodeName is the host name as a DNS label, or "localhost" when the host name
// cannot be made into one.
func Default() *Agent {
	a := defaultAgent()
	if a.NodeName == "" {
		a.NodeName = "localhost"
	}
	a.Manager = defaultManager()
	a.Worker = defaultWorker()
	return a
}

// defaultAgent is Default without the Manager and Worker blocks; NodeName is
// empty when the host name is not usable.
func defaultAgent() *Agent {
	return &Agent{
		DataDir:     defaultDataDir,
		BindAddr:    defaultBindAddr,
		Advertise:   defaultBindAddr,
		APISocket:   defaultAPISocket,
		LogLevel:    defaultLogLevel,
		NodeName:    hostnameLabel(),
		MemoryLimit: defaultMemoryLimit,
	}
}

func defaultManager() *Manager {
	return &Manager{
		Store:                defaultStore,
		Scheduler:            defaultScheduler,
		HeartbeatTTL:         defaultHeartbeatTTL,
		SnapshotThreshold:    defaultSnapshotThreshold,
		SnapshotInterval:     defaultSnapshotInterval,
		TrailingLogs:         defaultTrailingLogs,
		NodeCertTTL:          defaultNodeCertTTL,
		OverlayRange:         network.DefaultRange,
		OverlayNodePrefix:    network.DefaultNodePrefix,
		ClusterDomain:        defaultClusterDomain,
		EventSubscriberBytes: defaultEventSubBytes,
	}
}

func defaultWorker() *Worker {
	return &Worker{
		Runtime:           defaultRuntime,
		Network:           defaultNetwork,
		Labels:            map[string]string{},
		HeartbeatInterval: defaultHeartbeatInterval,
		RuntimeTimeout:    defaultRuntimeTimeout,
	}
}

// hostname is os.Hostname; tests replace it.
var hostname = os.Hostname

// hostnameLabel returns the host name lowercased and cut at its first dot, or
// "" when that is not a DNS label.
func hostnameLabel() string {
	h, err := hostname()
	if err != nil {
		return ""
	}
	h = strings.ToLower(h)
	h, _, _ = strings.Cut(h, ".")
	if checkDNSLabel(h) != "" {
		return ""
	}
	return h
}

// DefaultPluginDir returns the `plugins` folder next to the running binary
// (symbolic links resolved), where `make build` puts the built-in plugins.
func DefaultPluginDir() string {
	exe, err := os.Executable()
	if err != nil {
		// Only on platforms without a way to find the executable; argv[0] is
		// the best remaining guess.
		exe = os.Args[0]
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), "plugins")
}

// PluginPath returns the binary to run for the plugin called name: the path of
// its plugin block if that sets one, else name inside PluginDir (or
// DefaultPluginDir() when PluginDir is empty).
func (a *Agent) PluginPath(name string) string {
	if p := a.Plugin(name); p != nil && p.Path != "" {
		return p.Path
	}
	dir := a.PluginDir
	if dir == "" {
		dir = DefaultPluginDir()
	}
	return filepath.Join(dir, name)
}

// Plugin returns the plugin block called name, or nil if there is none.
func (a *Agent) Plugin(name string) *Plugin {
	for _, p := range a.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Files returns the parsed configuration files by file name, for rendering
// diagnostics with DiagnosticsError. It is safe to call on a nil Agent.
func (a *Agent) Files() map[string]*hcl.File {
	if a == nil {
		return nil
	}
	return a.files
}
