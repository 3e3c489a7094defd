// Package networktest is the conformance suite for network plugins. A
// plugin author runs it against their implementation:
//
//	func TestConformance(t *testing.T) {
//		networktest.Run(t, func(t *testing.T) network.Network {
//			return mynetwork.New(...) // configured, ready to use
//		}, networktest.Options{
//			NewNetns: func(t *testing.T) string { return makeNetns(t) }, // removed in t.Cleanup
//		})
//	}
//
// Every case calls the factory for a fresh plugin, talks to it over a real
// gRPC connection, exactly as the warren agent does, and calls Teardown when
// it ends. The suite can check what the interface reports (addresses,
// errors, repeat-safety); what a plugin builds on the host is for its own
// tests to check.
//
// The package also holds FakeNetwork, an in-memory plugin that exists only
// to test the sdk and this suite.
package networktest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
)

// Options tell the suite how to exercise the plugin under test.
type Options struct {
	// NewNetns creates a network namespace for one task, removed in
	// t.Cleanup, and returns its path. Nil skips the cases that attach
	// tasks.
	NewNetns func(t *testing.T) string
	// Node is the node the suite sets up. The zero value means
	// DefaultNode. Peers the suite makes up get the subnets that follow
	// Node.Subnet.
	Node network.NodeConfig
	// PeerKey returns a public key the plugin accepts for a made-up peer
	// (a fresh WireGuard key, say). Nil uses "conformance-peer-<n>".
	PeerKey func(t *testing.T, n int) string
	// Published returns what the plugin has built on the host for the
	// published ports (read from the host, not from the plugin), in the
	// form CheckPublished returns; the suite compares it with what it set.
	// Nil checks only what the interface reports.
	Published func(t *testing.T) []network.PublishedPort
}

// DefaultNode is the node the suite sets up unless Options.Node says
// otherwise.
var DefaultNode = network.NodeConfig{
	NodeID:        "conformance-node",
	Subnet:        netip.MustParsePrefix("10.199.3.0/24"),
	OverlayCIDR:   netip.MustParsePrefix("10.199.0.0/16"),
	AdvertiseAddr: "127.0.0.1:51820",
}

// caseTimeout bounds one case.
const caseTimeout = time.Minute

// Run runs the suite against the plugins factory returns, each served over
// a real go-plugin gRPC connection. factory is called once per case and
// must return a configured plugin.
func Run(t *testing.T, factory func(t *testing.T) network.Network, opts Options) {
	RunClient(t, func(t *testing.T) network.Network {
		impl := factory(t)
		conn := sdk.TestConn(t, impl, network.Register(impl))
		// Close the connection before TestConn's cleanup runs (cleanups run
		// last first). Otherwise go-plugin's client close asks the server to
		// stop over the connection while TestConn stops it directly, and the
		// two GRPCServer.Stop calls race.
		t.Cleanup(func() { conn.Close() })
		return network.NewClient(conn)
	}, opts)
}

// RunClient runs the suite against plugins that are remote already, such
// as clients of a plugin binary the test launched. newClient is called once
// per case.
func RunClient(t *testing.T, newClient func(t *testing.T) network.Network, opts Options) {
	if !opts.Node.Subnet.IsValid() {
		opts.Node = DefaultNode
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.netns && opts.NewNetns == nil {
				t.Skip("no Options.NewNetns")
			}
			e := &env{t: t, opts: opts, nw: newClient(t)}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), caseTimeout)
				defer cancel()
				if err := e.nw.Teardown(ctx); err != nil {
					t.Errorf("cleanup: Teardown: %v", err)
				}
			})
			c.fn(t, e)
		})
	}
}

// env is what one case works with.
type env struct {
	t    *testing.T
	opts Options
	nw   network.Network
}

var cases = []struct {
	name  string
	netns bool // needs Options.NewNetns
	fn    func(t *testing.T, e *env)
}{
	{"Info", false, testInfo},
	{"SetupNode", false, testSetupNode},
	{"SetupNodeInvalid", false, testSetupNodeInvalid},
	{"NotSetUp", false, testNotSetUp},
	{"SetPeers", false, testSetPeers},
	{"SetPeersInvalid", false, testSetPeersInvalid},
	{"Attach", true, testAttach},
	{"AttachConcurrent", true, testAttachConcurrent},
	{"ChangeSubnetWhileAttached", true, testChangeSubnetWhileAttached},
	{"SetPublished", false, testSetPublished},
	{"SetPublishedInvalid", false, testSetPublishedInvalid},
	{"Teardown", false, testTeardown},
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(e.t.Context(), caseTimeout)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) setup(ctx context.Context) network.Peer {
	e.t.Helper()
	self, err := e.nw.SetupNode(ctx, e.opts.Node)
	if err != nil {
		e.t.Fatalf("SetupNode(%+v): %v", e.opts.Node, err)
	}
	return self
}

// peer makes up the n-th other node (n from 1), whose subnet follows the
// node's.
func (e *env) peer(n int) network.Peer {
	subnet := e.opts.Node.Subnet
	for range n {
		subnet = netip.PrefixFrom(lastAddr(subnet).Next(), subnet.Bits())
	}
	key := fmt.Sprintf("conformance-peer-%d", n)
	if e.opts.PeerKey != nil {
		key = e.opts.PeerKey(e.t, n)
	}
	return network.Peer{
		NodeID:    fmt.Sprintf("conformance-peer-%d", n),
		PublicKey: key,
		Endpoint:  fmt.Sprintf("192.0.2.%d:51820", n),
		Subnets:   []netip.Prefix{subnet},
	}
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		hostBits := max(0, min(8, (i+1)*8-p.Bits()))
		b[i] |= byte(1<<hostBits - 1)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want one wrapping %v", what, err, want)
	}
}

func testInfo(t *testing.T, e *env) {
	info, err := e.nw.Info(e.ctx())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindNetwork {
		t.Errorf("Info kind = %q, want %q", info.Kind, sdk.KindNetwork)
	}
	if info.Name == "" || !slices.Contains(info.APIVersions, sdk.APIVersion) {
		t.Errorf("Info = %+v, want a name and API version %d", info, sdk.APIVersion)
	}
}

func testSetupNode(t *testing.T, e *env) {
	ctx := e.ctx()
	self := e.setup(ctx)
	if self.NodeID != e.opts.Node.NodeID || !slices.Contains(self.Subnets, e.opts.Node.Subnet) {
		t.Errorf("SetupNode = %+v, want node %q with subnet %s", self, e.opts.Node.NodeID, e.opts.Node.Subnet)
	}
	again := e.setup(ctx)
	if !samePeer(again, self) {
		t.Errorf("SetupNode again = %+v, want %+v", again, self)
	}
}

func samePeer(a, b network.Peer) bool {
	return a.NodeID == b.NodeID && a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint && slices.Equal(a.Subnets, b.Subnets)
}

func testSetupNodeInvalid(t *testing.T, e *env) {
	ctx := e.ctx()
	node := e.opts.Node
	outside := netip.PrefixFrom(lastAddr(node.OverlayCIDR).Next(), node.Subnet.Bits())
	for _, tc := range []struct {
		name   string
		modify func(*network.NodeConfig)
	}{
		{"empty node ID", func(c *network.NodeConfig) { c.NodeID = "" }},
		{"subnet outside the overlay", func(c *network.NodeConfig) { c.Subnet = outside }},
		{"subnet with host bits", func(c *network.NodeConfig) {
			c.Subnet = netip.PrefixFrom(c.Subnet.Addr().Next(), c.Subnet.Bits())
		}},
		{"subnet wider than the overlay", func(c *network.NodeConfig) {
			c.Subnet = c.OverlayCIDR
			c.OverlayCIDR = netip.PrefixFrom(c.OverlayCIDR.Addr(), c.OverlayCIDR.Bits()+1)
		}},
		{"no overlay", func(c *network.NodeConfig) { c.OverlayCIDR = netip.Prefix{} }},
	} {
		cfg := node
		tc.modify(&cfg)
		_, err := e.nw.SetupNode(ctx, cfg)
		wantErr(t, "SetupNode with "+tc.name, err, sdk.ErrInvalidArgument)
	}
}

func testNotSetUp(t *testing.T, e *env) {
	ctx := e.ctx()
	err := e.nw.SetPeers(ctx, []network.Peer{e.peer(1)})
	wantErr(t, "SetPeers before SetupNode", err, sdk.ErrFailedPrecondition)
	if err := e.nw.Detach(ctx, "conformance-task", "/nonexistent/netns"); err != nil {
		t.Errorf("Detach before SetupNode: %v, want nil", err)
	}
	if e.opts.NewNetns != nil {
		_, err := e.nw.Attach(ctx, "conformance-task", e.opts.NewNetns(t))
		wantErr(t, "Attach before SetupNode", err, sdk.ErrFailedPrecondition)
	}
}

func testSetPeers(t *testing.T, e *env) {
	ctx := e.ctx()
	self := e.setup(ctx)
	p1, p2, p3 := e.peer(1), e.peer(2), e.peer(3)
	moved := p2
	moved.Endpoint = "192.0.2.200:51821"
	for _, step := range []struct {
		name  string
		peers []network.Peer
	}{
		{"two peers", []network.Peer{p1, p2}},
		{"the same again", []network.Peer{p1, p2}},
		{"reordered", []network.Peer{p2, p1}},
		{"one replaced, one moved", []network.Peer{moved, p3}},
		{"with the node itself", []network.Peer{self, moved, p3}},
		{"none", nil},
		{"back again", []network.Peer{p1, p2, p3}},
	} {
		if err := e.nw.SetPeers(ctx, step.peers); err != nil {
			t.Fatalf("SetPeers %s: %v", step.name, err)
		}
	}
}

func testSetPeersInvalid(t *testing.T, e *env) {
	ctx := e.ctx()
	e.setup(ctx)
	p1, p2 := e.peer(1), e.peer(2)
	if err := e.nw.SetPeers(ctx, []network.Peer{p1}); err != nil {
		t.Fatalf("SetPeers: %v", err)
	}
	dup := p2
	dup.NodeID = p1.NodeID
	overlapping := p2
	overlapping.Subnets = p1.Subnets
	overlapsNode := p2
	overlapsNode.Subnets = []netip.Prefix{e.opts.Node.Subnet}
	noID := p2
	noID.NodeID = ""
	for _, tc := range []struct {
		name  string
		peers []network.Peer
	}{
		{"a node ID twice", []network.Peer{p1, dup}},
		{"overlapping subnets", []network.Peer{p1, overlapping}},
		{"a subnet overlapping the node's", []network.Peer{p1, overlapsNode}},
		{"an empty node ID", []network.Peer{p1, noID}},
	} {
		err := e.nw.SetPeers(ctx, tc.peers)
		wantErr(t, "SetPeers with "+tc.name, err, sdk.ErrInvalidArgument)
	}
}

// checkAttachment checks that a lies in the node's subnet.
func (e *env) checkAttachment(taskID string, a network.Attachment) {
	e.t.Helper()
	subnet := e.opts.Node.Subnet
	addr := a.Address.Addr()
	switch {
	case !subnet.Contains(addr) || a.Address.Bits() != subnet.Bits():
		e.t.Errorf("Attach(%q) address %s, want one in %s with its prefix length", taskID, a.Address, subnet)
	case !subnet.Contains(a.Gateway):
		e.t.Errorf("Attach(%q) gateway %s, want one in %s", taskID, a.Gateway, subnet)
	case addr == a.Gateway || addr == subnet.Addr() || (addr.Is4() && addr == lastAddr(subnet)):
		e.t.Errorf("Attach(%q) address %s is the gateway, network or broadcast address", taskID, addr)
	}
}

func testAttach(t *testing.T, e *env) {
	ctx := e.ctx()
	e.setup(ctx)
	ns1, ns2 := e.opts.NewNetns(t), e.opts.NewNetns(t)

	a1, err := e.nw.Attach(ctx, "conformance-task-1", ns1)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	e.checkAttachment("conformance-task-1", a1)
	again, err := e.nw.Attach(ctx, "conformance-task-1", ns1)
	if err != nil || again != a1 {
		t.Errorf("Attach again = %+v, %v; want %+v", again, err, a1)
	}
	_, err = e.nw.Attach(ctx, "conformance-task-1", ns2)
	wantErr(t, "Attach of an attached task to another namespace", err, sdk.ErrConflict)

	a2, err := e.nw.Attach(ctx, "conformance-task-2", ns2)
	if err != nil {
		t.Fatalf("Attach second task: %v", err)
	}
	e.checkAttachment("conformance-task-2", a2)
	if a2.Address.Addr() == a1.Address.Addr() {
		t.Errorf("two tasks got the same address %s", a1.Address)
	}

	for range 2 {
		if err := e.nw.Detach(ctx, "conformance-task-1", ns1); err != nil {
			t.Errorf("Detach: %v", err)
		}
	}
	if err := e.nw.Detach(ctx, "conformance-never-attached", ns1); err != nil {
		t.Errorf("Detach of a task never attached: %v", err)
	}
	// The namespace is free for another task once detached.
	a3, err := e.nw.Attach(ctx, "conformance-task-3", ns1)
	if err != nil {
		t.Fatalf("Attach after Detach: %v", err)
	}
	e.checkAttachment("conformance-task-3", a3)
	if a3.Address.Addr() == a2.Address.Addr() {
		t.Errorf("task 3 got task 2's address %s", a2.Address)
	}
}

func testAttachConcurrent(t *testing.T, e *env) {
	ctx := e.ctx()
	e.setup(ctx)
	netns := make([]string, 8)
	for i := range netns {
		netns[i] = e.opts.NewNetns(t)
	}
	atts := make([]network.Attachment, len(netns))
	errs := make([]error, len(netns))
	var wg sync.WaitGroup
	for i := range netns {
		wg.Go(func() { atts[i], errs[i] = e.nw.Attach(ctx, fmt.Sprintf("conformance-task-%d", i), netns[i]) })
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, a := range atts {
		if errs[i] != nil {
			t.Fatalf("Attach task %d: %v", i, errs[i])
		}
		e.checkAttachment(fmt.Sprintf("conformance-task-%d", i), a)
		if j, ok := seen[a.Address.Addr()]; ok {
			t.Errorf("tasks %d and %d got the same address %s", j, i, a.Address)
		}
		seen[a.Address.Addr()] = i
	}
}

func testChangeSubnetWhileAttached(t *testing.T, e *env) {
	ctx := e.ctx()
	e.setup(ctx)
	if _, err := e.nw.Attach(ctx, "conformance-task", e.opts.NewNetns(t)); err != nil {
		t.Fatalf("Attach: %v", err)
	}
	cfg := e.opts.Node
	cfg.Subnet = e.peer(1).Subnets[0]
	_, err := e.nw.SetupNode(ctx, cfg)
	wantErr(t, "SetupNode with another subnet while a task is attached", err, sdk.ErrFailedPrecondition)
}

func testTeardown(t *testing.T, e *env) {
	ctx := e.ctx()
	e.setup(ctx)
	if err := e.nw.SetPeers(ctx, []network.Peer{e.peer(1)}); err != nil {
		t.Fatalf("SetPeers: %v", err)
	}
	var ns string
	if e.opts.NewNetns != nil {
		ns = e.opts.NewNetns(t)
		if _, err := e.nw.Attach(ctx, "conformance-task", ns); err != nil {
			t.Fatalf("Attach: %v", err)
		}
	}
	for range 2 {
		if err := e.nw.Teardown(ctx); err != nil {
			t.Fatalf("Teardown: %v", err)
		}
	}
	err := e.nw.SetPeers(ctx, []network.Peer{e.peer(1)})
	wantErr(t, "SetPeers after Teardown", err, sdk.ErrFailedPrecondition)
	// The node can be set up afresh, with nothing attached.
	e.setup(ctx)
	if ns == "" {
		return
	}
	if err := e.nw.Detach(ctx, "conformance-task", ns); err != nil {
		t.Errorf("Detach after Teardown: %v, want nil", err)
	}
	a, err := e.nw.Attach(ctx, "conformance-task", ns)
	if err != nil {
		t.Fatalf("Attach after a new SetupNode: %v", err)
	}
	e.checkAttachment("conformance-task", a)
}

// ports makes up published ports: an ingress TCP port balanced over a
// local and a remote backend, and a host UDP port on a local one.
func (e *env) ports() []network.PublishedPort {
	local := e.opts.Node.Subnet.Addr().Next().Next()
	remote := e.peer(1).Subnets[0].Addr().Next().Next()
	return []network.PublishedPort{
		{Service: "conformance-web", Protocol: network.TCP, Port: 18080, TargetPort: 80, Mode: network.Ingress, Backends: []netip.Addr{remote, local}},
		{Service: "conformance-dns", Protocol: network.UDP, Port: 15353, TargetPort: 53, Mode: network.Host, Backends: []netip.Addr{local}},
	}
}

// checkPublished compares what Options.Published reads with want.
func (e *env) checkPublished(what string, want []network.PublishedPort) {
	e.t.Helper()
	if e.opts.Published == nil {
		return
	}
	want, err := network.CheckPublished(want)
	if err != nil {
		e.t.Fatalf("%s: the suite's own ports: %v", what, err)
	}
	got := e.opts.Published(e.t)
	if !slices.EqualFunc(got, want, func(a, b network.PublishedPort) bool {
		return a.Protocol == b.Protocol && a.Port == b.Port && a.TargetPort == b.TargetPort && a.Mode == b.Mode && slices.Equal(a.Backends, b.Backends)
	}) {
		e.t.Errorf("%s: the host has published %v, want %v", what, got, want)
	}
}

func testSetPublished(t *testing.T, e *env) {
	ctx := e.ctx()
	ports := e.ports()
	err := e.nw.SetPublished(ctx, ports)
	wantErr(t, "SetPublished before SetupNode", err, sdk.ErrFailedPrecondition)
	e.setup(ctx)
	if err := e.nw.SetPeers(ctx, []network.Peer{e.peer(1)}); err != nil {
		t.Fatalf("SetPeers: %v", err)
	}
	for i, step := range []struct {
		what  string
		ports []network.PublishedPort
	}{
		{"two ports", ports},
		{"the same again", ports},
		{"the same in another order", []network.PublishedPort{ports[1], ports[0]}},
		{"a backend fewer", []network.PublishedPort{{Service: ports[0].Service, Protocol: network.TCP, Port: 18080, TargetPort: 80, Mode: network.Ingress, Backends: ports[0].Backends[1:]}, ports[1]}},
		{"a port fewer", ports[1:]},
		{"none", nil},
		{"two ports again", ports},
	} {
		if err := e.nw.SetPublished(ctx, step.ports); err != nil {
			t.Fatalf("step %d, SetPublished with %s: %v", i, step.what, err)
		}
		e.checkPublished(fmt.Sprintf("step %d, after SetPublished with %s", i, step.what), step.ports)
	}
	if err := e.nw.Teardown(ctx); err != nil {
		t.Fatalf("Teardown: %v", err)
	}
	e.checkPublished("after Teardown", nil)
	err = e.nw.SetPublished(ctx, ports)
	wantErr(t, "SetPublished after Teardown", err, sdk.ErrFailedPrecondition)
}

func testSetPublishedInvalid(t *testing.T, e *env) {
	ctx := e.ctx()
	e.setup(ctx)
	good := e.ports()
	if err := e.nw.SetPublished(ctx, good); err != nil {
		t.Fatalf("SetPublished: %v", err)
	}
	with := func(edit func(p *network.PublishedPort)) []network.PublishedPort {
		p := good[0]
		p.Backends = slices.Clone(p.Backends)
		edit(&p)
		return []network.PublishedPort{p, good[1]}
	}
	for _, tc := range []struct {
		name  string
		ports []network.PublishedPort
	}{
		{"port 0", with(func(p *network.PublishedPort) { p.Port = 0 })},
		{"target port 0", with(func(p *network.PublishedPort) { p.TargetPort = 0 })},
		{"unknown protocol", with(func(p *network.PublishedPort) { p.Protocol = "sctp" })},
		{"unknown mode", with(func(p *network.PublishedPort) { p.Mode = "everywhere" })},
		{"no backends", with(func(p *network.PublishedPort) { p.Backends = nil })},
		{"invalid backend", with(func(p *network.PublishedPort) { p.Backends = append(p.Backends, netip.Addr{}) })},
		{"a port twice", []network.PublishedPort{good[0], good[1], good[0]}},
	} {
		err := e.nw.SetPublished(ctx, tc.ports)
		wantErr(t, "SetPublished with "+tc.name, err, sdk.ErrInvalidArgument)
		e.checkPublished("after SetPublished with "+tc.name, good)
	}
}
