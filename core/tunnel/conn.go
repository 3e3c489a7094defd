// Package tunnel carries a gRPC connection from a manager to a worker
// inside a stream the worker opened to the manager (NodeTunnel.Open), so
// that a manager reaches every worker over the worker's own mutual-TLS
// connection, also when the worker sits behind NAT and accepts no
// connection. The worker serves NodeRuntime on the tunnelled connection;
// the manager is its client. See docs/architecture.md, "Reaching a worker".
package tunnel

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// frameStream is either end of a NodeTunnel.Open stream.
type frameStream interface {
	Send(*apiv1.TunnelFrame) error
	Recv() (*apiv1.TunnelFrame, error)
}

// maxFrame is the largest frame written: well below gRPC's message limit.
const maxFrame = 64 << 10

// conn is a net.Conn over a frame stream. Deadlines are not supported (gRPC
// does not use them on an established connection); Close ends the stream
// through closeFn.
type conn struct {
	s       frameStream
	closeFn func()

	rmu  sync.Mutex
	rbuf []byte

	wmu sync.Mutex

	once sync.Once
	done chan struct{}
}

func newConn(s frameStream, closeFn func()) *conn {
	return &conn{s: s, closeFn: closeFn, done: make(chan struct{})}
}

func (c *conn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for len(c.rbuf) == 0 {
		f, err := c.s.Recv()
		if err != nil {
			c.Close()
			if errors.Is(err, io.EOF) {
				return 0, io.EOF
			}
			return 0, err
		}
		c.rbuf = f.GetData()
	}
	n := copy(p, c.rbuf)
	c.rbuf = c.rbuf[n:]
	return n, nil
}

func (c *conn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), maxFrame)
		// The stream may keep the slice until it is sent: copy it.
		if err := c.s.Send(&apiv1.TunnelFrame{Data: append([]byte(nil), p[:k]...)}); err != nil {
			c.Close()
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// Close ends the tunnel. Safe to call more than once.
func (c *conn) Close() error {
	c.once.Do(func() {
		close(c.done)
		if c.closeFn != nil {
			c.closeFn()
		}
	})
	return nil
}

// Done is closed once the connection is closed.
func (c *conn) Done() <-chan struct{} { return c.done }

func (c *conn) LocalAddr() net.Addr              { return addr("tunnel") }
func (c *conn) RemoteAddr() net.Addr             { return addr("tunnel") }
func (c *conn) SetDeadline(time.Time) error      { return nil }
func (c *conn) SetReadDeadline(time.Time) error  { return nil }
func (c *conn) SetWriteDeadline(time.Time) error { return nil }

type addr string

func (a addr) Network() string { return "warren-tunnel" }
func (a addr) String() string  { return string(a) }
