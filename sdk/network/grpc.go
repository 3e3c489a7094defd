package network

import (
	"context"
	"fmt"
	"net/netip"

	"google.golang.org/grpc"

	"github.com/warrenorch/warren/sdk"
	networkv1 "github.com/warrenorch/warren/sdk/proto/network/v1"
)

// Serve runs impl as a network plugin process. Call it from main.
func Serve(impl Network) {
	sdk.Serve(sdk.KindNetwork, impl, Register(impl))
}

// Register returns the function that registers impl's network service on a
// gRPC server.
func Register(impl Network) sdk.RegisterFunc {
	return func(s grpc.ServiceRegistrar) { networkv1.RegisterNetworkServer(s, &server{impl: impl}) }
}

// NewClient returns a Network that calls a network plugin over conn.
func NewClient(conn grpc.ClientConnInterface) Network {
	return &client{BaseClient: sdk.NewBaseClient(conn), rpc: networkv1.NewNetworkClient(conn)}
}

type server struct {
	networkv1.UnimplementedNetworkServer
	impl Network
}

func (s *server) SetupNode(ctx context.Context, req *networkv1.SetupNodeRequest) (*networkv1.SetupNodeResponse, error) {
	cfg := NodeConfig{NodeID: req.GetNodeId(), AdvertiseAddr: req.GetAdvertiseAddr()}
	var err error
	if cfg.Subnet, err = parsePrefix("subnet", req.GetSubnet(), sdk.ErrInvalidArgument); err != nil {
		return nil, sdk.ToStatus(err)
	}
	if cfg.OverlayCIDR, err = parsePrefix("overlay CIDR", req.GetOverlayCidr(), sdk.ErrInvalidArgument); err != nil {
		return nil, sdk.ToStatus(err)
	}
	self, err := s.impl.SetupNode(ctx, cfg)
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &networkv1.SetupNodeResponse{Self: peerToPB(self)}, nil
}

func (s *server) SetPeers(ctx context.Context, req *networkv1.SetPeersRequest) (*networkv1.SetPeersResponse, error) {
	peers := make([]Peer, 0, len(req.GetPeers()))
	for _, pb := range req.GetPeers() {
		p, err := peerFromPB(pb, sdk.ErrInvalidArgument)
		if err != nil {
			return nil, sdk.ToStatus(err)
		}
		peers = append(peers, p)
	}
	if err := s.impl.SetPeers(ctx, peers); err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &networkv1.SetPeersResponse{}, nil
}

func (s *server) Attach(ctx context.Context, req *networkv1.AttachRequest) (*networkv1.AttachResponse, error) {
	a, err := s.impl.Attach(ctx, req.GetTaskId(), req.GetNetnsPath())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	resp := &networkv1.AttachResponse{Address: prefixString(a.Address)}
	if a.Gateway.IsValid() {
		resp.Gateway = a.Gateway.String()
	}
	return resp, nil
}

func (s *server) Detach(ctx context.Context, req *networkv1.DetachRequest) (*networkv1.DetachResponse, error) {
	if err := s.impl.Detach(ctx, req.GetTaskId(), req.GetNetnsPath()); err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &networkv1.DetachResponse{}, nil
}

func (s *server) Teardown(ctx context.Context, _ *networkv1.TeardownRequest) (*networkv1.TeardownResponse, error) {
	if err := s.impl.Teardown(ctx); err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &networkv1.TeardownResponse{}, nil
}

func (s *server) SetPublished(ctx context.Context, req *networkv1.SetPublishedRequest) (*networkv1.SetPublishedResponse, error) {
	ports := make([]PublishedPort, 0, len(req.GetPorts()))
	for _, pb := range req.GetPorts() {
		p, err := publishedFromPB(pb)
		if err != nil {
			return nil, sdk.ToStatus(err)
		}
		ports = append(ports, p)
	}
	if err := s.impl.SetPublished(ctx, ports); err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &networkv1.SetPublishedResponse{}, nil
}

type client struct {
	*sdk.BaseClient
	rpc networkv1.NetworkClient
}

func (c *client) SetupNode(ctx context.Context, cfg NodeConfig) (Peer, error) {
	resp, err := c.rpc.SetupNode(ctx, &networkv1.SetupNodeRequest{
		NodeId:        cfg.NodeID,
		Subnet:        prefixString(cfg.Subnet),
		OverlayCidr:   prefixString(cfg.OverlayCIDR),
		AdvertiseAddr: cfg.AdvertiseAddr,
	})
	if err != nil {
		return Peer{}, sdk.FromStatus(err)
	}
	return peerFromPB(resp.GetSelf(), sdk.ErrInternal)
}

func (c *client) SetPeers(ctx context.Context, peers []Peer) error {
	req := &networkv1.SetPeersRequest{Peers: make([]*networkv1.Peer, 0, len(peers))}
	for _, p := range peers {
		req.Peers = append(req.Peers, peerToPB(p))
	}
	_, err := c.rpc.SetPeers(ctx, req)
	return sdk.FromStatus(err)
}

func (c *client) Attach(ctx context.Context, taskID, netnsPath string) (Attachment, error) {
	resp, err := c.rpc.Attach(ctx, &networkv1.AttachRequest{TaskId: taskID, NetnsPath: netnsPath})
	if err != nil {
		return Attachment{}, sdk.FromStatus(err)
	}
	var a Attachment
	if a.Address, err = parsePrefix("task "+taskID+" address", resp.GetAddress(), sdk.ErrInternal); err != nil {
		return Attachment{}, err
	}
	if gw := resp.GetGateway(); gw != "" {
		if a.Gateway, err = netip.ParseAddr(gw); err != nil {
			return Attachment{}, fmt.Errorf("task %q gateway: %v: %w", taskID, err, sdk.ErrInternal)
		}
	}
	return a, nil
}

func (c *client) Detach(ctx context.Context, taskID, netnsPath string) error {
	_, err := c.rpc.Detach(ctx, &networkv1.DetachRequest{TaskId: taskID, NetnsPath: netnsPath})
	return sdk.FromStatus(err)
}

func (c *client) Teardown(ctx context.Context) error {
	_, err := c.rpc.Teardown(ctx, &networkv1.TeardownRequest{})
	return sdk.FromStatus(err)
}

func (c *client) SetPublished(ctx context.Context, ports []PublishedPort) error {
	req := &networkv1.SetPublishedRequest{Ports: make([]*networkv1.PublishedPort, 0, len(ports))}
	for _, p := range ports {
		pb := &networkv1.PublishedPort{Service: p.Service, Protocol: string(p.Protocol), Port: uint32(p.Port), TargetPort: uint32(p.TargetPort), Mode: string(p.Mode)}
		for _, b := range p.Backends {
			pb.Backends = append(pb.Backends, b.String())
		}
		req.Ports = append(req.Ports, pb)
	}
	_, err := c.rpc.SetPublished(ctx, req)
	return sdk.FromStatus(err)
}

// publishedFromPB converts pb; a port out of range or a backend that does
// not parse wraps sdk.ErrInvalidArgument.
func publishedFromPB(pb *networkv1.PublishedPort) (PublishedPort, error) {
	p := PublishedPort{Service: pb.GetService(), Protocol: Protocol(pb.GetProtocol()), Port: uint16(pb.GetPort()), TargetPort: uint16(pb.GetTargetPort()), Mode: PublishMode(pb.GetMode())}
	if pb.GetPort() > 65535 || pb.GetTargetPort() > 65535 {
		return PublishedPort{}, fmt.Errorf("published port %s/%d->%d: out of range 1-65535: %w", pb.GetProtocol(), pb.GetPort(), pb.GetTargetPort(), sdk.ErrInvalidArgument)
	}
	for _, b := range pb.GetBackends() {
		a, err := netip.ParseAddr(b)
		if err != nil {
			return PublishedPort{}, fmt.Errorf("published port %s: backend: %v: %w", p, err, sdk.ErrInvalidArgument)
		}
		p.Backends = append(p.Backends, a)
	}
	return p, nil
}

// Prefixes travel in CIDR form ("10.42.3.7/24"); the zero prefix travels as
// the empty string. Address.String keeps host bits, which task addresses
// need.

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// parsePrefix parses s, returning an error that wraps kind when it is
// malformed.
func parsePrefix(what, s string, kind error) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%s: %v: %w", what, err, kind)
	}
	return p, nil
}

func peerToPB(p Peer) *networkv1.Peer {
	pb := &networkv1.Peer{NodeId: p.NodeID, PublicKey: p.PublicKey, Endpoint: p.Endpoint}
	for _, s := range p.Subnets {
		pb.Subnets = append(pb.Subnets, prefixString(s))
	}
	return pb
}

// peerFromPB converts pb, with errors wrapping kind for malformed subnets.
func peerFromPB(pb *networkv1.Peer, kind error) (Peer, error) {
	p := Peer{NodeID: pb.GetNodeId(), PublicKey: pb.GetPublicKey(), Endpoint: pb.GetEndpoint()}
	for _, s := range pb.GetSubnets() {
		prefix, err := parsePrefix(fmt.Sprintf("peer %q subnet", p.NodeID), s, kind)
		if err != nil {
			return Peer{}, err
		}
		p.Subnets = append(p.Subnets, prefix)
	}
	return p, nil
}
