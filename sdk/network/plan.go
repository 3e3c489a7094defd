package network

import (
	"fmt"
	"net/netip"

	"github.com/warrenorch/warren/sdk"
)

// A cluster's overlay plan: one range (OverlayCIDR), cut into one subnet
// per node (NodeConfig.Subnet), from which the node's network plugin gives
// each of its tasks an address. Warren's leader allocates the subnets; a
// plugin receives its node's in SetupNode.

// Defaults of a cluster created without overlay settings.
const (
	DefaultRange      = "10.88.0.0/16"
	DefaultNodePrefix = 24
)

// minNodeAddrs is the fewest addresses a node subnet may hold: its network
// address, the gateway (the node's bridge), and tasks.
const minNodeAddrs = 8

// Plan is a cluster's overlay: Range, cut into subnets of NodePrefix bits.
type Plan struct {
	Range      netip.Prefix
	NodePrefix int
}

// ParsePlan parses and checks an overlay range such as "10.88.0.0/16" and
// a node prefix length such as 24: the range must be a network prefix (no
// host bits set), the node subnets longer than the range (so there are at
// least two) and hold at least 8 addresses each.
func ParsePlan(rangeCIDR string, nodePrefix int) (Plan, error) {
	r, err := netip.ParsePrefix(rangeCIDR)
	if err != nil {
		return Plan{}, fmt.Errorf("overlay range %q: not a CIDR prefix such as %s: %w", rangeCIDR, DefaultRange, sdk.ErrInvalidArgument)
	}
	p := Plan{Range: r, NodePrefix: nodePrefix}
	return p, p.Check()
}

// Check reports what is wrong with p; errors wrap sdk.ErrInvalidArgument.
func (p Plan) Check() error {
	r := p.Range
	switch {
	case !r.IsValid():
		return fmt.Errorf("overlay range: not set: %w", sdk.ErrInvalidArgument)
	case r != r.Masked():
		return fmt.Errorf("overlay range %s: has host bits set (the network is %s): %w", r, r.Masked(), sdk.ErrInvalidArgument)
	case r.Addr().Is4In6():
		return fmt.Errorf("overlay range %s: write IPv4 ranges in dotted form: %w", r, sdk.ErrInvalidArgument)
	}
	bits := r.Addr().BitLen()
	switch {
	case p.NodePrefix <= r.Bits():
		return fmt.Errorf("overlay node prefix /%d: must be longer than the range's /%d so the range holds more than one node: %w", p.NodePrefix, r.Bits(), sdk.ErrInvalidArgument)
	case p.NodePrefix > bits:
		return fmt.Errorf("overlay node prefix /%d: longer than an address (%d bits): %w", p.NodePrefix, bits, sdk.ErrInvalidArgument)
	case bits-p.NodePrefix < 3:
		return fmt.Errorf("overlay node prefix /%d: a node subnet must hold at least %d addresses (at most /%d): %w", p.NodePrefix, minNodeAddrs, bits-3, sdk.ErrInvalidArgument)
	}
	return nil
}

// String formats p as "10.88.0.0/16 (/24 per node)".
func (p Plan) String() string {
	return fmt.Sprintf("%s (/%d per node)", p.Range, p.NodePrefix)
}

// Nodes is how many node subnets the range holds, capped at 1<<32.
func (p Plan) Nodes() uint64 {
	n := p.NodePrefix - p.Range.Bits()
	if n >= 32 {
		return 1 << 32
	}
	return 1 << n
}

// Holds reports whether s is one of p's node subnets.
func (p Plan) Holds(s netip.Prefix) bool {
	return s.IsValid() && s.Bits() == p.NodePrefix && s == s.Masked() && p.Range.Contains(s.Addr())
}

// Gateway is the node's own address in its subnet, which its bridge holds
// and its tasks route through: the first address after the network's.
func Gateway(subnet netip.Prefix) netip.Addr {
	return subnet.Masked().Addr().Next()
}
