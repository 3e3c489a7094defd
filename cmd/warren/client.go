package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/pki"
)

// connectTimeout bounds the check that the agent answers at all, so that a
// missing agent is reported at once instead of after --timeout.
const connectTimeout = 5 * time.Second

// agentClient is a connection to the agent's API. Its unary calls get the
// --timeout deadline and every error it returns is an *apiError.
type agentClient struct {
	apiv1.WarrenClient
	// Cluster is the cluster administration service on the same connection.
	Cluster apiv1.ClusterClient
	conn    *grpc.ClientConn
}

// Close closes the connection.
func (c *agentClient) Close() error { return c.conn.Close() }

// dialAgent connects to the agent's API socket at path and waits (at most
// connectTimeout) until the connection is up. The socket is local and
// root-only, which is why it carries no TLS.
func dialAgent(ctx context.Context, path string, timeout time.Duration) (*agentClient, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("socket %q: %w", path, err)
	}
	d := &recordingDialer{network: "unix", addr: abs}
	return connect(ctx, "unix://"+abs, path, insecure.NewCredentials(), d, timeout)
}

// dialRemote connects to a manager's cluster port at addr with the admin
// certificate in certDir (ca.pem, cert.pem, key.pem from `warren cluster
// admin-cert`).
func dialRemote(ctx context.Context, addr, certDir string, timeout time.Duration) (*agentClient, error) {
	read := func(name string) ([]byte, error) {
		b, err := os.ReadFile(filepath.Join(certDir, name))
		if err != nil {
			return nil, fmt.Errorf("--addr needs an admin certificate in --cert-dir (create one on a manager with `warren cluster admin-cert --out DIR`): %w", err)
		}
		return b, nil
	}
	caPEM, err := read("ca.pem")
	if err != nil {
		return nil, err
	}
	certPEM, err := read("cert.pem")
	if err != nil {
		return nil, err
	}
	keyPEM, err := read("key.pem")
	if err != nil {
		return nil, err
	}
	tlsCfg, err := pki.ClientConfigFor(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("admin certificate in %s: %w", certDir, err)
	}
	d := &recordingDialer{network: "tcp", addr: addr}
	return connect(ctx, "passthrough:///"+addr, addr, credentials.NewTLS(tlsCfg), d, timeout)
}

// connect makes the client connection and waits (at most connectTimeout)
// until it is up.
func connect(ctx context.Context, target, path string, creds credentials.TransportCredentials, d *recordingDialer, timeout time.Duration) (*agentClient, error) {
	calls := &callPolicy{timeout: timeout}
	conn, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(d.dial),
		grpc.WithChainUnaryInterceptor(calls.unary),
		grpc.WithChainStreamInterceptor(calls.stream),
	)
	if err != nil {
		return nil, fmt.Errorf("agent %q: %w", path, err)
	}

	wait := connectTimeout
	if timeout > 0 && timeout < wait {
		wait = timeout
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	conn.Connect()
	for {
		state := conn.GetState()
		if state == connectivity.Ready {
			return &agentClient{WarrenClient: apiv1.NewWarrenClient(conn), Cluster: apiv1.NewClusterClient(conn), conn: conn}, nil
		}
		if state == connectivity.TransientFailure || state == connectivity.Shutdown ||
			!conn.WaitForStateChange(cctx, state) {
			break
		}
	}
	conn.Close()

	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	cause := d.err()
	switch {
	case errors.Is(cause, fs.ErrPermission):
		return nil, fmt.Errorf("cannot reach the warren agent at %s: permission denied (the socket is root-only: run as root)", path)
	case cause == nil && cctx.Err() != nil:
		cause = fmt.Errorf("no answer within %s", wait)
	case cause == nil:
		cause = errors.New("the connection failed")
	}
	return nil, fmt.Errorf("cannot reach the warren agent at %s: is it running? (%v)", path, cause)
}

// recordingDialer dials the unix socket and keeps the last dial error, which
// gRPC itself does not expose, to say why the agent cannot be reached.
type recordingDialer struct {
	network, addr string

	mu   sync.Mutex
	last error
}

func (d *recordingDialer) dial(ctx context.Context, _ string) (net.Conn, error) {
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, d.network, d.addr)
	d.mu.Lock()
	d.last = err
	d.mu.Unlock()
	return conn, err
}

func (d *recordingDialer) err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

// callPolicy is what every call through agentClient gets: a deadline for
// unary calls and errors turned into *apiError.
type callPolicy struct {
	timeout time.Duration
}

func (p *callPolicy) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if p.timeout <= 0 {
		return p.convert(invoker(ctx, method, req, reply, cc, opts...), false)
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	start := time.Now()
	err := invoker(ctx, method, req, reply, cc, opts...)
	// The agent gets the deadline too and may give up a moment before this
	// side does: a DeadlineExceeded near the deadline is --timeout's doing.
	return p.convert(err, time.Since(start) >= p.timeout*9/10)
}

// stream leaves streams without a deadline: they run until the caller's
// context ends.
func (p *callPolicy) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil {
		return nil, p.convert(err, false)
	}
	return &convertingStream{ClientStream: s, policy: p}, nil
}

type convertingStream struct {
	grpc.ClientStream
	policy *callPolicy
}

func (s *convertingStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == io.EOF {
		return err
	}
	return s.policy.convert(err, false)
}

// convert turns a gRPC error into an *apiError carrying the status message
// (without gRPC's "rpc error: code = ... desc =" dressing) and its code;
// timedOut says the call ran out its --timeout.
func (p *callPolicy) convert(err error, timedOut bool) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return &apiError{code: codes.Unknown, msg: err.Error()}
	}
	msg := st.Message()
	if st.Code() == codes.DeadlineExceeded && timedOut {
		msg = fmt.Sprintf("the agent did not answer within %s (see --timeout)", p.timeout)
	}
	return &apiError{code: st.Code(), msg: msg}
}

// apiError is an error returned by the agent's API.
type apiError struct {
	code codes.Code
	msg  string
}

func (e *apiError) Error() string { return e.msg }

// GRPCStatus lets status.Code find the code through wrapping.
func (e *apiError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }
