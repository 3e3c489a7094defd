// Package api serves Warren's gRPC API (apiv1.Warren): reads come from the
// in-memory state view, writes are validated and then proposed through Raft.
package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// MaxRequestBytes bounds one API request message; larger ones are refused
// by gRPC with ResourceExhausted before they reach a handler. It leaves room
// for a 1 MiB image import chunk and its framing.
const MaxRequestBytes = 1<<20 + 64<<10

// Raft is what the API needs from the Raft node.
type Raft interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
	Stats() raftnode.Stats
	IsLeader() bool
}

// Options are the server's dependencies.
type Options struct {
	State   *state.State
	Raft    Raft
	Events  *events.Broker
	Plugins func() []*apiv1.PluginStatus
	// Workers reaches the workers' runtimes (logs, image import); nil on a
	// manager without workers.
	Workers  Workers
	NodeID   string
	NodeName string
	Version  string
	// KEK is the managers' key-encryption key, that secrets are sealed
	// under; nil on an agent that is no manager (secret writes are refused).
	KEK []byte
	// EventSubscriberBytes bounds, in protobuf bytes, the events waiting
	// for one Events stream before it is ended; 0 means
	// events.DefaultSubscriberBytes.
	EventSubscriberBytes int
	// FirstOptions are gRPC server options that GRPCServer puts before
	// its own, so that their interceptors run first and see the status
	// code the client gets (the metrics' interceptors).
	FirstOptions []grpc.ServerOption
}

// Server implements apiv1.WarrenServer.
type Server struct {
	apiv1.UnimplementedWarrenServer
	opts Options
	wire *eventWire
	// views caches tasks as ListTasks returns them.
	views *taskViews
}

// eventWireBytes bounds the wire forms of recent events kept for the
// event streams to share. Streams that keep up send an event within a
// few hundred kilobytes of events after its publication; the cache also
// keeps each event (and the task version it holds) alive, so a larger
// bound only pins memory: with 16 MiB a leader watched by one stream
// held ~35 MiB more heap after a create of 10,000 tasks.
const eventWireBytes = 2 << 20

// NewServer returns an API server.
func NewServer(opts Options) *Server {
	s := &Server{opts: opts, wire: newEventWire(eventWireBytes)}
	s.views = newTaskViews(func() int {
		if s.opts.State == nil {
			return 0
		}
		return s.opts.State.NumTasks()
	})
	return s
}

// GRPCServer returns a gRPC server with the API registered (through
// RegisterService) and the request size bound set.
func (s *Server) GRPCServer(extra ...grpc.ServerOption) *grpc.Server {
	opts := append(slices.Clone(s.opts.FirstOptions),
		grpc.MaxRecvMsgSize(MaxRequestBytes),
		RequestCodec(),
		// Reuse handler goroutines (and their grown stacks) instead of
		// starting one per call.
		grpc.NumStreamWorkers(uint32(2*goruntime.NumCPU())),
		grpc.ChainUnaryInterceptor(statusInterceptor),
	)
	opts = append(opts, extra...)
	g := grpc.NewServer(opts...)
	RegisterService(g, &apiv1.Warren_ServiceDesc, s)
	return g
}

// statusInterceptor turns every handler error into a status with the code
// its sentinel stands for.
func statusInterceptor(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	return resp, toStatus(err)
}

func toStatus(err error) error {
	if err == nil {
		return nil
	}
	switch {
	case errors.Is(err, raftnode.ErrNotLeader), errors.Is(err, raftnode.ErrNoLeader):
		return status.Error(codes.Unavailable, err.Error())
	}
	// Already a status (a forwarded call's answer, an authorization
	// refusal): keep its code and message as they are.
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return s.Err()
	}
	return sdk.ToStatus(err)
}

// idEncoding writes IDs in lowercase base32hex, whose characters sort in
// the order of the bytes they encode.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a new object ID: 24 lowercase base32hex characters
// ([0-9a-v]) encoding the creation time in milliseconds (its low 40 bits,
// 8 characters, wrapping every 34 years) and 80 random bits.
//
// IDs sort by creation time, so a store inserts new objects next to the
// last ones instead of all over its key space: in a B+tree such as
// store-bolt's, a commit of a hundred new objects then rewrites a few
// pages rather than a hundred. The 12 characters the CLI shows still
// carry 20 random bits, enough to tell apart objects made in the same
// millisecond.
func NewID() string {
	var b [15]byte
	ms := uint64(time.Now().UnixMilli())
	for i := range 5 {
		b[i] = byte(ms >> (8 * (4 - i)))
	}
	if _, err := rand.Read(b[5:]); err != nil {
		panic(err)
	}
	return idEncoding.EncodeToString(b[:])
}

func (s *Server) lookupService(nameOrID string) (*apiv1.Service, error) {
	if nameOrID == "" {
		return nil, invalid("a service name or ID is required")
	}
	svc, res := s.opts.State.LookupService(nameOrID)
	switch res {
	case state.NotFound:
		return nil, fmt.Errorf("service %q: %w", nameOrID, sdk.ErrNotFound)
	case state.Ambiguous:
		return nil, invalid("service ID prefix %q matches more than one service", nameOrID)
	}
	return svc, nil
}

// CreateService validates a spec and commits a new service.
func (s *Server) CreateService(ctx context.Context, req *apiv1.CreateServiceRequest) (*apiv1.CreateServiceResponse, error) {
	spec := req.GetSpec()
	FillFileDefaults(spec)
	if err := ValidateServiceSpec(spec); err != nil {
		return nil, err
	}
	if _, ok := s.opts.State.ServiceByName(spec.GetName()); ok {
		return nil, fmt.Errorf("service %q: %w", spec.GetName(), sdk.ErrAlreadyExists)
	}
	if err := fsm.PortsFree(s.opts.State.Services, "", spec); err != nil {
		return nil, err
	}
	if err := checkHostPorts(spec.GetName(), newPorts(nil, spec)); err != nil {
		return nil, err
	}
	now := timestamppb.Now()
	svc := &apiv1.Service{Id: NewID(), Spec: spec, CreatedAt: now, UpdatedAt: now}
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.CreateService{Service: svc})
	if err != nil {
		return nil, err
	}
	return &apiv1.CreateServiceResponse{Service: out.(*apiv1.Service)}, nil
}

// GetService returns one service.
func (s *Server) GetService(_ context.Context, req *apiv1.GetServiceRequest) (*apiv1.GetServiceResponse, error) {
	svc, err := s.lookupService(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	return &apiv1.GetServiceResponse{Service: svc}, nil
}

// ListServices lists services by name, optionally filtered by labels, one
// page at a time.
func (s *Server) ListServices(_ context.Context, req *apiv1.ListServicesRequest) (*apiv1.ListServicesResponse, error) {
	out, next, err := servicePager.page(req, s.opts.State.Services(), func(svc *apiv1.Service) bool {
		return hasLabels(svc.GetSpec().GetLabels(), req.GetLabels())
	}, nil, MaxPageSize)
	if err != nil {
		return nil, err
	}
	return &apiv1.ListServicesResponse{Services: out, NextPageToken: next}, nil
}

func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if hv, ok := have[k]; !ok || hv != v {
			return false
		}
	}
	return true
}

// UpdateService replaces a service's spec.
func (s *Server) UpdateService(ctx context.Context, req *apiv1.UpdateServiceRequest) (*apiv1.UpdateServiceResponse, error) {
	old, err := s.lookupService(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	if req.GetRollback() {
		return s.rollback(ctx, old, req)
	}
	spec := req.GetSpec()
	FillFileDefaults(spec)
	if err := ValidateServiceSpec(spec); err != nil {
		return nil, err
	}
	if spec.GetName() != old.GetSpec().GetName() {
		return nil, invalid("service %q: renaming a service (to %q) is not supported", old.GetSpec().GetName(), spec.GetName())
	}
	if was, now := modeOf(old.GetSpec()), modeOf(spec); was != now {
		return nil, invalid("service %q: its mode is set when it is created (%s); an update cannot make it %s: remove the service and create it again",
			old.GetSpec().GetName(), modeName(was), modeName(now))
	}
	if err := fsm.PortsFree(s.opts.State.Services, old.GetId(), spec); err != nil {
		return nil, err
	}
	if err := checkHostPorts(spec.GetName(), newPorts(old.GetSpec(), spec)); err != nil {
		return nil, err
	}
	out, err := s.update(ctx, old, spec, req.GetVersion())
	if err != nil {
		return nil, err
	}
	return &apiv1.UpdateServiceResponse{Service: out}, nil
}

// modeOf is spec's mode, replicated when unset.
func modeOf(spec *apiv1.ServiceSpec) apiv1.ServiceMode {
	if m := spec.GetMode(); m != apiv1.ServiceMode_SERVICE_MODE_UNSPECIFIED {
		return m
	}
	return apiv1.ServiceMode_SERVICE_MODE_REPLICATED
}

// modeName is the CLI's name of a mode ("replicated-job").
func modeName(m apiv1.ServiceMode) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(m.String(), "SERVICE_MODE_")), "_", "-")
}

// rollback returns old to its previous spec, under its rollback policy.
func (s *Server) rollback(ctx context.Context, old *apiv1.Service, req *apiv1.UpdateServiceRequest) (*apiv1.UpdateServiceResponse, error) {
	name := old.GetSpec().GetName()
	if req.GetSpec() != nil {
		return nil, invalid("service %q: a rollback takes no spec", name)
	}
	if apiv1.IsJob(old.GetSpec().GetMode()) {
		return nil, fmt.Errorf("service %q is a job: it has no rollback; update it to run it again: %w", name, sdk.ErrFailedPrecondition)
	}
	prev := old.GetPreviousSpec()
	if prev == nil {
		return nil, fmt.Errorf("service %q has no previous spec to roll back to: %w", name, sdk.ErrFailedPrecondition)
	}
	now := timestamppb.Now()
	svc := &apiv1.Service{Id: old.GetId(), Spec: proto.CloneOf(prev), CreatedAt: old.GetCreatedAt(), UpdatedAt: now,
		PreviousSpec: proto.CloneOf(old.GetSpec()),
		UpdateStatus: &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_ROLLBACK_STARTED, Message: "manually requested rollback", StartedAt: now}}
	// Replicas are not part of what an update changes: keep today's.
	svc.Spec.Replicas = old.GetSpec().GetReplicas()
	version := req.GetVersion()
	if version == 0 {
		version = old.GetVersion()
	}
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.UpdateService{Service: svc, ExpectedVersion: version})
	if err != nil {
		return nil, err
	}
	return &apiv1.UpdateServiceResponse{Service: out.(*apiv1.Service)}, nil
}

// update writes spec as old's new spec. A spec that changes the tasks
// starts an update: the old spec is kept for a rollback and the update
// status is UPDATING; otherwise (replicas, policies) both stay as they are.
// A job has no rolling update: a spec that changes its tasks runs it
// again, with its job status cleared for the orchestrator to start anew.
func (s *Server) update(ctx context.Context, old *apiv1.Service, spec *apiv1.ServiceSpec, version uint64) (*apiv1.Service, error) {
	now := timestamppb.Now()
	svc := &apiv1.Service{Id: old.GetId(), Spec: spec, CreatedAt: old.GetCreatedAt(), UpdatedAt: now,
		PreviousSpec: old.GetPreviousSpec(), UpdateStatus: old.GetUpdateStatus(), JobStatus: old.GetJobStatus()}
	switch {
	case state.SpecKey(spec) == state.SpecKey(old.GetSpec()):
	case apiv1.IsJob(spec.GetMode()):
		svc.UpdateStatus, svc.JobStatus = nil, nil
	default:
		svc.PreviousSpec = proto.CloneOf(old.GetSpec())
		svc.UpdateStatus = &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_UPDATING, Message: "update in progress", StartedAt: now}
		if n := spec.GetUpdatePolicy().GetCanary(); n > 0 {
			svc.UpdateStatus.State = apiv1.UpdateStatus_STATE_CANARY
			svc.UpdateStatus.Message = fmt.Sprintf("%d task(s) of the new spec beside the old ones, waiting for a promote", n)
			if spec.GetUpdatePolicy().GetAutoPromote() {
				svc.UpdateStatus.Message = fmt.Sprintf("%d task(s) of the new spec beside the old ones, promoted once serving through the monitor window", n)
			}
		}
	}
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.UpdateService{Service: svc, ExpectedVersion: version})
	if err != nil {
		return nil, err
	}
	return out.(*apiv1.Service), nil
}

// PromoteService ends the canary phase of a service's update: the rest of
// its tasks then roll under its update policy. A service whose update does
// not wait for a promote (state CANARY) is refused and left as it is.
func (s *Server) PromoteService(ctx context.Context, req *apiv1.PromoteServiceRequest) (*apiv1.PromoteServiceResponse, error) {
	old, err := s.lookupService(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	name := old.GetSpec().GetName()
	st := old.GetUpdateStatus()
	if st.GetState() != apiv1.UpdateStatus_STATE_CANARY {
		now := "no update"
		if st.GetState() != apiv1.UpdateStatus_STATE_UNSPECIFIED {
			now = "update " + strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(st.GetState().String(), "STATE_"), "_", " "))
		}
		return nil, fmt.Errorf("service %q has no canary waiting for a promote (%s): %w", name, now, sdk.ErrFailedPrecondition)
	}
	version := req.GetVersion()
	if version == 0 {
		version = old.GetVersion()
	}
	svc := proto.CloneOf(old)
	svc.UpdatedAt = timestamppb.Now()
	// StartedAt stays: a canary that fails later is still the update's.
	svc.UpdateStatus = &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_UPDATING, Message: "canary promoted; update in progress", StartedAt: st.GetStartedAt()}
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.UpdateService{Service: svc, ExpectedVersion: version})
	if err != nil {
		return nil, err
	}
	return &apiv1.PromoteServiceResponse{Service: out.(*apiv1.Service)}, nil
}

// ScaleService sets a service's replica count.
func (s *Server) ScaleService(ctx context.Context, req *apiv1.ScaleServiceRequest) (*apiv1.ScaleServiceResponse, error) {
	if req.GetReplicas() > MaxReplicas {
		return nil, invalid("replicas %d is more than the %d allowed", req.GetReplicas(), MaxReplicas)
	}
	// A scale is a blind write of one field: retry when another change
	// slipped in between the read and the commit.
	for attempt := 0; ; attempt++ {
		old, err := s.lookupService(req.GetNameOrId())
		if err != nil {
			return nil, err
		}
		spec := proto.CloneOf(old.GetSpec())
		spec.Replicas = req.GetReplicas()
		if err := ValidateServiceSpec(spec); err != nil {
			return nil, err // e.g. replicas for a global service
		}
		out, err := s.update(ctx, old, spec, old.GetVersion())
		if errors.Is(err, sdk.ErrConflict) && attempt < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return &apiv1.ScaleServiceResponse{Service: out}, nil
	}
}

// RemoveService removes a service; its tasks are stopped.
func (s *Server) RemoveService(ctx context.Context, req *apiv1.RemoveServiceRequest) (*apiv1.RemoveServiceResponse, error) {
	old, err := s.lookupService(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	if _, err := s.opts.Raft.Apply(ctx, &fsmpb.RemoveService{Id: old.GetId()}); err != nil {
		return nil, err
	}
	return &apiv1.RemoveServiceResponse{}, nil
}

// ListNodes lists the cluster's nodes by name, one page at a time.
func (s *Server) ListNodes(_ context.Context, req *apiv1.ListNodesRequest) (*apiv1.ListNodesResponse, error) {
	out, next, err := nodePager.page(req, s.opts.State.Nodes(), nil, nil, MaxPageSize)
	if err != nil {
		return nil, err
	}
	return &apiv1.ListNodesResponse{Nodes: out, NextPageToken: next}, nil
}

// GetNode returns one node.
func (s *Server) GetNode(_ context.Context, req *apiv1.GetNodeRequest) (*apiv1.GetNodeResponse, error) {
	n, err := s.lookupNode(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	return &apiv1.GetNodeResponse{Node: n}, nil
}

func (s *Server) lookupNode(nameOrID string) (*apiv1.Node, error) {
	if nameOrID == "" {
		return nil, invalid("a node name or ID is required")
	}
	n, res := s.opts.State.LookupNode(nameOrID)
	switch res {
	case state.NotFound:
		return nil, fmt.Errorf("node %q: %w", nameOrID, sdk.ErrNotFound)
	case state.Ambiguous:
		return nil, invalid("node ID prefix %q matches more than one node", nameOrID)
	}
	return n, nil
}

// taskFilter selects the tasks of service and of node (name or ID; empty:
// any).
func (s *Server) taskFilter(service, node string) (state.TaskFilter, error) {
	var f state.TaskFilter
	if service != "" {
		svc, err := s.lookupService(service)
		if err != nil {
			return f, err
		}
		f.ServiceID = svc.GetId()
	}
	if node != "" {
		n, err := s.lookupNode(node)
		if err != nil {
			return f, err
		}
		f.NodeID = n.GetId()
	}
	return f, nil
}

// Current reports whether a task is wanted or still running, as opposed to
// history kept for inspection.
func Current(t *apiv1.Task) bool {
	if t.GetDesiredState() <= apiv1.TaskState_TASK_STATE_RUNNING {
		return true
	}
	return t.GetState() <= apiv1.TaskState_TASK_STATE_RUNNING
}

// Events streams applied changes until the client goes away. A client that
// falls behind by more than the broker's bound in bytes is ended with
// ResourceExhausted and must resubscribe (and read the state again). While
// a client does not read, gRPC's flow control stops this stream's sends,
// and the broker, not gRPC's buffers, holds what waits for it: the wire
// form of each event is shared by every stream that sends it.
func (s *Server) Events(req *apiv1.EventsRequest, stream apiv1.Warren_EventsServer) error {
	kinds := map[string]bool{}
	for _, k := range req.GetKinds() {
		kinds[k] = true
	}
	var filter func(*apiv1.Event) bool
	if len(kinds) > 0 {
		filter = func(e *apiv1.Event) bool { return kinds[e.GetKind()] }
	}
	maxBytes := s.opts.EventSubscriberBytes
	if maxBytes <= 0 {
		maxBytes = events.DefaultSubscriberBytes
	}
	sub := s.opts.Events.SubscribeBytes(filter, 4096, maxBytes)
	defer sub.Close()
	// Headers go out now, so a client knows it is subscribed before the first
	// event arrives.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev, ok := <-sub.C:
			if !ok {
				if err := sub.Err(); errors.Is(err, events.ErrLagged) {
					return status.Error(codes.ResourceExhausted, err.Error())
				}
				return status.Error(codes.Unavailable, "event stream closed: agent shutting down")
			}
			b, err := s.wire.encode(ev)
			if err != nil {
				return status.Error(codes.Internal, err.Error())
			}
			if err := stream.SendMsg(b); err != nil {
				return err
			}
		}
	}
}

// ListPlugins lists the agent's plugins and, on a manager, those of every
// worker (or of req.Node only).
func (s *Server) ListPlugins(ctx context.Context, req *apiv1.ListPluginsRequest) (*apiv1.ListPluginsResponse, error) {
	ps, err := s.listPlugins(ctx, req.GetNode())
	if err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.ListPluginsResponse{Plugins: ps}, nil
}

// ClusterInfo summarises the cluster as this manager sees it.
func (s *Server) ClusterInfo(context.Context, *apiv1.ClusterInfoRequest) (*apiv1.ClusterInfoResponse, error) {
	st := s.opts.Raft.Stats()
	svcs, tasks, nodes := s.opts.State.Counts()
	return &apiv1.ClusterInfoResponse{
		ClusterId:    s.opts.State.ClusterID(),
		NodeId:       s.opts.NodeID,
		NodeName:     s.opts.NodeName,
		Leader:       st.Leader,
		IsLeader:     s.opts.Raft.IsLeader(),
		AppliedIndex: st.AppliedIndex,
		LastIndex:    st.LastIndex,
		RaftState:    st.State,
		Version:      s.opts.Version,
		Services:     uint32(svcs),
		Tasks:        uint32(tasks),
		Nodes:        uint32(nodes),
	}, nil
}
