package cluster

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/state"
)

// Caller is who is calling an RPC, as authorization established it.
type Caller struct {
	pki.Identity
	// Local is set for callers on the root-only unix socket.
	Local bool
	// Via is the node ID of the manager that forwarded the call, if any.
	Via string
}

// Metadata keys a forwarding manager sets to carry the original caller.
const (
	mdForwardedNode  = "warren-forwarded-node"
	mdForwardedRole  = "warren-forwarded-role"
	mdForwardedLocal = "warren-forwarded-local"
)

type callerKey struct{}

// WithCaller returns ctx carrying c.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerFrom returns the caller authorization put in ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	c, ok := ctx.Value(callerKey{}).(Caller)
	return c, ok
}

// access is who may call a method.
type access int

const (
	accessNone    access = iota
	accessPublic         // anybody, even without a certificate (Join only)
	accessNode           // worker or manager certificates
	accessManager        // manager certificates
	accessAdmin          // admin or manager certificates, local socket
)

// policy maps every method served on the cluster port to who may call it.
// A method missing here is refused: new methods are closed until listed.
var policy = func() map[string]access {
	p := map[string]access{
		apiv1.NodeCA_Join_FullMethodName:          accessPublic,
		apiv1.NodeCA_Renew_FullMethodName:         accessNode,
		apiv1.NodeCA_AddRaftMember_FullMethodName: accessManager,
		apiv1.Dispatcher_Session_FullMethodName:   accessNode,
		apiv1.NodeTunnel_Open_FullMethodName:      accessNode,
	}
	for _, m := range apiv1.Warren_ServiceDesc.Methods {
		p["/"+apiv1.Warren_ServiceDesc.ServiceName+"/"+m.MethodName] = accessAdmin
	}
	for _, m := range apiv1.Warren_ServiceDesc.Streams {
		p["/"+apiv1.Warren_ServiceDesc.ServiceName+"/"+m.StreamName] = accessAdmin
	}
	for _, m := range apiv1.Cluster_ServiceDesc.Methods {
		p["/"+apiv1.Cluster_ServiceDesc.ServiceName+"/"+m.MethodName] = accessAdmin
	}
	return p
}()

// Authorizer checks callers on the cluster port against the certificate
// they presented and the cluster state.
type Authorizer struct {
	// State is the cluster state: node membership and roles.
	State *state.State
	// Joins, if set, logs and limits the failed joins of callers without a
	// certificate.
	Joins *JoinLimiter
}

// errUnauthenticated is the status of calls without a usable certificate.
func errUnauthenticated(method string, err error) error {
	return status.Errorf(codes.Unauthenticated, "%s needs a client certificate issued by this cluster's CA: %v", method, err)
}

// authorize returns the caller of method or a status error.
func (a *Authorizer) authorize(ctx context.Context, method string) (Caller, error) {
	need, listed := policy[method]
	if !listed {
		return Caller{}, status.Errorf(codes.PermissionDenied, "%s is not served on the cluster port", method)
	}
	id, err := clusternet.PeerIdentity(ctx)
	if err != nil {
		if need == accessPublic {
			return Caller{}, nil
		}
		return Caller{}, errUnauthenticated(method, err)
	}
	if cid := a.State.ClusterID(); cid != "" && id.ClusterID != cid {
		return Caller{}, status.Errorf(codes.PermissionDenied, "certificate is for cluster %q, this is cluster %q", id.ClusterID, cid)
	}
	caller := Caller{Identity: id}
	if id.Role != pki.RoleAdmin {
		role, err := a.nodeRole(id)
		if err != nil {
			return Caller{}, err
		}
		caller.Role = role
	}
	// A manager may forward a call it authorized itself: the original
	// caller rides along in the metadata.
	if caller.Role == pki.RoleManager {
		if fwd, ok := forwardedCaller(ctx); ok {
			fwd.Via = id.NodeID
			caller = fwd
		}
	}
	if !allowed(need, caller) {
		return Caller{}, status.Errorf(codes.PermissionDenied, "%s: a %s certificate (node %s) may not call this method", method, caller.Role, caller.NodeID)
	}
	return caller, nil
}

// nodeRole returns the role a node certificate is honoured with: the node
// must still be a member, and the state's role caps the certificate's.
func (a *Authorizer) nodeRole(id pki.Identity) (pki.Role, error) {
	n, ok := a.State.Node(id.NodeID)
	if !ok {
		return "", status.Errorf(codes.PermissionDenied, "node %s is not a member of this cluster (removed, or its join is not committed yet)", id.NodeID)
	}
	if id.Role == pki.RoleManager && n.GetRole() != apiv1.NodeRole_NODE_ROLE_MANAGER {
		return pki.RoleWorker, nil
	}
	return id.Role, nil
}

func allowed(need access, c Caller) bool {
	switch need {
	case accessPublic:
		return true
	case accessNode:
		return c.Role == pki.RoleWorker || c.Role == pki.RoleManager
	case accessManager:
		return c.Role == pki.RoleManager
	case accessAdmin:
		return c.Local || c.Role == pki.RoleAdmin || c.Role == pki.RoleManager
	}
	return false
}

func forwardedCaller(ctx context.Context) (Caller, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return Caller{}, false
	}
	role := first(md, mdForwardedRole)
	if role == "" {
		return Caller{}, false
	}
	return Caller{
		Identity: pki.Identity{NodeID: first(md, mdForwardedNode), Role: pki.Role(role)},
		Local:    first(md, mdForwardedLocal) == "1",
	}, true
}

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}

// UnaryInterceptor authorizes unary calls on the cluster port.
func (a *Authorizer) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	c, err := a.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	ctx = WithCaller(ctx, c)
	if a.Joins != nil && info.FullMethod == apiv1.NodeCA_Join_FullMethodName && c.Role == "" && !c.Local {
		return a.Joins.guard(ctx, req, h)
	}
	return h(ctx, req)
}

// StreamInterceptor authorizes streams on the cluster port. A worker's
// dispatcher session must register as the node its certificate names.
func (a *Authorizer) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	c, err := a.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	ws := &callerStream{ServerStream: ss, ctx: WithCaller(ss.Context(), c)}
	if info.FullMethod == apiv1.Dispatcher_Session_FullMethodName {
		ws.checkRegister = c.NodeID
	}
	return h(srv, ws)
}

// LocalUnaryInterceptor marks calls on the root-only unix socket as local
// admin calls.
func LocalUnaryInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	return h(WithCaller(ctx, Caller{Identity: pki.Identity{Role: pki.RoleAdmin}, Local: true}), req)
}

// LocalStreamInterceptor is LocalUnaryInterceptor for streams.
func LocalStreamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := WithCaller(ss.Context(), Caller{Identity: pki.Identity{Role: pki.RoleAdmin}, Local: true})
	return h(srv, &callerStream{ServerStream: ss, ctx: ctx})
}

type callerStream struct {
	grpc.ServerStream
	ctx context.Context
	// checkRegister, when set, is the node ID the first RegisterWorker
	// message must carry.
	checkRegister string
}

func (s *callerStream) Context() context.Context { return s.ctx }

func (s *callerStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.checkRegister == "" {
		return nil
	}
	want := s.checkRegister
	s.checkRegister = ""
	if wm, ok := m.(*apiv1.WorkerMessage); ok {
		if reg := wm.GetRegister(); reg != nil && reg.GetNodeId() != want {
			return status.Errorf(codes.PermissionDenied, "the certificate is node %s's; it cannot register node %s", want, reg.GetNodeId())
		}
	}
	return nil
}
