package network

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/warrenorch/warren/sdk"
)

// Protocol is the transport protocol of a published port.
type Protocol string

// The protocols a port can be published with.
const (
	TCP Protocol = "tcp"
	UDP Protocol = "udp"
)

// PublishMode says what a published port forwards to and what the
// backends see.
type PublishMode string

const (
	// Ingress ports are published on every node and forwarded to the
	// service's tasks wherever they run, over the overlay. The connection
	// is source-NATed to the node's gateway address (the first address of
	// its subnet), so that replies come back through the node that took the
	// connection: the task sees the gateway of the node the client came in
	// through, not the client's address.
	Ingress PublishMode = "ingress"
	// Host ports are published only on nodes with a local task and
	// forwarded to those tasks, keeping the client's source address (a
	// connection the node makes to itself is the exception: it comes from
	// the gateway address).
	Host PublishMode = "host"
)

// PublishedPort is one port the node forwards to tasks.
type PublishedPort struct {
	// Service names the service the port belongs to, for the plugin's
	// logs and rule comments.
	Service  string
	Protocol Protocol
	// Port is the port on the node's addresses, 1-65535.
	Port uint16
	// TargetPort is the port on the backends, 1-65535.
	TargetPort uint16
	Mode       PublishMode
	// Backends are the task addresses new connections are balanced over,
	// at least one. In Host mode they are addresses of this node's subnet.
	Backends []netip.Addr
}

// String is "tcp/8080->80 (service web, ingress)".
func (p PublishedPort) String() string {
	return fmt.Sprintf("%s/%d->%d (service %s, %s)", p.Protocol, p.Port, p.TargetPort, p.Service, p.Mode)
}

// CheckPublished checks ports as SetPublished must and returns them sorted
// by protocol and port, with sorted backends. Errors wrap
// sdk.ErrInvalidArgument and name the port.
func CheckPublished(ports []PublishedPort) ([]PublishedPort, error) {
	out := make([]PublishedPort, 0, len(ports))
	for _, p := range ports {
		switch {
		case p.Protocol != TCP && p.Protocol != UDP:
			return nil, fmt.Errorf("published port %s: protocol %q is not tcp or udp: %w", p, p.Protocol, sdk.ErrInvalidArgument)
		case p.Mode != Ingress && p.Mode != Host:
			return nil, fmt.Errorf("published port %s: mode %q is not ingress or host: %w", p, p.Mode, sdk.ErrInvalidArgument)
		case p.Port == 0 || p.TargetPort == 0:
			return nil, fmt.Errorf("published port %s: port 0 is not a port: %w", p, sdk.ErrInvalidArgument)
		case len(p.Backends) == 0:
			return nil, fmt.Errorf("published port %s: no backends: %w", p, sdk.ErrInvalidArgument)
		}
		for _, b := range p.Backends {
			if !b.IsValid() {
				return nil, fmt.Errorf("published port %s: a backend is not an address: %w", p, sdk.ErrInvalidArgument)
			}
		}
		p.Backends = slices.Clone(p.Backends)
		slices.SortFunc(p.Backends, func(a, b netip.Addr) int { return a.Compare(b) })
		p.Backends = slices.Compact(p.Backends)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b PublishedPort) int {
		if c := strings.Compare(string(a.Protocol), string(b.Protocol)); c != 0 {
			return c
		}
		return int(a.Port) - int(b.Port)
	})
	for i := 1; i < len(out); i++ {
		if out[i].Protocol == out[i-1].Protocol && out[i].Port == out[i-1].Port {
			return nil, fmt.Errorf("published port %s/%d: listed twice (services %q and %q): %w", out[i].Protocol, out[i].Port, out[i-1].Service, out[i].Service, sdk.ErrInvalidArgument)
		}
	}
	return out, nil
}
