// Package discovery is the DNS server a worker runs for the tasks of its
// node: it answers the names of the cluster's services with the addresses
// of their running tasks, from a table the leader keeps current, and
// forwards every other name to the host's resolvers. It needs nothing from
// the network plugin but the address to listen on, so every network plugin
// gets service discovery for free.
//
// Names. For a service web and the cluster domain "warren":
//
//	web, web.warren              the addresses of web's running tasks
//	tasks.web, tasks.web.warren  the same (Swarm's name for them)
//
// Names are matched without regard to case. A name under the cluster
// domain that names no service is answered NXDOMAIN at once; other names
// (single labels included) go to the upstream resolvers. A known name with
// no address of the asked family (AAAA for a service of IPv4 tasks) gets an
// empty NOERROR answer, so a client asking both families does not wait.
//
// Answers list every address, rotated by one on each query (round robin),
// with a TTL of TTL seconds, so that a stale answer cannot live long in a
// client's cache: the table itself changes within a second of a task
// starting or stopping anywhere in the cluster.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	mdns "github.com/miekg/dns"
)

// TTL is the time to live, in seconds, of every answer about a service.
const TTL = 2

// DefaultDomain is the cluster domain when Config.Domain is empty.
const DefaultDomain = "warren"

// forwardTimeout bounds one exchange with an upstream resolver.
const forwardTimeout = 2 * time.Second

// Table is what the server answers: service name → the addresses of the
// service's running tasks. Names are stored lower-case; Set copies it.
type Table map[string][]netip.Addr

// Config configures a Server.
type Config struct {
	// Domain is the cluster domain ("warren" when empty): web.<Domain>
	// names service web.
	Domain string
	// Upstream are the resolvers other names are forwarded to, as
	// host:port. Empty: those names are answered SERVFAIL.
	Upstream []string
	// Logger logs forwarding failures; nil logs nothing.
	Logger hclog.Logger
}

// Server is a DNS server for one node's tasks. Make one with New, give it
// names with Set, and serve with Serve. Its methods are safe for
// concurrent use.
type Server struct {
	domain   string // lower-case, with the trailing dot: "warren."
	upstream []string
	log      hclog.Logger
	table    atomic.Pointer[Table]
	turn     atomic.Uint32

	mu      sync.Mutex
	servers []*mdns.Server
}

// New returns a server with an empty table. A domain that is not a valid
// DNS name returns an error.
func New(cfg Config) (*Server, error) {
	domain := strings.ToLower(strings.TrimSuffix(cfg.Domain, "."))
	if domain == "" {
		domain = DefaultDomain
	}
	if _, ok := mdns.IsDomainName(domain); !ok || strings.Contains(domain, " ") {
		return nil, fmt.Errorf("discovery: cluster domain %q is not a DNS name", cfg.Domain)
	}
	for _, u := range cfg.Upstream {
		if _, _, err := net.SplitHostPort(u); err != nil {
			return nil, fmt.Errorf("discovery: upstream resolver %q: want host:port: %w", u, err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{domain: mdns.Fqdn(domain), upstream: slices.Clone(cfg.Upstream), log: log}
	s.table.Store(&Table{})
	return s, nil
}

// HostUpstream returns the resolvers of a resolv.conf file (the host's is
// /etc/resolv.conf) as host:port, for Config.Upstream. Loopback resolvers
// are kept: the server runs in the host's network namespace.
func HostUpstream(resolvConf string) ([]string, error) {
	cc, err := mdns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("discovery: reading the host's resolvers: %w", err)
	}
	out := make([]string, 0, len(cc.Servers))
	for _, s := range cc.Servers {
		out = append(out, net.JoinHostPort(s, cc.Port))
	}
	return out, nil
}

// Set replaces the whole table: the next query sees t and nothing of the
// table before. Setting the same table twice changes nothing.
func (s *Server) Set(t Table) {
	c := make(Table, len(t))
	for name, addrs := range t {
		c[strings.ToLower(name)] = slices.Clone(addrs)
	}
	s.table.Store(&c)
}

// Serve answers queries on pc (UDP) and l (TCP), either of which may be
// nil, until ctx ends or Close is called. It returns once both have
// stopped.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn, l net.Listener) error {
	if pc == nil && l == nil {
		return errors.New("discovery: nothing to serve on")
	}
	var started []*mdns.Server
	errs := make(chan error, 2)
	start := func(srv *mdns.Server) {
		ready := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(ready) }
		started = append(started, srv)
		go func() { errs <- srv.ActivateAndServe() }()
		select {
		case <-ready:
		case <-ctx.Done():
		}
	}
	handler := mdns.HandlerFunc(s.answer)
	if pc != nil {
		start(&mdns.Server{PacketConn: pc, Handler: handler})
	}
	if l != nil {
		start(&mdns.Server{Listener: l, Handler: handler})
	}
	s.mu.Lock()
	s.servers = append(s.servers, started...)
	s.mu.Unlock()

	select {
	case <-ctx.Done():
	case err := <-errs:
		if err != nil && ctx.Err() == nil {
			s.shutdown(started)
			return fmt.Errorf("discovery: serving: %w", err)
		}
	}
	s.shutdown(started)
	return nil
}

// Close stops every Serve.
func (s *Server) Close() {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	s.shutdown(servers)
}

func (s *Server) shutdown(servers []*mdns.Server) {
	for _, srv := range servers {
		_ = srv.Shutdown() // an already stopped server says so; nothing to do
	}
}

// answer serves one query.
func (s *Server) answer(w mdns.ResponseWriter, req *mdns.Msg) {
	if len(req.Question) != 1 || req.Opcode != mdns.OpcodeQuery {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeNotImplemented)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	addrs, known, ours := s.lookup(q.Name)
	if !known && !ours {
		s.forward(w, req)
		return
	}
	m := new(mdns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if !known {
		m.Rcode = mdns.RcodeNameError
		_ = w.WriteMsg(m)
		return
	}
	if q.Qclass == mdns.ClassINET || q.Qclass == mdns.ClassANY {
		m.Answer = s.records(q, addrs)
	}
	_ = w.WriteMsg(m)
}

// lookup finds name in the table: the addresses, whether it names a
// service, and whether it is under the cluster domain at all.
func (s *Server) lookup(name string) (addrs []netip.Addr, known, ours bool) {
	name = strings.ToLower(mdns.Fqdn(name))
	bare, inDomain := strings.CutSuffix(name, "."+s.domain)
	if !inDomain {
		bare = strings.TrimSuffix(name, ".")
	}
	bare = strings.TrimPrefix(bare, "tasks.")
	addrs, known = (*s.table.Load())[bare]
	return addrs, known, inDomain || name == s.domain
}

// records are the answers of the asked type among addrs, rotated.
func (s *Server) records(q mdns.Question, addrs []netip.Addr) []mdns.RR {
	var out []mdns.RR
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: q.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: TTL}
	}
	for _, a := range addrs {
		switch {
		case a.Is4() && (q.Qtype == mdns.TypeA || q.Qtype == mdns.TypeANY):
			out = append(out, &mdns.A{Hdr: hdr(mdns.TypeA), A: a.AsSlice()})
		case a.Is6() && !a.Is4In6() && (q.Qtype == mdns.TypeAAAA || q.Qtype == mdns.TypeANY):
			out = append(out, &mdns.AAAA{Hdr: hdr(mdns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	if len(out) > 1 {
		k := int(s.turn.Add(1)) % len(out)
		out = append(out[k:], out[:k]...)
	}
	return out
}

// forward passes req to the upstream resolvers in turn, over the protocol
// it came in on, and relays the first answer; SERVFAIL when none answers.
func (s *Server) forward(w mdns.ResponseWriter, req *mdns.Msg) {
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	c := &mdns.Client{Net: network, Timeout: forwardTimeout}
	for _, up := range s.upstream {
		resp, _, err := c.Exchange(req, up)
		if err == nil && resp.Truncated && network == "udp" {
			// Relay the truncated answer: the client retries over TCP,
			// which this server forwards over TCP.
			_ = w.WriteMsg(resp)
			return
		}
		if err != nil {
			s.log.Debug("forwarding a query", "name", req.Question[0].Name, "upstream", up, "error", err)
			continue
		}
		resp.Id = req.Id
		_ = w.WriteMsg(resp)
		return
	}
	m := new(mdns.Msg)
	m.SetRcode(req, mdns.RcodeServerFailure)
	_ = w.WriteMsg(m)
}
