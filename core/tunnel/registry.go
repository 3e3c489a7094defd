package tunnel

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// Keepalive bounds how long a manager takes to notice a tunnel whose
// worker stopped answering (a cut link, a frozen host): a ping every
// KeepaliveTime, and the tunnel is closed when one is not answered within
// KeepaliveTimeout. Calls on it then fail at once.
const (
	KeepaliveTime    = 3 * time.Second
	KeepaliveTimeout = 3 * time.Second
)

// Registry is a manager's side of the tunnels: it serves NodeTunnel.Open
// and holds, for each connected node, a client connection to its
// NodeRuntime. Safe for concurrent use.
type Registry struct {
	apiv1.UnimplementedNodeTunnelServer
	// nodeOf returns the node that opened the stream (from its
	// certificate), or an error refusing it.
	nodeOf func(ctx context.Context) (string, error)

	mu      sync.Mutex
	nodes   map[string]*grpc.ClientConn
	changed chan struct{} // closed and replaced whenever nodes changes
}

// NewRegistry returns an empty registry; nodeOf names the caller of Open.
func NewRegistry(nodeOf func(ctx context.Context) (string, error)) *Registry {
	return &Registry{nodeOf: nodeOf, nodes: map[string]*grpc.ClientConn{}, changed: make(chan struct{})}
}

// Open serves one worker's tunnel until it ends. A newer tunnel of the
// same node replaces an older one.
func (r *Registry) Open(stream apiv1.NodeTunnel_OpenServer) error {
	nodeID, err := r.nodeOf(stream.Context())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	c := newConn(stream, cancel)
	var used bool
	cc, err := grpc.NewClient("passthrough:///"+nodeID,
		grpc.WithTransportCredentials(insecure.NewCredentials()), // inside the node's mutual TLS
		grpc.WithContextDialer(func(context.Context, string) (net.Conn, error) {
			if used {
				return nil, fmt.Errorf("the tunnel of node %s is closed", nodeID)
			}
			used = true
			return c, nil
		}),
		grpc.WithIdleTimeout(0),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout, PermitWithoutStream: true}),
	)
	if err != nil {
		return fmt.Errorf("tunnel of node %s: %w", nodeID, err)
	}
	cc.Connect()
	r.set(nodeID, cc, nil)
	defer func() {
		r.set(nodeID, nil, cc)
		cc.Close()
	}()
	// Close a transport that broke, so that the next call fails at once
	// instead of waiting for a reconnect that cannot come.
	go func() {
		for {
			st := cc.GetState()
			if st == connectivity.TransientFailure || st == connectivity.Shutdown {
				cancel()
				return
			}
			if !cc.WaitForStateChange(ctx, st) {
				return
			}
		}
	}()
	select {
	case <-ctx.Done():
	case <-c.Done():
	}
	return nil
}

// set replaces the node's connection with cc (nil: removes it), but only
// when it is still old (nil: whatever it is).
func (r *Registry) set(nodeID string, cc, old *grpc.ClientConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.nodes[nodeID]
	if old != nil && cur != old {
		return
	}
	if cc == nil {
		delete(r.nodes, nodeID)
	} else {
		if cur != nil {
			cur.Close()
		}
		r.nodes[nodeID] = cc
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// Conn returns the client connection to nodeID's NodeRuntime, waiting up
// to wait (or ctx) for the node's tunnel to open. name is the node's name
// for the error, which has code Unavailable.
func (r *Registry) Conn(ctx context.Context, nodeID, name string, wait time.Duration) (*grpc.ClientConn, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		r.mu.Lock()
		cc, changed := r.nodes[nodeID], r.changed
		r.mu.Unlock()
		if cc != nil {
			return cc, nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return nil, status.Errorf(codes.Unavailable, "node %s (%s) is not connected to this manager: it is down or cannot reach it", name, nodeID)
		case <-ctx.Done():
			return nil, status.Errorf(codes.Unavailable, "node %s (%s) is not connected to this manager: %v", name, nodeID, ctx.Err())
		}
	}
}

// Connected returns the IDs of the nodes with an open tunnel.
func (r *Registry) Connected() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.nodes))
	for id := range r.nodes {
		out = append(out, id)
	}
	return out
}
