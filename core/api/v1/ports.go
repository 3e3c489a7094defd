package apiv1

import (
	"fmt"
	"net"
	"strconv"
)

// Transport is the port's protocol, TCP when unspecified.
func (p *PortConfig) Transport() PortProtocol {
	if p.GetProtocol() == PortProtocol_PORT_PROTOCOL_UNSPECIFIED {
		return PortProtocol_PORT_PROTOCOL_TCP
	}
	return p.GetProtocol()
}

// TransportName is "tcp" or "udp" (the protocol number for an unknown one).
func (p *PortConfig) TransportName() string {
	switch p.Transport() {
	case PortProtocol_PORT_PROTOCOL_TCP:
		return "tcp"
	case PortProtocol_PORT_PROTOCOL_UDP:
		return "udp"
	}
	return fmt.Sprintf("protocol-%d", p.GetProtocol())
}

// Host reports whether the port is published in host mode (only on the
// nodes with a task); unspecified is ingress.
func (p *PortConfig) Host() bool { return p.GetMode() == PublishMode_PUBLISH_MODE_HOST }

// ModeName is "ingress" or "host".
func (p *PortConfig) ModeName() string {
	if p.Host() {
		return "host"
	}
	return "ingress"
}

// Key identifies what a published port occupies on a node: "8080/tcp".
// Two services cannot hold the same key.
func (p *PortConfig) Key() string { return fmt.Sprintf("%d/%s", p.GetPublished(), p.TransportName()) }

// Label is how lists show the port: "8080->80/tcp", with " (host)" for a
// host-mode port.
func (p *PortConfig) Label() string {
	s := fmt.Sprintf("%d->%d/%s", p.GetPublished(), p.GetTarget(), p.TransportName())
	if p.Host() {
		s += " (host)"
	}
	return s
}

// TryBind binds the published port with its protocol on every address of
// the host and releases it at once: an error says another process holds
// it.
func (p *PortConfig) TryBind() error {
	addr := net.JoinHostPort("", strconv.Itoa(int(p.GetPublished())))
	if p.Transport() == PortProtocol_PORT_PROTOCOL_UDP {
		c, err := net.ListenPacket("udp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return l.Close()
}
