package api

import (
	"fmt"
	"strings"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
)

// MaxPorts bounds the published ports of one service.
const MaxPorts = 64

// validatePorts checks a spec's published ports: published and target in
// 1-65535, a known protocol and mode, no published port/protocol twice,
// and a network mode that gives the tasks an overlay address.
func validatePorts(s *apiv1.ServiceSpec) error {
	ports := s.GetPorts()
	if len(ports) == 0 {
		return nil
	}
	if len(ports) > MaxPorts {
		return invalid("service %q: more than %d published ports", s.GetName(), MaxPorts)
	}
	switch s.GetNetworkMode() {
	case apiv1.NetworkMode_NETWORK_MODE_HOST, apiv1.NetworkMode_NETWORK_MODE_NONE:
		return invalid("service %q: published ports need the overlay network (its tasks are on network %s): leave out --network or use --network overlay",
			s.GetName(), networkModeName(s.GetNetworkMode()))
	}
	seen := map[string]bool{}
	for _, p := range ports {
		for _, v := range []struct {
			what string
			n    uint32
		}{{"published", p.GetPublished()}, {"target", p.GetTarget()}} {
			if v.n < 1 || v.n > 65535 {
				return invalid("service %q: %s port %d is out of range 1-65535", s.GetName(), v.what, v.n)
			}
		}
		if _, ok := apiv1.PortProtocol_name[int32(p.GetProtocol())]; !ok {
			return invalid("service %q: port %d: protocol %d is unknown (tcp or udp)", s.GetName(), p.GetPublished(), p.GetProtocol())
		}
		if _, ok := apiv1.PublishMode_name[int32(p.GetMode())]; !ok {
			return invalid("service %q: port %d: publish mode %d is unknown (ingress or host)", s.GetName(), p.GetPublished(), p.GetMode())
		}
		if seen[p.Key()] {
			return invalid("service %q: port %s is published twice", s.GetName(), p.Key())
		}
		seen[p.Key()] = true
	}
	return nil
}

// networkModeName is "host", "none" or "overlay".
func networkModeName(m apiv1.NetworkMode) string {
	return strings.ToLower(strings.TrimPrefix(m.String(), "NETWORK_MODE_"))
}

// newPorts returns the ports of spec that old (nil for a new service) does
// not publish already.
func newPorts(old, spec *apiv1.ServiceSpec) []*apiv1.PortConfig {
	had := map[string]bool{}
	for _, p := range old.GetPorts() {
		had[p.Key()] = true
	}
	var out []*apiv1.PortConfig
	for _, p := range spec.GetPorts() {
		if !had[p.Key()] {
			out = append(out, p)
		}
	}
	return out
}

// checkHostPorts refuses ports that a process of this host (the manager
// taking the request) already uses: it tries to bind each one on every
// address. Other nodes check their own when they publish the port and
// report a "ports" node condition naming the ports they cannot take.
func checkHostPorts(svc string, ports []*apiv1.PortConfig) error {
	for _, p := range ports {
		if err := p.TryBind(); err != nil {
			return fmt.Errorf("service %q: port %s is in use on this manager's host (%v): %w", svc, p.Key(), err, sdk.ErrFailedPrecondition)
		}
	}
	return nil
}
