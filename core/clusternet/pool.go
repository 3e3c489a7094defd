package clusternet

import (
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
)

// Pool keeps one gRPC client connection per cluster address, all made with
// the same transport credentials (a node's certificate). Safe for
// concurrent use.
type Pool struct {
	creds credentials.TransportCredentials

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

// NewPool returns an empty Pool dialing with creds.
func NewPool(creds credentials.TransportCredentials) *Pool {
	return &Pool{creds: creds, conns: map[string]*grpc.ClientConn{}}
}

// Conn returns the connection to addr, making it on first use. gRPC
// connects lazily and reconnects by itself.
func (p *Pool) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c, ok := p.conns[addr]; ok {
		if c.GetState() == connectivity.TransientFailure {
			// The node may be back (an agent restarted): try now rather
			// than after the backoff its earlier absence built up.
			c.ResetConnectBackoff()
		}
		return c, nil
	}
	c, err := grpc.NewClient(addr, append(DialBufferOptions(), grpc.WithTransportCredentials(p.creds),
		grpc.WithConnectParams(grpc.ConnectParams{
			// Nodes come and go (restarts, partitions): never wait long
			// before trying one again.
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}))...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	p.conns[addr] = c
	return c, nil
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
}
