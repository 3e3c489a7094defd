package networktest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
)

// FakeNetwork is an in-memory network.Network for testing the sdk's gRPC
// glue and this suite itself. It does address management only: it touches
// no device, route or namespace, and netns paths are just names to it. It
// is never a default and no plugin should ship it.
type FakeNetwork struct {
	mu       sync.Mutex
	cfg      *network.NodeConfig // nil until SetupNode, and after Teardown
	key      string
	peers    []network.Peer
	ports    []network.PublishedPort
	attached map[string]fakeAttachment
	next     netip.Addr   // next never-used address
	released []netip.Addr // released addresses, least recently first
}

type fakeAttachment struct {
	netns string
	att   network.Attachment
}

// NewFakeNetwork returns a FakeNetwork that is not set up.
func NewFakeNetwork() *FakeNetwork {
	return &FakeNetwork{attached: map[string]fakeAttachment{}}
}

// FakeOptions returns suite Options for a FakeNetwork: its "namespaces" are
// paths in the test's temporary directory that nothing creates.
func FakeOptions() Options {
	return Options{
		NewNetns: func(t *testing.T) string {
			return t.TempDir() + "/netns"
		},
	}
}

// Peers returns the peers the last SetPeers left, sorted by NodeID.
func (f *FakeNetwork) Peers() []network.Peer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.peers)
}

// Info reports kind network, name "fake".
func (f *FakeNetwork) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Kind:        sdk.KindNetwork,
		Name:        "fake",
		Version:     "0.0.0",
		APIVersions: []uint32{sdk.APIVersion},
		Description: "in-memory fake for testing the sdk; address management only",
	}, nil
}

// ConfigSchema reports no attributes.
func (f *FakeNetwork) ConfigSchema(context.Context) (sdk.Schema, error) { return sdk.Schema{}, nil }

// Configure accepts only an empty configuration.
func (f *FakeNetwork) Configure(_ context.Context, configJSON []byte) error {
	return sdk.DecodeConfig(configJSON, &struct{}{})
}

// SetupNode records cfg and returns the node's Peer, with a random key made
// at the first SetupNode after creation or Teardown.
func (f *FakeNetwork) SetupNode(_ context.Context, cfg network.NodeConfig) (network.Peer, error) {
	if err := cfg.Validate(); err != nil {
		return network.Peer{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil || f.cfg.Subnet != cfg.Subnet || f.cfg.OverlayCIDR != cfg.OverlayCIDR {
		if len(f.attached) > 0 {
			return network.Peer{}, fmt.Errorf("node %q: changing subnet to %s with %d tasks attached: %w",
				cfg.NodeID, cfg.Subnet, len(f.attached), sdk.ErrFailedPrecondition)
		}
		f.next = cfg.Subnet.Addr().Next().Next() // after the network address and the gateway
		f.released = nil
	}
	if f.key == "" {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		f.key = base64.StdEncoding.EncodeToString(b)
	}
	f.cfg = &cfg
	return network.Peer{NodeID: cfg.NodeID, PublicKey: f.key, Endpoint: cfg.AdvertiseAddr, Subnets: []netip.Prefix{cfg.Subnet}}, nil
}

// SetPeers records the peers after network.CheckPeers.
func (f *FakeNetwork) SetPeers(_ context.Context, peers []network.Peer) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil {
		return fmt.Errorf("set peers: node not set up: %w", sdk.ErrFailedPrecondition)
	}
	others, err := network.CheckPeers(*f.cfg, peers)
	if err != nil {
		return err
	}
	f.peers = others
	return nil
}

// SetPublished records the ports after network.CheckPublished.
func (f *FakeNetwork) SetPublished(_ context.Context, ports []network.PublishedPort) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil {
		return fmt.Errorf("set published ports: node not set up: %w", sdk.ErrFailedPrecondition)
	}
	checked, err := network.CheckPublished(ports)
	if err != nil {
		return err
	}
	f.ports = checked
	return nil
}

// Published returns the ports the last SetPublished left, as
// network.CheckPublished sorts them.
func (f *FakeNetwork) Published() []network.PublishedPort {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ports)
}

// Attach hands out addresses from the subnet: never-used ones first, then
// released ones, least recently released first.
func (f *FakeNetwork) Attach(_ context.Context, taskID, netnsPath string) (network.Attachment, error) {
	if taskID == "" || netnsPath == "" {
		return network.Attachment{}, fmt.Errorf("attach task %q to %q: empty task ID or netns path: %w", taskID, netnsPath, sdk.ErrInvalidArgument)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cfg == nil {
		return network.Attachment{}, fmt.Errorf("attach task %q: node not set up: %w", taskID, sdk.ErrFailedPrecondition)
	}
	if a, ok := f.attached[taskID]; ok {
		if a.netns != netnsPath {
			return network.Attachment{}, fmt.Errorf("task %q: attached to %q, not %q: %w", taskID, a.netns, netnsPath, sdk.ErrConflict)
		}
		return a.att, nil
	}
	var addr netip.Addr
	switch {
	case f.next.IsValid() && f.next.Less(lastUsable(f.cfg.Subnet).Next()):
		addr, f.next = f.next, f.next.Next()
	case len(f.released) > 0:
		addr, f.released = f.released[0], f.released[1:]
	default:
		return network.Attachment{}, fmt.Errorf("attach task %q: subnet %s is full: %w", taskID, f.cfg.Subnet, sdk.ErrFailedPrecondition)
	}
	att := network.Attachment{
		Address: netip.PrefixFrom(addr, f.cfg.Subnet.Bits()),
		Gateway: f.cfg.Subnet.Addr().Next(),
	}
	f.attached[taskID] = fakeAttachment{netns: netnsPath, att: att}
	return att, nil
}

// lastUsable returns the last address of p a task may get: the last one,
// or the one before it for IPv4, whose last address is for broadcast.
func lastUsable(p netip.Prefix) netip.Addr {
	last := lastAddr(p)
	if p.Addr().Is4() {
		return last.Prev()
	}
	return last
}

// Detach releases the task's address.
func (f *FakeNetwork) Detach(_ context.Context, taskID, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.attached[taskID]
	if !ok {
		return nil
	}
	delete(f.attached, taskID)
	f.released = append(f.released, a.att.Address.Addr())
	return nil
}

// Teardown forgets everything, the node's key included.
func (f *FakeNetwork) Teardown(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cfg, f.key, f.peers, f.ports = nil, "", nil, nil
	f.attached = map[string]fakeAttachment{}
	f.next, f.released = netip.Addr{}, nil
	return nil
}
