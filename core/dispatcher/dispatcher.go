// Package dispatcher is the manager's side of the worker stream: it serves
// Dispatcher.Session, one long-lived stream per worker, on the leader.
//
// A session starts with the worker's RegisterWorker, which (re-)registers the
// node as READY through Raft. The dispatcher then sends SessionInfo and the
// full set of tasks the node must know about, and from then on pushes the
// changes to those tasks the moment they are applied (one subscription to
// the event bus for all sessions, routed to each by the fanout, batching
// what arrives within a couple of milliseconds). No message
// is larger than MaxAssignmentBytes whatever the tasks hold: a full set goes
// in as many messages as it needs, the last one marking its end, and each
// service spec goes once per session, tasks referring to it (see split).
// A node that registers again unchanged is no Raft write, and a node whose
// sessions keep failing, or with a task too large to send, gets an
// "assignment" condition (ConditionAssignment). Workers send
// heartbeats and task status reports up the same stream. Reports from all
// sessions are committed together, one ReportStatus per batch window (a
// report after a quiet spell at once), and never move a task's state
// backwards.
//
// Liveness lives in the leader's memory: heartbeats are not Raft writes.
// Only transitions are committed: READY when a node registers, DOWN once
// it misses its heartbeat TTL in a session, or has been without a session
// for a whole TTL (found by a sweep within a second, all the nodes of a
// sweep in one MarkNodesDown entry; a session that merely ends, as when
// the worker's agent restarts, marks nothing: the node has its TTL to come
// back). The orchestrator reacts to DOWN: it marks the node's unfinished tasks ORPHANED (desired
// SHUTDOWN) and replaces them on other nodes. Such tasks are no longer
// Relevant, so when the node registers again the full set it is sent leaves
// them out, and its worker stops whatever of them it still runs: the
// cluster never keeps two copies of a slot running for long.
//
// Registering keeps what operators decided about a node (its availability
// and the labels set through the API; see mergeLabels) and what the cluster
// decided (its role, its creation time).
//
// The lifecycle contract is docs/task-lifecycle.md.
package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/leaderloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Defaults for the zero values of Deps' durations.
const (
	DefaultHeartbeatPeriod       = 2 * time.Second
	DefaultHeartbeatTTL          = 10 * time.Second
	DefaultStatusBatchWindow     = 2 * time.Millisecond
	DefaultAssignmentBatchWindow = 2 * time.Millisecond
)

// commitTimeout bounds one Raft commit of the dispatcher.
const commitTimeout = 10 * time.Second

// retryDelay is how long a failed status commit waits before it is retried.
const retryDelay = 100 * time.Millisecond

// eventBuffer is how many changed tasks may wait for a session before it
// counts as fallen behind; it then sends its worker the full set.
const eventBuffer = 1024

// Proposer commits commands through Raft; *raftnode.Node implements it.
type Proposer interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
}

// Deps are the dispatcher's dependencies.
type Deps struct {
	// State is the cluster state view (read-only here).
	State *state.State
	// Events is the bus the FSM publishes applied changes on.
	Events *events.Broker
	// Raft commits node and task changes.
	Raft Proposer
	// Leader reports whether this manager is the Raft leader; sessions are
	// refused (codes.Unavailable) when it is not.
	Leader func() bool
	Logger hclog.Logger
	// HeartbeatPeriod is how often workers are told to send a heartbeat.
	HeartbeatPeriod time.Duration
	// HeartbeatTTL is how long a session may stay silent before the node is
	// declared down.
	HeartbeatTTL time.Duration
	// StatusBatchWindow is how long after a commit of status reports the
	// next one waits, collecting the reports that come meanwhile into one
	// Raft entry; a report after a quiet spell is committed at once.
	StatusBatchWindow time.Duration
	// Managers, if set, returns the managers' cluster addresses, sent to
	// workers so that they can reach another manager when this one goes.
	Managers func() []string
	// AssignmentBatchWindow is how long task changes are collected before
	// they are pushed to a worker in one Assignments message.
	AssignmentBatchWindow time.Duration
	// KEK is the managers' key-encryption key, that opens the secrets
	// sent to workers.
	KEK []byte
}

// Dispatcher serves the Dispatcher gRPC service. Run must be running (on the
// leader) for sessions to be accepted.
type Dispatcher struct {
	apiv1.UnimplementedDispatcherServer

	deps Deps
	log  hclog.Logger

	mu     sync.Mutex
	runCtx context.Context // nil while Run is not running
	// runReady is closed while Run runs (a new one is made when it ends):
	// a session that arrives at a new leader before its Run waits on it.
	runReady chan struct{}
	fan      *fanout   // routes task events to sessions while Run runs
	started  time.Time // when Run started
	nodes    map[string]*nodeEntry
	pending  map[string][]pendingUpdate // by task ID
	order    []string                   // task IDs of pending, first report first
	kick     chan struct{}
	// net holds the peer set and endpoint table pushed to workers.
	net *netState
	// backlog counts the task changes routed to sessions and not sent yet.
	backlog *backlog

	heartbeats atomic.Uint64 // heartbeats received, for Stats
}

// Stats is what the dispatcher reports for metrics.
type Stats struct {
	// Sessions is the number of workers with an open session.
	Sessions int
	// Heartbeats counts the heartbeats received since the dispatcher was made.
	Heartbeats uint64
}

// Stats returns the dispatcher's session and heartbeat counts.
func (d *Dispatcher) Stats() Stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := Stats{Heartbeats: d.heartbeats.Load()}
	for _, e := range d.nodes {
		if e.session != nil {
			st.Sessions++
		}
	}
	return st
}

// nodeEntry is the leader's in-memory liveness record of a node.
type nodeEntry struct {
	// commit serializes this node's READY/DOWN decisions and their commits.
	commit sync.Mutex
	// session and lastSeen are guarded by Dispatcher.mu.
	session  *session
	lastSeen time.Time
	// failures counts the node's sessions in a row that ended before they
	// held for a TTL; failMsg is the node's "assignment" condition once
	// there were failedSessionsCondition of them. Guarded by Dispatcher.mu.
	failures int
	failMsg  string
}

// pendingUpdate is a status report waiting for the next commit.
type pendingUpdate struct {
	nodeID string
	update *apiv1.TaskStatusUpdate
}

// New returns a Dispatcher. Zero durations take the defaults.
func New(deps Deps) *Dispatcher {
	if deps.Logger == nil {
		deps.Logger = hclog.NewNullLogger()
	}
	if deps.Leader == nil {
		deps.Leader = func() bool { return true }
	}
	if deps.HeartbeatPeriod <= 0 {
		deps.HeartbeatPeriod = DefaultHeartbeatPeriod
	}
	if deps.HeartbeatTTL <= 0 {
		deps.HeartbeatTTL = DefaultHeartbeatTTL
	}
	if deps.StatusBatchWindow <= 0 {
		deps.StatusBatchWindow = DefaultStatusBatchWindow
	}
	if deps.AssignmentBatchWindow <= 0 {
		deps.AssignmentBatchWindow = DefaultAssignmentBatchWindow
	}
	return &Dispatcher{
		deps:     deps,
		log:      deps.Logger.Named("dispatcher"),
		nodes:    map[string]*nodeEntry{},
		pending:  map[string][]pendingUpdate{},
		kick:     make(chan struct{}, 1),
		net:      newNetState(),
		runReady: make(chan struct{}),
		backlog:  newBacklog(),
	}
}

// Run commits status reports and watches for nodes that never connect until
// ctx ends. Run it while this manager is the leader, with a context that
// ends when leadership is lost: sessions are accepted only while it runs, and
// all of them end (codes.Unavailable) when it returns. Reports not committed
// by then are dropped; workers report again when they reconnect.
func (d *Dispatcher) Run(ctx context.Context) error {
	d.mu.Lock()
	if d.runCtx != nil {
		d.mu.Unlock()
		return errors.New("dispatcher: Run is already running")
	}
	// One subscription for all the sessions, taken before any session
	// starts: the fanout routes each task event to the sessions of its
	// node and those that know the task.
	fan := newFanout(d.backlog)
	fanDone := make(chan struct{})
	if d.deps.Events != nil {
		sub := fan.subscribe(d.deps.Events)
		go func() {
			defer close(fanDone)
			fan.run(ctx, d.deps.Events, sub, func() {
				d.log.Warn("the dispatcher fell behind the event bus; resending every session its full task set")
			})
		}()
	} else {
		close(fanDone)
	}
	defer func() { <-fanDone }()
	d.runCtx = ctx
	d.fan = fan
	d.started = time.Now()
	close(d.runReady)
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.runReady = make(chan struct{})
		d.runCtx = nil
		d.fan = nil
		if n := len(d.order); n > 0 {
			d.log.Warn("dropping uncommitted status reports", "tasks", n)
		}
		d.pending = map[string][]pendingUpdate{}
		d.order = nil
		d.mu.Unlock()
	}()

	netDone := make(chan struct{})
	go func() {
		defer close(netDone)
		d.watchNetwork(ctx)
	}()
	defer func() { <-netDone }()

	sweep := time.NewTicker(sweepPeriod(d.deps.HeartbeatTTL))
	defer sweep.Stop()
	gathering := false
	window := time.NewTimer(0)
	<-window.C
	var windowC <-chan time.Time
	var lastCommit time.Time // the end of the last commit of reports
	for {
		select {
		case <-ctx.Done():
			window.Stop()
			return nil
		case <-d.kick:
			if windowC == nil {
				window.Reset(max(d.deps.StatusBatchWindow-time.Since(lastCommit), 0))
				windowC = window.C
			}
		case <-windowC:
			windowC = nil
			retry := d.commitPending(ctx)
			lastCommit = time.Now()
			if retry {
				window.Reset(retryDelay)
				windowC = window.C
			}
		case <-sweep.C:
			gathering = d.sweep(ctx, gathering)
		}
	}
}

// running returns Run's context and fanout, or nil when Run is not
// running.
func (d *Dispatcher) running() (context.Context, *fanout) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runCtx, d.fan
}

// runWait bounds how long a session that reaches a leader whose Run has
// not started yet (it waits for its Raft barrier) is held before it is
// refused.
const runWait = 10 * time.Second

// awaitRunning is running, but when Run has not started it waits for it
// up to runWait or until ctx ends: right after an election every worker
// comes at once, and a refusal would send each to another manager and
// back, its reconnection backoff growing past the heartbeat TTL.
func (d *Dispatcher) awaitRunning(ctx context.Context) (context.Context, *fanout) {
	d.mu.Lock()
	runCtx, fan, ready := d.runCtx, d.fan, d.runReady
	d.mu.Unlock()
	if runCtx != nil {
		return runCtx, fan
	}
	t := time.NewTimer(runWait)
	defer t.Stop()
	select {
	case <-ready:
		return d.running()
	case <-ctx.Done():
	case <-t.C:
	}
	return nil, nil
}

// enqueue adds a node's status reports to the next commit.
func (d *Dispatcher) enqueue(nodeID string, ups []*apiv1.TaskStatusUpdate) {
	if len(ups) == 0 {
		return
	}
	d.mu.Lock()
	for _, u := range ups {
		id := u.GetTaskId()
		if id == "" {
			continue
		}
		if _, ok := d.pending[id]; !ok {
			d.order = append(d.order, id)
		}
		d.pending[id] = append(d.pending[id], pendingUpdate{nodeID: nodeID, update: u})
	}
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// commitPending commits every pending report in one ReportStatus entry
// (split only past leaderloop.MaxEntryBytes). It reports whether the
// commit failed and should be retried.
func (d *Dispatcher) commitPending(ctx context.Context) (retry bool) {
	d.mu.Lock()
	pending, order := d.pending, d.order
	d.pending, d.order = map[string][]pendingUpdate{}, nil
	d.mu.Unlock()
	if len(order) == 0 {
		return false
	}
	// Only the reports that change a task, as it is now, are committed:
	// a worker repeating itself writes nothing. The FSM applies them again,
	// to the task as it is at their index.
	now := timestamppb.Now()
	var reports []*fsmpb.TaskReport
	for _, id := range order {
		cur, ok := d.deps.State.Task(id)
		if !ok {
			continue
		}
		t := proto.CloneOf(cur)
		for _, p := range pending[id] {
			if t.GetNodeId() != p.nodeID {
				d.log.Debug("ignoring a report about a task of another node", "task", id, "from", p.nodeID, "node", cur.GetNodeId())
				continue
			}
			addr := t.GetAddress()
			if state.ApplyReport(t, p.update) || t.GetAddress() != addr {
				reports = append(reports, &fsmpb.TaskReport{NodeId: p.nodeID, Update: p.update, UpdatedAt: now})
			}
		}
	}
	if len(reports) == 0 {
		return false
	}
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	for _, chunk := range leaderloop.Chunks(reports, leaderloop.MaxEntryBytes) {
		if _, err := d.deps.Raft.Apply(cctx, &fsmpb.ReportStatus{Reports: chunk}); err != nil {
			if ctx.Err() != nil || !d.deps.Leader() {
				d.log.Warn("status reports not committed: no longer the leader", "reports", len(reports), "error", err)
				return false
			}
			// Reports committed already apply again as no change.
			d.log.Error("committing status reports, will retry", "reports", len(reports), "error", err)
			d.requeue(pending, order)
			return true
		}
	}
	d.log.Trace("committed status reports", "reports", len(reports))
	return false
}

// requeue puts reports of a failed commit back in front of newer ones.
func (d *Dispatcher) requeue(pending map[string][]pendingUpdate, order []string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, newer := range d.pending {
		if _, ok := pending[id]; !ok {
			order = append(order, id)
		}
		pending[id] = append(pending[id], newer...)
	}
	d.pending, d.order = pending, order
}

// entry returns the liveness record of a node, creating it.
func (d *Dispatcher) entry(nodeID string) *nodeEntry {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.nodes[nodeID]
	if e == nil {
		e = &nodeEntry{}
		d.nodes[nodeID] = e
	}
	return e
}

// seen records that a node's session is alive.
func (d *Dispatcher) seen(e *nodeEntry) {
	d.mu.Lock()
	e.lastSeen = time.Now()
	d.mu.Unlock()
}

// errSuperseded ends a session when the same node opens a newer one.
var errSuperseded = errors.New("superseded by a newer session of the same node")

// errNotLeader ends sessions when Run stops (leadership lost or shutdown).
var errNotLeader = errors.New("not the leader")

// errDisconnected ends a session that Disconnect closed.
var errDisconnected = errors.New("disconnected by the manager")

// attach makes s the node's current session, ends an older one and commits
// the node as READY.
func (d *Dispatcher) attach(ctx context.Context, e *nodeEntry, s *session, reg *apiv1.RegisterWorker) error {
	e.commit.Lock()
	defer e.commit.Unlock()
	d.mu.Lock()
	old := e.session
	e.session = s
	e.lastSeen = time.Now()
	d.mu.Unlock()
	if old != nil {
		old.cancel(errSuperseded)
	}
	return d.commitReady(ctx, reg)
}

// detach forgets s; when it was still the node's current session and reason
// is set, the node is committed as DOWN. A session that ended, by err,
// before it held (see failedSessionsCondition) counts as a failure of the
// node's sessions.
func (d *Dispatcher) detach(e *nodeEntry, s *session, reason string, held bool, err error) {
	e.commit.Lock()
	defer e.commit.Unlock()
	d.mu.Lock()
	current := e.session == s
	if current {
		e.session = nil
		e.lastSeen = time.Now()
	}
	runCtx := d.runCtx
	failing := false
	if current && !held && runCtx != nil && runCtx.Err() == nil {
		e.failures++
		if e.failures >= failedSessionsCondition && e.failMsg == "" {
			e.failMsg = fmt.Sprintf("%d sessions in a row ended within %s of starting, the last with: %v; the worker may be unable to take its assignment (see its log)",
				e.failures, d.deps.HeartbeatTTL, err)
		}
		failing = e.failMsg != ""
	}
	d.mu.Unlock()
	if !current || runCtx == nil || runCtx.Err() != nil {
		return
	}
	if failing {
		d.updateCondition(runCtx, e, s)
	}
	if reason != "" {
		d.commitDown(runCtx, s.nodeID, reason)
	}
}

// sessionHeld records that s has lasted a TTL: the node's sessions no
// longer fail.
func (d *Dispatcher) sessionHeld(ctx context.Context, e *nodeEntry, s *session) {
	d.mu.Lock()
	e.failures, e.failMsg = 0, ""
	d.mu.Unlock()
	d.updateCondition(ctx, e, s)
}

// Disconnect ends the node's current session, if any, and reports whether
// there was one. The worker reconnects by itself.
func (d *Dispatcher) Disconnect(nodeID string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.nodes[nodeID]
	if e == nil || e.session == nil {
		return false
	}
	e.session.cancel(errDisconnected)
	return true
}

// attributes are the runtime attributes a worker registered with, less the
// ones whose key no constraint could name (logged): a bad key in the state
// would make every scheduling request invalid.
func (d *Dispatcher) attributes(reg *apiv1.RegisterWorker) map[string]string {
	var out map[string]string
	for k, v := range reg.GetAttributes() {
		if err := scheduler.CheckAttributeKey(k); err != nil {
			d.log.Warn("leaving out a runtime attribute of the node", "node", reg.GetNodeId(), "error", err)
			continue
		}
		if strings.HasPrefix(k, scheduler.ReservedAttrPrefix) {
			d.log.Warn("leaving out a runtime attribute under Warren's own prefix", "node", reg.GetNodeId(), "attribute", k)
			continue
		}
		if out == nil {
			out = make(map[string]string, len(reg.GetAttributes()))
		}
		out[k] = v
	}
	return out
}

// capabilities are the runtime capabilities a worker registered with that
// this version defines, sorted; unknown names are left out (logged).
func (d *Dispatcher) capabilities(reg *apiv1.RegisterWorker) []string {
	var out []string
	for _, c := range reg.GetCapabilities() {
		if !slices.Contains(runtime.Capabilities, runtime.Capability(c)) {
			d.log.Warn("leaving out a runtime capability this version does not know", "node", reg.GetNodeId(), "capability", c)
			continue
		}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return out
}

// commitReady registers the node as READY with what the worker reported,
// keeping what belongs to the cluster: role, availability, creation time
// and the labels set by operators (see mergeLabels).
func (d *Dispatcher) commitReady(ctx context.Context, reg *apiv1.RegisterWorker) error {
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	now := timestamppb.Now()
	// fill sets what the worker reports; what belongs to the cluster stays.
	fill := func(n *apiv1.Node, old *apiv1.Node) {
		n.Name = reg.GetName()
		n.Worker = true
		n.Status = apiv1.NodeStatus_NODE_STATUS_READY
		n.Message = ""
		n.Resources = reg.GetResources()
		if reg.GetAddr() != "" {
			n.Addr = reg.GetAddr()
		}
		n.Os, n.Arch = reg.GetOs(), reg.GetArch()
		n.Attributes = d.attributes(reg)
		n.Capabilities = d.capabilities(reg)
		n.AgentVersion, n.RuntimeVersion = reg.GetAgentVersion(), reg.GetRuntimeVersion()
		n.UpdatedAt = now
		n.Labels = mergeLabels(old, reg.GetLabels())
		if len(reg.GetLabels()) > 0 {
			n.AgentLabels = maps.Clone(reg.GetLabels())
		}
	}
	var err error
	unchanged := false
	if _, known := d.deps.State.Node(reg.GetNodeId()); known {
		_, err = fsm.UpdateNode(cctx, d.deps.Raft.Apply, d.deps.State, reg.GetNodeId(), func(n *apiv1.Node) (bool, error) {
			old := proto.CloneOf(n)
			if n.GetRole() == apiv1.NodeRole_NODE_ROLE_UNSPECIFIED {
				n.Role = apiv1.NodeRole_NODE_ROLE_WORKER
			}
			if n.GetAvailability() == apiv1.NodeAvailability_NODE_AVAILABILITY_UNSPECIFIED {
				n.Availability = apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE
			}
			if n.GetCreatedAt() == nil {
				n.CreatedAt = now
			}
			fill(n, old)
			// A node that registers again as it was (an agent restart, a
			// reconnect) is not a Raft write.
			n.UpdatedAt = old.GetUpdatedAt()
			if proto.Equal(n, old) {
				unchanged = true
				return false, nil
			}
			n.UpdatedAt = now
			return true, nil
		})
	} else {
		n := &apiv1.Node{
			Id:           reg.GetNodeId(),
			Role:         apiv1.NodeRole_NODE_ROLE_WORKER,
			Availability: apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
			CreatedAt:    now,
		}
		fill(n, nil)
		_, err = d.deps.Raft.Apply(cctx, &fsmpb.UpsertNode{Node: n})
	}
	if err != nil {
		return fmt.Errorf("register node %q (%s): %w", reg.GetName(), reg.GetNodeId(), err)
	}
	if unchanged {
		d.log.Debug("node registered again, unchanged", "node", reg.GetName(), "id", reg.GetNodeId())
		return nil
	}
	d.log.Info("node ready", "node", reg.GetName(), "id", reg.GetNodeId())
	return nil
}

// mergeLabels returns the labels of a node that registers with the labels
// of its agent's configuration, agent, given its stored copy old (nil for
// a new node): agent, with the labels operators set through the API laid
// over them. A stored label is operator-set when the agent did not give it
// at its previous registration (old.agent_labels) or gave it another value.
// So a label added to, changed in or removed from the agent configuration
// takes effect when the agent registers again, while labels set through
// the API survive any number of registrations. The result is nil when
// there are no labels.
func mergeLabels(old *apiv1.Node, agent map[string]string) map[string]string {
	out := maps.Clone(agent)
	prev := old.GetAgentLabels()
	for k, v := range old.GetLabels() {
		if pv, ok := prev[k]; ok && pv == v {
			continue // the agent's own: replaced by what it says now
		}
		if out == nil {
			out = map[string]string{}
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// commitDown commits a node as DOWN unless it is down already or gone.
func (d *Dispatcher) commitDown(ctx context.Context, nodeID, reason string) {
	d.commitDowns(ctx, []*fsmpb.NodeDown{{NodeId: nodeID, Reason: reason}})
}

// sweepPeriod is how often the dispatcher looks for nodes without a
// session: a silent node goes DOWN between its deadline (a TTL after its
// session ended) and two periods later, 1 s at most.
func sweepPeriod(ttl time.Duration) time.Duration {
	return max(min(500*time.Millisecond, ttl/4), time.Millisecond)
}

// sweep marks DOWN, in one MarkNodesDown entry, the READY worker nodes that
// have had no session for a whole TTL: nodes whose session ended and that
// did not come back, and nodes that never reconnected after a leader
// change (those get two TTLs from this leader's start). The first sweep that finds such a node only starts gathering
// (it returns true); the next one commits every node due by then, so that
// nodes lost together (a rack, a switch) are one Raft write.
func (d *Dispatcher) sweep(ctx context.Context, gathering bool) bool {
	ttl := d.deps.HeartbeatTTL
	d.mu.Lock()
	started := d.started
	d.mu.Unlock()
	sinceStart := time.Since(started)
	if sinceStart < ttl {
		return false
	}
	// The nodes' commit locks are held until the entry is applied, so that
	// no session attaches to a node between the check and the commit; a
	// node whose lock is held (a session attaching or ending) is left to
	// the next sweep.
	var due []*fsmpb.NodeDown
	var locked []*nodeEntry
	defer func() {
		for _, e := range locked {
			e.commit.Unlock()
		}
	}()
	reason := fmt.Sprintf("no session with the leader for %s", ttl)
	for _, n := range d.deps.State.Nodes() {
		if !n.GetWorker() || n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
			continue
		}
		if n.GetUpdatedAt() != nil && time.Since(n.GetUpdatedAt().AsTime()) < ttl {
			continue // just registered (by the agent itself, say): give it a TTL
		}
		e := d.entry(n.GetId())
		if !e.commit.TryLock() {
			continue
		}
		d.mu.Lock()
		silent := e.session == nil && time.Since(e.lastSeen) >= ttl
		if e.lastSeen.Before(started) {
			// Not seen in this leadership yet: after an election every worker
			// comes back at once, each through its reconnection backoff
			// (up to the workers' MaxBackoff, 5 s, and a refusal or two
			// from a manager that is not the leader): give it a second TTL.
			silent = e.session == nil && sinceStart >= 2*ttl
		}
		d.mu.Unlock()
		if !silent {
			e.commit.Unlock()
			continue
		}
		locked = append(locked, e)
		due = append(due, &fsmpb.NodeDown{NodeId: n.GetId(), Reason: reason, ExpectedVersion: n.GetVersion()})
	}
	if len(due) == 0 {
		return false
	}
	if !gathering {
		return true
	}
	d.commitDowns(ctx, due)
	return false
}

// commitDowns commits nodes DOWN in one MarkNodesDown entry (split only
// past leaderloop.MaxEntryBytes): the silent nodes of a sweep, or one
// whose session missed its heartbeats.
func (d *Dispatcher) commitDowns(ctx context.Context, due []*fsmpb.NodeDown) {
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	now := timestamppb.Now()
	for _, chunk := range leaderloop.Chunks(due, leaderloop.MaxEntryBytes) {
		out, err := d.deps.Raft.Apply(cctx, &fsmpb.MarkNodesDown{Nodes: chunk, UpdatedAt: now})
		if err == nil {
			if e, ok := out.(error); ok {
				err = e
			}
		}
		if err != nil {
			d.log.Error("marking nodes down", "nodes", len(chunk), "error", err)
			continue
		}
		nodes, _ := out.([]*apiv1.Node)
		for _, n := range nodes {
			d.log.Warn("node down", "node", n.GetName(), "id", n.GetId(), "reason", n.GetMessage())
		}
	}
}
