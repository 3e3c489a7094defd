package pluginhost

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/sdk"
)

// switchConn is the grpc.ClientConnInterface handed to the rest of the core.
// It routes every call to the current plugin process's connection; restarts
// swap that connection underneath. While no process is serving, calls fail at
// once with an Unavailable status that wraps sdk.ErrPluginUnavailable.
//
// Those errors name the plugin and the host's view of it (starting,
// restarting, stopped), never the transport's detail: that names the host's
// internals (the plugin's socket path) and goes to the agent's log instead,
// since these errors travel on to API users (a failed call, a task's error).
type switchConn struct {
	name string
	kind sdk.Kind
	log  hclog.Logger
	cur  atomic.Pointer[connTarget]
	// onCall is Options.OnCall; nil when not set.
	onCall func(plugin, method string, took time.Duration, err error)
}

// connTarget is either a live connection or the reason there is none.
type connTarget struct {
	cc   *grpc.ClientConn
	down error
}

var _ grpc.ClientConnInterface = (*switchConn)(nil)

func newSwitchConn(name string, kind sdk.Kind, log hclog.Logger) *switchConn {
	c := &switchConn{name: name, kind: kind, log: log}
	c.setDown("starting")
	return c
}

// set routes calls to cc from now on.
func (c *switchConn) set(cc *grpc.ClientConn) {
	c.cur.Store(&connTarget{cc: cc})
}

// setDown makes calls fail with `<kind> plugin "<name>" unavailable: <why>`.
func (c *switchConn) setDown(why string) {
	c.cur.Store(&connTarget{down: c.unavailable(why)})
}

func (c *switchConn) unavailable(why string) error {
	return sdk.FromStatus(status.Error(codes.Unavailable, fmt.Sprintf("%s plugin %q unavailable: %s", c.kind, c.name, why)))
}

// Invoke performs a unary call on the current connection.
func (c *switchConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	if c.onCall == nil {
		return c.invoke(ctx, method, args, reply, opts...)
	}
	start := time.Now()
	err := c.invoke(ctx, method, args, reply, opts...)
	c.onCall(c.name, method, time.Since(start), err)
	return err
}

func (c *switchConn) invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	t := c.cur.Load()
	if t.cc == nil {
		return t.down
	}
	return c.mapErr(ctx, t.cc.Invoke(ctx, method, args, reply, opts...))
}

// NewStream opens a stream on the current connection.
func (c *switchConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if c.onCall == nil {
		return c.newStream(ctx, desc, method, opts...)
	}
	start := time.Now()
	s, err := c.newStream(ctx, desc, method, opts...)
	c.onCall(c.name, method, time.Since(start), err)
	return s, err
}

func (c *switchConn) newStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	t := c.cur.Load()
	if t.cc == nil {
		return nil, t.down
	}
	s, err := t.cc.NewStream(ctx, desc, method, opts...)
	if err != nil {
		return nil, c.mapErr(ctx, err)
	}
	return &switchStream{ClientStream: s, conn: c}, nil
}

// mapErr turns the ways a call fails when the process dies under it into
// errors wrapping sdk.ErrPluginUnavailable: Unavailable from the transport,
// and Canceled from a connection the host closed while the caller's own
// context was still live. The transport's message is logged, not returned.
// Everything else passes through untouched.
func (c *switchConn) mapErr(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	why := ""
	switch {
	case s.Code() == codes.Unavailable:
		why = "its connection failed"
	case s.Code() == codes.Canceled && ctx.Err() == nil:
		why = "the call was cut off"
	default:
		return err
	}
	c.log.Info("plugin call failed: the plugin is unreachable", "error", s.Message())
	return c.unavailable(why + " (the agent's log has the details)")
}

// switchStream maps a stream's errors like switchConn.mapErr does.
type switchStream struct {
	grpc.ClientStream
	conn *switchConn
}

func (s *switchStream) SendMsg(m any) error {
	return s.conn.mapErr(s.Context(), s.ClientStream.SendMsg(m))
}

func (s *switchStream) RecvMsg(m any) error {
	return s.conn.mapErr(s.Context(), s.ClientStream.RecvMsg(m))
}
