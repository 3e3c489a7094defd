package tunnel

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// Worker is a worker's side of the tunnels: it keeps one open to every
// manager it is given and serves a gRPC server on each. Safe for
// concurrent use.
type Worker struct {
	srv    *grpc.Server
	dial   func(addr string) (apiv1.NodeTunnelClient, error)
	logger hclog.Logger
	ln     *chanListener

	mu    sync.Mutex
	loops map[string]context.CancelFunc
}

// NewServer returns the gRPC server a worker serves in its tunnels, with
// the keepalive policy the managers' pings need; register NodeRuntime on it.
func NewServer(opts ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts,
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: KeepaliveTime / 2, PermitWithoutStream: true}),
	)...)
}

// NewWorker returns a Worker serving srv in the tunnels it opens with dial.
func NewWorker(srv *grpc.Server, dial func(addr string) (apiv1.NodeTunnelClient, error), logger hclog.Logger) *Worker {
	return &Worker{srv: srv, dial: dial, logger: logger, ln: newChanListener(), loops: map[string]context.CancelFunc{}}
}

// Run serves the tunnels until ctx ends.
func (w *Worker) Run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		w.mu.Lock()
		for _, cancel := range w.loops {
			cancel()
		}
		w.mu.Unlock()
		w.srv.Stop()
		w.ln.Close()
	}()
	err := w.srv.Serve(w.ln)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// SetManagers keeps a tunnel open to each of addrs (and closes the ones to
// managers no longer listed). Repeat-safe.
func (w *Worker) SetManagers(ctx context.Context, addrs []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for a, cancel := range w.loops {
		if !slices.Contains(addrs, a) {
			cancel()
			delete(w.loops, a)
		}
	}
	for _, a := range addrs {
		if _, ok := w.loops[a]; ok || a == "" {
			continue
		}
		lctx, cancel := context.WithCancel(ctx)
		w.loops[a] = cancel
		go w.loop(lctx, a)
	}
}

// loop keeps the tunnel to one manager open, reopening it with a short
// backoff whenever it ends.
func (w *Worker) loop(ctx context.Context, addr string) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		start := time.Now()
		err := w.serveOne(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > 10*time.Second {
			backoff = 100 * time.Millisecond
		}
		w.logger.Debug("tunnel to manager ended", "manager", addr, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (w *Worker) serveOne(ctx context.Context, addr string) error {
	client, err := w.dial(addr)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := client.Open(sctx)
	if err != nil {
		return err
	}
	c := newConn(stream, cancel)
	if err := w.ln.push(ctx, c); err != nil {
		c.Close()
		return err
	}
	select {
	case <-c.Done():
	case <-sctx.Done():
		c.Close()
	}
	return nil
}

// chanListener is a net.Listener whose connections are pushed to it.
type chanListener struct {
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) push(ctx context.Context, c net.Conn) error {
	select {
	case l.conns <- c:
		return nil
	case <-l.done:
		return net.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return addr("tunnel") }
