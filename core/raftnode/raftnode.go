// Package raftnode runs hashicorp/raft for a manager: raft-boltdb for the log
// and stable store, file snapshots, a transport over the cluster port's
// stream layer (mutual TLS) or plain TCP in tests, single-node bootstrap on
// first start (unless the manager joins an existing cluster), a clean restart
// on an existing data dir, membership changes, and the force-new-cluster
// recovery after a lost quorum.
package raftnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"

	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/sdk"
)

// ErrNotLeader is returned for writes on a manager that is not the leader.
var ErrNotLeader = errors.New("this manager is not the Raft leader")

// ErrNoLeader is returned when no leader is known (an election is running or
// there is no quorum).
var ErrNoLeader = errors.New("no Raft leader: election in progress or no quorum")

// OpenLogStore opens the raft-boltdb file at path that holds a node's Raft
// log and stable state.
//
// The log is appended at its end and truncated at its start, so its free
// pages come and go in long runs: a map freelist rebuilt when the file is
// opened, instead of one written on every commit, keeps each commit's cost
// to the entries it adds.
func OpenLogStore(path string) (*raftboltdb.BoltStore, error) {
	return raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{
		NoFreelistSync: true, FreelistType: bbolt.FreelistMapType,
	}})
}

// Config configures a Node.
type Config struct {
	// ID is the node's stable Raft server ID.
	ID string
	// Dir holds raft.db and the snapshots.
	Dir string
	// BindAddr is the TCP address Raft listens on when Layer is nil;
	// Advertise is what peers dial.
	BindAddr  string
	Advertise string
	// Layer, when set, carries Raft's connections (the cluster port's mTLS
	// stream layer); BindAddr is then not used.
	Layer raft.StreamLayer
	// Join: this manager enters an existing cluster (the leader adds it
	// as a voter), so it never bootstraps one.
	Join bool
	// ForceNewCluster rewrites the Raft configuration to this node alone
	// before starting: the recovery when a quorum of managers is lost for
	// good. The state is kept; the other managers must join again.
	ForceNewCluster bool
	// FSM is the state machine.
	FSM *fsm.FSM

	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	Logger            hclog.Logger
	// OnApply, if set, is told how long each Apply on the leader took
	// from proposing to applied, and its error (metrics).
	OnApply func(took time.Duration, err error)
}

// Node is a running Raft member.
type Node struct {
	Raft      *raft.Raft
	proposer  *proposer
	logs      *raftboltdb.BoltStore
	store     *trackedStore // logs, with its write errors recorded
	transport *raft.NetworkTransport
	id        raft.ServerID
	logger    hclog.Logger
	onApply   func(time.Duration, error)
}

// Open starts Raft on cfg.Dir, bootstrapping a single-node cluster when the
// directory holds no Raft state yet.
func Open(cfg Config) (*Node, error) {
	logger := cfg.Logger.Named("raft")
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("raft: create %s: %w", cfg.Dir, err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	// Fast failure detection for small clusters; still well above LAN RTTs.
	rc.HeartbeatTimeout = 500 * time.Millisecond
	rc.ElectionTimeout = 500 * time.Millisecond
	rc.LeaderLeaseTimeout = 250 * time.Millisecond
	rc.CommitTimeout = 5 * time.Millisecond
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 512
	if cfg.SnapshotThreshold > 0 {
		rc.SnapshotThreshold = cfg.SnapshotThreshold
	}
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	if cfg.TrailingLogs > 0 {
		rc.TrailingLogs = cfg.TrailingLogs
	}

	// bbolt panics on a damaged file (raft-boltdb's open walks all of it):
	// check it first, where a panic cannot take the agent down.
	logPath := filepath.Join(cfg.Dir, LogFile)
	rebuild := false
	if _, err := os.Stat(logPath); err == nil {
		start := time.Now()
		err := CheckLog(context.Background(), logPath)
		logger.Debug("checked the Raft log", "path", logPath, "took", time.Since(start))
		if err != nil {
			if !cfg.ForceNewCluster || !errors.Is(err, sdk.ErrDataLoss) {
				return nil, err
			}
			logger.Error("force-new-cluster: the Raft log is damaged", "error", err)
			rebuild = true
		}
	}
	var logs *raftboltdb.BoltStore
	closeLogs := func() {
		if logs != nil {
			logs.Close()
		}
	}
	if !rebuild {
		var err error
		if logs, err = OpenLogStore(logPath); err != nil {
			return nil, fmt.Errorf("raft: open log store %s: %w", logPath, err)
		}
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 3, logger)
	if err != nil {
		closeLogs()
		return nil, fmt.Errorf("raft: open snapshot store: %w", err)
	}
	// The store must be able to continue from what Raft holds: never start
	// Raft where it would hand out indexes the store has applied already.
	d := Durable{Dir: cfg.Dir}
	if err := d.readSnapshots(snaps); err != nil {
		closeLogs()
		return nil, err
	}
	if logs != nil {
		if err := d.readLog(logs); err != nil {
			logs.Close()
			return nil, err
		}
		if err := d.CheckStore(cfg.FSM.AppliedIndex()); err != nil {
			if !cfg.ForceNewCluster || !errors.Is(err, errStoreAhead) {
				logs.Close()
				return nil, fmt.Errorf("raft: %w\n%s", err, storeAdvice(logPath, err))
			}
			logger.Error("force-new-cluster: the Raft log is behind the state store", "error", err)
			rebuild = true
		}
	}
	advertise, err := net.ResolveTCPAddr("tcp", cfg.Advertise)
	if err != nil {
		closeLogs()
		return nil, fmt.Errorf("raft: advertise address %q: %w", cfg.Advertise, err)
	}
	var transport *raft.NetworkTransport
	if cfg.Layer != nil {
		transport = raft.NewNetworkTransportWithLogger(cfg.Layer, 5, 10*time.Second, logger)
	} else {
		transport, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, advertise, 5, 10*time.Second, logger)
		if err != nil {
			closeLogs()
			return nil, fmt.Errorf("raft: listen on %s: %w", cfg.BindAddr, err)
		}
	}
	if rebuild {
		if err := rebuildFromStore(cfg, rc, &logs, snaps, transport, d, logger); err != nil {
			_ = transport.Close()
			closeLogs()
			return nil, err
		}
	}
	// Raft writes through a store that remembers a failed write (a full
	// disk), made once logs is final (a rebuild replaces it).
	store := newTrackedStore(logs, logPath, logger)
	n := &Node{logs: logs, store: store, transport: transport, id: rc.LocalID, logger: logger, onApply: cfg.OnApply}

	existing, err := raft.HasExistingState(logs, logs, snaps)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("raft: inspect state: %w", err)
	}
	if cfg.ForceNewCluster {
		if !existing {
			n.closeStores()
			return nil, errors.New("raft: force-new-cluster needs this manager's existing Raft state, and there is none in " + cfg.Dir)
		}
		logger.Warn("force-new-cluster: rewriting the Raft configuration to this manager alone", "id", cfg.ID, "addr", transport.LocalAddr())
		only := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.Advertise)}}}
		if err := raft.RecoverCluster(rc, cfg.FSM, logs, logs, snaps, transport, only); err != nil {
			n.closeStores()
			return nil, fmt.Errorf("raft: force-new-cluster: %w", err)
		}
	}
	r, err := raft.NewRaft(rc, cfg.FSM, store, store, snaps, transport)
	if err != nil {
		n.closeStores()
		return nil, fmt.Errorf("raft: start: %w", err)
	}
	n.Raft = r
	n.proposer = newProposer(r)
	if !existing && !cfg.Join {
		logger.Info("no Raft state: bootstrapping a new single-node cluster", "id", cfg.ID, "addr", transport.LocalAddr())
		boot := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: transport.LocalAddr()}}}
		if err := r.BootstrapCluster(boot).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = n.Shutdown()
			return nil, fmt.Errorf("raft: bootstrap: %w", err)
		}
	}
	return n, nil
}

func (n *Node) closeStores() {
	_ = n.transport.Close()
	_ = n.logs.Close()
}

// WaitLeader blocks until some node is leader (this one, for a single-node
// cluster) or ctx ends. It waits on Raft's leadership observations, not a
// sleep loop.
func (n *Node) WaitLeader(ctx context.Context) error {
	obs := make(chan raft.Observation, 16)
	observer := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.Raft.RegisterObserver(observer)
	defer n.Raft.DeregisterObserver(observer)
	for {
		if addr, _ := n.Raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-obs:
		case <-ctx.Done():
			return fmt.Errorf("waiting for a Raft leader: %w", ctx.Err())
		}
	}
}

// IsLeader reports whether this node is the leader.
func (n *Node) IsLeader() bool { return n.Raft.State() == raft.Leader }

// LeaderCh is raft's leadership notification channel.
func (n *Node) LeaderCh() <-chan bool { return n.Raft.LeaderCh() }

// Apply proposes cmd and waits until it is applied. It returns what the FSM
// returned for it (an applied object, or the command's own error).
// Concurrent calls share log entries (see proposer): each still gets its
// own command's result, and a failure of the entry as a whole (leadership
// lost, shutdown) is every one of its commands' error.
func (n *Node) Apply(ctx context.Context, cmd fsm.Command) (any, error) {
	data, err := fsm.Encode(cmd)
	if err != nil {
		return nil, err
	}
	if n.Raft.State() != raft.Leader {
		if addr, _ := n.Raft.LeaderWithID(); addr == "" {
			if err := n.StorageFault(); err != nil {
				return nil, err
			}
			return nil, ErrNoLeader
		}
		return nil, ErrNotLeader
	}
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	start := time.Now()
	resp, err := n.proposer.propose(data, timeout)
	if n.onApply != nil {
		n.onApply(time.Since(start), err)
	}
	if err != nil {
		if fault := n.StorageFault(); fault != nil {
			// The leader could not append the entry to its own log.
			return nil, fault
		}
		switch {
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			return nil, fmt.Errorf("%w (%v)", ErrNotLeader, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, fmt.Errorf("raft apply: %w", context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("raft apply: %w", err)
	}
	if err, ok := resp.(error); ok {
		return nil, err
	}
	return resp, nil
}

// LeaderWithID returns the leader's address and ID, empty when none is known.
func (n *Node) LeaderWithID() (raft.ServerAddress, raft.ServerID) { return n.Raft.LeaderWithID() }

// VerifyLeader confirms with a quorum that this node is still the leader.
func (n *Node) VerifyLeader() error { return n.Raft.VerifyLeader().Error() }

// State returns the node's Raft state.
func (n *Node) State() raft.RaftState { return n.Raft.State() }

// LastIndex returns the last index in the log.
func (n *Node) LastIndex() uint64 { return n.Raft.LastIndex() }

// CommitIndex returns the latest committed index.
func (n *Node) CommitIndex() uint64 { return n.Raft.CommitIndex() }

// Configuration returns the latest Raft configuration.
func (n *Node) Configuration() (raft.Configuration, error) {
	f := n.Raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("raft configuration: %w", err)
	}
	return f.Configuration(), nil
}

// VoterAddrs returns the addresses of the voters in the latest Raft
// configuration, sorted; nil when it cannot be read.
func (n *Node) VoterAddrs() []string {
	conf, err := n.Configuration()
	if err != nil {
		return nil
	}
	var out []string
	for _, srv := range conf.Servers {
		if srv.Suffrage == raft.Voter {
			out = append(out, string(srv.Address))
		}
	}
	slices.Sort(out)
	return out
}

// AddVoter adds (or updates the address of) a voter; leader only.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	return n.membership(ctx, func(timeout time.Duration) raft.IndexFuture {
		return n.Raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, timeout)
	})
}

// RemoveServer removes a server from the configuration; leader only.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	return n.membership(ctx, func(timeout time.Duration) raft.IndexFuture {
		return n.Raft.RemoveServer(raft.ServerID(id), 0, timeout)
	})
}

func (n *Node) membership(ctx context.Context, change func(time.Duration) raft.IndexFuture) error {
	if n.Raft.State() != raft.Leader {
		return ErrNotLeader
	}
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if err := change(timeout).Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w (%v)", ErrNotLeader, err)
		}
		return fmt.Errorf("raft membership change: %w", err)
	}
	return nil
}

// Snapshot asks Raft for a snapshot now.
func (n *Node) Snapshot() error {
	return n.Raft.Snapshot().Error()
}

// Stats is a summary of the node's Raft state.
type Stats struct {
	State        string
	Leader       string
	LeaderID     string
	LastIndex    uint64
	AppliedIndex uint64
}

// Stats returns the node's Raft state.
func (n *Node) Stats() Stats {
	addr, id := n.Raft.LeaderWithID()
	return Stats{
		State:        n.Raft.State().String(),
		Leader:       string(addr),
		LeaderID:     string(id),
		LastIndex:    n.Raft.LastIndex(),
		AppliedIndex: n.Raft.AppliedIndex(),
	}
}

// Shutdown stops Raft and closes its stores.
func (n *Node) Shutdown() error {
	err := n.Raft.Shutdown().Error()
	n.proposer.close()
	n.closeStores()
	return err
}
