package tunnel_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/tunnel"
)

// startManager serves a Registry on a loopback port; every caller is node
// "n1".
func startManager(t *testing.T) (*tunnel.Registry, string) {
	t.Helper()
	reg := tunnel.NewRegistry(func(context.Context) (string, error) { return "n1", nil })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	apiv1.RegisterNodeTunnelServer(srv, reg)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return reg, ln.Addr().String()
}

// startWorker keeps a tunnel to addr and serves gRPC health in it, until
// the returned stop is called.
func startWorker(t *testing.T, addr string) (stop func()) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv := tunnel.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	w := tunnel.NewWorker(srv, func(string) (apiv1.NodeTunnelClient, error) { return apiv1.NewNodeTunnelClient(conn), nil }, hclog.NewNullLogger())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	w.SetManagers(ctx, []string{addr})
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

func TestTunnel(t *testing.T) {
	tests := []struct {
		name string
		// stopWorker ends the worker's tunnel after the first call.
		stopWorker bool
	}{
		{"calls reach the worker", false},
		{"a worker gone is named", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg, addr := startManager(t)
			stop := startWorker(t, addr)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cc, err := reg.Conn(ctx, "n1", "edge-1", 10*time.Second)
			if err != nil {
				t.Fatalf("Conn: %v", err)
			}
			resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health through the tunnel: %v, %v", resp, err)
			}
			if !tt.stopWorker {
				return
			}
			stop()
			deadline := time.Now().Add(10 * time.Second)
			for len(reg.Connected()) != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the registry still holds %v after the worker stopped", reg.Connected())
				}
				time.Sleep(10 * time.Millisecond) // poll with a deadline
			}
			_, err = reg.Conn(ctx, "n1", "edge-1", 100*time.Millisecond)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "edge-1") {
				t.Fatalf("Conn to a gone worker: %v, want Unavailable naming edge-1", err)
			}
		})
	}
}
