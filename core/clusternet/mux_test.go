package clusternet_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pki/pkitest"
)

func listen(t *testing.T, creds *pki.Creds) *clusternet.Mux {
	t.Helper()
	m, err := clusternet.Listen("127.0.0.1:0", creds, testLogger(t, "mux", hclog.Debug))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Mux.Close: %v", err)
		}
	})
	return m
}

// serveHealth serves the gRPC health service on m, with an interceptor that
// records each caller's PeerIdentity and refuses callers without one.
func serveHealth(t *testing.T, m *clusternet.Mux) (seen func() []pki.Identity) {
	t.Helper()
	var mu sync.Mutex
	var ids []pki.Identity
	srv := grpc.NewServer(
		grpc.Creds(m.ServerCredentials()),
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			id, err := clusternet.PeerIdentity(ctx)
			if err != nil {
				return nil, status.Error(codes.Unauthenticated, err.Error())
			}
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
			return h(ctx, req)
		}),
	)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(m.GRPCListener()) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return func() []pki.Identity {
		mu.Lock()
		defer mu.Unlock()
		return append([]pki.Identity(nil), ids...)
	}
}

func healthCheck(t *testing.T, addr string, tc credentials.TransportCredentials) (*healthpb.HealthCheckResponse, error) {
	t.Helper()
	return healthCheckDial(t, addr, tc, nil)
}

// healthCheckDial is healthCheck through dial (nil: gRPC's own dialer).
func healthCheckDial(t *testing.T, addr string, tc credentials.TransportCredentials, dial func(context.Context, string) (net.Conn, error)) (*healthpb.HealthCheckResponse, error) {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(tc)}
	if dial != nil {
		opts = append(opts, grpc.WithContextDialer(dial))
	}
	cc, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
}

func TestGRPC(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	m := listen(t, c.Creds(t, "m1", pki.RoleManager))
	seen := serveHealth(t, m)
	addr := m.Addr().String()

	// A worker with credentials gets through, and the handler sees who it is.
	resp, err := healthCheck(t, addr, clusternet.ClientCredentials(c.Creds(t, "w1", pki.RoleWorker)))
	if err != nil {
		t.Fatalf("health check with a worker certificate: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("status %v", resp.Status)
	}
	want := pki.Identity{NodeID: "w1", Role: pki.RoleWorker, ClusterID: "c1"}
	if ids := seen(); len(ids) != 1 || ids[0] != want {
		t.Errorf("handler saw %v, want [%v]", ids, want)
	}

	// A joiner (no certificate) passes the handshake; the RPC layer refuses it.
	join := credentials.NewTLS(pki.JoinConfig(pki.Digest(c.CA.Cert.Raw), nil, "h2"))
	_, err = healthCheck(t, addr, join)
	if status.Code(err) != codes.Unauthenticated || !contains(err, clusternet.ErrNoCertificate.Error()) {
		t.Errorf("health check without a certificate: %v, want Unauthenticated saying %q", err, clusternet.ErrNoCertificate)
	}

	// A client of another cluster's CA fails the handshake.
	other := pkitest.NewCluster(t, "c1")
	_, err = healthCheck(t, addr, clusternet.ClientCredentials(other.Creds(t, "w9", pki.RoleWorker)))
	if status.Code(err) != codes.Unavailable {
		t.Errorf("health check with a foreign certificate: %v, want Unavailable", err)
	}
	if n := len(seen()); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
}

func TestPeerIdentityWithoutPeer(t *testing.T) {
	if _, err := clusternet.PeerIdentity(context.Background()); !errors.Is(err, clusternet.ErrNoCertificate) {
		t.Errorf("PeerIdentity of a bare context: %v, want ErrNoCertificate", err)
	}
}

func TestRaftTransport(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	m1 := listen(t, c.Creds(t, "m1", pki.RoleManager))
	m2 := listen(t, c.Creds(t, "m2", pki.RoleManager))
	logger := testLogger(t, "raft", hclog.Warn)
	t1 := raft.NewNetworkTransportWithLogger(m1.RaftLayer(m1.Addr()), 5, 10*time.Second, logger)
	t.Cleanup(func() { t1.Close() })
	t2 := raft.NewNetworkTransportWithLogger(m2.RaftLayer(m2.Addr()), 5, 10*time.Second, logger)
	t.Cleanup(func() { t2.Close() })
	if got := t2.LocalAddr(); got != raft.ServerAddress(m2.Addr().String()) {
		t.Errorf("LocalAddr %q, want %q", got, m2.Addr())
	}

	// m2 answers the first AppendEntries it consumes.
	served := make(chan *raft.AppendEntriesRequest, 1)
	go func() {
		select {
		case rpc := <-t2.Consumer():
			req, _ := rpc.Command.(*raft.AppendEntriesRequest)
			served <- req
			rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ID: []byte("m2")}, Term: 7, LastLog: 42, Success: true}, nil)
		case <-time.After(10 * time.Second):
			served <- nil
		}
	}()

	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("m1"), Addr: []byte(m1.Addr().String())},
		Term:      7,
		Entries:   []*raft.Log{{Index: 42, Term: 7, Type: raft.LogCommand, Data: []byte("hello")}},
	}
	var resp raft.AppendEntriesResponse
	if err := t1.AppendEntries("m2", raft.ServerAddress(m2.Addr().String()), req, &resp); err != nil {
		t.Fatalf("AppendEntries over TLS: %v", err)
	}
	got := <-served
	if got == nil || got.Term != 7 || len(got.Entries) != 1 || string(got.Entries[0].Data) != "hello" {
		t.Fatalf("m2 consumed %+v", got)
	}
	if !resp.Success || resp.LastLog != 42 {
		t.Errorf("response %+v", resp)
	}
}

func TestRaftRefusesWorker(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	m := listen(t, c.Creds(t, "m1", pki.RoleManager))
	layer := m.RaftLayer(nil)
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := layer.Accept()
		if err == nil {
			accepted <- conn
			conn.Close()
		}
	}()

	cases := []struct {
		name string
		cfg  *tls.Config
	}{
		{"worker certificate", c.Creds(t, "w1", pki.RoleWorker).ClientConfig(clusternet.RaftProto)},
		{"no certificate", pki.JoinConfig(pki.Digest(c.CA.Cert.Raw), nil, clusternet.RaftProto)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", m.Addr().String(), tc.cfg)
			if err != nil {
				t.Fatalf("dial: %v", err) // TLS 1.3: the client's handshake ends before the server decides
			}
			defer conn.Close()
			if np := conn.ConnectionState().NegotiatedProtocol; np != clusternet.RaftProto {
				t.Fatalf("negotiated %q", np)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			if !errors.Is(err, io.EOF) {
				t.Errorf("read on a refused Raft connection: %v, want EOF (closed by the server)", err)
			}
		})
	}

	// Through the Mux's own Dial, a worker node's Raft layer is refused too.
	wm := listen(t, c.Creds(t, "w2", pki.RoleWorker))
	conn, err := wm.RaftLayer(nil).Dial(raft.ServerAddress(m.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("read: %v, want EOF", err)
	}
	conn.Close()

	select {
	case <-accepted:
		t.Error("the Raft layer accepted a connection from a non-manager")
	default:
	}
}

func TestRaftDialRefusesWorkerServer(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	m := listen(t, c.Creds(t, "m1", pki.RoleManager))
	w := listen(t, c.Creds(t, "w1", pki.RoleWorker))
	_, err := m.RaftLayer(nil).Dial(raft.ServerAddress(w.Addr().String()), 5*time.Second)
	if !contains(err, "wanted to match "+pki.ManagerServerName) {
		t.Errorf("raft dial to a worker: %v, want a ManagerServerName error", err)
	}
}

func TestClose(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	m, err := clusternet.Listen("127.0.0.1:0", c.Creds(t, "m1", pki.RoleManager), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := m.Addr().String()
	// A connection stuck before its handshake must not hold Close up.
	stuck, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()

	errs := make(chan error, 2)
	go func() { _, err := m.GRPCListener().Accept(); errs <- err }()
	go func() { _, err := m.RaftLayer(nil).Accept(); errs <- err }()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
		}
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("TCP listener still accepts after Close")
	}
}

func contains(err error, s string) bool {
	return err != nil && len(s) > 0 && strings.Contains(err.Error(), s)
}

// testLogger returns a logger writing to t.Log until the test ends; goroutines
// that outlive the test (Raft's connection handlers) log nowhere after that.
func testLogger(t *testing.T, name string, level hclog.Level) hclog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: w})
}

type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
