package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/discovery"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/sdk/runtime"
)

// OverlayPort is the UDP port the worker gives its network plugin in the
// advertise address (host of the agent's advertise address, this port).
const OverlayPort = 51820

// netSide drives the worker's network plugin: SetupNode once the
// dispatcher has told the node its subnet (and again after every plugin
// restart), SetPeers on every peer set, Attach and Detach for tasks, and
// the node's DNS server on its gateway, fed by the endpoint table.
type netSide struct {
	w      *Worker
	nw     network.Network
	name   string // the plugin's name, for the node's peer report
	nsDir  string // <DataDir>/netns
	etcDir string // <DataDir>/worker/net: each task's resolv.conf and hosts
	// upstream are the host's resolvers, for names outside the cluster.
	upstream []string
	kick     chan struct{}
	// reported has a value when report changed and must be sent.
	reported chan struct{}
	report   atomic.Pointer[apiv1.NodeNetwork]

	mu        sync.Mutex
	subnet    netip.Prefix
	plan      *apiv1.ClusterNetwork
	setUp     bool // SetupNode succeeded for subnet with this plugin process
	peers     []network.Peer
	peersGen  uint64 // counts the peer sets taken
	peersSent bool   // SetPeers succeeded with the current peers
	ready     chan struct{}
	isReady   bool
	// dns answers the tasks' queries once started; table is the latest
	// endpoint table.
	dns   *discovery.Server
	table discovery.Table
	// eps is the latest endpoint table, which the published ports come
	// from; pubGen counts the tables taken, pubSent says SetPublished
	// succeeded with the current one. applied are the ports (portKey) the
	// plugin publishes; portsCond is the "ports" condition ("": none).
	eps       []*apiv1.Endpoint
	pubGen    uint64
	pubSent   bool
	applied   map[string]bool
	portsCond string
}

func newNetSide(w *Worker, nw network.Network, name string) (*netSide, error) {
	n := &netSide{
		w: w, nw: nw, name: name,
		nsDir:    netnsDir(w.opts.DataDir),
		etcDir:   filepath.Join(w.opts.DataDir, "worker", "net"),
		kick:     make(chan struct{}, 1),
		reported: make(chan struct{}, 1),
		ready:    make(chan struct{}),
	}
	if err := makeNetnsDir(n.nsDir); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if err := os.MkdirAll(n.etcDir, 0o700); err != nil {
		return nil, fmt.Errorf("worker: create %s: %w", n.etcDir, err)
	}
	return n, nil
}

func (n *netSide) poke() {
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// info takes the dispatcher's NetworkInfo.
func (n *netSide) info(ni *apiv1.NetworkInfo) error {
	sub, err := netip.ParsePrefix(ni.GetSubnet())
	if err != nil {
		return fmt.Errorf("network info: subnet %q: %w", ni.GetSubnet(), err)
	}
	n.mu.Lock()
	if sub != n.subnet {
		n.subnet, n.setUp, n.pubSent = sub, false, false
	}
	n.plan = ni.GetPlan()
	n.mu.Unlock()
	n.poke()
	return nil
}

// setPeers takes a complete peer set from the dispatcher.
func (n *netSide) setPeers(ps []*apiv1.Peer) {
	out := make([]network.Peer, 0, len(ps))
	for _, p := range ps {
		sub, err := netip.ParsePrefix(p.GetNetwork().GetSubnet())
		if err != nil || p.GetNodeId() == n.w.opts.NodeID {
			continue
		}
		out = append(out, network.Peer{NodeID: p.GetNodeId(), PublicKey: p.GetNetwork().GetPublicKey(), Endpoint: p.GetNetwork().GetEndpoint(), Subnets: []netip.Prefix{sub}})
	}
	n.mu.Lock()
	n.peers, n.peersSent = out, false
	n.peersGen++
	n.mu.Unlock()
	n.poke()
}

// setEndpoints takes a complete endpoint table from the dispatcher.
func (n *netSide) setEndpoints(eps []*apiv1.Endpoint) {
	t := make(discovery.Table, len(eps))
	for _, e := range eps {
		for _, a := range e.GetAddresses() {
			if addr, err := netip.ParseAddr(a); err == nil {
				t[e.GetName()] = append(t[e.GetName()], addr)
			}
		}
	}
	n.mu.Lock()
	n.table = t
	n.eps, n.pubSent = eps, false
	n.pubGen++
	dns := n.dns
	n.mu.Unlock()
	if dns != nil {
		dns.Set(t)
	}
	n.poke()
}

// publish gives the plugin the ports the endpoint table of generation gen
// asks this node (subnet sub) to publish, leaving out new ones that a
// process of the host holds, and sets the "ports" condition naming those.
func (n *netSide) publish(ctx context.Context, sub netip.Prefix, eps []*apiv1.Endpoint, gen uint64) error {
	n.mu.Lock()
	applied := n.applied
	n.mu.Unlock()
	ports, cond := takePorts(PublishedPorts(eps, sub), applied, bindPort)
	cctx, cancel := n.w.call(ctx, 0)
	err := n.nw.SetPublished(cctx, ports)
	cancel()
	switch {
	case errors.Is(err, sdk.ErrUnsupported):
		// A plugin without published ports: nothing to do for an empty
		// set; otherwise the node says so until the table changes.
		ports, cond = nil, ""
		if len(PublishedPorts(eps, sub)) > 0 {
			cond = fmt.Sprintf("cannot publish ports: network plugin %s: %v", n.name, err)
		}
	case err != nil:
		return fmt.Errorf("SetPublished with %d ports: %w", len(ports), err)
	}
	now := make(map[string]bool, len(ports))
	for _, p := range ports {
		now[portKey(p)] = true
	}
	n.mu.Lock()
	n.applied = now
	n.pubSent = n.pubGen == gen
	changed := n.portsCond != cond
	n.portsCond = cond
	n.mu.Unlock()
	if changed {
		if cond != "" {
			n.w.log.Warn("published ports left out", "reason", cond)
		}
		poke(n.w.health.changed)
	}
	return nil
}

// conditions returns the "ports" node condition while a port cannot be
// published.
func (n *netSide) conditions() []*apiv1.NodeCondition {
	if n == nil {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.portsCond == "" {
		return nil
	}
	return []*apiv1.NodeCondition{{Type: dispatcher.ConditionPorts, Message: n.portsCond}}
}

// restarted is told that the plugin process was restarted: it is set up
// again (the plugin adopts what exists) and given the peers again.
func (n *netSide) restarted() {
	n.mu.Lock()
	n.setUp, n.peersSent, n.pubSent = false, false, false
	n.mu.Unlock()
	n.poke()
}

// run does the plugin calls the state asks for until ctx ends, retrying
// failed ones with backoff.
func (n *netSide) run(ctx context.Context) {
	defer n.w.wg.Done()
	backoff := time.Duration(0)
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		case <-retry:
		}
		retry = nil
		if err := n.step(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, n.w.opts.MinBackoff), n.w.opts.MaxBackoff)
			n.w.log.Warn("network plugin call failed; retrying", "error", err, "in", backoff)
			retry = time.After(backoff)
			continue
		}
		backoff = 0
	}
}

func (n *netSide) step(ctx context.Context) error {
	n.mu.Lock()
	sub, plan, setUp, peers, peersSent, gen := n.subnet, n.plan, n.setUp, n.peers, n.peersSent, n.peersGen
	eps, pubSent, pubGen := n.eps, n.pubSent, n.pubGen
	n.mu.Unlock()
	if !sub.IsValid() {
		return nil
	}
	if !setUp {
		p, err := overlayPlan(plan)
		if err != nil {
			return err
		}
		cfg := network.NodeConfig{NodeID: n.w.opts.NodeID, Subnet: sub, OverlayCIDR: p.Range, AdvertiseAddr: n.advertise()}
		cctx, cancel := n.w.call(ctx, 0)
		peer, err := n.nw.SetupNode(cctx, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("SetupNode of subnet %s: %w", sub, err)
		}
		text := n.name
		ictx, cancel := n.w.call(ctx, 0)
		if info, err := n.nw.Info(ictx); err == nil && info.Description != "" {
			text = fmt.Sprintf("%s (%s)", n.name, info.Description)
		}
		cancel()
		n.report.Store(&apiv1.NodeNetwork{PublicKey: peer.PublicKey, Endpoint: peer.Endpoint, Plugin: text})
		select {
		case n.reported <- struct{}{}:
		default:
		}
		if err := n.startDNS(ctx, sub, plan); err != nil {
			return err
		}
		n.mu.Lock()
		n.setUp = n.subnet == sub
		if n.setUp && !n.isReady {
			n.isReady = true
			close(n.ready)
		}
		n.mu.Unlock()
		n.w.log.Info("overlay set up", "subnet", sub, "plugin", text)
	}
	if !peersSent && gen > 0 {
		cctx, cancel := n.w.call(ctx, 0)
		err := n.nw.SetPeers(cctx, peers)
		cancel()
		if err != nil {
			return fmt.Errorf("SetPeers with %d peers: %w", len(peers), err)
		}
		n.mu.Lock()
		n.peersSent = n.peersGen == gen
		n.mu.Unlock()
	}
	if !pubSent && pubGen > 0 {
		return n.publish(ctx, sub, eps, pubGen)
	}
	return nil
}

// advertise is the endpoint the plugin is given: the host of the agent's
// advertise address, port OverlayPort.
func (n *netSide) advertise() string {
	host, _, err := net.SplitHostPort(n.w.opts.Addr)
	if err != nil || host == "" {
		return ""
	}
	return net.JoinHostPort(host, fmt.Sprint(OverlayPort))
}

// startDNS starts the node's DNS server on the gateway address, port 53
// UDP and TCP, once.
func (n *netSide) startDNS(ctx context.Context, sub netip.Prefix, plan *apiv1.ClusterNetwork) error {
	n.mu.Lock()
	up := n.dns != nil
	n.mu.Unlock()
	if up {
		return nil
	}
	dns, err := discovery.New(discovery.Config{Domain: plan.GetDomain(), Upstream: n.upstream, Logger: n.w.log.Named("dns")})
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(network.Gateway(sub).String(), "53")
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("DNS for the node's tasks on udp %s: %w", addr, err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return fmt.Errorf("DNS for the node's tasks on tcp %s: %w", addr, err)
	}
	n.mu.Lock()
	n.dns = dns
	dns.Set(n.table)
	n.mu.Unlock()
	n.w.wg.Add(1)
	go func() {
		defer n.w.wg.Done()
		if err := dns.Serve(ctx, pc, l); err != nil && ctx.Err() == nil {
			n.w.log.Error("DNS server for the node's tasks stopped", "addr", addr, "error", err)
		}
	}()
	n.w.log.Info("answering DNS for the node's tasks", "addr", addr, "domain", plan.GetDomain())
	return nil
}

func overlayPlan(plan *apiv1.ClusterNetwork) (network.Plan, error) {
	if plan == nil {
		return network.Plan{}, errors.New("the dispatcher sent no overlay plan")
	}
	return network.ParsePlan(plan.GetOverlayRange(), int(plan.GetNodePrefix()))
}

// waitReady waits until the node is set up, and returns its subnet and the
// cluster domain.
func (n *netSide) waitReady(ctx context.Context) (netip.Prefix, string, error) {
	select {
	case <-ctx.Done():
		return netip.Prefix{}, "", ctx.Err()
	case <-n.ready:
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.subnet, n.plan.GetDomain(), nil
}

func (n *netSide) netnsPath(taskID string) string { return filepath.Join(n.nsDir, taskID) }

// taskNet is what a task on the overlay gets: its namespace, its address,
// and its resolv.conf and hosts mounted read-only.
type taskNet struct {
	netns   string
	address netip.Prefix
	mounts  []runtime.Mount
}

// attach gives task t a network namespace on the overlay (repeat-safe:
// a namespace and address that exist are kept) and writes its resolv.conf
// and hosts.
func (n *netSide) attach(ctx context.Context, t *apiv1.Task, hostname string) (*taskNet, error) {
	sub, domain, err := n.waitReady(ctx)
	if err != nil {
		return nil, err
	}
	path := n.netnsPath(t.GetId())
	if err := createNetns(path); err != nil {
		return nil, err
	}
	cctx, cancel := n.w.call(ctx, 0)
	att, err := n.nw.Attach(cctx, t.GetId(), path)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("attach task %s to the overlay: %w", t.GetId(), err)
	}
	dir := filepath.Join(n.etcDir, t.GetId())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("task %s: %w", t.GetId(), err)
	}
	gw := att.Gateway
	if !gw.IsValid() {
		gw = network.Gateway(sub)
	}
	resolv := fmt.Sprintf("nameserver %s\nsearch %s\noptions ndots:0\n", gw, domain)
	hosts := fmt.Sprintf("127.0.0.1\tlocalhost\n::1\tlocalhost\n%s\t%s %s\n", att.Address.Addr(), hostname, serviceName(t))
	files := []struct{ name, body, target string }{
		{"resolv.conf", resolv, "/etc/resolv.conf"},
		{"hosts", hosts, "/etc/hosts"},
	}
	tn := &taskNet{netns: path, address: att.Address}
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte(f.body), 0o644); err != nil {
			return nil, fmt.Errorf("task %s: write %s: %w", t.GetId(), p, err)
		}
		tn.mounts = append(tn.mounts, runtime.Mount{Type: runtime.MountBind, Source: p, Target: f.target, ReadOnly: true})
	}
	return tn, nil
}

// detach takes a task off the overlay and removes its namespace and files;
// a task that has none is fine.
func (n *netSide) detach(ctx context.Context, taskID string) error {
	path := n.netnsPath(taskID)
	if _, err := os.Stat(path); err == nil && n.nw != nil {
		cctx, cancel := n.w.call(ctx, 0)
		err := n.nw.Detach(cctx, taskID, path)
		cancel()
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			return fmt.Errorf("detach task %s from the overlay: %w", taskID, err)
		}
	}
	if err := deleteNetns(path); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(n.etcDir, taskID)); err != nil {
		return fmt.Errorf("task %s: %w", taskID, err)
	}
	return nil
}

// namespaces lists the task IDs that have a namespace here.
func (n *netSide) namespaces() []string {
	entries, err := os.ReadDir(n.nsDir)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if runtime.ValidateTaskID(e.Name()) == nil {
			out = append(out, e.Name())
		}
	}
	return out
}

// usesOverlay reports whether a task of spec s goes on the overlay: mode
// overlay, or no mode when the worker has a network plugin.
func usesOverlay(s *apiv1.ServiceSpec, hasPlugin bool) bool {
	switch s.GetNetworkMode() {
	case apiv1.NetworkMode_NETWORK_MODE_OVERLAY:
		return hasPlugin
	case apiv1.NetworkMode_NETWORK_MODE_UNSPECIFIED:
		return hasPlugin
	}
	return false
}

// dropNetwork takes task id off the overlay and removes its namespace, if
// it has one; a worker that no longer has a network plugin still removes
// the namespace.
func (w *Worker) dropNetwork(ctx context.Context, id string) error {
	if w.net != nil {
		return w.net.detach(ctx, id)
	}
	path := filepath.Join(netnsDir(w.opts.DataDir), id)
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	return deleteNetns(path)
}
