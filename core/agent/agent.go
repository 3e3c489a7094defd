// Package agent wires Warren's subsystems into one running agent: config →
// plugin host → store → FSM → Raft → API server → control loops. It is the
// only place that knows all of them; each stays behind a narrow interface.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/config"
	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/orchestrator"
	"github.com/warrenorch/warren/core/pluginhost"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/schedloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/core/version"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/scheduler"
	"github.com/warrenorch/warren/sdk/store"
)

// Options are what the warren agent command passes in.
type Options struct {
	Config *config.Agent
	Logger hclog.Logger
	// Ready, if set, is closed once the API socket accepts calls.
	Ready chan<- struct{}
}

// Run runs the agent until ctx ends, then shuts everything down cleanly: the
// loops and the worker stop, the API stops, Raft shuts down, and every
// plugin process is stopped. Running containers are left running.
func Run(ctx context.Context, opts Options) (err error) {
	cfg := opts.Config
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if cfg.Manager == nil {
		return fmt.Errorf("an agent without a manager { } block needs to join a cluster, which this version does not do yet: %w", sdk.ErrUnsupported)
	}
	if cfg.Worker != nil && cfg.Worker.Network != "" {
		return fmt.Errorf("worker.network = %q: network plugins are not wired in yet; remove the attribute (tasks then get a private network namespace): %w", cfg.Worker.Network, sdk.ErrUnsupported)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	nodeID, err := loadNodeID(cfg.DataDir)
	if err != nil {
		return err
	}
	startPprof(logger)
	logger.Info("starting warren agent", "version", version.Version, "node_id", nodeID, "node_name", cfg.NodeName, "data_dir", cfg.DataDir)

	host := pluginhost.New(logger.Named("plugin"), pluginhost.Options{DataDir: cfg.DataDir})
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if serr := host.Stop(stopCtx); serr != nil {
			logger.Error("stopping plugins", "error", serr)
		}
	}()
	storePlugin, err := host.Start(ctx, pluginSpec(cfg, cfg.Manager.Store, sdk.KindStore, "manager.store"))
	if err != nil {
		return pluginError(cfg, err)
	}
	schedPlugin, err := host.Start(ctx, pluginSpec(cfg, cfg.Manager.Scheduler, sdk.KindScheduler, "manager.scheduler"))
	if err != nil {
		return pluginError(cfg, err)
	}
	var rt runtime.Runtime
	if cfg.Worker != nil {
		rtPlugin, err := host.Start(ctx, pluginSpec(cfg, cfg.Worker.Runtime, sdk.KindRuntime, "worker.runtime"))
		if err != nil {
			return pluginError(cfg, err)
		}
		rt = runtime.NewClient(rtPlugin.Client())
	}

	view := state.New()
	bus := events.NewBroker()
	defer bus.Close()
	machine, err := fsm.New(ctx, store.NewClient(storePlugin.Client()), view, bus, logger)
	if err != nil {
		return err
	}
	node, err := raftnode.Open(raftnode.Config{
		ID:                nodeID,
		Dir:               filepath.Join(cfg.DataDir, "raft"),
		BindAddr:          cfg.BindAddr,
		Advertise:         cfg.Advertise,
		FSM:               machine,
		SnapshotThreshold: cfg.Manager.SnapshotThreshold,
		SnapshotInterval:  cfg.Manager.SnapshotInterval,
		TrailingLogs:      cfg.Manager.TrailingLogs,
		Logger:            logger,
	})
	if err != nil {
		machine.Close()
		return err
	}
	defer func() {
		if serr := node.Shutdown(); serr != nil {
			logger.Error("raft shutdown", "error", serr)
		}
		machine.Close()
	}()

	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = node.WaitLeader(waitCtx)
	cancel()
	if err != nil {
		return err
	}
	if err := bootstrap(ctx, node, view, nodeID, cfg); err != nil {
		return err
	}

	// The dispatcher: workers' streams to the leader. This agent's own
	// worker reaches it on a unix socket in the data dir.
	disp := dispatcher.New(dispatcher.Deps{
		State:        view,
		Events:       bus,
		Raft:         node,
		Leader:       node.IsLeader,
		Logger:       logger,
		HeartbeatTTL: cfg.Manager.HeartbeatTTL,
		// Workers beat five times per TTL, so one lost beat never marks a
		// node down.
		HeartbeatPeriod: cfg.Manager.HeartbeatTTL / 5,
	})
	dispSock := filepath.Join(cfg.DataDir, "dispatcher.sock")
	dispLis, err := listenUnix("dispatcher socket", dispSock)
	if err != nil {
		return err
	}
	dispSrv := grpc.NewServer()
	apiv1.RegisterDispatcherServer(dispSrv, disp)
	go func() { _ = dispSrv.Serve(dispLis) }()
	defer func() {
		dispSrv.Stop()
		_ = os.Remove(dispSock)
	}()

	var workers api.Workers
	if rt != nil {
		workers = &localWorkers{nodeID: nodeID, nodeName: cfg.NodeName, rt: rt}
	}
	srv := api.NewServer(api.Options{
		State:    view,
		Raft:     node,
		Events:   bus,
		Plugins:  func() []*apiv1.PluginStatus { return pluginStatuses(host) },
		Workers:  workers,
		NodeID:   nodeID,
		NodeName: cfg.NodeName,
		Version:  version.Version,
	})
	lis, err := listenUnix("api_socket", cfg.APISocket)
	if err != nil {
		return err
	}
	g := srv.GRPCServer()
	serveErr := make(chan error, 1)
	go func() { serveErr <- g.Serve(lis) }()
	defer func() {
		// Streams (events, logs) never end on their own: stop them after a grace.
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			g.Stop()
		}
		_ = os.Remove(cfg.APISocket)
	}()

	// Control loops (leader only) and the worker run under runCtx, which
	// ends before anything they use is torn down.
	runCtx, stopRun := context.WithCancel(ctx)
	var running sync.WaitGroup
	defer func() {
		stopRun()
		running.Wait()
	}()
	sched := scheduler.NewClient(schedPlugin.Client())
	taskLock := &sync.Mutex{}
	running.Add(1)
	go func() {
		defer running.Done()
		runWhileLeader(runCtx, node, logger,
			func(ctx context.Context) { logExit(logger, "dispatcher", disp.Run(ctx)) },
			func(ctx context.Context) {
				logExit(logger, "orchestrator", orchestrator.Run(ctx, orchestrator.Deps{
					State: view, Events: bus, Raft: node, Logger: logger, Lock: taskLock,
				}))
			},
			func(ctx context.Context) {
				logExit(logger, "scheduler loop", schedloop.Run(ctx, schedloop.Deps{
					State: view, Events: bus, Raft: node, Scheduler: sched, Logger: logger, Lock: taskLock,
				}))
			},
		)
	}()
	if rt != nil {
		conn, err := grpc.NewClient("unix://"+dispSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("worker: dial the dispatcher: %w", err)
		}
		w, err := worker.New(worker.Options{
			NodeID:          nodeID,
			NodeName:        cfg.NodeName,
			Addr:            cfg.Advertise,
			Labels:          cfg.Worker.Labels,
			DataDir:         cfg.DataDir,
			Runtime:         rt,
			Dial:            func(context.Context) (apiv1.DispatcherClient, error) { return apiv1.NewDispatcherClient(conn), nil },
			Logger:          logger,
			AgentVersion:    version.Version,
			HeartbeatPeriod: cfg.Worker.HeartbeatInterval,
		})
		if err != nil {
			conn.Close()
			return fmt.Errorf("worker: %w", err)
		}
		running.Add(1)
		go func() {
			defer running.Done()
			defer conn.Close()
			logExit(logger, "worker", w.Run(runCtx))
		}()
	}

	logger.Info("API listening", "socket", cfg.APISocket)
	if opts.Ready != nil {
		close(opts.Ready)
	}
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
		return nil
	case err := <-serveErr:
		return fmt.Errorf("API server: %w", err)
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

// bootstrap gives a new cluster its ID and (re-)registers this manager.
func bootstrap(ctx context.Context, node *raftnode.Node, view *state.State, nodeID string, cfg *config.Agent) error {
	if view.ClusterID() == "" {
		if _, err := node.Apply(ctx, &fsmpb.SetClusterInfo{ClusterId: api.NewID()}); err != nil {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
	}
	now := timestamppb.Now()
	self := &apiv1.Node{
		Id:           nodeID,
		Name:         cfg.NodeName,
		Role:         apiv1.NodeRole_NODE_ROLE_MANAGER,
		Worker:       cfg.Worker != nil,
		Status:       apiv1.NodeStatus_NODE_STATUS_READY,
		Availability: apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
		Addr:         cfg.Advertise,
		Os:           goruntime.GOOS,
		Arch:         goruntime.GOARCH,
		AgentVersion: version.Version,
		CreatedAt:    now,
		UpdatedAt:    now,
	}
	if old, ok := view.Node(nodeID); ok {
		self.CreatedAt = old.GetCreatedAt()
		self.Availability = old.GetAvailability()
		self.Labels = old.GetLabels()
	}
	if _, err := node.Apply(ctx, &fsmpb.UpsertNode{Node: self}); err != nil {
		return fmt.Errorf("register node %q: %w", cfg.NodeName, err)
	}
	return nil
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

// listenUnix listens on a root-only unix socket, replacing a stale socket
// file but refusing to take over from a live agent.
func listenUnix(what, path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if _, err := os.Stat(path); err == nil {
		if live(path) {
			return nil, fmt.Errorf("%s %s: another warren agent is listening there", what, path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("%s: remove stale %s: %w", what, path, err)
		}
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return lis, nil
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
