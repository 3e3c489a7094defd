package worker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/network"
)

// PublishedPorts is the pure decision behind the worker's SetPublished:
// what the node whose task subnet is subnet publishes, given the endpoint
// table. An ingress port is published with every address of its service
// as backends; a host port only when some of them are in subnet (this
// node's tasks), with those.
func PublishedPorts(eps []*apiv1.Endpoint, subnet netip.Prefix) []network.PublishedPort {
	var out []network.PublishedPort
	for _, e := range eps {
		if len(e.GetPorts()) == 0 {
			continue
		}
		var all, local []netip.Addr
		for _, a := range e.GetAddresses() {
			addr, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			all = append(all, addr)
			if subnet.Contains(addr) {
				local = append(local, addr)
			}
		}
		for _, p := range e.GetPorts() {
			pp := network.PublishedPort{
				Service: e.GetName(), Protocol: network.Protocol(p.TransportName()),
				Port: uint16(p.GetPublished()), TargetPort: uint16(p.GetTarget()),
				Mode: network.Ingress, Backends: all,
			}
			if p.Host() {
				pp.Mode, pp.Backends = network.Host, local
			}
			if len(pp.Backends) > 0 {
				out = append(out, pp)
			}
		}
	}
	return out
}

// portKey is what a published port occupies on the node: "8080/tcp".
func portKey(p network.PublishedPort) string { return fmt.Sprintf("%d/%s", p.Port, p.Protocol) }

// takePorts returns the ports of want the node can publish: the ones it
// published already (applied, by portKey), and the new ones that no
// process of the host holds (tryBind fails on those). The message names
// the ports left out, "" when none are.
func takePorts(want []network.PublishedPort, applied map[string]bool, tryBind func(network.PublishedPort) error) ([]network.PublishedPort, string) {
	var out []network.PublishedPort
	var busy []string
	for _, p := range want {
		if !applied[portKey(p)] {
			if err := tryBind(p); err != nil {
				busy = append(busy, fmt.Sprintf("%s of service %q (%v)", portKey(p), p.Service, err))
				continue
			}
		}
		out = append(out, p)
	}
	if len(busy) == 0 {
		return out, ""
	}
	slices.Sort(busy)
	return out, fmt.Sprintf("cannot publish port %s: in use on the node", strings.Join(busy, ", "))
}

// bindPort tries to bind p on the host (see apiv1.PortConfig.TryBind).
func bindPort(p network.PublishedPort) error {
	proto := apiv1.PortProtocol_PORT_PROTOCOL_TCP
	if p.Protocol == network.UDP {
		proto = apiv1.PortProtocol_PORT_PROTOCOL_UDP
	}
	return (&apiv1.PortConfig{Published: uint32(p.Port), Protocol: proto}).TryBind()
}
