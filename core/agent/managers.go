package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/warrenorch/warren/core/clusternet"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// managersFile lists, one per line, the manager addresses this node last
// heard of, so that a worker finds the cluster again after a restart even
// when the managers of its join block are gone.
const managersFile = "managers"

func loadManagers(dataDir string) []string {
	b, err := os.ReadFile(filepath.Join(dataDir, managersFile))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

func saveManagers(dataDir string, addrs []string, logger hclog.Logger) {
	if len(addrs) == 0 {
		return
	}
	if err := writeFileAtomic(filepath.Join(dataDir, managersFile), []byte(strings.Join(addrs, "\n")+"\n"), 0o600); err != nil {
		logger.Warn("could not save the manager addresses", "error", err)
	}
}

// managerSet is the managers a node talks to: known addresses, the leader
// when a manager named it, and one gRPC connection per address, all made
// with the node's credentials.
type managerSet struct {
	dataDir string
	pool    *clusternet.Pool
	logger  hclog.Logger

	mu     sync.Mutex
	addrs  []string
	next   int
	leader string
}

func newManagerSet(dataDir string, creds credentials.TransportCredentials, seed []string, logger hclog.Logger) *managerSet {
	m := &managerSet{dataDir: dataDir, pool: clusternet.NewPool(creds), logger: logger}
	m.add(seed)
	return m
}

func (m *managerSet) add(addrs []string) {
	for _, a := range addrs {
		if a != "" && !slices.Contains(m.addrs, a) {
			m.addrs = append(m.addrs, a)
		}
	}
}

// update replaces the known addresses with what the cluster says now
// (keeping the seeds in case all of those go away).
func (m *managerSet) update(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	m.mu.Lock()
	changed := false
	for _, a := range addrs {
		if !slices.Contains(m.addrs, a) {
			changed = true
		}
	}
	m.add(addrs)
	m.mu.Unlock()
	if changed {
		saveManagers(m.dataDir, addrs, m.logger)
	}
}

// pick returns the address to try next: the leader if one was named,
// otherwise the known addresses in turn.
func (m *managerSet) pick() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leader != "" {
		a := m.leader
		m.leader = ""
		return a, true
	}
	if len(m.addrs) == 0 {
		return "", false
	}
	a := m.addrs[m.next%len(m.addrs)]
	m.next++
	return a, true
}

// conn returns a client connection to addr.
func (m *managerSet) conn(addr string) (*grpc.ClientConn, error) { return m.pool.Conn(addr) }

// dial returns a connection to the next manager to try.
func (m *managerSet) dial(context.Context) (*grpc.ClientConn, error) {
	addr, ok := m.pick()
	if !ok {
		return nil, errors.New("no manager address known")
	}
	return m.conn(addr)
}

// noteError learns the leader's address from a "not the leader" refusal.
func (m *managerSet) noteError(err error) {
	if leader := LeaderHint(err); leader != "" {
		m.mu.Lock()
		m.leader = leader
		m.add([]string{leader})
		m.mu.Unlock()
	}
}

func (m *managerSet) close() { m.pool.Close() }

// leaderHintReason marks a refusal that names the leader.
const leaderHintReason = "NOT_LEADER"

// notLeaderError is a follower's refusal of a dispatcher session, naming
// the leader (when known) for the worker to go to.
func notLeaderError(leader string) error {
	st := status.New(codes.Unavailable, "this manager is not the leader; the leader is "+orNone(leader))
	if leader != "" {
		if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: leaderHintReason, Domain: "warren", Metadata: map[string]string{"leader": leader}}); err == nil {
			st = d
		}
	}
	return st.Err()
}

// LeaderHint is the leader's cluster address a manager named in err when
// it refused a leader-only call (the worker session), or "".
func LeaderHint(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() == leaderHintReason {
			return info.GetMetadata()["leader"]
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "not known (election in progress, or no quorum)"
	}
	return s
}
