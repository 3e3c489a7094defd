package clusternet

import (
	"container/list"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Limits bound what connections without a client certificate (strangers:
// joining nodes, or anyone else who can reach the port) may hold on the
// cluster port. A connection counts as a stranger from the moment it is
// accepted until its TLS handshake shows a certificate of the cluster's CA;
// members' connections are then not counted and never closed by these
// limits. Zero fields take the DefaultLimits value.
type Limits struct {
	// HandshakeTimeout bounds every connection's TLS handshake, before its
	// ALPN protocol routes it anywhere.
	HandshakeTimeout time.Duration
	// StrangerIdle closes a stranger's connection when no byte went either
	// way for this long.
	StrangerIdle time.Duration
	// StrangerLifetime closes a stranger's connection this long after it
	// was accepted, busy or not: a join is one short call.
	StrangerLifetime time.Duration
	// StrangersPerSource caps the strangers from one source IP address.
	// At the cap a new connection from it closes that source's oldest
	// stranger, so a member behind the same address still gets its
	// handshake done.
	StrangersPerSource int
	// Strangers caps the strangers in total; at the cap a new connection
	// closes the oldest stranger.
	Strangers int
}

// DefaultLimits are the limits Listen applies. 256 strangers at most leave
// the file descriptors (Go raises the soft limit to the hard one, usually
// 524288 under systemd, at least 1024) to members and the API socket.
var DefaultLimits = Limits{
	HandshakeTimeout:   5 * time.Second,
	StrangerIdle:       10 * time.Second,
	StrangerLifetime:   30 * time.Second,
	StrangersPerSource: 16,
	Strangers:          256,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	if l.HandshakeTimeout > 0 {
		d.HandshakeTimeout = l.HandshakeTimeout
	}
	if l.StrangerIdle > 0 {
		d.StrangerIdle = l.StrangerIdle
	}
	if l.StrangerLifetime > 0 {
		d.StrangerLifetime = l.StrangerLifetime
	}
	if l.StrangersPerSource > 0 {
		d.StrangersPerSource = l.StrangersPerSource
	}
	if l.Strangers > 0 {
		d.Strangers = l.Strangers
	}
	return d
}

// strangers counts the connections not yet shown to be members'. At a cap
// it closes the oldest stranger (of the source, or in total) rather than
// refusing the new connection: a member's connection is a stranger only for
// the milliseconds of its handshake, so it gets through unless the cap turns
// over faster than that.
type strangers struct {
	lim Limits

	mu       sync.Mutex
	all      list.List // of *stranger, oldest first
	bySource map[string]*list.List
}

// stranger is one counted connection.
type stranger struct {
	raw      net.Conn
	src      string
	inAll    *list.Element // nil once released
	inSource *list.Element
}

func newStrangers(lim Limits) *strangers {
	return &strangers{lim: lim, bySource: map[string]*list.List{}}
}

// sourceOf is the key the per-source cap counts by: the remote IP.
func sourceOf(addr net.Addr) string {
	if ta, ok := addr.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return host
}

// admit counts raw as a stranger and returns it, with the strangers it
// stopped counting to stay under the caps (the caller closes their
// connections).
func (s *strangers) admit(raw net.Conn) (st *stranger, evicted []*stranger) {
	src := sourceOf(raw.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.bySource[src]; l != nil && l.Len() >= s.lim.StrangersPerSource {
		old := l.Front().Value.(*stranger)
		s.releaseLocked(old)
		evicted = append(evicted, old)
	}
	if s.all.Len() >= s.lim.Strangers {
		old := s.all.Front().Value.(*stranger)
		s.releaseLocked(old)
		evicted = append(evicted, old)
	}
	l := s.bySource[src]
	if l == nil {
		l = list.New()
		s.bySource[src] = l
	}
	st = &stranger{raw: raw, src: src}
	st.inAll = s.all.PushBack(st)
	st.inSource = l.PushBack(st)
	return st, evicted
}

// release stops counting st; repeat-safe.
func (s *strangers) release(st *stranger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releaseLocked(st)
}

func (s *strangers) releaseLocked(st *stranger) {
	if st.inAll == nil {
		return
	}
	s.all.Remove(st.inAll)
	l := s.bySource[st.src]
	l.Remove(st.inSource)
	if l.Len() == 0 {
		delete(s.bySource, st.src)
	}
	st.inAll, st.inSource = nil, nil
}

// count returns the strangers counted now, in total and from src.
func (s *strangers) count(src string) (total, fromSource int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.bySource[src]; l != nil {
		fromSource = l.Len()
	}
	return s.all.Len(), fromSource
}

// strangerConn is a handshaken connection without a client certificate:
// it closes itself when idle for StrangerIdle or at the end of its
// lifetime, and stops being counted when closed.
type strangerConn struct {
	*tls.Conn
	idle    time.Duration
	timer   atomic.Pointer[time.Timer] // the lifetime; it may fire before it is stored
	once    sync.Once
	release func()
}

func newStrangerConn(conn *tls.Conn, lim Limits, accepted time.Time, release func()) *strangerConn {
	c := &strangerConn{Conn: conn, idle: lim.StrangerIdle, release: release}
	c.timer.Store(time.AfterFunc(time.Until(accepted.Add(lim.StrangerLifetime)), func() { c.Close() }))
	c.touch()
	return c
}

// touch pushes the idle deadline back; a blocked Read sees the new one.
func (c *strangerConn) touch() { _ = c.Conn.SetReadDeadline(time.Now().Add(c.idle)) }

func (c *strangerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *strangerConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

// SetDeadline and SetReadDeadline keep the idle deadline: gRPC does not set
// read deadlines on its connections, and a stranger must not lift it.
func (c *strangerConn) SetDeadline(t time.Time) error { return c.Conn.SetWriteDeadline(t) }

// SetReadDeadline is a no-op; see SetDeadline.
func (c *strangerConn) SetReadDeadline(time.Time) error { return nil }

// Close closes the connection and stops counting it.
func (c *strangerConn) Close() error {
	c.once.Do(func() {
		if t := c.timer.Load(); t != nil {
			t.Stop()
		}
		c.release()
	})
	return c.Conn.Close()
}
