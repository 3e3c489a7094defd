package cluster_test

import (
	"context"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/cluster"
)

// FakeLeaderInfo is a Raft node without a leader, for the forwarder's
// answers: the only state they depend on is set in its fields.
type FakeLeaderInfo struct {
	Fault error
	Alone bool
}

func (f FakeLeaderInfo) VerifyLeader() error { return raft.ErrNotLeader }
func (f FakeLeaderInfo) LeaderWithID() (raft.ServerAddress, raft.ServerID) {
	return "", ""
}
func (f FakeLeaderInfo) State() raft.RaftState { return raft.Candidate }
func (f FakeLeaderInfo) StorageFault() error   { return f.Fault }
func (f FakeLeaderInfo) OnlyVoter() bool       { return f.Alone }

func TestNoLeaderAnswers(t *testing.T) {
	diskFull := status.Error(codes.ResourceExhausted, "disk full: writing /var/lib/warren/raft/raft.db: no space left on device (0 bytes free on /var/lib/warren)")
	tests := []struct {
		name      string
		raft      FakeLeaderInfo
		method    string
		served    bool // answered locally
		code      codes.Code
		says, not string
	}{
		{"lost quorum of three: the recovery advice", FakeLeaderInfo{}, apiv1.Warren_CreateService_FullMethodName, false, codes.Unavailable, "force-new-cluster", ""},
		{"single manager electing: no recovery advice", FakeLeaderInfo{Alone: true}, apiv1.Warren_CreateService_FullMethodName, false, codes.Unavailable, "only one", "force-new-cluster"},
		{"single manager, disk full, write: names the disk", FakeLeaderInfo{Alone: true, Fault: diskFull}, apiv1.Warren_CreateService_FullMethodName, false, codes.ResourceExhausted, "/var/lib/warren/raft/raft.db", "force-new-cluster"},
		{"single manager, disk full, read: served from the state", FakeLeaderInfo{Alone: true, Fault: diskFull}, apiv1.Warren_ListServices_FullMethodName, true, codes.OK, "", ""},
		{"one of three, disk full, read: not served stale", FakeLeaderInfo{Fault: diskFull}, apiv1.Warren_ListServices_FullMethodName, false, codes.ResourceExhausted, "disk full", "force-new-cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := cluster.NewForwarder(tt.raft, nil, func() string { return "the cluster has 3 managers and needs 2 of them for a quorum" })
			served := false
			_, err := f.UnaryInterceptor(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: tt.method}, func(context.Context, any) (any, error) {
				served = true
				return nil, nil
			})
			if served != tt.served || status.Code(err) != tt.code {
				t.Fatalf("served %v, error %v; want served %v, code %v", served, err, tt.served, tt.code)
			}
			msg := status.Convert(err).Message()
			if !strings.Contains(msg, tt.says) || (tt.not != "" && strings.Contains(msg, tt.not)) {
				t.Fatalf("error %q: want it to say %q and not %q", msg, tt.says, tt.not)
			}
		})
	}
}
