package api

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// VolumeDriverLocal is the only volume driver: a directory on one node.
const VolumeDriverLocal = "local"

func (s *Server) volumeResponse(v *apiv1.Volume) *apiv1.VolumeResponse {
	return &apiv1.VolumeResponse{Volume: v, Users: fsm.VolumeUsers(s.opts.State, v.GetName())}
}

// CreateVolume creates a named local volume, on the node the request
// names or (without one) on the node of the first task that uses it.
func (s *Server) CreateVolume(ctx context.Context, req *apiv1.CreateVolumeRequest) (*apiv1.VolumeResponse, error) {
	if err := ValidateName("volume", req.GetName()); err != nil {
		return nil, err
	}
	if err := validateLabels(fmt.Sprintf("volume %q", req.GetName()), req.GetLabels()); err != nil {
		return nil, err
	}
	v := &apiv1.Volume{Id: NewID(), Name: req.GetName(), Driver: VolumeDriverLocal, Labels: req.GetLabels(), CreatedAt: timestamppb.Now()}
	if req.GetNode() != "" {
		n, err := s.lookupNode(req.GetNode())
		if err != nil {
			return nil, err
		}
		if !n.GetWorker() {
			return nil, invalid("volume %q: node %q runs no tasks (it is not a worker)", req.GetName(), n.GetName())
		}
		v.NodeId = n.GetId()
	}
	out, err := s.opts.Raft.Apply(ctx, &fsmpb.UpsertVolume{Volume: v})
	if err != nil {
		return nil, err
	}
	return s.volumeResponse(out.(*apiv1.Volume)), nil
}

// GetVolume returns a volume and the services that use it.
func (s *Server) GetVolume(_ context.Context, req *apiv1.GetVolumeRequest) (*apiv1.VolumeResponse, error) {
	v, err := lookupNamed("volume", req.GetNameOrId(), s.opts.State.LookupVolume)
	if err != nil {
		return nil, err
	}
	return s.volumeResponse(v), nil
}

// ListVolumes returns every volume with its users and its size as its
// node measures it, by name.
func (s *Server) ListVolumes(ctx context.Context, _ *apiv1.ListVolumesRequest) (*apiv1.ListVolumesResponse, error) {
	resp := &apiv1.ListVolumesResponse{}
	for _, v := range s.opts.State.Volumes() {
		resp.Volumes = append(resp.Volumes, s.volumeResponse(v))
	}
	s.measureVolumes(ctx, resp.GetVolumes())
	return resp, nil
}

// volumeSizeTimeout bounds how long ListVolumes waits for the nodes to
// measure their volumes.
const volumeSizeTimeout = 5 * time.Second

// measureVolumes asks each ready node that holds volumes of vs for their
// sizes, all nodes at once, and sets each volume's size or why it is not
// known.
func (s *Server) measureVolumes(ctx context.Context, vs []*apiv1.VolumeResponse) {
	byNode := map[string][]*apiv1.VolumeResponse{}
	for _, v := range vs {
		id := v.GetVolume().GetNodeId()
		n, ok := s.opts.State.Node(id)
		switch {
		case id == "":
			v.SizeError = "on no node yet"
		case !ok:
			v.SizeError = fmt.Sprintf("node %s is not in the cluster", id)
		case n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY:
			v.SizeError = fmt.Sprintf("node %s is %s", n.GetName(), strings.ToLower(strings.TrimPrefix(n.GetStatus().String(), "NODE_STATUS_")))
		case s.opts.Workers == nil:
			v.SizeError = "this agent reaches no worker"
		default:
			byNode[id] = append(byNode[id], v)
		}
	}
	if len(byNode) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, volumeSizeTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for id, on := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			names := make([]string, len(on))
			for i, v := range on {
				names[i] = v.GetVolume().GetName()
			}
			sizes, err := s.opts.Workers.VolumeSizes(ctx, id, names)
			for _, v := range on {
				if err != nil {
					v.SizeError = status.Convert(err).Message()
					continue
				}
				v.SizeBytes = sizes[v.GetVolume().GetName()]
			}
		}()
	}
	wg.Wait()
}

// RemoveVolume forgets a volume no service uses. Its directory stays on
// its node: Warren never deletes data.
func (s *Server) RemoveVolume(ctx context.Context, req *apiv1.RemoveVolumeRequest) (*apiv1.RemoveVolumeResponse, error) {
	v, err := lookupNamed("volume", req.GetNameOrId(), s.opts.State.LookupVolume)
	if err != nil {
		return nil, err
	}
	if _, err := s.opts.Raft.Apply(ctx, &fsmpb.RemoveVolume{Id: v.GetId()}); err != nil {
		return nil, err
	}
	return &apiv1.RemoveVolumeResponse{}, nil
}
