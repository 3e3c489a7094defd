// Package worker is the worker side of a warren agent: it holds a session
// with the leader's dispatcher and converges the tasks assigned to its node
// by driving the runtime plugin.
//
// For every assigned task (docs/task-lifecycle.md, "Worker side"): desired
// RUNNING and state before RUNNING → wait until not_before, ensure the image
// (PREPARING), start (STARTING → RUNNING, or REJECTED with the error);
// desired SHUTDOWN → stop within the grace period, destroy, report SHUTDOWN.
// A runtime exit event → COMPLETE (exit 0) or FAILED (exit code, or "out of
// memory"). A task the manager no longer lists is stopped and destroyed.
//
// Every task has its own goroutine, so a slow image pull holds up nothing
// else, while the operations on one task happen one at a time. Handles are
// kept on disk, so a restarted worker recovers its tasks instead of starting
// duplicates, and tasks keep running while the worker is disconnected: it
// reconnects by itself and reconciles to what the manager wants then.
// Status reports go up batched: what happens within a few milliseconds
// travels in one TaskStatusBatch.
package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/discovery"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Defaults for the zero values of Options' durations.
const (
	DefaultReportBatchWindow = 5 * time.Millisecond
	DefaultMinBackoff        = 100 * time.Millisecond
	DefaultMaxBackoff        = 5 * time.Second
	// defaultHeartbeatPeriod is used when SessionInfo names none.
	defaultHeartbeatPeriod = 2 * time.Second
)

// Options configure a Worker.
type Options struct {
	// NodeID and NodeName identify this node to the cluster. Required.
	NodeID   string
	NodeName string
	// Addr is the address other nodes reach this one at.
	Addr string
	// Labels are the node's labels from its configuration.
	Labels map[string]string
	// DataDir holds the task handles, in <DataDir>/worker/tasks. Required.
	DataDir string
	// VolumesDir holds the node's named volumes, a directory each
	// (<VolumesDir>/<name>, made on first use); default <DataDir>/volumes.
	VolumesDir string
	// FilesDir is where the worker mounts the tmpfs that holds its tasks'
	// secrets and configs; default <DefaultFilesRoot>/<NodeID>. It must
	// not be under DataDir's disk: the files are to stay in memory.
	FilesDir string
	// Runtime runs the tasks. Required.
	Runtime runtime.Runtime
	// Network, if set, is the node's network plugin: tasks of network mode
	// overlay (and those without a mode) get a namespace of their own on
	// the overlay, and the worker answers DNS for them. NetworkName names
	// it in the node's peer report.
	Network     network.Network
	NetworkName string
	// ResolvConf is the host's resolver configuration, whose resolvers the
	// tasks' DNS forwards other names to. Default /etc/resolv.conf.
	ResolvConf string
	// Dial returns a client of the leader's Dispatcher service. It is
	// called for every connection attempt and may return the same client
	// each time; the worker never closes what it dials. Required.
	Dial         func(ctx context.Context) (apiv1.DispatcherClient, error)
	Logger       hclog.Logger
	AgentVersion string

	// OnSession, if set, is called with the dispatcher's SessionInfo each
	// time a session is established (the agent learns the managers and
	// its role from it).
	OnSession func(*apiv1.SessionInfo)
	// OnSessionEnd, if set, is called with the error that ended each
	// session attempt (the agent learns the leader from a follower's
	// refusal).
	OnSessionEnd func(error)
	// Redirected, if set, reports whether err (a session attempt's) named
	// the manager to try next: a follower's refusal naming the leader. The
	// next attempt then goes after MinBackoff and the backoff does not
	// grow, so that the workers of a new leader are not held off by the
	// refusals of its election.
	Redirected func(error) bool

	// HeartbeatPeriod, when set and shorter than the period the dispatcher
	// asks for, is how often heartbeats are sent (the agent's
	// worker.heartbeat_interval). A worker never beats less often than the
	// dispatcher asks.
	HeartbeatPeriod time.Duration

	// ReportBatchWindow is how long status reports are collected before
	// they are sent in one message; the first report after a quiet spell
	// (no send for a window) goes up at once.
	ReportBatchWindow time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnection
	// attempts and between retries of failed runtime calls. Reconnection
	// waits double from MinBackoff up to MaxBackoff, with jitter, and start
	// again from MinBackoff after a session that lasted MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// RuntimeTimeout bounds each call into the runtime (plus the grace
	// period for a stop); a start or image check that runs out of it fails
	// the task with "runtime ... did not answer". Default
	// DefaultRuntimeTimeout (the agent's worker.runtime_timeout).
	RuntimeTimeout time.Duration
	// ImageTimeout bounds one EnsureImage. Default DefaultImageTimeout.
	ImageTimeout time.Duration
	// PortDrain is how long a running task of a service with published
	// ports stays up after the manager wants it stopped, before its stop
	// signal: the manager took it out of the ports' backends (the endpoint
	// table) when it wanted it stopped, and every node needs a moment to
	// apply that, so that no new connection reaches a task that is going.
	// Default DefaultPortDrain; negative: none.
	PortDrain time.Duration
	// HealthInterval is the time between health checks of the runtime,
	// whose failure the worker reports as the node's "runtime" condition.
	// Default HeartbeatPeriod, or DefaultHealthInterval without one.
	HealthInterval time.Duration
}

// Worker runs the tasks the manager assigns to its node.
type Worker struct {
	opts    Options
	log     hclog.Logger
	rt      runtime.Runtime
	net     *netSide // nil without a network plugin
	files   *taskFiles
	handles *handleStore
	reports *reporter
	health  *runtimeHealth
	// rtName names the runtime in task errors ("containerd 1.6.20"); set
	// by Run before any goroutine that reads it starts.
	rtName string
	// rtCaps are the runtime's declared capabilities; set with rtName.
	rtCaps []runtime.Capability

	running atomic.Bool
	// gen counts established sessions; runners use it to re-report states
	// the manager has not seen once per session.
	gen atomic.Uint64
	// connected is set while a session is established.
	connected atomic.Bool

	mu      sync.Mutex
	runners map[string]*taskRunner
	// sweeping is set while an orphan sweep runs.
	sweeping bool
	wg       sync.WaitGroup
}

// New checks opts and returns a Worker.
func New(opts Options) (*Worker, error) {
	switch {
	case opts.NodeID == "" || opts.NodeName == "":
		return nil, fmt.Errorf("worker: NodeID and NodeName are required: %w", sdk.ErrInvalidArgument)
	case opts.DataDir == "":
		return nil, fmt.Errorf("worker: DataDir is required: %w", sdk.ErrInvalidArgument)
	case opts.Runtime == nil:
		return nil, fmt.Errorf("worker: Runtime is required: %w", sdk.ErrInvalidArgument)
	case opts.Dial == nil:
		return nil, fmt.Errorf("worker: Dial is required: %w", sdk.ErrInvalidArgument)
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.ReportBatchWindow <= 0 {
		opts.ReportBatchWindow = DefaultReportBatchWindow
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.RuntimeTimeout <= 0 {
		opts.RuntimeTimeout = DefaultRuntimeTimeout
	}
	if opts.ImageTimeout <= 0 {
		opts.ImageTimeout = DefaultImageTimeout
	}
	if opts.PortDrain == 0 {
		opts.PortDrain = DefaultPortDrain
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = opts.HeartbeatPeriod
	}
	if opts.HealthInterval <= 0 {
		opts.HealthInterval = DefaultHealthInterval
	}
	hs, err := newHandleStore(opts.DataDir)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		opts:    opts,
		log:     opts.Logger.Named("worker"),
		rt:      opts.Runtime,
		handles: hs,
		reports: newReporter(),
		health:  newRuntimeHealth(),
		runners: map[string]*taskRunner{},
	}
	if opts.FilesDir == "" {
		opts.FilesDir = filepath.Join(DefaultFilesRoot, opts.NodeID)
		w.opts.FilesDir = opts.FilesDir
	}
	w.files = newTaskFiles(opts.FilesDir)
	w.opts.VolumesDir = VolumesDir(opts.DataDir, opts.VolumesDir)
	if opts.Network != nil {
		if w.net, err = newNetSide(w, opts.Network, opts.NetworkName); err != nil {
			return nil, err
		}
		if opts.ResolvConf == "" {
			opts.ResolvConf = "/etc/resolv.conf"
		}
		if w.net.upstream, err = discovery.HostUpstream(opts.ResolvConf); err != nil {
			w.log.Warn("the tasks' DNS will answer only cluster names", "error", err)
		}
	}
	return w, nil
}

// NetworkRestarted tells the worker that its network plugin's process was
// restarted: the node is set up again and its peers set again.
func (w *Worker) NetworkRestarted() {
	if w.net != nil {
		w.net.restarted()
	}
}

// LocalTask is what the worker knows about one of its tasks.
type LocalTask struct {
	ID string
	// State is the last state the worker saw the task in (and reported),
	// TASK_STATE_UNSPECIFIED before it acted on it.
	State apiv1.TaskState
	// HasHandle is set while the worker holds a runtime handle for it.
	HasHandle bool
}

// LocalTasks returns what the worker knows about its tasks right now.
func (w *Worker) LocalTasks() []LocalTask {
	w.mu.Lock()
	rs := make([]*taskRunner, 0, len(w.runners))
	for _, r := range w.runners {
		rs = append(rs, r)
	}
	w.mu.Unlock()
	out := make([]LocalTask, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.snapshot())
	}
	return out
}

// Connected reports whether a session with the dispatcher is established.
func (w *Worker) Connected() bool { return w.connected.Load() }

// Run runs the worker until ctx ends: it fingerprints the runtime, recovers
// the tasks of stored handles, then holds a session with the dispatcher,
// reconnecting forever. Tasks keep running when Run returns. Run may be
// called again after it returned.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("worker: Run is already running")
	}
	defer func() {
		w.wg.Wait()
		w.mu.Lock()
		w.runners = map[string]*taskRunner{}
		w.mu.Unlock()
		w.running.Store(false)
	}()

	fp, err := retry(ctx, w, "fingerprint the runtime", func() (runtime.Fingerprint, error) {
		cctx, cancel := w.call(ctx, 0)
		defer cancel()
		return w.rt.Fingerprint(cctx)
	})
	if err != nil {
		return nil // ctx ended
	}
	w.rtName = fp.RuntimeName + " " + fp.RuntimeVersion
	w.rtCaps = fp.Capabilities
	w.wg.Add(1)
	go w.watchHealth(ctx)
	// Subscribe before anything is recovered or started, so no exit is missed.
	evs, err := retry(ctx, w, "subscribe to runtime events", func() (<-chan runtime.TaskEvent, error) { return w.rt.TaskEvents(ctx) })
	if err != nil {
		return nil
	}
	w.wg.Add(1)
	go w.watchEvents(ctx, evs)
	if w.net != nil {
		w.wg.Add(1)
		go w.net.run(ctx)
	}

	recs, bad, err := w.handles.loadAll()
	if err != nil {
		return err
	}
	for _, err := range bad {
		w.log.Error("ignoring an unreadable task handle", "error", err)
	}
	w.mu.Lock()
	for _, rec := range recs {
		w.spawnLocked(ctx, rec.TaskID, rec)
	}
	w.mu.Unlock()
	if len(recs) > 0 {
		w.log.Info("recovering tasks from stored handles", "tasks", len(recs))
	}

	reg := &apiv1.RegisterWorker{
		NodeId:         w.opts.NodeID,
		Name:           w.opts.NodeName,
		Resources:      &apiv1.Resources{NanoCpus: fp.NanoCPUs, MemoryBytes: fp.MemoryBytes},
		Labels:         w.opts.Labels,
		Os:             fp.OS,
		Arch:           fp.Arch,
		Attributes:     fp.Attributes,
		Capabilities:   capabilityNames(fp.Capabilities),
		RuntimeVersion: fp.RuntimeName + " " + fp.RuntimeVersion,
		AgentVersion:   w.opts.AgentVersion,
		Addr:           w.opts.Addr,
	}
	backoff := w.opts.MinBackoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		established, err := w.session(ctx, reg)
		if ctx.Err() != nil {
			return nil
		}
		if w.opts.OnSessionEnd != nil {
			w.opts.OnSessionEnd(err)
		}
		// Only a session that lasted resets the backoff: one that fails
		// right after it is established (an assignment it cannot take)
		// must not make a reconnect loop.
		if established && time.Since(start) >= w.opts.MaxBackoff {
			backoff, attempt = w.opts.MinBackoff, 1
		}
		redirected := w.opts.Redirected != nil && w.opts.Redirected(err)
		wait := jitter(backoff)
		if redirected {
			wait = jitter(w.opts.MinBackoff)
		}
		w.log.Warn("dispatcher session ended; reconnecting", "error", err, "attempt", attempt, "in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
		if !redirected {
			backoff = min(2*backoff, w.opts.MaxBackoff)
		}
	}
}

// jitter returns a random duration between d/2 and d, so that workers cut
// off together do not reconnect together.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// session runs one session with the dispatcher until it fails or ctx ends.
// established reports whether the dispatcher accepted the registration.
func (w *Worker) session(ctx context.Context, reg *apiv1.RegisterWorker) (established bool, err error) {
	client, err := w.opts.Dial(ctx)
	if err != nil {
		return false, fmt.Errorf("dial the dispatcher: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Session(sctx)
	if err != nil {
		return false, fmt.Errorf("open a session: %w", err)
	}
	if err := stream.Send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Register{Register: reg}}); err != nil {
		return false, fmt.Errorf("register: %w", recvErr(stream, err))
	}
	m, err := stream.Recv()
	if err != nil {
		return false, fmt.Errorf("register: %w", err)
	}
	info := m.GetSession()
	if info == nil {
		return false, errors.New("register: the dispatcher did not answer with SessionInfo")
	}
	if w.opts.OnSession != nil {
		w.opts.OnSession(info)
	}
	gen := w.gen.Add(1)
	// The dispatcher sends each session the files its tasks need afresh.
	w.files.apply(&apiv1.TaskFiles{Full: true})
	w.connected.Store(true)
	defer w.connected.Store(false)
	period := time.Duration(info.GetHeartbeatPeriodMs()) * time.Millisecond
	if period <= 0 {
		period = defaultHeartbeatPeriod
	}
	if p := w.opts.HeartbeatPeriod; p > 0 && p < period {
		period = p
	}
	w.log.Info("connected to the dispatcher", "session", gen, "heartbeat", period)

	sendDone := make(chan error, 1)
	go func() {
		err := w.sendLoop(sctx, stream, period)
		cancel() // stops Recv below
		sendDone <- err
	}()
	var in incoming
	for {
		m, err := stream.Recv()
		if err != nil {
			cancel()
			if serr := <-sendDone; serr != nil && !errors.Is(serr, context.Canceled) {
				return true, serr
			}
			return true, err
		}
		if f := m.GetFiles(); f != nil {
			w.files.apply(f)
			w.pokeAll()
		}
		if a := m.GetAssignments(); a != nil {
			if err := w.apply(ctx, a, &in); err != nil {
				return true, err
			}
		}
		if w.net == nil {
			continue
		}
		switch {
		case m.GetNetwork() != nil:
			if err := w.net.info(m.GetNetwork()); err != nil {
				return true, err
			}
		case m.GetPeers() != nil:
			in.peers = append(in.peers, m.GetPeers().GetPeers()...)
			if !m.GetPeers().GetMore() {
				w.net.setPeers(in.peers)
				in.peers = nil
			}
		case m.GetEndpoints() != nil:
			in.endpoints = append(in.endpoints, m.GetEndpoints().GetEndpoints()...)
			if !m.GetEndpoints().GetMore() {
				w.net.setEndpoints(in.endpoints)
				in.endpoints = nil
			}
		}
	}
}

// recvErr returns the status that ended a stream when Send failed with
// io.EOF (gRPC reports the reason on Recv).
func recvErr(stream apiv1.Dispatcher_SessionClient, err error) error {
	if errors.Is(err, io.EOF) {
		if _, rerr := stream.Recv(); rerr != nil {
			return rerr
		}
	}
	return err
}

// sendLoop sends heartbeats every period and status reports as they come:
// a report after a quiet spell goes up at once, and those that come within
// ReportBatchWindow of the last send wait for the window's end and go up
// together. It is the only goroutine sending on the stream.
func (w *Worker) sendLoop(ctx context.Context, stream apiv1.Dispatcher_SessionClient, period time.Duration) error {
	hb := time.NewTicker(period)
	defer hb.Stop()
	window := time.NewTimer(w.opts.ReportBatchWindow)
	defer window.Stop()
	var lastSent time.Time
	windowC := window.C // reports left from an earlier session go up at once
	if w.reports.len() == 0 {
		window.Stop()
		windowC = nil
	}
	// The node's conditions go up at once too, and again whenever they
	// change; every heartbeat carries them.
	beat := func() error {
		hb := &apiv1.Heartbeat{Conditions: w.Conditions()}
		if err := stream.Send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Heartbeat{Heartbeat: hb}}); err != nil {
			return fmt.Errorf("send heartbeat: %w", recvErr(stream, err))
		}
		return nil
	}
	if err := beat(); err != nil {
		return err
	}
	// The node's peer, as its network plugin set it up, goes up in every
	// session and again when it changes; the dispatcher writes it only
	// when it differs.
	var reported <-chan struct{}
	sendPeer := func() error {
		p := w.net.report.Load()
		if p == nil {
			return nil
		}
		if err := stream.Send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Network{Network: p}}); err != nil {
			return fmt.Errorf("send the node's network peer: %w", recvErr(stream, err))
		}
		return nil
	}
	if w.net != nil {
		reported = w.net.reported
		if err := sendPeer(); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reported:
			if err := sendPeer(); err != nil {
				return err
			}
		case <-hb.C:
			if err := beat(); err != nil {
				return err
			}
		case <-w.health.changed:
			if err := beat(); err != nil {
				return err
			}
		case <-w.reports.ready:
			if windowC == nil {
				window.Reset(max(w.opts.ReportBatchWindow-time.Since(lastSent), 0))
				windowC = window.C
			}
		case <-windowC:
			windowC = nil
			batch := w.reports.take()
			if len(batch) == 0 {
				continue
			}
			if err := stream.Send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Status{Status: &apiv1.TaskStatusBatch{Updates: batch}}}); err != nil {
				w.reports.putBack(batch)
				return fmt.Errorf("send status: %w", recvErr(stream, err))
			}
			lastSent = time.Now()
		}
	}
}

// incoming is what one session has received so far beyond the tasks
// themselves.
type incoming struct {
	// set collects the task IDs of a full set sent in several messages
	// until its last one; nil when no full set is being received.
	set map[string]bool
	// specs are the service specs the dispatcher sent, by reference.
	specs map[string]*apiv1.ServiceSpec
	// peers and endpoints collect a set sent in several messages.
	peers     []*apiv1.Peer
	endpoints []*apiv1.Endpoint
}

// apply hands an Assignments message to the task runners, with in what
// the session received before: the tasks a whole full set lacks are
// stopped only once its last message is in. A task whose spec reference
// is unknown is an error: the session must start again.
func (w *Worker) apply(ctx context.Context, a *apiv1.Assignments, in *incoming) error {
	if a.GetFull() && in.set == nil {
		in.set = make(map[string]bool, len(a.GetTasks()))
		clear(in.specs) // a full set starts the specs afresh
	}
	if in.specs == nil {
		in.specs = map[string]*apiv1.ServiceSpec{}
	}
	maps.Copy(in.specs, a.GetSpecs())
	for _, t := range a.GetTasks() {
		ref, ok := a.GetSpecRefs()[t.GetId()]
		if !ok {
			continue
		}
		spec := in.specs[ref]
		if spec == nil {
			return fmt.Errorf("assignments: task %s refers to spec %s, which the dispatcher did not send", t.GetId(), ref)
		}
		t.Spec = spec
	}
	for _, ref := range a.GetForgetSpecs() {
		delete(in.specs, ref)
	}
	set := in.set
	if set != nil {
		for _, t := range a.GetTasks() {
			set[t.GetId()] = true
		}
		for _, id := range a.GetRemoved() {
			delete(set, id)
		}
	}
	end := a.GetFull() && !a.GetMore()
	if end {
		in.set = nil
	}
	w.mu.Lock()
	if end {
		for id, r := range w.runners {
			if !set[id] {
				r.remove()
			}
		}
	}
	for _, t := range a.GetTasks() {
		if err := runtime.ValidateTaskID(t.GetId()); err != nil {
			w.reports.add(rejected(t.GetId(), err))
			continue
		}
		r := w.runners[t.GetId()]
		if r == nil {
			r = w.spawnLocked(ctx, t.GetId(), nil)
		}
		r.assign(t)
	}
	for _, id := range a.GetRemoved() {
		if r := w.runners[id]; r != nil {
			r.remove()
		}
	}
	sweep := end && !w.sweeping
	if sweep {
		w.sweeping = true
		w.wg.Add(1)
	}
	w.mu.Unlock()
	if sweep {
		go w.sweepOrphans(ctx)
	}
	if end {
		w.log.Debug("took a full assignment set", "tasks", len(set), "specs", len(in.specs))
	}
	return nil
}

// sweepOrphans gives the tasks the runtime holds, and those with a network
// namespace or a directory of files, that no runner owns (the manager does
// not list them) to a runner that stops and destroys them and removes what
// they leave. It runs after each full assignment set: at worker start and
// at each new session.
func (w *Worker) sweepOrphans(ctx context.Context) {
	defer w.wg.Done()
	defer func() {
		w.mu.Lock()
		w.sweeping = false
		w.mu.Unlock()
	}()
	lctx, cancel := w.call(ctx, 0)
	list, err := w.rt.ListTasks(lctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("listing runtime tasks to find orphans", "error", err)
		}
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.net != nil {
		// A namespace without a task: an agent that died between making
		// it and storing the task's handle. Its runner removes it.
		for _, id := range w.net.namespaces() {
			if w.runners[id] == nil {
				w.log.Info("removing the network namespace of a task the manager does not list", "task", id)
				list = append(list, runtime.TaskStatus{TaskID: id})
			}
		}
	}
	// Files without a task: an agent that died between writing them and
	// storing the task's handle, or before it removed them. The runner
	// removes them.
	ids, err := w.files.taskIDs()
	if err != nil {
		w.log.Error("listing task files to find orphans", "error", err)
	}
	for _, id := range ids {
		if w.runners[id] == nil {
			w.log.Info("removing the files of a task the manager does not list", "task", id)
			list = append(list, runtime.TaskStatus{TaskID: id})
		}
	}
	seen := map[string]bool{}
	for _, st := range list {
		if w.runners[st.TaskID] != nil || runtime.ValidateTaskID(st.TaskID) != nil || seen[st.TaskID] {
			continue
		}
		seen[st.TaskID] = true
		w.log.Info("destroying a task the manager does not list", "task", st.TaskID, "state", st.State)
		r := w.spawnLocked(ctx, st.TaskID, nil)
		r.remove()
	}
}

// pokeAll wakes every task runner (secrets or configs arrived that one
// may wait for).
func (w *Worker) pokeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.runners {
		r.poke()
	}
}

// spawnLocked starts the runner of a task. w.mu must be held.
func (w *Worker) spawnLocked(ctx context.Context, id string, rec *record) *taskRunner {
	r := newRunner(w, id, rec)
	w.runners[id] = r
	w.wg.Add(1)
	go r.run(ctx)
	return r
}

// retire forgets a runner that has cleaned up after its task was removed,
// unless the task was assigned again meanwhile.
func (w *Worker) retire(r *taskRunner) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !r.isRemoved() {
		return false
	}
	if w.runners[r.id] == r {
		delete(w.runners, r.id)
	}
	return true
}

// watchEvents routes runtime events to the task runners, resubscribing
// (and having every runner check its task) when the stream ends early.
func (w *Worker) watchEvents(ctx context.Context, evs <-chan runtime.TaskEvent) {
	defer w.wg.Done()
	for {
		for ev := range evs {
			w.mu.Lock()
			r := w.runners[ev.TaskID]
			w.mu.Unlock()
			if r != nil {
				r.event(ev)
			}
		}
		if ctx.Err() != nil {
			return
		}
		w.log.Warn("runtime event stream ended; resubscribing")
		var err error
		evs, err = retry(ctx, w, "subscribe to runtime events", func() (<-chan runtime.TaskEvent, error) { return w.rt.TaskEvents(ctx) })
		if err != nil {
			return
		}
		// Events may have been missed: every task is checked again.
		w.mu.Lock()
		for _, r := range w.runners {
			r.resync()
		}
		w.mu.Unlock()
	}
}

// retry calls fn until it succeeds or ctx ends, backing off between tries.
func retry[T any](ctx context.Context, w *Worker, what string, fn func() (T, error)) (T, error) {
	backoff := w.opts.MinBackoff
	for {
		v, err := fn()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		w.log.Warn("runtime call failed; retrying", "call", what, "error", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return v, ctx.Err()
		}
		backoff = min(2*backoff, w.opts.MaxBackoff)
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
