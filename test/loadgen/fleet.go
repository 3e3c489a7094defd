// Package loadgen is a load generator for Warren's managers: one process
// opens many simulated worker sessions to a real manager over the real
// worker protocol (join token, NodeCA Join with a CSR, mutual TLS, the
// Dispatcher session stream, heartbeats, batched status reports), and its
// scenarios measure how the managers cope (docs/benchmarks.md, "Fleet
// scale").
//
// The simulated nodes run nothing: a task assigned to one is reported
// STARTING at once and RUNNING after Options.StartDelay, and may be made to
// exit. This is a load generator for the managers only; it never stands in
// for a runtime anywhere else.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/agent"
	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Options configure a Fleet.
type Options struct {
	// Addr is a manager's cluster address (host:port). Required.
	Addr string
	// Managers are the cluster addresses of the other managers: a node
	// whose session fails goes to the leader the manager named, or else to
	// the next manager of Addr and Managers, as a worker does.
	Managers []string
	// Token is a worker join token. Required.
	Token string
	// Nodes is the number of simulated nodes; default 1000.
	Nodes int
	// Prefix starts the simulated nodes' names; default "sim".
	Prefix string
	// NanoCPUs and MemoryBytes are each node's resources; default 4 cores
	// and 8 GiB.
	NanoCPUs    int64
	MemoryBytes int64
	// Labels are put on every node, with "loadgen.index" (the node's
	// number) and "loadgen.zone" (index modulo 3) added.
	Labels map[string]string
	// StartDelay is how long a task takes from STARTING to RUNNING.
	StartDelay time.Duration
	// ExitAfter and ExitFraction inject exits: that fraction of the tasks
	// exits with code 1 ExitAfter after it runs. Zero: no exits.
	ExitAfter    time.Duration
	ExitFraction float64
	// HeartbeatPeriod, when set and shorter than what the dispatcher asks
	// for, is how often the nodes beat.
	HeartbeatPeriod time.Duration
	// JoinConcurrency bounds the Joins in flight; default 32.
	JoinConcurrency int
	// SharedSource makes every node's connections to a loopback manager
	// leave from the same address, as the kernel picks it (127.0.0.1).
	// By default each node has its own source address in 127.1.0.0/16
	// (SourceAddr), as on a real fleet every node has its own: the
	// cluster port limits the unfinished handshakes from one address
	// (clusternet.Limits.StrangersPerSource), and hundreds of simulated
	// nodes reconnecting at once from one address would close each
	// other's handshakes.
	SharedSource bool
}

// Fleet is a set of simulated nodes.
type Fleet struct {
	opts  Options
	Nodes []*Node

	// OnAssigned, if set before Start, is called with each task a node
	// learns about for the first time and when it arrived.
	OnAssigned func(t *apiv1.Task, arrived time.Time)

	running atomic.Int64
	wg      sync.WaitGroup
}

// Node is one simulated worker node.
type Node struct {
	fleet *Fleet
	ID    string
	Name  string
	Index int
	creds *pki.Creds
	// conns are the node's connections by manager address, dialled on
	// first use; addr is the manager its next session goes to. Only the
	// node's run goroutine uses them after join, until Stop.
	conns map[string]*grpc.ClientConn
	addr  string

	cancel context.CancelFunc
	killed atomic.Bool

	mu sync.Mutex
	// tasks are the tasks the node was told about, by ID, with the state
	// it reported last.
	tasks map[string]apiv1.TaskState
	// reports wait to be sent; ready is poked when one is added.
	reports []*apiv1.TaskStatusUpdate
	ready   chan struct{}
	// connected is set while a session is established; lastErr is why the
	// last session ended or failed (for the scenarios' errors).
	connected atomic.Bool
	lastErr   atomic.Value
}

// New checks opts and returns a Fleet of opts.Nodes nodes not joined yet.
func New(opts Options) (*Fleet, error) {
	if opts.Addr == "" || opts.Token == "" {
		return nil, errors.New("loadgen: the manager's address and a worker join token are required")
	}
	if opts.Nodes <= 0 {
		opts.Nodes = 1000
	}
	if opts.Prefix == "" {
		opts.Prefix = "sim"
	}
	if opts.NanoCPUs <= 0 {
		opts.NanoCPUs = 4e9
	}
	if opts.MemoryBytes <= 0 {
		opts.MemoryBytes = 8 << 30
	}
	if opts.JoinConcurrency <= 0 {
		opts.JoinConcurrency = 32
	}
	if limit := 250 * 256; opts.Nodes > limit && !opts.SharedSource {
		return nil, fmt.Errorf("loadgen: %d nodes: at most %d have their own source address (127.1.0.0/16)", opts.Nodes, limit)
	}
	if _, err := pki.ParseToken(opts.Token); err != nil {
		return nil, fmt.Errorf("loadgen: join token: %w", err)
	}
	f := &Fleet{opts: opts}
	for i := range opts.Nodes {
		name := fmt.Sprintf("%s-%04d", opts.Prefix, i)
		f.Nodes = append(f.Nodes, &Node{fleet: f, ID: api.NewID(), Name: name, Index: i, tasks: map[string]apiv1.TaskState{}, ready: make(chan struct{}, 1)})
	}
	return f, nil
}

// RaiseFDLimit raises the process's open file limit to its hard limit:
// every simulated node holds a connection.
func RaiseFDLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, fmt.Errorf("get RLIMIT_NOFILE: %w", err)
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, fmt.Errorf("raise RLIMIT_NOFILE: %w", err)
		}
	}
	return l.Cur, nil
}

// Start joins every node (NodeCA Join with its own key and CSR) and opens
// its session; it returns once every node has its certificate and has
// started connecting. The sessions run until ctx ends or Stop.
func (f *Fleet) Start(ctx context.Context) error {
	if lim, err := RaiseFDLimit(); err != nil {
		return err
	} else if lim < uint64(f.opts.Nodes)+256 {
		return fmt.Errorf("loadgen: the open file limit %d is too low for %d nodes (raise ulimit -n)", lim, f.opts.Nodes)
	}
	tok, _ := pki.ParseToken(f.opts.Token)
	// One TLS config for every Join: they carry no client certificate.
	joinCreds := credentials.NewTLS(pki.JoinConfig(tok.Digest, nil, "h2"))
	jconn, err := grpc.NewClient(f.opts.Addr, grpc.WithTransportCredentials(joinCreds))
	if err != nil {
		return fmt.Errorf("loadgen: dial %s: %w", f.opts.Addr, err)
	}
	defer jconn.Close()
	ca := apiv1.NewNodeCAClient(jconn)
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, f.opts.JoinConcurrency)
	errs := make(chan error, len(f.Nodes))
	var jwg sync.WaitGroup
	for _, n := range f.Nodes {
		sem <- struct{}{}
		jwg.Add(1)
		go func() {
			defer func() { <-sem; jwg.Done() }()
			if err := n.join(jctx, ca); err != nil {
				errs <- err
				cancel()
			}
		}()
	}
	jwg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	for _, n := range f.Nodes {
		nctx, cancel := context.WithCancel(ctx)
		n.cancel = cancel
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			n.run(nctx)
		}()
	}
	return nil
}

// Stop ends every session and waits for them.
func (f *Fleet) Stop() {
	for _, n := range f.Nodes {
		if n.cancel != nil {
			n.cancel()
		}
	}
	f.wg.Wait()
	for _, n := range f.Nodes {
		for _, c := range n.conns {
			_ = c.Close()
		}
	}
}

// Connected counts the nodes with an established session.
func (f *Fleet) Connected() int {
	c := 0
	for _, n := range f.Nodes {
		if n.connected.Load() {
			c++
		}
	}
	return c
}

// Disconnected counts the live nodes that hold no session and describes up
// to max of them: their names and why their last session ended or failed.
func (f *Fleet) Disconnected(max int) (n int, sample []string) {
	for _, node := range f.Nodes {
		if node.killed.Load() || node.connected.Load() {
			continue
		}
		n++
		if len(sample) < max {
			why, _ := node.lastErr.Load().(string)
			sample = append(sample, node.Name+" ("+why+")")
		}
	}
	return n, sample
}

// Running counts the tasks the live nodes report RUNNING.
func (f *Fleet) Running() int { return int(f.running.Load()) }

// RunningOn returns, by task ID, the live nodes that run it (more than
// one is a duplicate).
func (f *Fleet) RunningOn() map[string][]string {
	out := map[string][]string{}
	for _, n := range f.Nodes {
		if n.killed.Load() {
			continue
		}
		n.mu.Lock()
		for id, s := range n.tasks {
			if s == apiv1.TaskState_TASK_STATE_RUNNING {
				out[id] = append(out[id], n.ID)
			}
		}
		n.mu.Unlock()
	}
	return out
}

// Kill makes the nodes go away at once and never come back. With silent,
// as machines that lose power: their connections stay open but nothing
// more comes from them (no heartbeat, no report), so the managers notice
// only by the missed heartbeats. Without, as agents that stop: their
// sessions end. Their tasks no longer count as running either way.
func (f *Fleet) Kill(silent bool, nodes ...*Node) {
	for _, n := range nodes {
		if n.killed.Swap(true) {
			continue
		}
		if !silent {
			n.cancel()
		}
		n.mu.Lock()
		for _, s := range n.tasks {
			if s == apiv1.TaskState_TASK_STATE_RUNNING {
				f.running.Add(-1)
			}
		}
		n.tasks = map[string]apiv1.TaskState{}
		n.mu.Unlock()
	}
}

func (n *Node) join(ctx context.Context, ca apiv1.NodeCAClient) error {
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(key, n.ID)
	if err != nil {
		return err
	}
	var resp *apiv1.JoinResponse
	for attempt := 0; ; attempt++ {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err = ca.Join(cctx, &apiv1.JoinRequest{Token: n.fleet.opts.Token, Csr: csr, NodeId: n.ID, Name: n.Name, Addr: "127.0.0.1:1", Worker: true})
		cancel()
		if err == nil || ctx.Err() != nil || attempt == 5 {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("loadgen: join node %s: %w", n.Name, err)
	}
	keyPEM, err := pki.KeyPEM(key)
	if err != nil {
		return err
	}
	if n.creds, err = pki.NewCreds(resp.GetCaPem(), resp.GetCertPem(), keyPEM); err != nil {
		return fmt.Errorf("loadgen: node %s: the cluster's answer: %w", n.Name, err)
	}
	n.conns, n.addr = map[string]*grpc.ClientConn{}, n.fleet.opts.Addr
	if _, err := n.conn(n.addr); err != nil {
		return fmt.Errorf("loadgen: node %s: %w", n.Name, err)
	}
	return nil
}

// conn returns the node's connection to the manager at addr. Each node has
// its own certificate, so its own connections: the dispatcher knows a node
// by the certificate it presents.
func (n *Node) conn(addr string) (*grpc.ClientConn, error) {
	if c := n.conns[addr]; c != nil {
		return c, nil
	}
	// The buffers a real worker's connection has (clusternet.Pool).
	opts := append(clusternet.DialBufferOptions(), grpc.WithTransportCredentials(credentials.NewTLS(n.creds.ClientConfig("h2"))))
	if d := n.dialer(addr); d != nil {
		opts = append(opts, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a)
		}))
	}
	c, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	n.conns[addr] = c
	return c, nil
}

// SourceAddr is the source address of the i-th simulated node's
// connections to a manager on the loopback network: 127.1.x.y, y from 1
// to 250. Linux routes all of 127.0.0.0/8 to the loopback device, so
// every such address works without configuration.
func SourceAddr(i int) net.IP {
	return net.IPv4(127, 1, byte(i/250), byte(i%250+1))
}

// dialer returns the dialer of the node's connections to addr: from its
// own source address when addr is a loopback IP address (and the fleet
// does not share one), else nil (grpc's own).
func (n *Node) dialer(addr string) *net.Dialer {
	if n.fleet.opts.SharedSource {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || ip.To4() == nil || !ip.IsLoopback() {
		return nil
	}
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: SourceAddr(n.Index)}}
}

// nextManager picks the manager of the node's next session after one at
// n.addr failed with err: the leader that manager named (it reports true:
// redirected, retried without a longer backoff, as workers do), else the
// next address of the fleet's managers.
func (n *Node) nextManager(err error) (redirected bool) {
	if leader := agent.LeaderHint(err); leader != "" {
		n.addr = leader
		return true
	}
	all := append([]string{n.fleet.opts.Addr}, n.fleet.opts.Managers...)
	i := slices.Index(all, n.addr)
	n.addr = all[(i+1)%len(all)]
	return false
}

// run holds the node's session, reconnecting until ctx ends.
func (n *Node) run(ctx context.Context) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil && !n.killed.Load() {
		start := time.Now()
		err := n.session(ctx)
		redirected := false
		if err != nil {
			n.lastErr.Store(fmt.Sprintf("%s: %v", n.addr, err))
			if len(n.fleet.opts.Managers) > 0 {
				redirected = n.nextManager(err)
			}
		}
		if time.Since(start) > 5*time.Second {
			backoff = 100 * time.Millisecond
		}
		wait := backoff
		if redirected {
			wait = 100 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		}
		if !redirected {
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

func (n *Node) register() *apiv1.RegisterWorker {
	labels := map[string]string{"loadgen.index": fmt.Sprint(n.Index), "loadgen.zone": fmt.Sprint(n.Index % 3)}
	for k, v := range n.fleet.opts.Labels {
		labels[k] = v
	}
	caps := make([]string, len(runtime.Capabilities))
	for i, c := range runtime.Capabilities {
		caps[i] = string(c)
	}
	return &apiv1.RegisterWorker{
		NodeId: n.ID, Name: n.Name,
		Resources:      &apiv1.Resources{NanoCpus: n.fleet.opts.NanoCPUs, MemoryBytes: n.fleet.opts.MemoryBytes},
		Labels:         labels,
		Os:             "linux",
		Arch:           "amd64",
		Capabilities:   caps,
		RuntimeVersion: "loadgen simulated",
		AgentVersion:   "loadgen",
		Addr:           "127.0.0.1:1",
	}
}

func (n *Node) session(ctx context.Context) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := n.conn(n.addr)
	if err != nil {
		return err
	}
	stream, err := apiv1.NewDispatcherClient(conn).Session(sctx)
	if err != nil {
		return err
	}
	if err := stream.Send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Register{Register: n.register()}}); err != nil {
		return err
	}
	m, err := stream.Recv()
	if err != nil {
		return err
	}
	info := m.GetSession()
	if info == nil {
		return errors.New("the dispatcher did not answer with SessionInfo")
	}
	period := time.Duration(info.GetHeartbeatPeriodMs()) * time.Millisecond
	if period <= 0 {
		period = 2 * time.Second
	}
	if p := n.fleet.opts.HeartbeatPeriod; p > 0 && p < period {
		period = p
	}
	n.connected.Store(true)
	defer n.connected.Store(false)
	// What the node reported and the manager may not have seen goes up
	// again in each session.
	n.mu.Lock()
	for id, s := range n.tasks {
		if s != apiv1.TaskState_TASK_STATE_UNSPECIFIED {
			n.reports = append(n.reports, &apiv1.TaskStatusUpdate{TaskId: id, State: s, Time: timestamppb.Now()})
		}
	}
	n.mu.Unlock()
	n.poke()
	sendErr := make(chan error, 1)
	go func() {
		sendErr <- n.sendLoop(sctx, stream, period)
		cancel()
	}()
	var full map[string]bool
	for {
		m, err := stream.Recv()
		if err != nil {
			cancel()
			<-sendErr
			return err
		}
		a := m.GetAssignments()
		if a == nil {
			continue
		}
		if a.GetFull() && full == nil {
			full = map[string]bool{}
		}
		for _, t := range a.GetTasks() {
			if full != nil {
				full[t.GetId()] = true
			}
		}
		n.apply(ctx, a, full)
		if a.GetFull() && !a.GetMore() {
			full = nil
		}
	}
}

func (n *Node) poke() {
	select {
	case n.ready <- struct{}{}:
	default:
	}
}

func (n *Node) sendLoop(ctx context.Context, stream apiv1.Dispatcher_SessionClient, period time.Duration) error {
	hb := time.NewTicker(period)
	defer hb.Stop()
	beat := func() error {
		return stream.Send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Heartbeat{Heartbeat: &apiv1.Heartbeat{}}})
	}
	if err := beat(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-hb.C:
			if n.killed.Load() {
				continue // a dead node is silent
			}
			if err := beat(); err != nil {
				return err
			}
		case <-n.ready:
			// Collect what happens within a few milliseconds in one batch,
			// as a real worker does.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(5 * time.Millisecond):
			}
			n.mu.Lock()
			batch := n.reports
			n.reports = nil
			n.mu.Unlock()
			if len(batch) == 0 || n.killed.Load() {
				continue
			}
			if err := stream.Send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Status{Status: &apiv1.TaskStatusBatch{Updates: batch}}}); err != nil {
				n.mu.Lock()
				n.reports = append(batch, n.reports...)
				n.mu.Unlock()
				return err
			}
		}
	}
}

// apply takes an Assignments message; full, when not nil, is the set of
// task IDs of a full set so far (what it lacks at its end is forgotten).
func (n *Node) apply(ctx context.Context, a *apiv1.Assignments, full map[string]bool) {
	now := time.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.killed.Load() {
		return
	}
	forget := func(id string) {
		if n.tasks[id] == apiv1.TaskState_TASK_STATE_RUNNING {
			n.fleet.running.Add(-1)
		}
		delete(n.tasks, id)
	}
	if full != nil && a.GetFull() && !a.GetMore() {
		for id := range n.tasks {
			if !full[id] {
				forget(id)
			}
		}
	}
	for _, id := range a.GetRemoved() {
		forget(id)
	}
	for _, t := range a.GetTasks() {
		id := t.GetId()
		cur, known := n.tasks[id]
		if !known && n.fleet.OnAssigned != nil {
			n.fleet.OnAssigned(t, now)
		}
		switch {
		case t.GetDesiredState() > apiv1.TaskState_TASK_STATE_RUNNING:
			if known && cur <= apiv1.TaskState_TASK_STATE_RUNNING {
				n.setLocked(id, apiv1.TaskState_TASK_STATE_SHUTDOWN)
			} else if !known && t.GetState() <= apiv1.TaskState_TASK_STATE_RUNNING {
				n.tasks[id] = apiv1.TaskState_TASK_STATE_UNSPECIFIED
				n.setLocked(id, apiv1.TaskState_TASK_STATE_SHUTDOWN)
			}
		case !known && t.GetState() < apiv1.TaskState_TASK_STATE_RUNNING:
			n.tasks[id] = apiv1.TaskState_TASK_STATE_UNSPECIFIED
			n.setLocked(id, apiv1.TaskState_TASK_STATE_STARTING)
			n.after(ctx, n.fleet.opts.StartDelay, id, apiv1.TaskState_TASK_STATE_STARTING, apiv1.TaskState_TASK_STATE_RUNNING)
		case !known && t.GetState() == apiv1.TaskState_TASK_STATE_RUNNING:
			// A node that reconnects (or a manager that restarted) lists
			// what already runs: it keeps running.
			n.tasks[id] = apiv1.TaskState_TASK_STATE_RUNNING
			n.fleet.running.Add(1)
		}
	}
}

// after moves task id from state from to state to after d, unless it left
// from meanwhile.
func (n *Node) after(ctx context.Context, d time.Duration, id string, from, to apiv1.TaskState) {
	time.AfterFunc(d, func() {
		if ctx.Err() != nil {
			return
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		if n.killed.Load() || n.tasks[id] != from {
			return
		}
		n.setLocked(id, to)
		o := n.fleet.opts
		if to == apiv1.TaskState_TASK_STATE_RUNNING && o.ExitFraction > 0 && rand.Float64() < o.ExitFraction {
			n.after(ctx, o.ExitAfter, id, apiv1.TaskState_TASK_STATE_RUNNING, apiv1.TaskState_TASK_STATE_FAILED)
		}
	})
}

// setLocked records and queues a report of task id's new state.
func (n *Node) setLocked(id string, s apiv1.TaskState) {
	prev := n.tasks[id]
	if prev == apiv1.TaskState_TASK_STATE_RUNNING && s != prev {
		n.fleet.running.Add(-1)
	}
	if s == apiv1.TaskState_TASK_STATE_RUNNING && prev != s {
		n.fleet.running.Add(1)
	}
	n.tasks[id] = s
	u := &apiv1.TaskStatusUpdate{TaskId: id, State: s, Time: timestamppb.Now()}
	if s == apiv1.TaskState_TASK_STATE_FAILED {
		u.ExitCode, u.Error = 1, "loadgen: injected exit"
	}
	n.reports = append(n.reports, u)
	n.poke()
}
