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

	cmd    *exec.Cmd
	conn   *grpc.ClientConn
	exited chan struct{}
	mu     sync.Mutex
	out    bytes.Buffer
}

// StartManager starts bin (a warren binary next to its plugins/ folder)
// as a manager-only agent in a new directory under dir with heartbeat_ttl
// ttl (0: the default), and waits until its API answers.
func StartManager(ctx context.Context, bin, dir string, ttl time.Duration) (*Manager, error) {
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
	m := &Manager{Dir: d, Addr: addr, Socket: filepath.Join(d, "warren.sock"), exited: make(chan struct{})}
	extra := ""
	if ttl > 0 {
		extra = fmt.Sprintf("  heartbeat_ttl = %q\n", ttl.String())
	}
	hcl := fmt.Sprintf("data_dir   = %q\nbind_addr  = %q\napi_socket = %q\nnode_name  = \"bench-manager\"\n\nmanager {\n%s}\n",
		filepath.Join(d, "data"), addr, m.Socket, extra)
	cfg := filepath.Join(d, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		return nil, fmt.Errorf("loadgen: manager configuration: %w", err)
	}
	m.cmd = exec.Command(bin, "agent", "-config", cfg)
	m.cmd.Stdout = m
	m.cmd.Stderr = m
	m.cmd.Env = os.Environ()
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("loadgen: start %s: %w", bin, err)
	}
	go func() { _ = m.cmd.Wait(); close(m.exited) }()
	if m.conn, err = grpc.NewClient("unix://"+m.Socket, grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		m.Stop()
		return nil, err
	}
	m.API, m.Cluster = apiv1.NewWarrenClient(m.conn), apiv1.NewClusterClient(m.conn)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-m.exited:
			return nil, fmt.Errorf("loadgen: the manager exited during start:\n%s", m.Output())
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := m.API.ClusterInfo(cctx, &apiv1.ClusterInfoRequest{})
		cancel()
		if err == nil && info.GetIsLeader() {
			return m, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			m.Stop()
			return nil, errors.Join(errors.New("loadgen: the manager did not lead within 60s"), err)
		}
		time.Sleep(50 * time.Millisecond) // polling the API with a deadline
	}
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

// PID is the agent's process ID.
func (m *Manager) PID() int { return m.cmd.Process.Pid }

// Stop stops the agent (SIGTERM, then SIGKILL after 10 s) and removes its
// directory.
func (m *Manager) Stop() {
	if m.conn != nil {
		_ = m.conn.Close()
	}
	_ = m.cmd.Process.Signal(os.Interrupt)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	_ = os.RemoveAll(m.Dir)
}
