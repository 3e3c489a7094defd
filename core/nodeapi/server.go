// Package nodeapi is the NodeRuntime service a worker serves to the
// managers through its tunnel (core/tunnel): its runtime's logs, exec and
// images, and its plugins.
package nodeapi

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Server serves NodeRuntime from a worker's runtime.
type Server struct {
	apiv1.UnimplementedNodeRuntimeServer
	// Runtime is the node's runtime plugin.
	Runtime runtime.Runtime
	// Plugins lists the node's plugins.
	Plugins func() []*apiv1.PluginStatus
	// VolumesDir is the directory of the node's named volumes (see
	// worker.VolumesDir); empty: the node measures no volumes.
	VolumesDir string
}

// TaskLogs streams a task's output from the runtime.
func (s *Server) TaskLogs(req *apiv1.NodeTaskLogsRequest, stream apiv1.NodeRuntime_TaskLogsServer) error {
	err := s.Runtime.TaskLogs(stream.Context(), LogsRequest(req), func(c runtime.LogChunk) error {
		return stream.Send(&apiv1.LogChunk{TaskId: req.GetTaskId(), Data: c.Data})
	})
	return sdk.ToStatus(err)
}

// LogsRequest is the runtime's request for a node's logs request: a tail
// of 0 or less is all the lines.
func LogsRequest(req *apiv1.NodeTaskLogsRequest) runtime.LogsRequest {
	lr := runtime.LogsRequest{TaskID: req.GetTaskId(), Follow: req.GetFollow(), Tail: req.GetTail(), Timestamps: req.GetTimestamps()}
	if lr.Tail <= 0 {
		lr.Tail = runtime.TailAll
	}
	if ns := req.GetSinceUnixNano(); ns > 0 {
		lr.Since = time.Unix(0, ns)
	}
	return lr
}

// ImportImage loads the streamed archive into the runtime.
func (s *Server) ImportImage(stream apiv1.NodeRuntime_ImportImageServer) error {
	pr := api.ChunkReader(nil, stream.Recv)
	images, err := s.Runtime.ImportImage(stream.Context(), pr)
	pr.CloseWithError(errors.New("import finished"))
	if err != nil {
		return sdk.ToStatus(err)
	}
	out := make([]*apiv1.ImportedImage, 0, len(images))
	for _, img := range images {
		out = append(out, &apiv1.ImportedImage{Ref: img.Ref, Digest: img.Digest, Size: img.Size})
	}
	return stream.SendAndClose(&apiv1.ImportImageResponse{Images: out})
}

// ListPlugins lists the node's plugins.
func (s *Server) ListPlugins(context.Context, *apiv1.ListPluginsRequest) (*apiv1.ListPluginsResponse, error) {
	if s.Plugins == nil {
		return nil, status.Error(codes.Unimplemented, "this node does not list its plugins")
	}
	return &apiv1.ListPluginsResponse{Plugins: s.Plugins()}, nil
}

// ListImages lists the images in the node's runtime.
func (s *Server) ListImages(ctx context.Context, _ *apiv1.ListImagesRequest) (*apiv1.ListImagesResponse, error) {
	imgs, err := s.Runtime.ListImages(ctx)
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	n := &apiv1.NodeImages{}
	for _, img := range imgs {
		n.Images = append(n.Images, &apiv1.ImportedImage{Ref: img.Ref, Digest: img.Digest, Size: img.Size})
	}
	return &apiv1.ListImagesResponse{Nodes: []*apiv1.NodeImages{n}}, nil
}

// VolumeSizes measures the named volumes' directories.
func (s *Server) VolumeSizes(ctx context.Context, req *apiv1.VolumeSizesRequest) (*apiv1.VolumeSizesResponse, error) {
	if s.VolumesDir == "" {
		return nil, status.Error(codes.Unimplemented, "this node measures no volumes")
	}
	out := &apiv1.VolumeSizesResponse{Bytes: make(map[string]int64, len(req.GetNames()))}
	for _, name := range req.GetNames() {
		if err := api.ValidateName("volume", name); err != nil {
			return nil, sdk.ToStatus(err)
		}
		if err := ctx.Err(); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		n, err := worker.VolumeSize(s.VolumesDir, name)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		out.Bytes[name] = n
	}
	return out, nil
}

// TaskStats samples each named task's CPU and memory use; a task the
// runtime cannot sample has its error set.
func (s *Server) TaskStats(ctx context.Context, req *apiv1.NodeTaskStatsRequest) (*apiv1.TaskStatsResponse, error) {
	out := &apiv1.TaskStatsResponse{}
	for _, id := range req.GetTaskIds() {
		st, err := s.Runtime.TaskStats(ctx, id)
		sample := &apiv1.TaskStatsSample{TaskId: id, SampledUnixNano: time.Now().UnixNano()}
		if err != nil {
			sample.Error = err.Error()
		} else {
			sample.CpuUsageNs, sample.MemoryBytes, sample.MemoryLimitBytes = st.CPUUsageNanos, st.MemoryBytes, st.MemoryLimitBytes
		}
		out.Stats = append(out.Stats, sample)
	}
	return out, nil
}
