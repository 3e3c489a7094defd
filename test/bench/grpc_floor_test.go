package bench

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// floorServer answers CreateService with the spec it got, after apply when
// set: no validation, no FSM, no store plugin.
type floorServer struct {
	apiv1.UnimplementedWarrenServer
	apply func() error
}

func (s floorServer) CreateService(_ context.Context, req *apiv1.CreateServiceRequest) (*apiv1.CreateServiceResponse, error) {
	if s.apply != nil {
		if err := s.apply(); err != nil {
			return nil, err
		}
	}
	return &apiv1.CreateServiceResponse{Service: &apiv1.Service{Id: "floor", Spec: req.GetSpec()}}, nil
}

// serveFloor serves srv on a unix socket with gRPC's default settings and
// returns a function dialing a new connection to it.
func serveFloor(b *testing.B, srv apiv1.WarrenServer) func() apiv1.WarrenClient {
	sock := filepath.Join(b.TempDir(), "floor.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	apiv1.RegisterWarrenServer(s, srv)
	go func() { _ = s.Serve(l) }()
	b.Cleanup(s.Stop)
	return func() apiv1.WarrenClient {
		conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return apiv1.NewWarrenClient(conn)
	}
}

// raftFloorServer is a floorServer committing each call through a bare
// Raft node (BenchmarkRaftFloor64's: an FSM that does nothing).
func raftFloorServer(b *testing.B) floorServer {
	r, addr := floorNode(b, "n1")
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}).Error(); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond) // polling for the election's outcome
	}
	payload := make([]byte, 300)
	return floorServer{apply: func() error { return r.Apply(payload, 10*time.Second).Error() }}
}

// BenchmarkGRPCFloor64: the gRPC API's own cost on this machine, client and
// server in one process, 64 clients on their own connections as in
// BenchmarkServiceCreate64, a handler that does nothing.
func BenchmarkGRPCFloor64(b *testing.B) {
	createConcurrently(b, clientsOwnConn(serveFloor(b, floorServer{})))
}

// BenchmarkGRPCFloor64Shared: the same with the 64 clients on one
// connection.
func BenchmarkGRPCFloor64Shared(b *testing.B) {
	createConcurrently(b, clientsSharedConn(serveFloor(b, floorServer{})))
}

// BenchmarkGRPCRaftFloor64: BenchmarkGRPCFloor64 with each call committed
// through bare Raft: the floor under BenchmarkServiceCreate64 here, before
// any of Warren's own work (validation, FSM, store plugin, events).
func BenchmarkGRPCRaftFloor64(b *testing.B) {
	createConcurrently(b, clientsOwnConn(serveFloor(b, raftFloorServer(b))))
}

// BenchmarkGRPCRaftFloor64Shared: the floor under
// BenchmarkServiceCreate64Shared.
func BenchmarkGRPCRaftFloor64Shared(b *testing.B) {
	createConcurrently(b, clientsSharedConn(serveFloor(b, raftFloorServer(b))))
}
