// Package agent wires Warren's subsystems into one running agent: config →
// plugin host → store → FSM → Raft → API server → control loops. It is the
// only place that knows all of them; each stays behind a narrow interface.
package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/config"
	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/cluster"
	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/core/metrics"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pluginhost"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/core/version"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Options are what the warren agent command passes in.
type Options struct {
	Config *config.Agent
	Logger hclog.Logger
	// Ready, if set, is closed once the API socket accepts calls.
	Ready chan<- struct{}
	// ForceNewCluster makes this manager a cluster of its own, keeping its
	// state: the recovery after a lost quorum (docs/operations.md).
	ForceNewCluster bool
}

// errRoleChanged ends one run of the agent when the cluster changed this
// node's role (promotion or demotion): Run starts again in the new role.
var errRoleChanged = errors.New("the node's role changed")

// Run runs the agent until ctx ends, then shuts everything down cleanly: the
// loops and the worker stop, the API stops, Raft shuts down, and every
// plugin process is stopped. Running containers are left running. When the
// cluster promotes or demotes the node, Run restarts its parts in the new
// role (containers keep running through that too).
func Run(ctx context.Context, opts Options) error {
	logger := opts.Logger
	if logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	cfg := opts.Config
	// Everything that can be checked is checked before the data dir is
	// created or a port bound.
	warnings, err := CheckConfig(cfg)
	if err != nil {
		return err // each problem names its attribute or block
	}
	for _, w := range warnings {
		opts.Logger.Warn("configuration", "warning", w)
	}
	met := metrics.New(version.Version)
	if cfg.MetricsAddr != "" {
		// First, so that an address in use stops the agent before it
		// changes anything.
		srv, err := met.Listen(cfg.MetricsAddr)
		if err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Close(stopCtx); err != nil {
				opts.Logger.Error("metrics server", "addr", cfg.MetricsAddr, "error", err)
			}
		}()
		opts.Logger.Info("metrics listening", "addr", "http://"+srv.Addr().String()+"/metrics")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	startPprof(opts.Logger)
	setMemoryLimit(cfg.MemoryLimit, opts.Logger)
	// The plugin host outlives role changes: the runtime plugin, and the
	// containers, stay up while the node turns manager or worker.
	sh := &shared{metrics: met}
	sh.host = pluginhost.New(opts.Logger.Named("plugin"),
		pluginhost.Options{DataDir: cfg.DataDir, OnCall: met.OnPluginCall, OnRestart: sh.pluginRestarted})
	met.SetPlugins(sh.host.List)
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if serr := sh.host.Stop(stopCtx); serr != nil {
			opts.Logger.Error("stopping plugins", "error", serr)
		}
	}()
	for {
		err := runOnce(ctx, opts, sh)
		if !errors.Is(err, errRoleChanged) {
			return err
		}
		opts.Logger.Warn("restarting in the node's new role")
		opts.ForceNewCluster = false
		opts.Ready = nil // closed by the first run
	}
}

// shared is what lives across runs.
type shared struct {
	host    *pluginhost.Host
	metrics *metrics.Metrics
	// rt is the runtime plugin's client, once started.
	rt runtime.Runtime
	// nw is the network plugin's client, once started (nil without one).
	nw network.Network
	// onNetworkRestart is the current worker's hook for a restart of the
	// network plugin's process.
	onNetworkRestart atomic.Pointer[func()]
}

// pluginRestarted is the plugin host's OnRestart: a restarted network
// plugin is set up again by the worker.
func (sh *shared) pluginRestarted(p *pluginhost.Plugin) {
	if p.Kind() != sdk.KindNetwork {
		return
	}
	if f := sh.onNetworkRestart.Load(); f != nil {
		(*f)()
	}
}

// run is one run of the agent in one role.
type run struct {
	opts    Options
	cfg     *config.Agent
	logger  hclog.Logger
	nodeID  string
	id      *identity
	host    *pluginhost.Host
	metrics *metrics.Metrics
	mux     *clusternet.Mux
	peers   *managerSet
	// roleChanged receives the node's new role, once.
	roleChanged chan pki.Role
}

func (r *run) changeRole(role pki.Role) {
	select {
	case r.roleChanged <- role:
	default:
	}
}

func runOnce(ctx context.Context, opts Options, sh *shared) (err error) {
	cfg := opts.Config
	logger := opts.Logger
	nodeID, err := loadNodeID(cfg.DataDir)
	if err != nil {
		return err
	}
	id, err := loadIdentity(ctx, cfg, nodeID, logger)
	if err != nil {
		return err
	}
	role := id.role()
	logger.Info("starting warren agent", "version", version.Version, "node_id", nodeID, "node_name", cfg.NodeName,
		"role", role, "cluster", id.creds.Identity().ClusterID, "data_dir", cfg.DataDir)
	if role == pki.RoleWorker && cfg.Worker == nil {
		return errors.New("this node is a worker in its cluster but the agent has no worker { } block")
	}
	if role == pki.RoleManager && len(id.kek) == 0 {
		return fmt.Errorf("this node is a manager but %s holds no key-encryption key", id.dir)
	}
	if role == pki.RoleWorker {
		if err := retireRaftState(cfg.DataDir, logger); err != nil {
			return err
		}
	}

	r := &run{opts: opts, cfg: cfg, logger: logger, nodeID: nodeID, id: id, roleChanged: make(chan pki.Role, 1)}
	r.host, r.metrics = sh.host, sh.metrics
	r.mux, err = clusternet.Listen(cfg.BindAddr, id.creds, logger.Named("cluster"))
	if err != nil {
		return fmt.Errorf("cluster port (bind_addr): %w", err)
	}
	defer r.mux.Close()
	seed := id.seed
	if role == pki.RoleManager {
		// A manager reaches the cluster through itself first.
		seed = append([]string{cfg.Advertise}, seed...)
	}
	r.peers = newManagerSet(cfg.DataDir, clusternet.ClientCredentials(id.creds), seed, logger)
	defer r.peers.close()

	// Everything that runs until the agent stops runs under runCtx, which
	// ends before anything it uses is torn down.
	runCtx, stopRun := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() {
		stopRun()
		running.Wait()
	}()

	var (
		unixSrv *grpc.Server
		tcpSrv  *grpc.Server
		rt      runtime.Runtime
	)
	if cfg.Worker != nil && sh.rt == nil {
		rtPlugin, err := r.host.Start(ctx, pluginSpec(cfg, cfg.Worker.Runtime, sdk.KindRuntime, "worker.runtime"))
		if err != nil {
			return pluginError(cfg, err)
		}
		sh.rt = runtime.NewClient(rtPlugin.Client())
	}
	if cfg.Worker != nil && cfg.Worker.Network != "" && sh.nw == nil {
		nwPlugin, err := r.host.Start(ctx, pluginSpec(cfg, cfg.Worker.Network, sdk.KindNetwork, "worker.network"))
		if err != nil {
			return pluginError(cfg, err)
		}
		sh.nw = network.NewClient(nwPlugin.Client())
	}
	rt = sh.rt
	// The worker first: it reaches the leader through any manager, so its
	// session (and its node's liveness) does not wait for this agent's
	// manager parts, which can take a while to join Raft.
	if rt != nil {
		if err := r.startWorker(runCtx, &running, rt, sh); err != nil {
			return err
		}
	}
	if role == pki.RoleManager {
		m, err := r.startManager(ctx, runCtx, &running, rt)
		if err != nil {
			return err
		}
		defer func() {
			// The loops, the worker and the watchers stop before what
			// they use goes.
			stopRun()
			running.Wait()
			m.close()
		}()
		unixSrv, tcpSrv = m.unixSrv, m.tcpSrv
	} else {
		unixSrv = newWorkerAPI(r, rt).grpcServer()
		tcpSrv = grpc.NewServer(append(append(r.metrics.ServerOptions(), clusternet.ServerBufferOptions()...), grpc.Creds(r.mux.ServerCredentials()),
			grpc.ChainUnaryInterceptor((&cluster.Authorizer{State: state.New()}).UnaryInterceptor),
			grpc.ChainStreamInterceptor((&cluster.Authorizer{State: state.New()}).StreamInterceptor))...)
	}
	serveErr := make(chan error, 2)
	go func() { serveErr <- tcpSrv.Serve(r.mux.GRPCListener()) }()
	defer stopGRPC(tcpSrv)

	lis, err := listenAPISocket(cfg.APISocket, cfg.APISocketGroup, logger)
	if err != nil {
		return err
	}
	go func() { serveErr <- unixSrv.Serve(lis) }()
	defer func() {
		stopGRPC(unixSrv)
		_ = os.Remove(cfg.APISocket)
	}()

	running.Add(1)
	go func() {
		defer running.Done()
		r.renewLoop(runCtx)
	}()

	logger.Info("API listening", "socket", cfg.APISocket, "cluster_port", r.mux.Addr().String())
	if opts.Ready != nil {
		close(opts.Ready)
	}
	for {
		select {
		case <-ctx.Done():
			logger.Info("shutting down")
			return nil
		case err := <-serveErr:
			return fmt.Errorf("API server: %w", err)
		case newRole := <-r.roleChanged:
			if err := r.switchRole(ctx, newRole); err != nil {
				logger.Error("the cluster changed this node's role but its certificate could not be renewed; retrying", "to", newRole, "error", err)
				time.AfterFunc(2*time.Second, func() { r.changeRole(newRole) })
				continue
			}
			logger.Warn("the cluster changed this node's role", "from", role, "to", newRole)
			return errRoleChanged
		}
	}
}

// switchRole renews the node's certificate when it does not carry the new
// role yet; the next run starts in the role of the certificate.
func (r *run) switchRole(ctx context.Context, want pki.Role) error {
	for attempt := 0; r.id.role() != want; attempt++ {
		if attempt == 5 {
			return fmt.Errorf("the renewed certificate says %s, the cluster said %s", r.id.role(), want)
		}
		if err := r.renew(ctx); err != nil {
			return err
		}
	}
	return nil
}

// retireRaftState removes what a demoted manager kept of the manager's
// role: its Raft log and snapshots (a copy of the cluster state) and the
// key-encryption key of the CA. If it is promoted again it enters the Raft
// configuration afresh and gets the key back.
func retireRaftState(dataDir string, logger hclog.Logger) error {
	raftDir := filepath.Join(dataDir, "raft")
	kek := filepath.Join(dataDir, "certs", "kek")
	for _, p := range []string{raftDir, kek} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		logger.Warn("this node is a worker now: removing what it kept as a manager", "path", p)
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("remove %s: %w", p, err)
		}
	}
	return nil
}

// stopGRPC stops a server gracefully, cutting streams (events, logs,
// sessions, which never end on their own) after a grace period.
func stopGRPC(g *grpc.Server) {
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		g.Stop()
	}
}

func logExit(logger hclog.Logger, what string, err error) {
	if err != nil && !errors.Is(err, context.Canceled) {
		logger.Error(what+" stopped", "error", err)
	}
}

// pluginSpec turns a plugin name used in the config into what the host needs.
func pluginSpec(cfg *config.Agent, name string, kind sdk.Kind, use string) pluginhost.Spec {
	spec := pluginhost.Spec{Name: name, Kind: kind, Use: use, Path: cfg.PluginPath(name)}
	if p := cfg.Plugin(name); p != nil {
		spec.Args, spec.Env, spec.Config, spec.ConfigRange = p.Args, p.Env, p.Config, p.ConfigRange
	}
	return spec
}

// pluginError renders a plugin's config block errors like the config
// file's own: file:line:col with the source snippet.
func pluginError(cfg *config.Agent, err error) error {
	var ce *pluginhost.ConfigError
	if errors.As(err, &ce) {
		return fmt.Errorf("plugin %q: invalid config block:\n%w", ce.Plugin, config.DiagnosticsError(cfg.Files(), ce.Diags))
	}
	return err
}

func pluginStatuses(h *pluginhost.Host) []*apiv1.PluginStatus {
	var out []*apiv1.PluginStatus
	for _, s := range h.List() {
		ps := &apiv1.PluginStatus{
			Name: s.Name, Kind: string(s.Kind), Version: s.Version, Path: s.Path, Pid: int64(s.PID),
			State: string(s.State), Restarts: uint32(s.Restarts), LastError: s.LastError,
		}
		if !s.StartedAt.IsZero() {
			ps.StartedAt = timestamppb.New(s.StartedAt)
		}
		out = append(out, ps)
	}
	return out
}

// loadNodeID reads the node's ID from the data dir, creating it on first start.
func loadNodeID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "node-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if id == "" {
			return "", fmt.Errorf("%s is empty", path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	id := api.NewID()
	if err := writeFileAtomic(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write node id: %w", err)
	}
	return id, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func live(path string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false
	}
	defer conn.Close()
	_, err = apiv1.NewWarrenClient(conn).ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
	return err == nil
}
