package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/state"
)

// Raft is what the services need from the Raft node.
type Raft interface {
	LeaderInfo
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
	// Configuration returns the latest Raft configuration.
	Configuration() (raft.Configuration, error)
	// VoterAddrs returns the voters' cluster addresses, sorted.
	VoterAddrs() []string
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	LastIndex() uint64
	CommitIndex() uint64
}

// Deps are the services' dependencies.
type Deps struct {
	State *state.State
	Raft  Raft
	// KEK unseals the CA key kept in the state (managers only).
	KEK    []byte
	Health *Health
	Logger hclog.Logger
	// OnRoleChange, if set, is called after a node's role changed (the
	// agent closes the node's dispatcher session so that it learns its
	// new role at once).
	OnRoleChange func(nodeID string)
	// Probe, if set, checks that the manager at a cluster address answers
	// now; quorum checks use it for the managers that must stay.
	Probe func(ctx context.Context, addr string) error
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Services implements the NodeCA and Cluster gRPC services.
type Services struct {
	apiv1.UnimplementedNodeCAServer
	apiv1.UnimplementedClusterServer
	deps Deps
}

// NewServices returns the services.
func NewServices(deps Deps) *Services {
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if deps.Logger == nil {
		deps.Logger = hclog.NewNullLogger()
	}
	return &Services{deps: deps}
}

// DefaultAdminCertTTL is an admin certificate's lifetime when the request
// names none.
const DefaultAdminCertTTL = 30 * 24 * time.Hour

// maxAdminCertTTL bounds requested admin certificate lifetimes.
const maxAdminCertTTL = 366 * 24 * time.Hour

func (s *Services) security() (*fsmpb.ClusterSecurity, error) {
	sec := s.deps.State.Security()
	if sec == nil {
		return nil, status.Error(codes.FailedPrecondition, "the cluster has no CA yet (bootstrap not finished)")
	}
	return sec, nil
}

func (s *Services) ca() (*pki.CA, *fsmpb.ClusterSecurity, error) {
	sec, err := s.security()
	if err != nil {
		return nil, nil, err
	}
	if len(s.deps.KEK) == 0 {
		return nil, nil, status.Error(codes.FailedPrecondition, "this manager holds no key-encryption key for the CA")
	}
	ca, err := pki.OpenCA(sec.GetCaCertPem(), sec.GetSealedCaKey(), s.deps.KEK)
	if err != nil {
		return nil, nil, status.Errorf(codes.Internal, "open the cluster CA: %v", err)
	}
	return ca, sec, nil
}

func (s *Services) certTTL(sec *fsmpb.ClusterSecurity) time.Duration {
	if ttl := time.Duration(sec.GetNodeCertTtlSeconds()) * time.Second; ttl > 0 {
		return ttl
	}
	return 90 * 24 * time.Hour
}

// Join admits a node with a valid token.
func (s *Services) Join(ctx context.Context, req *apiv1.JoinRequest) (*apiv1.JoinResponse, error) {
	tok, err := pki.ParseToken(req.GetToken())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "join token: %v", err)
	}
	if err := validateJoin(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ca, sec, err := s.ca()
	if err != nil {
		return nil, err
	}
	if tok.Digest != pki.Digest(ca.Cert.Raw) {
		return nil, status.Error(codes.PermissionDenied, "join token: its CA digest is not this cluster's CA")
	}
	workerSecret, err := s.secret(sec, apiv1.NodeRole_NODE_ROLE_WORKER)
	if err != nil {
		return nil, err
	}
	managerSecret, err := s.secret(sec, apiv1.NodeRole_NODE_ROLE_MANAGER)
	if err != nil {
		return nil, err
	}
	var role apiv1.NodeRole
	switch {
	case pki.SecretEqual(tok.Secret, workerSecret):
		role = apiv1.NodeRole_NODE_ROLE_WORKER
	case pki.SecretEqual(tok.Secret, managerSecret):
		role = apiv1.NodeRole_NODE_ROLE_MANAGER
	default:
		return nil, status.Error(codes.PermissionDenied, "join token is not valid (wrong, or rotated): print the current one with `warren cluster join-token worker|manager`")
	}
	if other, res := s.deps.State.LookupNode(req.GetName()); res == state.Found && other.GetName() == req.GetName() && other.GetId() != req.GetNodeId() {
		return nil, status.Errorf(codes.AlreadyExists, "a node named %q already exists (ID %s): remove it with `warren node rm %s` or give this agent another node_name", req.GetName(), other.GetId(), req.GetName())
	}
	if role == apiv1.NodeRole_NODE_ROLE_WORKER && !req.GetWorker() {
		return nil, status.Error(codes.FailedPrecondition, "the token is a worker token but this agent has no worker { } block: add one, or join with a manager token")
	}
	if old, ok := s.deps.State.Node(req.GetNodeId()); ok && old.GetRole() == apiv1.NodeRole_NODE_ROLE_MANAGER && role == apiv1.NodeRole_NODE_ROLE_WORKER {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s is a manager; demote it before it joins again as a worker", req.GetNodeId())
	}
	cid := s.deps.State.ClusterID()
	certPEM, err := ca.SignCSR(req.GetCsr(), pki.Identity{NodeID: req.GetNodeId(), Role: RoleOf(role), ClusterID: cid}, s.certTTL(sec), s.deps.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request: %v", err)
	}
	now := timestamppb.New(s.deps.Now())
	n := &apiv1.Node{
		Id: req.GetNodeId(), Name: req.GetName(), Role: role,
		Status:       apiv1.NodeStatus_NODE_STATUS_UNKNOWN,
		Availability: apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE,
		Addr:         req.GetAddr(), CreatedAt: now, UpdatedAt: now, Worker: req.GetWorker(),
		Message: "joined",
	}
	if _, ok := s.deps.State.Node(req.GetNodeId()); ok {
		_, err = fsm.UpdateNode(ctx, s.deps.Raft.Apply, s.deps.State, req.GetNodeId(), func(n *apiv1.Node) (bool, error) {
			n.Name, n.Role, n.Addr, n.UpdatedAt, n.Message = req.GetName(), role, req.GetAddr(), now, "joined again"
			return true, nil
		})
	} else {
		_, err = s.deps.Raft.Apply(ctx, &fsmpb.UpsertNode{Node: n})
	}
	if err != nil {
		return nil, fmt.Errorf("join: register node %s: %w", req.GetName(), err)
	}
	resp := &apiv1.JoinResponse{
		CaPem: sec.GetCaCertPem(), CertPem: certPEM, Role: role,
		Managers: s.deps.Raft.VoterAddrs(), ClusterId: cid,
	}
	if role == apiv1.NodeRole_NODE_ROLE_MANAGER {
		resp.Kek = s.deps.KEK
	}
	s.deps.Logger.Info("node joined", "node", req.GetName(), "id", req.GetNodeId(), "role", RoleOf(role), "addr", req.GetAddr())
	return resp, nil
}

func validateJoin(req *apiv1.JoinRequest) error {
	if err := api.ValidateName("node", req.GetName()); err != nil {
		return err
	}
	id := req.GetNodeId()
	if len(id) < 8 || len(id) > 64 {
		return fmt.Errorf("node_id %q: must be 8 to 64 characters", id)
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Errorf("node_id %q: only lowercase letters, digits and '-' are allowed", id)
		}
	}
	if _, _, err := net.SplitHostPort(req.GetAddr()); err != nil {
		return fmt.Errorf("addr %q: %v", req.GetAddr(), err)
	}
	if len(req.GetCsr()) == 0 || len(req.GetCsr()) > 16<<10 {
		return errors.New("csr: a DER certificate request of at most 16 KiB is required")
	}
	return nil
}

// Renew issues a fresh certificate for the calling node, with the role the
// state gives it now.
func (s *Services) Renew(ctx context.Context, req *apiv1.RenewRequest) (*apiv1.RenewResponse, error) {
	caller, _ := CallerFrom(ctx)
	n, ok := s.deps.State.Node(caller.NodeID)
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "node %s is not a member of this cluster", caller.NodeID)
	}
	ca, sec, err := s.ca()
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.SignCSR(req.GetCsr(), pki.Identity{NodeID: n.GetId(), Role: RoleOf(n.GetRole()), ClusterID: s.deps.State.ClusterID()}, s.certTTL(sec), s.deps.Now())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request: %v", err)
	}
	resp := &apiv1.RenewResponse{CertPem: certPEM, Role: n.GetRole()}
	if n.GetRole() == apiv1.NodeRole_NODE_ROLE_MANAGER {
		resp.Kek = s.deps.KEK
	}
	return resp, nil
}

// AddRaftMember adds the calling manager to the Raft configuration as a
// voter.
func (s *Services) AddRaftMember(ctx context.Context, req *apiv1.AddRaftMemberRequest) (*apiv1.AddRaftMemberResponse, error) {
	caller, _ := CallerFrom(ctx)
	if _, _, err := net.SplitHostPort(req.GetAddr()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "addr %q: %v", req.GetAddr(), err)
	}
	n, ok := s.deps.State.Node(caller.NodeID)
	if !ok || n.GetRole() != apiv1.NodeRole_NODE_ROLE_MANAGER {
		return nil, status.Errorf(codes.PermissionDenied, "node %s is not a manager in the cluster state", caller.NodeID)
	}
	if err := s.deps.Raft.AddVoter(ctx, caller.NodeID, req.GetAddr()); err != nil {
		return nil, fmt.Errorf("add %s to the Raft configuration: %w", n.GetName(), err)
	}
	if n.GetAddr() != req.GetAddr() {
		_, err := fsm.UpdateNode(ctx, s.deps.Raft.Apply, s.deps.State, n.GetId(), func(n *apiv1.Node) (bool, error) {
			n.Addr, n.UpdatedAt = req.GetAddr(), timestamppb.New(s.deps.Now())
			return true, nil
		})
		if err != nil {
			return nil, err
		}
	}
	s.deps.Logger.Info("manager added to the Raft configuration", "node", n.GetName(), "addr", req.GetAddr())
	return &apiv1.AddRaftMemberResponse{Managers: s.deps.Raft.VoterAddrs()}, nil
}

// JoinToken returns (after rotating it, if asked) a role's join token.
func (s *Services) JoinToken(ctx context.Context, req *apiv1.JoinTokenRequest) (*apiv1.JoinTokenResponse, error) {
	sec, err := s.security()
	if err != nil {
		return nil, err
	}
	if req.GetRole() != apiv1.NodeRole_NODE_ROLE_WORKER && req.GetRole() != apiv1.NodeRole_NODE_ROLE_MANAGER {
		return nil, status.Error(codes.InvalidArgument, "role must be worker or manager")
	}
	if req.GetRotate() {
		secret, err := pki.NewSecret()
		if err != nil {
			return nil, err
		}
		sealed, err := SealSecret(s.deps.KEK, req.GetRole(), secret)
		if err != nil {
			return nil, status.Error(codes.FailedPrecondition, err.Error())
		}
		next := proto.CloneOf(sec)
		if req.GetRole() == apiv1.NodeRole_NODE_ROLE_WORKER {
			next.SealedWorkerSecret = sealed
		} else {
			next.SealedManagerSecret = sealed
		}
		if _, err := s.deps.Raft.Apply(ctx, &fsmpb.SetSecurity{Security: next}); err != nil {
			return nil, fmt.Errorf("rotate the %s join token: %w", RoleOf(req.GetRole()), err)
		}
		sec = next
		s.deps.Logger.Info("join token rotated", "role", RoleOf(req.GetRole()))
	}
	ca, err := pki.ParseCertPEM(sec.GetCaCertPem())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "cluster CA certificate: %v", err)
	}
	secret, err := s.secret(sec, req.GetRole())
	if err != nil {
		return nil, err
	}
	return &apiv1.JoinTokenResponse{Token: pki.FormatToken(ca.Raw, secret)}, nil
}

// SealSecret seals a role's join secret with the KEK for the Raft state,
// bound to the role's name.
func SealSecret(kek []byte, role apiv1.NodeRole, secret string) ([]byte, error) {
	sealed, err := pki.Seal(kek, []byte(secret), []byte(RoleOf(role)))
	if err != nil {
		return nil, fmt.Errorf("seal the %s join secret: %w", RoleOf(role), err)
	}
	return sealed, nil
}

// secret opens a role's join secret from the state.
func (s *Services) secret(sec *fsmpb.ClusterSecurity, role apiv1.NodeRole) (string, error) {
	sealed := sec.GetSealedWorkerSecret()
	if role == apiv1.NodeRole_NODE_ROLE_MANAGER {
		sealed = sec.GetSealedManagerSecret()
	}
	if len(s.deps.KEK) == 0 {
		return "", status.Error(codes.FailedPrecondition, "this manager holds no key-encryption key for the join secrets")
	}
	plain, err := pki.Open(s.deps.KEK, sealed, []byte(RoleOf(role)))
	if err != nil {
		return "", status.Errorf(codes.Internal, "the %s join secret: %v", RoleOf(role), err)
	}
	return string(plain), nil
}

// IssueAdminCert issues a CLI client certificate.
func (s *Services) IssueAdminCert(ctx context.Context, req *apiv1.IssueAdminCertRequest) (*apiv1.IssueAdminCertResponse, error) {
	ttl := time.Duration(req.GetTtlSeconds()) * time.Second
	switch {
	case req.GetTtlSeconds() < 0 || ttl > maxAdminCertTTL:
		return nil, status.Errorf(codes.InvalidArgument, "ttl_seconds %d: must be between 0 (default %s) and %d", req.GetTtlSeconds(), DefaultAdminCertTTL, int64(maxAdminCertTTL/time.Second))
	case ttl == 0:
		ttl = DefaultAdminCertTTL
	}
	ca, sec, err := s.ca()
	if err != nil {
		return nil, err
	}
	now := s.deps.Now()
	certPEM, keyPEM, err := ca.IssueAdmin(s.deps.State.ClusterID(), ttl, now)
	if err != nil {
		return nil, fmt.Errorf("issue an admin certificate: %w", err)
	}
	return &apiv1.IssueAdminCertResponse{
		CaPem: sec.GetCaCertPem(), CertPem: certPEM, KeyPem: keyPEM,
		NotAfter: timestamppb.New(now.Add(ttl)),
	}, nil
}

// Members lists the Raft configuration with the leader and health.
func (s *Services) Members(ctx context.Context, _ *apiv1.MembersRequest) (*apiv1.MembersResponse, error) {
	conf, err := s.deps.Raft.Configuration()
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	_, leaderID := s.deps.Raft.LeaderWithID()
	resp := &apiv1.MembersResponse{LeaderId: string(leaderID), LastIndex: s.deps.Raft.LastIndex(), CommitIndex: s.deps.Raft.CommitIndex()}
	for _, srv := range conf.Servers {
		m := &apiv1.Member{
			NodeId:   string(srv.ID),
			Addr:     string(srv.Address),
			Suffrage: suffrage(srv.Suffrage),
			Leader:   srv.ID == leaderID,
		}
		if n, ok := s.deps.State.Node(string(srv.ID)); ok {
			m.Name = n.GetName()
		}
		m.Reachable, m.LastContact = true, nil
		if !m.Leader && s.deps.Health != nil {
			if failing, last := s.deps.Health.Peer(string(srv.ID)); failing {
				m.Reachable = false
				if !last.IsZero() {
					m.LastContact = timestamppb.New(last)
				}
			}
		}
		resp.Members = append(resp.Members, m)
	}
	slices.SortFunc(resp.Members, func(a, b *apiv1.Member) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return resp, nil
}

func suffrage(s raft.ServerSuffrage) string {
	switch s {
	case raft.Voter:
		return "voter"
	case raft.Nonvoter:
		return "nonvoter"
	case raft.Staging:
		return "staging"
	}
	return s.String()
}

// PromoteNode marks a worker node a manager. The node notices on its
// dispatcher session, renews its certificate as a manager and asks to
// enter the Raft configuration.
func (s *Services) PromoteNode(ctx context.Context, req *apiv1.PromoteNodeRequest) (*apiv1.PromoteNodeResponse, error) {
	n, err := s.node(req.GetNode())
	if err != nil {
		return nil, err
	}
	if n.GetRole() == apiv1.NodeRole_NODE_ROLE_MANAGER {
		return &apiv1.PromoteNodeResponse{Node: n}, nil
	}
	if n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s is %s: only a ready node can be promoted", n.GetName(), statusName(n.GetStatus()))
	}
	n, err = s.setRole(ctx, n.GetId(), apiv1.NodeRole_NODE_ROLE_MANAGER, "promoted")
	if err != nil {
		return nil, err
	}
	s.roleChanged(n.GetId())
	return &apiv1.PromoteNodeResponse{Node: n}, nil
}

// DemoteNode makes a manager a worker: it leaves the Raft configuration.
// It is refused when the managers left could not keep a quorum.
func (s *Services) DemoteNode(ctx context.Context, req *apiv1.DemoteNodeRequest) (*apiv1.DemoteNodeResponse, error) {
	n, err := s.node(req.GetNode())
	if err != nil {
		return nil, err
	}
	if n.GetRole() != apiv1.NodeRole_NODE_ROLE_MANAGER {
		return &apiv1.DemoteNodeResponse{Node: n}, nil
	}
	if err := s.checkQuorumWithout(ctx, n); err != nil {
		return nil, err
	}
	// The role first: the demoted manager still receives this entry and
	// steps down to a worker when it applies it.
	n, err = fsm.UpdateNode(ctx, s.deps.Raft.Apply, s.deps.State, n.GetId(), func(n *apiv1.Node) (bool, error) {
		n.Role, n.UpdatedAt, n.Message = apiv1.NodeRole_NODE_ROLE_WORKER, timestamppb.New(s.deps.Now()), "demoted"
		if !n.GetWorker() {
			// Its agent has no worker { } block: it stops once demoted.
			n.Status, n.Message = apiv1.NodeStatus_NODE_STATUS_DOWN, "demoted; its agent runs no worker and stops: remove it with `warren node rm`"
		}
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	if err := s.deps.Raft.RemoveServer(ctx, n.GetId()); err != nil {
		return nil, fmt.Errorf("remove %s from the Raft configuration (its role is already worker; run demote again): %w", n.GetName(), err)
	}
	s.roleChanged(n.GetId())
	return &apiv1.DemoteNodeResponse{Node: n}, nil
}

// checkQuorumWithout refuses to take n out of the voters when the voters
// left, counting only those reachable, would be no majority of the new
// configuration.
func (s *Services) checkQuorumWithout(ctx context.Context, n *apiv1.Node) error {
	conf, err := s.deps.Raft.Configuration()
	if err != nil {
		return status.Errorf(codes.Unavailable, "raft configuration: %v", err)
	}
	_, leaderID := s.deps.Raft.LeaderWithID()
	voters, reachable := 0, 0
	for _, srv := range conf.Servers {
		if srv.Suffrage != raft.Voter || string(srv.ID) == n.GetId() {
			continue
		}
		voters++
		if s.reachable(ctx, srv, leaderID) {
			reachable++
		}
	}
	if voters == 0 {
		return status.Errorf(codes.FailedPrecondition, "%s is the last manager: demoting it would leave the cluster without managers", n.GetName())
	}
	if need := voters/2 + 1; reachable < need {
		return status.Errorf(codes.FailedPrecondition, "demoting %s would break quorum: %d managers would be left and only %d of them are reachable (a quorum needs %d)", n.GetName(), voters, reachable, need)
	}
	return nil
}

// reachable reports whether a voter answers now: the leader itself does;
// others must not be failing the leader's heartbeats and must answer a
// probe.
func (s *Services) reachable(ctx context.Context, srv raft.Server, leaderID raft.ServerID) bool {
	if srv.ID == leaderID {
		return true
	}
	if s.deps.Health != nil && s.deps.Health.Failing(string(srv.ID)) {
		return false
	}
	if s.deps.Probe == nil {
		return true
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.deps.Probe(pctx, string(srv.Address)) == nil
}

func (s *Services) node(nameOrID string) (*apiv1.Node, error) {
	if nameOrID == "" {
		return nil, status.Error(codes.InvalidArgument, "a node name or ID is required")
	}
	n, res := s.deps.State.LookupNode(nameOrID)
	switch res {
	case state.NotFound:
		return nil, status.Errorf(codes.NotFound, "node %q not found", nameOrID)
	case state.Ambiguous:
		return nil, status.Errorf(codes.InvalidArgument, "node ID prefix %q matches more than one node", nameOrID)
	}
	return n, nil
}

// setRole commits a node's new role.
func (s *Services) setRole(ctx context.Context, id string, role apiv1.NodeRole, msg string) (*apiv1.Node, error) {
	return fsm.UpdateNode(ctx, s.deps.Raft.Apply, s.deps.State, id, func(n *apiv1.Node) (bool, error) {
		n.Role, n.UpdatedAt, n.Message = role, timestamppb.New(s.deps.Now()), msg
		return true, nil
	})
}

func (s *Services) roleChanged(nodeID string) {
	if s.deps.OnRoleChange != nil {
		s.deps.OnRoleChange(nodeID)
	}
}

func statusName(s apiv1.NodeStatus) string {
	switch s {
	case apiv1.NodeStatus_NODE_STATUS_READY:
		return "ready"
	case apiv1.NodeStatus_NODE_STATUS_DOWN:
		return "down"
	}
	return "unknown"
}

// RoleOf is the certificate role of a node role: manager, or else worker.
func RoleOf(r apiv1.NodeRole) pki.Role {
	if r == apiv1.NodeRole_NODE_ROLE_MANAGER {
		return pki.RoleManager
	}
	return pki.RoleWorker
}
