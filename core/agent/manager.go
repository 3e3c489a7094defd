package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/config"
	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/cluster"
	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/metrics"
	"github.com/warrenorch/warren/core/orchestrator"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pluginhost"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/schedloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/core/tunnel"
	"github.com/warrenorch/warren/core/version"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/scheduler"
	"github.com/warrenorch/warren/sdk/store"
)

// managerParts are a manager's running pieces.
type managerParts struct {
	logger    hclog.Logger
	host      *pluginhost.Host
	plugins   []string
	node      *raftnode.Node
	machine   *fsm.FSM
	bus       *events.Broker
	forwarder *cluster.Forwarder
	stopWatch func()
	// stopMetrics ends the metrics' reading of this manager's parts.
	stopMetrics func()
	unixSrv     *grpc.Server
	tcpSrv      *grpc.Server
}

func (m *managerParts) close() {
	m.stopMetrics()
	m.stopWatch()
	if err := m.node.Shutdown(); err != nil {
		m.logger.Error("raft shutdown", "error", err)
	}
	m.machine.Close()
	m.bus.Close()
	// The manager's plugins go with it; the runtime plugin stays.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range m.plugins {
		if err := m.host.StopPlugin(ctx, name); err != nil {
			m.logger.Error("stop plugin", "plugin", name, "error", err)
		}
	}
}

// startManager starts the store and scheduler plugins, the FSM and Raft
// (bootstrapping a new cluster, or entering an existing one as a voter),
// the API and cluster services and the leader's control loops.
func (r *run) startManager(ctx, runCtx context.Context, running *sync.WaitGroup, rt runtime.Runtime) (*managerParts, error) {
	cfg, logger := r.cfg, r.logger
	mcfg := cfg.Manager
	if mcfg == nil {
		// A promoted worker, or a node joined with a manager token, runs
		// the default manager parts.
		mcfg = config.Default().Manager
	}
	raftDir := filepath.Join(cfg.DataDir, "raft")
	storeSpec := pluginSpec(cfg, mcfg.Store, sdk.KindStore, "manager.store")
	storePlugin, err := r.host.Start(ctx, storeSpec)
	if errors.Is(err, sdk.ErrDataLoss) {
		storePlugin, err = r.rebuildStore(ctx, storeSpec, raftDir, err)
	}
	if err != nil {
		return nil, pluginError(cfg, err)
	}
	schedPlugin, err := r.host.Start(ctx, pluginSpec(cfg, mcfg.Scheduler, sdk.KindScheduler, "manager.scheduler"))
	if err != nil {
		return nil, pluginError(cfg, err)
	}

	view := state.New()
	bus := events.NewBroker()
	machine, err := fsm.New(ctx, store.NewClient(storePlugin.Client()), view, bus, logger)
	if err != nil {
		bus.Close()
		return nil, err
	}
	joining := !r.id.newCluster && !hasRaftState(raftDir)
	advertise, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		machine.Close()
		bus.Close()
		return nil, fmt.Errorf("advertise %q: %w", cfg.Advertise, err)
	}
	node, err := raftnode.Open(raftnode.Config{
		ID:                r.nodeID,
		Dir:               raftDir,
		Advertise:         cfg.Advertise,
		Layer:             r.mux.RaftLayer(advertise),
		Join:              joining,
		ForceNewCluster:   r.opts.ForceNewCluster,
		FSM:               machine,
		SnapshotThreshold: mcfg.SnapshotThreshold,
		SnapshotInterval:  mcfg.SnapshotInterval,
		TrailingLogs:      mcfg.TrailingLogs,
		Logger:            logger,
		OnApply:           r.metrics.OnRaftApply,
	})
	if err != nil {
		machine.Close()
		bus.Close()
		return nil, err
	}
	health, stopWatch := cluster.WatchHealth(node.Raft)
	m := &managerParts{logger: logger, host: r.host, plugins: []string{mcfg.Store, mcfg.Scheduler}, node: node, machine: machine, bus: bus, stopWatch: stopWatch, stopMetrics: func() {}}
	m.forwarder = cluster.NewForwarder(node, r.peers.pool, func() string { return quorumSummary(node) })
	ok := false
	defer func() {
		if !ok {
			m.close()
		}
	}()

	if joining {
		if err := r.enterRaft(ctx); err != nil {
			return nil, err
		}
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	err = node.WaitLeader(waitCtx)
	cancel()
	if err != nil {
		return nil, err
	}
	if r.id.newCluster {
		if err := r.bootstrapCluster(ctx, node, view, mcfg); err != nil {
			return nil, err
		}
	}
	if r.opts.ForceNewCluster {
		if err := r.dropOtherManagers(ctx, node, view); err != nil {
			return nil, err
		}
	}

	disp := dispatcher.New(dispatcher.Deps{
		State:        view,
		Events:       bus,
		Raft:         node,
		Leader:       node.IsLeader,
		Logger:       logger,
		HeartbeatTTL: mcfg.HeartbeatTTL,
		// Workers beat five times per TTL, so one lost beat never marks a
		// node down.
		HeartbeatPeriod: mcfg.HeartbeatTTL / 5,
		Managers:        node.VoterAddrs,
		KEK:             r.id.kek,
	})
	allTasks := func() []*apiv1.Task { return view.Tasks(state.TaskFilter{}) }
	m.stopMetrics = r.metrics.SetManager(metrics.ManagerSources{
		Raft:  node.Raft,
		Tasks: allTasks,
		Sessions: func() (int, uint64) {
			st := disp.Stats()
			return st.Sessions, st.Heartbeats
		},
	})
	// Every worker, this node's own included, opens a tunnel to every
	// manager: the API reaches the runtimes through them.
	tunnels := tunnel.NewRegistry(func(ctx context.Context) (string, error) {
		c, ok := cluster.CallerFrom(ctx)
		if !ok || c.NodeID == "" {
			return "", status.Error(codes.PermissionDenied, "a node tunnel needs a node certificate")
		}
		return c.NodeID, nil
	})
	workers := &tunnelWorkers{reg: tunnels, state: view}
	apiSrv := api.NewServer(api.Options{
		State:    view,
		Raft:     node,
		Events:   bus,
		Plugins:  func() []*apiv1.PluginStatus { return pluginStatuses(r.host) },
		Workers:  workers,
		NodeID:   r.nodeID,
		NodeName: cfg.NodeName,
		Version:  version.Version,
		KEK:      r.id.kek,

		EventSubscriberBytes: int(mcfg.EventSubscriberBytes),
		FirstOptions:         r.metrics.ServerOptions(),
	})
	services := cluster.NewServices(cluster.Deps{
		State: view, Raft: node, KEK: r.id.kek, Health: health, Logger: logger.Named("cluster"),
		OnRoleChange: func(nodeID string) { disp.Disconnect(nodeID) },
		Probe: func(ctx context.Context, addr string) error {
			conn, err := r.peers.conn(addr)
			if err != nil {
				return err
			}
			_, err = apiv1.NewWarrenClient(conn).ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
			return err
		},
	})
	authz := &cluster.Authorizer{State: view,
		Joins: cluster.NewJoinLimiter(cluster.DefaultJoinFailureBurst, cluster.DefaultJoinFailureEvery, nil, logger.Named("cluster"))}
	// Raft peers must still be managers in the state: a demoted or dropped
	// manager's certificate does not reach Raft. An empty state (this
	// manager still catching up) checks nothing yet.
	r.mux.SetRaftCheck(func(id pki.Identity) error {
		if view.ClusterID() == "" {
			return nil
		}
		if n, ok := view.Node(id.NodeID); !ok || n.GetRole() != apiv1.NodeRole_NODE_ROLE_MANAGER {
			return fmt.Errorf("node %s is not a manager in the cluster state", id.NodeID)
		}
		return nil
	})

	m.unixSrv = apiSrv.GRPCServer(
		grpc.ChainUnaryInterceptor(cluster.LocalUnaryInterceptor, m.forwarder.UnaryInterceptor),
		grpc.ChainStreamInterceptor(cluster.LocalStreamInterceptor),
	)
	api.RegisterService(m.unixSrv, &apiv1.Cluster_ServiceDesc, services)
	m.tcpSrv = apiSrv.GRPCServer(append(clusternet.ServerBufferOptions(),
		grpc.Creds(r.mux.ServerCredentials()),
		grpc.ChainUnaryInterceptor(authz.UnaryInterceptor, m.forwarder.UnaryInterceptor),
		grpc.ChainStreamInterceptor(authz.StreamInterceptor, leaderOnlyStreams(node)),
	)...)
	api.RegisterService(m.tcpSrv, &apiv1.Cluster_ServiceDesc, services)
	api.RegisterService(m.tcpSrv, &apiv1.NodeCA_ServiceDesc, services)
	api.RegisterService(m.tcpSrv, &apiv1.Dispatcher_ServiceDesc, disp)
	api.RegisterService(m.tcpSrv, &apiv1.NodeTunnel_ServiceDesc, tunnels)

	sched := scheduler.NewClient(schedPlugin.Client())
	running.Add(2)
	go func() {
		defer running.Done()
		runWhileLeader(runCtx, node, logger, m.forwarder.SetLeaderReady,
			func(ctx context.Context) { r.registerManager(ctx, node, view) },
			func(ctx context.Context) { managerStatus(ctx, node, view, health, logger) },
			func(ctx context.Context) {
				logExit(logger, "subnet allocator", allocateSubnets(ctx, node, view, bus, logger))
			},
			func(ctx context.Context) { logExit(logger, "dispatcher", disp.Run(ctx)) },
			func(ctx context.Context) {
				logExit(logger, "orchestrator", orchestrator.Run(ctx, orchestrator.Deps{
					State: view, Events: bus, Raft: node, Logger: logger,
					OnRestarts: r.metrics.OnTaskRestarts,
				}))
			},
			func(ctx context.Context) {
				logExit(logger, "scheduler loop", schedloop.Run(ctx, schedloop.Deps{
					State: view, Events: bus, Raft: node, Scheduler: sched, Logger: logger,
					OnSchedule: r.metrics.OnSchedule, AwaitDelivered: disp.AwaitDelivered,
				}))
			},
			func(ctx context.Context) { logExit(logger, "task metrics", r.metrics.WatchTasks(ctx, bus, allTasks)) },
		)
	}()
	go func() {
		defer running.Done()
		r.watchOwnRole(runCtx, view, bus)
	}()
	running.Add(2)
	go func() {
		defer running.Done()
		r.followManagers(runCtx, node)
	}()
	go func() {
		defer running.Done()
		endRemovedSessions(runCtx, bus, disp)
	}()
	ok = true
	return m, nil
}

// rebuildStore answers a store plugin that refused its damaged data
// (damage wraps sdk.ErrDataLoss): when Raft's snapshot and log in raftDir
// hold everything from the first entry on, the store is started once with
// store.EnvDiscardDamaged, which keeps the damaged data aside and starts
// empty, and then again as configured (so that a later restart of the
// plugin never discards anything); Raft then restores its snapshot into it
// and replays its log. Otherwise the agent refuses to start: a state it
// cannot trust is never acted on.
func (r *run) rebuildStore(ctx context.Context, spec pluginhost.Spec, raftDir string, damage error) (*pluginhost.Plugin, error) {
	d, err := raftnode.Inspect(ctx, raftDir)
	if err != nil {
		return nil, fmt.Errorf("%w\nand Raft cannot rebuild it: %v", damage, err)
	}
	if err := d.CheckStore(0); err != nil {
		return nil, fmt.Errorf("%w\nand Raft cannot rebuild it: %v\n"+
			"Restore this manager from another manager (move its data directory aside and join it again with a manager join token), "+
			"or restore the store's file from a backup", damage, err)
	}
	r.logger.Warn("the state store refused its damaged data: rebuilding it from Raft's snapshot and log",
		"damage", damage.Error(), "raft_snapshot_index", d.SnapshotIndex, "raft_first_index", d.FirstIndex, "raft_last_index", d.LastIndex)
	discard := spec
	discard.Env = maps.Clone(spec.Env)
	if discard.Env == nil {
		discard.Env = map[string]string{}
	}
	discard.Env[store.EnvDiscardDamaged] = "1"
	if _, err := r.host.Start(ctx, discard); err != nil {
		return nil, fmt.Errorf("start the store to discard its damaged data: %w", err)
	}
	if err := r.host.StopPlugin(ctx, spec.Name); err != nil {
		return nil, fmt.Errorf("stop the store after it discarded its damaged data: %w", err)
	}
	return r.host.Start(ctx, spec)
}

// hasRaftState reports whether dir holds a Raft log.
func hasRaftState(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "raft.db"))
	return err == nil
}

// enterRaft asks the leader, through any manager, to add this manager to
// the Raft configuration, retrying until it is done or ctx ends.
func (r *run) enterRaft(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		conn, err := r.peers.dial(ctx)
		if err == nil {
			cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			var resp *apiv1.AddRaftMemberResponse
			resp, err = apiv1.NewNodeCAClient(conn).AddRaftMember(cctx, &apiv1.AddRaftMemberRequest{Addr: r.cfg.Advertise})
			cancel()
			if err == nil {
				r.peers.update(resp.GetManagers())
				r.logger.Info("entered the Raft configuration", "managers", resp.GetManagers())
				return nil
			}
		}
		r.logger.Warn("could not enter the Raft configuration yet", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("enter the Raft configuration: %w", ctx.Err())
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// bootstrapCluster proposes a new cluster's ID, overlay plan and CA, once.
func (r *run) bootstrapCluster(ctx context.Context, node *raftnode.Node, view *state.State, mcfg *config.Manager) error {
	if !node.IsLeader() {
		return errors.New("bootstrap: this new cluster's only manager is not its leader")
	}
	if view.ClusterID() == "" {
		info := &fsmpb.SetClusterInfo{
			ClusterId: r.id.creds.Identity().ClusterID,
			Network: &apiv1.ClusterNetwork{
				OverlayRange: mcfg.OverlayRange,
				NodePrefix:   uint32(mcfg.OverlayNodePrefix),
				Domain:       mcfg.ClusterDomain,
			},
		}
		if _, err := node.Apply(ctx, info); err != nil {
			return fmt.Errorf("bootstrap cluster: %w", err)
		}
	}
	sealedPath := filepath.Join(string(r.id.dir), sealedCAFile)
	if view.Security() == nil {
		sealed, err := os.ReadFile(sealedPath)
		if err != nil {
			return fmt.Errorf("bootstrap: the new cluster's sealed CA key: %w", err)
		}
		workerSecret, err := pki.NewSecret()
		if err != nil {
			return err
		}
		managerSecret, err := pki.NewSecret()
		if err != nil {
			return err
		}
		sealedWorker, err := cluster.SealSecret(r.id.kek, apiv1.NodeRole_NODE_ROLE_WORKER, workerSecret)
		if err != nil {
			return err
		}
		sealedManager, err := cluster.SealSecret(r.id.kek, apiv1.NodeRole_NODE_ROLE_MANAGER, managerSecret)
		if err != nil {
			return err
		}
		sec := &fsmpb.ClusterSecurity{
			CaCertPem: r.id.creds.CAPEM(), SealedCaKey: sealed,
			SealedWorkerSecret: sealedWorker, SealedManagerSecret: sealedManager,
			NodeCertTtlSeconds: int64(mcfg.NodeCertTTL / time.Second),
		}
		if _, err := node.Apply(ctx, &fsmpb.SetSecurity{Security: sec, OnlyIfUnset: true}); err != nil {
			return fmt.Errorf("bootstrap the cluster CA: %w", err)
		}
	}
	if err := os.Remove(sealedPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	r.id.newCluster = false
	return nil
}

// dropOtherManagers, after a force-new-cluster recovery, records the other
// managers as down workers: they are no longer in the Raft configuration,
// and must join again (with fresh data dirs) to be managers.
func (r *run) dropOtherManagers(ctx context.Context, node *raftnode.Node, view *state.State) error {
	for _, n := range view.Nodes() {
		if n.GetId() == r.nodeID || n.GetRole() != apiv1.NodeRole_NODE_ROLE_MANAGER {
			continue
		}
		_, err := fsm.UpdateNode(ctx, node.Apply, view, n.GetId(), func(n *apiv1.Node) (bool, error) {
			n.Role, n.Status = apiv1.NodeRole_NODE_ROLE_WORKER, apiv1.NodeStatus_NODE_STATUS_DOWN
			n.Message, n.UpdatedAt = "left the managers in a force-new-cluster recovery; join again to be a manager", timestamppb.Now()
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("force-new-cluster: record %s as gone: %w", n.GetName(), err)
		}
		r.logger.Warn("force-new-cluster: manager dropped", "node", n.GetName())
	}
	return nil
}

// registerManager records this manager in the state each time it becomes
// the leader: role, address, versions; READY unless a worker session owns
// its status.
func (r *run) registerManager(ctx context.Context, node *raftnode.Node, view *state.State) {
	fill := func(n *apiv1.Node) {
		n.Name = r.cfg.NodeName
		n.Role = apiv1.NodeRole_NODE_ROLE_MANAGER
		n.Worker = r.cfg.Worker != nil
		if !n.Worker || n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_UNSPECIFIED {
			n.Status = apiv1.NodeStatus_NODE_STATUS_READY
		}
		if n.GetAvailability() == apiv1.NodeAvailability_NODE_AVAILABILITY_UNSPECIFIED {
			n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE
		}
		n.Addr = r.cfg.Advertise
		n.Os, n.Arch = goruntime.GOOS, goruntime.GOARCH
		n.AgentVersion = version.Version
		n.UpdatedAt = timestamppb.Now()
		if n.CreatedAt == nil {
			n.CreatedAt = n.UpdatedAt
		}
	}
	for {
		var err error
		if _, known := view.Node(r.nodeID); known {
			_, err = fsm.UpdateNode(ctx, node.Apply, view, r.nodeID, func(n *apiv1.Node) (bool, error) {
				fill(n)
				return true, nil
			})
		} else {
			n := &apiv1.Node{Id: r.nodeID}
			fill(n)
			_, err = node.Apply(ctx, &fsmpb.UpsertNode{Node: n})
		}
		if err == nil || ctx.Err() != nil {
			return
		}
		r.logger.Warn("register this manager", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// managerStatusPeriod is how often the leader refreshes the status of the
// managers that run no worker (workers' status comes from their sessions).
const managerStatusPeriod = time.Second

// managerStatus keeps the status of manager-only nodes in step with Raft:
// READY while the leader's heartbeats reach them, DOWN while they fail. It
// also finishes demotions: a voter whose node the state says is a worker
// leaves the Raft configuration.
func managerStatus(ctx context.Context, node *raftnode.Node, view *state.State, health *cluster.Health, logger hclog.Logger) {
	t := time.NewTicker(managerStatusPeriod)
	defer t.Stop()
	for {
		conf, err := node.Configuration()
		if err == nil {
			for _, srv := range conf.Servers {
				n, ok := view.Node(string(srv.ID))
				if ok && n.GetRole() == apiv1.NodeRole_NODE_ROLE_WORKER {
					// Demoted (the API's removal did not finish): finish it.
					logger.Warn("removing a demoted node from the Raft configuration", "node", n.GetName())
					if err := node.RemoveServer(ctx, n.GetId()); err != nil && ctx.Err() == nil {
						logger.Warn("remove a demoted node from the Raft configuration", "node", n.GetName(), "error", err)
					}
					continue
				}
				if !ok || n.GetWorker() {
					continue
				}
				want, msg := apiv1.NodeStatus_NODE_STATUS_READY, "manager reachable"
				if health.Failing(string(srv.ID)) {
					want, msg = apiv1.NodeStatus_NODE_STATUS_DOWN, "the leader's heartbeats to this manager fail"
				}
				if n.GetStatus() == want {
					continue
				}
				_, err := fsm.UpdateNode(ctx, node.Apply, view, n.GetId(), func(n *apiv1.Node) (bool, error) {
					if n.GetWorker() || n.GetStatus() == want {
						return false, nil
					}
					n.Status, n.Message, n.UpdatedAt = want, msg, timestamppb.Now()
					return true, nil
				})
				if err != nil && ctx.Err() == nil {
					logger.Warn("record a manager's status", "node", n.GetName(), "error", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// followManagers keeps the node's manager set (used to renew its
// certificate and by its worker) in step with the Raft configuration.
func (r *run) followManagers(ctx context.Context, node *raftnode.Node) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		r.peers.update(node.VoterAddrs())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// endRemovedSessions ends the dispatcher session of a node removed from
// the cluster: its certificate no longer admits it, so it cannot come back
// without joining again.
func endRemovedSessions(ctx context.Context, bus *events.Broker, disp *dispatcher.Dispatcher) {
	w := bus.Watch(func(ev *apiv1.Event) bool {
		return ev.GetKind() == "node" && ev.GetAction() == apiv1.EventAction_EVENT_ACTION_DELETED
	}, 64)
	_ = w.Run(ctx, func(ev *apiv1.Event) { disp.Disconnect(ev.GetId()) }, func() {})
}

// watchOwnRole ends the run when the cluster state stops listing this
// manager as a manager (it was demoted).
func (r *run) watchOwnRole(ctx context.Context, view *state.State, bus *events.Broker) {
	w := bus.Watch(func(ev *apiv1.Event) bool { return ev.GetKind() == "node" && ev.GetId() == r.nodeID }, 16)
	check := func() {
		if n, ok := view.Node(r.nodeID); ok && n.GetRole() == apiv1.NodeRole_NODE_ROLE_WORKER {
			r.changeRole(pki.RoleWorker)
		}
	}
	check()
	_ = w.Run(ctx, func(*apiv1.Event) { check() }, check)
}

// leaderOnlyStreams sends workers' dispatcher sessions to the leader: a
// follower refuses them, naming the leader.
func leaderOnlyStreams(node *raftnode.Node) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if info.FullMethod == apiv1.Dispatcher_Session_FullMethodName && node.State() != raft.Leader {
			addr, _ := node.LeaderWithID()
			return notLeaderError(string(addr))
		}
		return h(srv, ss)
	}
}

// quorumSummary says how many managers there are, for "no quorum".
func quorumSummary(node *raftnode.Node) string {
	voters := len(node.VoterAddrs())
	return fmt.Sprintf("the cluster has %d managers and needs %d of them for a quorum", voters, voters/2+1)
}
