package worker

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

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

// DefaultPortDrain is Options.PortDrain's default: the endpoint table
// reaches every node within milliseconds of the manager's commit (one
// network batch window and a SetPublished call), well inside it.
const DefaultPortDrain = time.Second

// portDrainLeft returns how much longer the runner's task, which the
// manager wants stopped (want), stays up before its stop signal: while
// it is running, has an address and its service publishes ports, until
// PortDrain after the runner first saw that it is wanted stopped; 0 when
// it goes now. The manager left the task out of the endpoint table, and
// so of every node's port backends, when it wanted it stopped; the drain
// lets the nodes apply that first, and the task's connections in flight
// end, so that a rolling update or a scale-down drops no request.
func (r *taskRunner) portDrainLeft(want *apiv1.Task) time.Duration {
	if r.w.opts.PortDrain <= 0 || r.state != stateRunning || r.cleaned || r.rec == nil || r.rec.Address == "" ||
		len(want.GetSpec().GetPorts()) == 0 {
		return 0
	}
	if r.drainUntil.IsZero() {
		r.drainUntil = time.Now().Add(r.w.opts.PortDrain)
		r.w.log.Debug("draining a task behind published ports before its stop", "task", r.id, "drain", r.w.opts.PortDrain)
	}
	return time.Until(r.drainUntil)
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
