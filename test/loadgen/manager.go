package loadgen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// Manager is a throwaway manager-only `warren agent` started by the load
// generator: a temporary data_dir, a free port on 127.0.0.1, no worker.
type Manager struct {
	Dir    string
	Addr   string
	Socket string
	API    apiv1.WarrenClient
	// Cluster is the cluster administration service on the API socket.
	Cluster apiv1.ClusterClient

	bin, config string
	// joins: the manager joined a cluster; started: it ran once.
	joins, started bool

	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	exited chan struct{}
	mu     sync.Mutex
	out    bytes.Buffer
}

// StartManager starts bin (a warren binary next to its plugins/ folder)
// as a manager-only agent in a new directory under dir with heartbeat_ttl
// ttl (0: the default), and waits until it leads its new cluster.
func StartManager(ctx context.Context, bin, dir string, ttl time.Duration) (*Manager, error) {
	return StartManagerWith(ctx, bin, dir, ManagerOptions{TTL: ttl})
}

// ManagerOptions configure StartManagerWith.
type ManagerOptions struct {
	// TTL is the heartbeat_ttl; 0: the default.
	TTL time.Duration
	// Name is the node name; default "bench-manager".
	Name string
	// JoinAddrs and Token, when set, make the manager join that cluster
	// (a manager join token) instead of bootstrapping its own.
	JoinAddrs []string
	Token     string
}

// StartManagerWith starts a manager-only agent as StartManager does, with
// opts; one that joins is up once its API answers and knows a leader.
func StartManagerWith(ctx context.Context, bin, dir string, opts ManagerOptions) (*Manager, error) {
	d, err := os.MkdirTemp(dir, "warren-bench-")
	if err != nil {
		return nil, fmt.Errorf("loadgen: manager directory: %w", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("loadgen: a free port: %w", err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	m := &Manager{Dir: d, Addr: addr, Socket: filepath.Join(d, "warren.sock"), bin: bin, joins: len(opts.JoinAddrs) > 0}
	name := opts.Name
	if name == "" {
		name = "bench-manager"
	}
	extra := ""
	if opts.TTL > 0 {
		extra = fmt.Sprintf("  heartbeat_ttl = %q\n", opts.TTL.String())
	}
	hcl := fmt.Sprintf("data_dir   = %q\nbind_addr  = %q\napi_socket = %q\nnode_name  = %q\n\nmanager {\n%s}\n",
		filepath.Join(d, "data"), addr, m.Socket, name, extra)
	if m.joins {
		quoted := make([]string, len(opts.JoinAddrs))
		for i, a := range opts.JoinAddrs {
			quoted[i] = strconv.Quote(a)
		}
		hcl += fmt.Sprintf("join {\n  addresses = [%s]\n  token = %q\n}\n", strings.Join(quoted, ", "), opts.Token)
	}
	m.config = filepath.Join(d, "agent.hcl")
	if err := os.WriteFile(m.config, []byte(hcl), 0o600); err != nil {
		return nil, fmt.Errorf("loadgen: manager configuration: %w", err)
	}
	if m.conn, err = grpc.NewClient("unix://"+m.Socket, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return nil, err
	}
	m.API, m.Cluster = apiv1.NewWarrenClient(m.conn), apiv1.NewClusterClient(m.conn)
	if err := m.start(ctx); err != nil {
		m.Stop()
		return nil, err
	}
	return m, nil
}

// start runs the agent and waits until it is up: leading (a manager that
// bootstrapped, on its first start) or knowing a leader.
func (m *Manager) start(ctx context.Context) error {
	m.cmd = exec.Command(m.bin, "agent", "-config", m.config)
	m.cmd.Stdout = m
	m.cmd.Stderr = m
	m.cmd.Env = os.Environ()
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("loadgen: start %s: %w", m.bin, err)
	}
	exited := make(chan struct{})
	m.exited = exited
	go func() { _ = m.cmd.Wait(); close(exited) }()
	first := !m.started
	m.started = true
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("loadgen: the manager exited during start:\n%s", m.Output())
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := m.API.ClusterInfo(cctx, &apiv1.ClusterInfoRequest{})
		cancel()
		if err == nil && (info.GetIsLeader() || ((m.joins || !first) && info.GetLeader() != "")) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(errors.New("loadgen: the manager was not up within 60s"), err)
		}
		time.Sleep(50 * time.Millisecond) // polling the API with a deadline
	}
}

// Restart stops the agent (SIGTERM) and starts it again on the same data
// and address, waiting until it knows a leader.
func (m *Manager) Restart(ctx context.Context) error {
	m.terminate()
	return m.start(ctx)
}

// Write collects the agent's output.
func (m *Manager) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.out.Len() > 1<<20 {
		m.out.Reset()
	}
	return m.out.Write(p)
}

// Output returns the agent's recent output.
func (m *Manager) Output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

// Tail returns the last n lines of the agent's recent output.
func (m *Manager) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(m.Output(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// PID is the agent's process ID.
func (m *Manager) PID() int { return m.cmd.Process.Pid }

// Stop stops the agent (SIGTERM, then SIGKILL after 10 s) and removes its
// directory.
func (m *Manager) Stop() {
	if m.conn != nil {
		_ = m.conn.Close()
	}
	m.terminate()
	_ = os.RemoveAll(m.Dir)
}

// terminate stops the agent's process if it was started: SIGTERM, then
// SIGKILL after 10 s.
func (m *Manager) terminate() {
	if m.cmd == nil || m.cmd.Process == nil {
		return
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}
