// Package dispatchertest starts a real single-node manager for tests of the
// dispatcher and of workers: a store-bolt plugin process, the FSM, Raft on a
// loopback TCP port and the Dispatcher served over gRPC on a unix socket.
// Nothing in it is a fake.
package dispatchertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/test/testutil"
)

// Options tune the manager; zero values take the dispatcher's defaults.
type Options struct {
	HeartbeatPeriod   time.Duration
	HeartbeatTTL      time.Duration
	StatusBatchWindow time.Duration
	// Logger defaults to warnings and errors on stderr.
	Logger hclog.Logger
}

// Manager is a running single-node manager. Everything it started is
// stopped when the test ends.
type Manager struct {
	*Server
	State      *state.State
	Events     *events.Broker
	Raft       *raftnode.Node
	Dispatcher *dispatcher.Dispatcher

	t testing.TB
}

// Server serves a Dispatcher over gRPC on a unix socket.
type Server struct {
	// Socket is the unix socket the Dispatcher service listens on.
	Socket string

	t      testing.TB
	d      apiv1.DispatcherServer
	mu     sync.Mutex
	server *grpc.Server
	conn   *grpc.ClientConn
}

// Start starts a manager and waits until it leads and serves the
// dispatcher.
func Start(t testing.TB, opts Options) *Manager {
	t.Helper()
	logger := opts.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "manager", Level: hclog.Warn, Output: os.Stderr})
	}
	dir := t.TempDir()
	ctx := context.Background()

	p := testutil.StartPlugin(t, testutil.Build(t, "plugins/store-bolt"))
	st := store.NewClient(p.Conn)
	if err := st.Configure(ctx, fmt.Appendf(nil, `{"path": %q}`, filepath.Join(dir, "state.db"))); err != nil {
		t.Fatalf("configure store-bolt: %v", err)
	}
	view := state.New()
	bus := events.NewBroker()
	t.Cleanup(bus.Close)
	machine, err := fsm.New(ctx, st, view, bus, logger)
	if err != nil {
		t.Fatalf("fsm: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(t))
	node, err := raftnode.Open(raftnode.Config{ID: "manager-1", Dir: filepath.Join(dir, "raft"), BindAddr: addr, Advertise: addr, FSM: machine, Logger: logger})
	if err != nil {
		t.Fatalf("raft: %v", err)
	}
	t.Cleanup(func() {
		if err := node.Shutdown(); err != nil {
			t.Errorf("raft shutdown: %v", err)
		}
		machine.Close()
	})
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := node.WaitLeader(wctx); err != nil {
		t.Fatal(err)
	}
	// WaitLeader returns once a leader is known; a write also needs this
	// node to have taken office.
	testutil.Eventually(t, 30*time.Second, "the manager to lead", node.IsLeader)

	d := dispatcher.New(dispatcher.Deps{
		State:             view,
		Events:            bus,
		Raft:              node,
		Leader:            node.IsLeader,
		Logger:            logger,
		HeartbeatPeriod:   opts.HeartbeatPeriod,
		HeartbeatTTL:      opts.HeartbeatTTL,
		StatusBatchWindow: opts.StatusBatchWindow,
	})
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		if err := d.Run(runCtx); err != nil {
			t.Errorf("dispatcher run: %v", err)
		}
	}()

	m := &Manager{State: view, Events: bus, Raft: node, Dispatcher: d, t: t}
	// Leadership "ends" before the server stops, so ending sessions commit
	// nothing (cleanups run last first).
	m.Server = Serve(t, d)
	t.Cleanup(func() {
		stopRun()
		<-runDone
	})
	return m
}

// Serve serves d on a unix socket until the test ends.
func Serve(t testing.TB, d apiv1.DispatcherServer) *Server {
	t.Helper()
	// A short socket path: unix socket paths are limited to 108 bytes.
	sockDir, err := os.MkdirTemp("", "wd")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Socket: filepath.Join(sockDir, "d.sock"), t: t, d: d}
	t.Cleanup(func() {
		s.mu.Lock()
		if s.conn != nil {
			s.conn.Close()
		}
		s.server.Stop()
		s.mu.Unlock()
		os.RemoveAll(sockDir)
	})
	s.mu.Lock()
	s.serveLocked()
	s.mu.Unlock()
	return s
}

func (s *Server) serveLocked() {
	s.t.Helper()
	_ = os.Remove(s.Socket)
	lis, err := net.Listen("unix", s.Socket)
	if err != nil {
		s.t.Fatalf("listen on %s: %v", s.Socket, err)
	}
	g := grpc.NewServer()
	apiv1.RegisterDispatcherServer(g, s.d)
	go func() { _ = g.Serve(lis) }()
	s.server = g
}

// RestartServer stops the gRPC server, which ends every session at once as
// a lost connection would, and serves the dispatcher again on the same
// socket.
func (s *Server) RestartServer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.server.Stop()
	s.serveLocked()
}

// Dial returns a Dispatcher client on the manager's socket; it fits
// worker.Options.Dial. All clients share one connection, which reconnects
// by itself after RestartServer.
func (s *Server) Dial(context.Context) (apiv1.DispatcherClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		conn, err := grpc.NewClient("unix://"+s.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		s.conn = conn
	}
	return apiv1.NewDispatcherClient(s.conn), nil
}

// Apply commits cmd through Raft and fails the test on an error.
func (m *Manager) Apply(cmd fsm.Command) any {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := m.Raft.Apply(ctx, cmd)
	if err != nil {
		m.t.Fatalf("apply %T: %v", cmd, err)
	}
	return res
}

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, what, cond)
}
