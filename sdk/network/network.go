// Package network is the contract for Warren's network plugins: an overlay
// between the nodes of a cluster and an address for each task.
//
// The cluster owns one overlay range (OverlayCIDR, say 10.42.0.0/16) and
// gives every node a slice of it (Subnet, say 10.42.3.0/24). The worker
// agent drives its node's network plugin through this interface only:
//
//  1. SetupNode once the plugin is configured, after every plugin start,
//     with the node's subnet; it returns the node's own Peer, which the
//     agent publishes to the cluster;
//  2. SetPeers with every other node's Peer, again each time the set
//     changes (declarative: always the full set);
//  3. Attach before a task starts, with the network namespace the task will
//     join, and Detach after the task is gone;
//  4. SetPublished with every port the node publishes and the task
//     addresses behind each, again each time the set changes (declarative:
//     always the full set);
//  5. Teardown when the node leaves the cluster.
//
// The default implementation builds a WireGuard mesh between nodes and a
// bridge for the tasks of each node; anything that routes the overlay ranges
// between nodes can implement Network.
//
// A plugin's main function is
//
//	func main() { network.Serve(mynetwork.New()) }
package network

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/warrenorch/warren/sdk"
)

// NodeConfig is what SetupNode prepares a node for.
type NodeConfig struct {
	// NodeID names the node in the cluster.
	NodeID string
	// Subnet is the range this node hands out to its tasks
	// (10.42.3.0/24); it lies inside OverlayCIDR.
	Subnet netip.Prefix
	// OverlayCIDR is the whole cluster's range (10.42.0.0/16); traffic to it
	// goes over the overlay.
	OverlayCIDR netip.Prefix
	// AdvertiseAddr is the host:port other nodes reach this node's overlay
	// on; plugins that need no endpoint may ignore it.
	AdvertiseAddr string
}

// Peer is how one node is reached over the overlay.
type Peer struct {
	NodeID string
	// PublicKey identifies the node to its peers (a WireGuard key, say);
	// empty for plugins that need none. Its format is the plugin's.
	PublicKey string
	// Endpoint is the host:port the node's overlay listens on.
	Endpoint string
	// Subnets are the ranges routed to the node: its task subnet, at least.
	Subnets []netip.Prefix
}

// Attachment is a task's place on the network.
type Attachment struct {
	// Address is the task's address with the node subnet's prefix length
	// (10.42.3.7/24).
	Address netip.Prefix
	// Gateway is the task's default gateway, inside the node's subnet.
	Gateway netip.Addr
}

// Network is implemented by network plugins.
//
// # Lifetime
//
// What a plugin builds on the host (devices, routes, firewall rules,
// addresses in task namespaces) must outlive the plugin process: tasks keep
// their network while the plugin or the warren agent restarts. Only
// Teardown removes it. A new plugin process adopts what an earlier one
// built instead of failing on it or building it twice, and keeps what must
// stay stable across restarts on disk: the node's identity (its private key,
// so that SetupNode returns the same Peer) and the address of every attached
// task.
//
// # Idempotency
//
// Every call is repeat-safe: the agent calls again after timeouts and
// restarts, and a call whose work is already done succeeds without changing
// anything. A call that failed half-way converges when repeated with the
// same input.
//
// # Errors
//
// Wrap the sdk sentinels with the identifier concerned:
//
//   - ErrInvalidArgument: a malformed config or peer list;
//   - ErrFailedPrecondition: SetPeers or Attach before SetupNode or after
//     Teardown; SetupNode changing the subnet while tasks are attached; a
//     subnet with no free address;
//   - ErrConflict: Attach of an attached task with another namespace;
//   - ErrNotFound: Attach with a namespace path that does not exist;
//   - ErrUnsupported: a feature this plugin does not provide (IPv6, say).
//
// # Threading
//
// Every method may be called concurrently with every other. Concurrent
// Attach calls for different tasks must get different addresses.
type Network interface {
	sdk.Plugin

	// SetupNode prepares this node: devices, keys, routes for OverlayCIDR,
	// the gateway address in Subnet. It returns the node's own Peer, whose
	// NodeID is cfg.NodeID and whose Subnets include cfg.Subnet.
	//
	// The agent calls it after every plugin start, before any other call of
	// this interface. The same cfg twice gives the same Peer and creates
	// nothing new. A different AdvertiseAddr is applied in place; a different
	// Subnet or OverlayCIDR is applied too, unless tasks are attached
	// (ErrFailedPrecondition). A cfg that fails Validate returns
	// ErrInvalidArgument.
	SetupNode(ctx context.Context, cfg NodeConfig) (Peer, error)

	// SetPeers makes peers the complete set of nodes this node reaches over
	// the overlay: peers missing from the list are removed, new ones added,
	// changed ones (key, endpoint, subnets) updated in place without
	// disturbing the others. An empty list removes every peer. Calling it
	// again with the same list changes nothing; the order of the list does
	// not matter. A peer with this node's own NodeID is ignored.
	//
	// Two peers with the same NodeID, a peer without NodeID, or subnets that
	// overlap this node's subnet or each other return ErrInvalidArgument and
	// change nothing; CheckPeers does these checks.
	SetPeers(ctx context.Context, peers []Peer) error

	// Attach gives the task an interface in the network namespace at
	// netnsPath (created by the agent, before the task starts), with an
	// address from the node's subnet and a default route through the
	// gateway, and returns them. The address is never the subnet's network
	// or broadcast address, nor the gateway's, nor another attached task's.
	//
	// Attach of an attached task with the same netnsPath returns the same
	// Attachment and changes nothing; with another netnsPath it returns
	// ErrConflict (Detach first). A task's address survives plugin restarts.
	Attach(ctx context.Context, taskID, netnsPath string) (Attachment, error)

	// Detach removes the task's interface from netnsPath and releases its
	// address for later tasks (plugins should hand out never-used
	// addresses first, then the least recently released, so that stale
	// neighbour entries age out). A
	// task that is not attached returns nil (even before SetupNode), and so
	// does a namespace that is already gone: the address is released either
	// way.
	Detach(ctx context.Context, taskID, netnsPath string) error

	// SetPublished makes ports the complete set of ports this node
	// publishes: a new connection (TCP) or flow (UDP) to Port/Protocol on
	// any of the node's own addresses, from another host or from the node
	// itself (127.0.0.1 included), goes to TargetPort of one of Backends,
	// balanced over them. Ports missing from the list stop being published;
	// connections already established keep their backend. An empty list
	// removes every published port. Calling it again with the same list
	// changes nothing; the order of the list and of the backends does not
	// matter.
	//
	// Mode says what the backends see (see Ingress and Host): an Ingress
	// backend may be on another node, reached over the overlay, with
	// replies coming back through this node.
	//
	// Ports that fail CheckPublished (a protocol or mode that is not known,
	// port 0, no backends, a backend that is not an address, a port listed
	// twice) return ErrInvalidArgument and change nothing. SetPublished
	// before SetupNode returns ErrFailedPrecondition.
	SetPublished(ctx context.Context, ports []PublishedPort) error

	// Teardown removes everything the plugin created on this host: devices,
	// routes, rules, task attachments and its own state, keys included.
	// Calling it again returns nil. Afterwards SetPeers and Attach return
	// ErrFailedPrecondition until SetupNode starts afresh, with a new
	// identity.
	Teardown(ctx context.Context) error
}

// Validate checks cfg as SetupNode must: a NodeID, valid prefixes in
// canonical form (no host bits set), Subnet inside OverlayCIDR and of the
// same address family. Errors wrap sdk.ErrInvalidArgument.
func (c NodeConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("node %q: %s: %w", c.NodeID, fmt.Sprintf(format, args...), sdk.ErrInvalidArgument)
	}
	switch {
	case c.NodeID == "":
		return bad("empty node ID")
	case !c.OverlayCIDR.IsValid() || c.OverlayCIDR != c.OverlayCIDR.Masked():
		return bad("overlay CIDR %q is not a network prefix", c.OverlayCIDR)
	case !c.Subnet.IsValid() || c.Subnet != c.Subnet.Masked():
		return bad("subnet %q is not a network prefix", c.Subnet)
	case c.Subnet.Bits() < c.OverlayCIDR.Bits() || !c.OverlayCIDR.Contains(c.Subnet.Addr()):
		return bad("subnet %s is not inside overlay CIDR %s", c.Subnet, c.OverlayCIDR)
	}
	return nil
}

// CheckPeers checks peers as SetPeers must for the node cfg describes and
// returns the other nodes' peers sorted by NodeID, without the node's own
// entry. Errors wrap sdk.ErrInvalidArgument and name the peer.
func CheckPeers(cfg NodeConfig, peers []Peer) ([]Peer, error) {
	out := make([]Peer, 0, len(peers))
	for _, p := range peers {
		if p.NodeID == cfg.NodeID {
			continue
		}
		if p.NodeID == "" {
			return nil, fmt.Errorf("peer with endpoint %q: empty node ID: %w", p.Endpoint, sdk.ErrInvalidArgument)
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.NodeID, b.NodeID) })
	type owned struct {
		prefix netip.Prefix
		node   string
	}
	taken := []owned{{cfg.Subnet, cfg.NodeID}}
	for i, p := range out {
		if i > 0 && out[i-1].NodeID == p.NodeID {
			return nil, fmt.Errorf("peer %q: listed twice: %w", p.NodeID, sdk.ErrInvalidArgument)
		}
		for _, s := range p.Subnets {
			if !s.IsValid() || s != s.Masked() {
				return nil, fmt.Errorf("peer %q: subnet %q is not a network prefix: %w", p.NodeID, s, sdk.ErrInvalidArgument)
			}
			for _, o := range taken {
				if o.prefix.IsValid() && o.prefix.Overlaps(s) {
					return nil, fmt.Errorf("peer %q: subnet %s overlaps %s of node %q: %w", p.NodeID, s, o.prefix, o.node, sdk.ErrInvalidArgument)
				}
			}
			taken = append(taken, owned{s, p.NodeID})
		}
	}
	return out, nil
}
