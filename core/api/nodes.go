package api

import (
	"context"
	"fmt"
	"maps"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/sdk"
)

// UpdateNode changes a node's availability and the labels set through the
// API. The request is checked whole before anything is written: a bad one
// changes nothing. A node's labels are those of its agent configuration
// (Node.agent_labels) with the API's laid over them; labels_rm removes an
// API label (the configured value, if any, comes back) and refuses one that
// only the configuration sets. A request that changes nothing writes
// nothing and returns the node as it is.
//
// expected_version, when set, guards against an operator's stale read.
// Changes committed by others between this call's read and its write (a
// worker registering in the same instant) are never overwritten: the write
// carries the version it was based on and is redone on a conflict
// (fsm.UpdateNode).
func (s *Server) UpdateNode(ctx context.Context, req *apiv1.UpdateNodeRequest) (*apiv1.UpdateNodeResponse, error) {
	if err := ValidateUpdateNode(req); err != nil {
		return nil, err
	}
	found, err := s.lookupNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	out, err := fsm.UpdateNode(ctx, s.opts.Raft.Apply, s.opts.State, found.GetId(), func(n *apiv1.Node) (bool, error) {
		if v := req.GetExpectedVersion(); v != 0 && v != n.GetVersion() {
			return false, fmt.Errorf("node %q is at version %d, not %d: %w", n.GetName(), n.GetVersion(), v, sdk.ErrConflict)
		}
		edited, err := editNode(n, req)
		if err != nil || proto.Equal(edited, n) {
			return false, err
		}
		proto.Reset(n)
		proto.Merge(n, edited)
		n.UpdatedAt = timestamppb.Now()
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("update node %q: %w", found.GetName(), err)
	}
	return &apiv1.UpdateNodeResponse{Node: out}, nil
}

// editNode returns a copy of old with req's changes: availability, then
// labels_rm, then labels_add.
func editNode(old *apiv1.Node, req *apiv1.UpdateNodeRequest) (*apiv1.Node, error) {
	n := proto.CloneOf(old)
	if req.Availability != nil {
		n.Availability = req.GetAvailability()
	}
	labels := maps.Clone(old.GetLabels())
	agent := old.GetAgentLabels()
	for _, k := range req.GetLabelsRm() {
		v, ok := labels[k]
		if !ok {
			continue // nothing to remove
		}
		av, configured := agent[k]
		switch {
		case configured && av == v:
			if _, readded := req.GetLabelsAdd()[k]; readded {
				continue
			}
			return nil, fmt.Errorf("node %q: label %q comes from the node's agent configuration (worker labels): change it there: %w",
				old.GetName(), k, sdk.ErrFailedPrecondition)
		case configured:
			labels[k] = av // the configured value comes back
		default:
			delete(labels, k)
		}
	}
	if len(req.GetLabelsAdd()) > 0 && labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, req.GetLabelsAdd())
	if len(labels) > MaxNodeLabels {
		return nil, invalid("node %q would have %d labels, more than the %d allowed", old.GetName(), len(labels), MaxNodeLabels)
	}
	if len(labels) == 0 {
		labels = nil
	}
	n.Labels = labels
	return n, nil
}

// RemoveNode removes a node from the cluster. A manager is refused (it holds
// a Raft seat: demote it first), and so is a READY node unless force is set
// (its agent is still connected, and registers it again if it reconnects).
// The orchestrator then orphans the node's unfinished tasks and replaces
// them on other nodes, as it does for a node that is down.
func (s *Server) RemoveNode(ctx context.Context, req *apiv1.RemoveNodeRequest) (*apiv1.RemoveNodeResponse, error) {
	if err := noUnknownFields(req); err != nil {
		return nil, err
	}
	if err := ValidateNodeRef(req.GetNode()); err != nil {
		return nil, err
	}
	n, err := s.lookupNode(req.GetNode())
	if err != nil {
		return nil, err
	}
	if n.GetRole() == apiv1.NodeRole_NODE_ROLE_MANAGER {
		return nil, fmt.Errorf("node %q is a manager: demote it first: warren node demote %s: %w", n.GetName(), n.GetName(), sdk.ErrFailedPrecondition)
	}
	if n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY && !req.GetForce() {
		return nil, fmt.Errorf("node %q is ready: stop its agent first, or force the removal (its tasks are then replaced elsewhere, and a running agent registers the node again when it reconnects): %w",
			n.GetName(), sdk.ErrFailedPrecondition)
	}
	if _, err := s.opts.Raft.Apply(ctx, &fsmpb.RemoveNode{Id: n.GetId()}); err != nil {
		return nil, fmt.Errorf("remove node %q: %w", n.GetName(), err)
	}
	return &apiv1.RemoveNodeResponse{Node: n}, nil
}
