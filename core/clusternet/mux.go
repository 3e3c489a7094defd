// Package clusternet carries everything between Warren nodes over one TCP
// port per node, always TLS with the cluster's credentials (core/pki): gRPC
// (ALPN "h2") and the Raft transport (ALPN RaftProto). A Mux accepts
// connections, handshakes each in its own goroutine and routes it by the
// negotiated protocol to one of two virtual listeners. Connections that
// show no client certificate are held to Limits (deadlines and caps), so
// that a flood of them cannot take the node's file descriptors.
package clusternet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/ratelimit"
)

// RaftProto is the ALPN protocol of Raft transport connections.
const RaftProto = "warren-raft"

const (
	// handoffTimeout bounds how long a handshaken connection waits for its
	// virtual listener's Accept (e.g. Raft not started yet) before it is
	// closed; the peer redials.
	handoffTimeout = 10 * time.Second
)

// Mux is a node's cluster listener. Its methods are safe for concurrent use.
type Mux struct {
	ln     net.Listener
	creds  *pki.Creds
	tlsCfg *tls.Config
	logger hclog.Logger
	lim    Limits

	// strangers counts the connections without a member's certificate;
	// evictedLog samples the log lines of the ones closed at a cap.
	strangers  *strangers
	evictedLog ratelimit.Sometimes

	grpc *virtualListener
	raft *virtualListener

	ctx    context.Context // canceled by Close; aborts handshakes and handoffs
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and per-connection goroutines
	once   sync.Once
	err    error

	// raftCheck, when set, must also accept a Raft peer's identity.
	raftCheck atomic.Pointer[func(pki.Identity) error]
}

// SetRaftCheck adds a check every Raft connection's (manager) identity must
// pass, such as "the cluster state still lists this node as a manager", so
// that the certificate of a demoted or dropped manager no longer reaches
// Raft before it expires. nil removes the check.
func (m *Mux) SetRaftCheck(check func(pki.Identity) error) {
	if check == nil {
		m.raftCheck.Store(nil)
		return
	}
	m.raftCheck.Store(&check)
}

// Listen is ListenLimits with DefaultLimits.
func Listen(addr string, creds *pki.Creds, logger hclog.Logger) (*Mux, error) {
	return ListenLimits(addr, creds, logger, DefaultLimits)
}

// ListenLimits listens on addr (TCP) and serves TLS with
// creds.ServerConfig("h2", RaftProto). Each accepted connection is handshaken
// in its own goroutine within lim.HandshakeTimeout (a failed handshake
// closes that connection and is logged at debug) and routed by the
// negotiated ALPN protocol: RaftProto to the Raft stream layer, anything
// else to the gRPC listener. Raft connections are accepted only from a
// verified client certificate whose Role is RoleManager; others are closed.
// Connections without a client certificate are held to lim (see Limits);
// zero fields of lim take DefaultLimits' values.
func ListenLimits(addr string, creds *pki.Creds, logger hclog.Logger, lim Limits) (*Mux, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cluster listener on %s: %w", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lim = lim.withDefaults()
	m := &Mux{
		ln:         ln,
		creds:      creds,
		tlsCfg:     creds.ServerConfig("h2", RaftProto),
		logger:     logger.Named("clusternet"),
		lim:        lim,
		strangers:  newStrangers(lim),
		evictedLog: ratelimit.Sometimes{Every: 10 * time.Second},
		grpc:       newVirtualListener(ln.Addr()),
		raft:       newVirtualListener(ln.Addr()),
		ctx:        ctx,
		cancel:     cancel,
	}
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// Addr returns the TCP listener's address.
func (m *Mux) Addr() net.Addr { return m.ln.Addr() }

// GRPCListener yields the connections that negotiated "h2" (or no ALPN
// protocol), already handshaken: *tls.Conn values for members, wrappers
// held to the Limits for connections without a client certificate. Serve
// it with a grpc.Server made with ServerCredentials. Closing it stops only
// the gRPC side.
func (m *Mux) GRPCListener() net.Listener { return m.grpc }

// RaftLayer returns the Raft stream layer over this Mux: Accept yields the
// RaftProto connections from managers; Dial(address, timeout) dials TLS with
// the node's credentials (ClientConfig(RaftProto)) and checks that RaftProto
// was negotiated; Addr returns advertise (the Mux's address when nil). Build
// the transport with raft.NewNetworkTransportWithLogger(mux.RaftLayer(adv), ...).
// Closing the layer stops only the Raft side.
func (m *Mux) RaftLayer(advertise net.Addr) raft.StreamLayer {
	if advertise == nil {
		advertise = m.ln.Addr()
	}
	return &raftLayer{m: m, advertise: advertise}
}

// Close closes the TCP listener and both virtual listeners (their Accept
// returns net.ErrClosed), aborts handshakes in progress and waits for the
// Mux's goroutines. Connections already handed out stay open: their owners
// (gRPC server, Raft transport) close them. Close is idempotent.
func (m *Mux) Close() error {
	m.once.Do(func() {
		m.cancel()
		if err := m.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			m.err = fmt.Errorf("close cluster listener %s: %w", m.ln.Addr(), err)
		}
		m.grpc.Close()
		m.raft.Close()
		m.wg.Wait()
	})
	return m.err
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || m.ctx.Err() != nil {
				return
			}
			// Transient (EMFILE, ECONNABORTED...): back off as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.logger.Warn("accept failed; retrying", "error", err, "backoff", backoff)
			select {
			case <-time.After(backoff):
			case <-m.ctx.Done():
				return
			}
			continue
		}
		backoff = 0
		m.wg.Add(1)
		go m.serveConn(conn)
	}
}

// serveConn handshakes one accepted connection and hands it to the virtual
// listener its protocol selects. The connection counts as a stranger until
// its handshake shows a member's certificate.
func (m *Mux) serveConn(raw net.Conn) {
	defer m.wg.Done()
	accepted := time.Now()
	remote := raw.RemoteAddr()
	st, evicted := m.strangers.admit(raw)
	for _, old := range evicted {
		old.raw.Close()
		m.evicted(old.raw.RemoteAddr())
	}
	keep := false
	defer func() {
		if !keep {
			m.strangers.release(st)
		}
	}()
	conn := tls.Server(raw, m.tlsCfg)
	ctx, cancel := context.WithTimeout(m.ctx, m.lim.HandshakeTimeout)
	defer cancel()
	_ = conn.SetDeadline(accepted.Add(m.lim.HandshakeTimeout))
	if err := conn.HandshakeContext(ctx); err != nil {
		m.logger.Debug("TLS handshake failed", "remote", remote, "error", err)
		conn.Close()
		return
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		conn.Close()
		return
	}
	cs := conn.ConnectionState()
	id, idErr := verifiedIdentity(cs)
	if idErr == nil {
		m.strangers.release(st) // a member: not counted from now on
	}
	if cs.NegotiatedProtocol != RaftProto {
		if idErr == nil {
			m.handoff(m.grpc, conn, "grpc")
			return
		}
		keep = true
		m.handoff(m.grpc, newStrangerConn(conn, m.lim, accepted, func() { m.strangers.release(st) }), "grpc")
		return
	}
	switch {
	case idErr != nil:
		m.logger.Warn("refused Raft connection: no manager certificate", "remote", remote, "error", idErr)
		conn.Close()
		return
	case id.Role != pki.RoleManager:
		m.logger.Warn("refused Raft connection: not a manager", "remote", remote, "identity", id)
		conn.Close()
		return
	}
	if check := m.raftCheck.Load(); check != nil {
		if err := (*check)(id); err != nil {
			m.logger.Warn("refused Raft connection", "remote", remote, "identity", id, "error", err)
			conn.Close()
			return
		}
	}
	m.handoff(m.raft, conn, "raft")
}

// evicted logs a connection closed to stay under the caps, at most once
// per 10 s.
func (m *Mux) evicted(remote net.Addr) {
	m.evictedLog.Do(func(suppressed int) {
		total, fromSource := m.strangers.count(sourceOf(remote))
		m.logger.Warn("closed a connection without a client certificate: too many such connections (flood?)",
			"remote", remote, "strangers", total, "from_source", fromSource,
			"limit", m.lim.Strangers, "limit_per_source", m.lim.StrangersPerSource, "more_since_last_log", suppressed)
	})
}

// Strangers returns how many connections without a member's certificate
// (in their handshake, or joining) the Mux holds now.
func (m *Mux) Strangers() int {
	total, _ := m.strangers.count("")
	return total
}

func (m *Mux) handoff(l *virtualListener, conn net.Conn, name string) {
	t := time.NewTimer(handoffTimeout)
	defer t.Stop()
	select {
	case l.conns <- conn:
		return
	case <-t.C:
		m.logger.Debug("connection not accepted in time; closing", "listener", name, "remote", conn.RemoteAddr())
	case <-l.done:
	case <-m.ctx.Done():
	}
	conn.Close()
}

// virtualListener is a net.Listener fed by the Mux.
type virtualListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newVirtualListener(addr net.Addr) *virtualListener {
	return &virtualListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Accept returns the next routed connection, or net.ErrClosed once closed.
func (l *virtualListener) Accept() (net.Conn, error) {
	select {
	case <-l.done:
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops this listener only; the Mux keeps serving the other one.
func (l *virtualListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr returns the Mux's TCP address.
func (l *virtualListener) Addr() net.Addr { return l.addr }

// raftLayer implements raft.StreamLayer over a Mux.
type raftLayer struct {
	m         *Mux
	advertise net.Addr
}

func (r *raftLayer) Accept() (net.Conn, error) { return r.m.raft.Accept() }
func (r *raftLayer) Close() error              { return r.m.raft.Close() }
func (r *raftLayer) Addr() net.Addr            { return r.advertise }

// Dial opens a Raft connection to the manager at address.
func (r *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	d := tls.Dialer{Config: r.m.creds.ClientConfig(RaftProto)}
	c, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raft dial %s: %w", address, err)
	}
	conn := c.(*tls.Conn)
	if np := conn.ConnectionState().NegotiatedProtocol; np != RaftProto {
		conn.Close()
		return nil, fmt.Errorf("raft dial %s: negotiated protocol %q, want %q", address, np, RaftProto)
	}
	return conn, nil
}
