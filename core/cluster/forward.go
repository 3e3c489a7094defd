package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/clusternet"
)

// localMethods are answered by whichever manager is called: they describe
// that manager (its plugins, its view), or stream from its own event bus
// and workers.
var localMethods = map[string]bool{
	apiv1.Warren_ListPlugins_FullMethodName: true,
	apiv1.Warren_ClusterInfo_FullMethodName: true,
}

// degradedLocal are answered locally when there is no leader to forward
// to: they help diagnose a lost quorum.
var degradedLocal = map[string]bool{
	apiv1.Cluster_Members_FullMethodName: true,
}

// LeaderInfo is what forwarding needs from Raft.
type LeaderInfo interface {
	// VerifyLeader confirms with a quorum that this node still leads.
	VerifyLeader() error
	// LeaderWithID returns the leader's address (its cluster port) and ID,
	// both empty when there is no leader.
	LeaderWithID() (raft.ServerAddress, raft.ServerID)
	State() raft.RaftState
	// StorageFault is non-nil while this manager's last write to its own
	// Raft storage failed (a full disk): it names the file and the disk.
	StorageFault() error
	// OnlyVoter reports whether this manager is the cluster's only voter.
	OnlyVoter() bool
}

// Forwarder sends the API calls a follower receives to the leader, so
// that every write and every read is served by the leader: clients may
// talk to any manager and still read their own writes.
type Forwarder struct {
	raft LeaderInfo
	pool *clusternet.Pool
	// quorum describes the managers this one can see, for the error
	// when there is no leader.
	quorum func() string

	mu sync.Mutex
	// ready is closed once this leader's state has caught up with every
	// entry committed before its term (SetLeaderReady); nil when it is not.
	ready chan struct{}
}

// SetLeaderReady tells the forwarder whether this manager, as leader, has
// applied everything committed before its term (a Raft barrier passed).
// Until then, calls wait: the view may miss the previous leader's last
// writes.
func (f *Forwarder) SetLeaderReady(ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ready {
		if f.ready == nil {
			f.ready = make(chan struct{})
		}
		select {
		case <-f.ready:
		default:
			close(f.ready)
		}
		return
	}
	f.ready = make(chan struct{})
}

// leaderChecks holds calls on a new leader until its view is current, and
// confirms leadership with a quorum before a read, so that a deposed
// leader that does not know it yet never answers with stale data.
func (f *Forwarder) leaderChecks(ctx context.Context, method string) error {
	f.mu.Lock()
	ready := f.ready
	if ready == nil {
		ready = make(chan struct{})
		f.ready = ready
	}
	f.mu.Unlock()
	select {
	case <-ready:
	case <-ctx.Done():
		return status.Error(codes.Unavailable, "the new leader is still catching up with the Raft log; retry")
	}
	if isRead(method) {
		if err := f.raft.VerifyLeader(); err != nil {
			return status.Errorf(codes.Unavailable, "this manager could not confirm it still leads: %v; retry", err)
		}
	}
	return nil
}

// isRead reports whether a method only reads the state.
func isRead(method string) bool {
	name := method[strings.LastIndexByte(method, '/')+1:]
	return strings.HasPrefix(name, "Get") || strings.HasPrefix(name, "List") || name == "Members"
}

// NewForwarder returns a Forwarder reaching leaders through pool (this
// manager's connections, made with its node certificate). quorum, if set,
// describes the managers, for the "no quorum" error.
func NewForwarder(r LeaderInfo, pool *clusternet.Pool, quorum func() string) *Forwarder {
	return &Forwarder{raft: r, pool: pool, quorum: quorum}
}

// readsLocally reports whether a read is served from this manager's own
// state although leadership cannot be confirmed: on a single manager whose
// Raft storage write failed (a full disk), the only reason it cannot lead
// is its own disk, and its state holds every acknowledged write.
func (f *Forwarder) readsLocally(method string) bool {
	return isRead(method) && f.raft.StorageFault() != nil && f.raft.OnlyVoter()
}

// NoLeaderError is the status of a call that needs the leader when none
// is known. The advice to force a new cluster is given only when other
// managers are missing: not for a single manager, nor for one whose own
// disk is full (that error names the file and the disk instead).
func (f *Forwarder) NoLeaderError() error {
	if fault := f.raft.StorageFault(); fault != nil {
		return status.Convert(fault).Err()
	}
	if f.raft.OnlyVoter() {
		return status.Error(codes.Unavailable, "no Raft leader: this manager is the cluster's only one and is not leader yet (an election is running); retry, and read this agent's log if it lasts")
	}
	msg := "no quorum: no manager is the Raft leader, so the cluster accepts no writes (running tasks keep running)"
	if f.quorum != nil {
		msg += "; " + f.quorum()
	}
	msg += ". Bring back a majority of the managers, or recover from a surviving manager with `warren agent --force-new-cluster` (docs/operations.md)"
	return status.Error(codes.Unavailable, msg)
}

// UnaryInterceptor forwards unary calls to the leader when this manager
// is not it. It must run after authorization: the original caller is sent
// along in the metadata.
func (f *Forwarder) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if localMethods[info.FullMethod] || f.readsLocally(info.FullMethod) {
		return h(ctx, req)
	}
	if f.raft.State() == raft.Leader {
		if err := f.leaderChecks(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
	if _, forwarded := forwardedCaller(ctx); forwarded {
		// Leadership moved while the call was on its way: the caller retries.
		return nil, status.Error(codes.Unavailable, "leadership changed while the call was forwarded; retry")
	}
	addr, _ := f.raft.LeaderWithID()
	if addr == "" {
		if degradedLocal[info.FullMethod] {
			return h(ctx, req)
		}
		return nil, f.NoLeaderError()
	}
	caller, ok := CallerFrom(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "forward: the call was not authorized first")
	}
	reply, err := newReply(info.FullMethod)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	conn, err := f.pool.Conn(string(addr))
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	local := "0"
	if caller.Local {
		local = "1"
	}
	out := metadata.Pairs(mdForwardedNode, caller.NodeID, mdForwardedRole, string(caller.Role), mdForwardedLocal, local)
	if err := conn.Invoke(metadata.NewOutgoingContext(ctx, out), info.FullMethod, req, reply); err != nil {
		return nil, err
	}
	return reply, nil
}

// newReply returns an empty response message of a method, found by name in
// the protobuf registry.
func newReply(fullMethod string) (proto.Message, error) {
	// "/pkg.Service/Method" → "pkg.Service.Method"
	name := protoreflect.FullName(fullMethod[1:])
	name = protoreflect.FullName(replaceLastSlash(string(name)))
	desc, err := protoregistry.GlobalFiles.FindDescriptorByName(name)
	if err != nil {
		return nil, fmt.Errorf("forward %s: %w", fullMethod, err)
	}
	md, ok := desc.(protoreflect.MethodDescriptor)
	if !ok {
		return nil, fmt.Errorf("forward %s: not a method", fullMethod)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("forward %s: %w", fullMethod, err)
	}
	return mt.New().Interface(), nil
}

func replaceLastSlash(s string) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '/' {
			return s[:i] + "." + s[i+1:]
		}
	}
	return s
}
