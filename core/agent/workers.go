package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/nodeapi"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/core/tunnel"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// localWorkers gives a worker-only agent's local API its own runtime: a
// worker imports images on its own socket. Managers use tunnelWorkers.
type localWorkers struct {
	nodeID   string
	nodeName string
	rt       runtime.Runtime
}

func (w *localWorkers) TaskLogs(ctx context.Context, task *apiv1.Task, req *apiv1.NodeTaskLogsRequest, send func([]byte) error) error {
	if task.GetNodeId() != w.nodeID {
		return fmt.Errorf("task %s runs on node %s, and this manager serves only the logs of its own node's tasks (run `warren task logs` on that node's manager, if it is one): %w", task.GetId(), task.GetNodeId(), sdk.ErrUnsupported)
	}
	return w.rt.TaskLogs(ctx, nodeapi.LogsRequest(req), func(c runtime.LogChunk) error {
		return send(c.Data)
	})
}

func (w *localWorkers) ImportImage(ctx context.Context, node string, r io.Reader, progress func(*apiv1.NodeImport)) (*apiv1.ImportImageResponse, error) {
	if node != "" && node != w.nodeID && node != w.nodeName {
		return nil, fmt.Errorf("image import on node %s: this worker imports only into its own runtime: %w", node, sdk.ErrInvalidArgument)
	}
	cr := &countingReader{r: r, read: func(total int64) {
		progress(&apiv1.NodeImport{NodeId: w.nodeID, Node: w.nodeName, BytesSent: total})
	}}
	images, err := w.rt.ImportImage(ctx, cr)
	if err != nil {
		progress(&apiv1.NodeImport{NodeId: w.nodeID, Node: w.nodeName, BytesSent: cr.total, Error: err.Error()})
		return nil, err
	}
	out := make([]*apiv1.ImportedImage, 0, len(images))
	for _, img := range images {
		out = append(out, &apiv1.ImportedImage{Ref: img.Ref, Digest: img.Digest, Size: img.Size})
	}
	progress(&apiv1.NodeImport{NodeId: w.nodeID, Node: w.nodeName, BytesSent: cr.total, Done: true, Images: out})
	return &apiv1.ImportImageResponse{Images: out, Nodes: []string{w.nodeName},
		Results: []*apiv1.NodeImport{{NodeId: w.nodeID, Node: w.nodeName, Images: out, BytesSent: cr.total, Done: true}}}, nil
}

// countingReader calls read with the total read so far after each read.
type countingReader struct {
	r     io.Reader
	read  func(total int64)
	total int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.total += int64(n)
		c.read(c.total)
	}
	return n, err
}

// tunnelWait is how long a call waits for a node's tunnel to open (the
// worker just started or reconnected) before it says the node is not
// connected.
const tunnelWait = 3 * time.Second

// tunnelWorkers gives a manager's API the runtimes of every worker,
// through the tunnels the workers open to it (core/tunnel).
type tunnelWorkers struct {
	reg   *tunnel.Registry
	state *state.State
}

// nodeName is a node's name for errors, its ID when it has none.
func (w *tunnelWorkers) nodeName(nodeID string) string {
	if n, ok := w.state.Node(nodeID); ok && n.GetName() != "" {
		return n.GetName()
	}
	return nodeID
}

// client returns the NodeRuntime of nodeID, refusing at once a node the
// cluster state holds as down.
func (w *tunnelWorkers) client(ctx context.Context, nodeID string) (apiv1.NodeRuntimeClient, error) {
	name := w.nodeName(nodeID)
	if n, ok := w.state.Node(nodeID); ok && n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_DOWN {
		return nil, status.Errorf(codes.Unavailable, "node %s (%s) is down", name, nodeID)
	}
	cc, err := w.reg.Conn(ctx, nodeID, name, tunnelWait)
	if err != nil {
		return nil, err
	}
	return apiv1.NewNodeRuntimeClient(cc), nil
}

// nodeError names the node in an error from its NodeRuntime.
func (w *tunnelWorkers) nodeError(nodeID string, err error) error {
	// Canceled is what a call gets when the tunnel under it closes (its
	// keepalive found the worker silent); callers check their own context
	// first.
	if st, ok := status.FromError(err); ok && (st.Code() == codes.Unavailable || st.Code() == codes.Canceled) {
		return status.Errorf(codes.Unavailable, "node %s (%s) did not answer: %s", w.nodeName(nodeID), nodeID, st.Message())
	}
	return sdk.FromStatus(err)
}

func (w *tunnelWorkers) TaskLogs(ctx context.Context, task *apiv1.Task, req *apiv1.NodeTaskLogsRequest, send func([]byte) error) error {
	c, err := w.client(ctx, task.GetNodeId())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.TaskLogs(ctx, req)
	if err != nil {
		return w.nodeError(task.GetNodeId(), err)
	}
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return w.nodeError(task.GetNodeId(), err)
		}
		if err := send(chunk.GetData()); err != nil {
			return err
		}
	}
}

// importTargets are the nodes an import goes to: the one named, or every
// ready worker.
func (w *tunnelWorkers) importTargets(node string) ([]*apiv1.Node, error) {
	var out []*apiv1.Node
	for _, n := range w.state.Nodes() {
		if node != "" {
			if n.GetId() == node || n.GetName() == node {
				if !n.GetWorker() {
					return nil, invalidf("node %s runs no worker: it has no runtime to import into", node)
				}
				return []*apiv1.Node{n}, nil
			}
			continue
		}
		if n.GetWorker() && n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY {
			out = append(out, n)
		}
	}
	if node != "" {
		return nil, fmt.Errorf("node %q: %w", node, sdk.ErrNotFound)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("image import: no worker is ready: %w", sdk.ErrFailedPrecondition)
	}
	return out, nil
}

// nodeImport is one node's import stream while the archive is sent.
type nodeImport struct {
	res    *apiv1.NodeImport
	stream apiv1.NodeRuntime_ImportImageClient
	err    error
}

func (w *tunnelWorkers) ImportImage(ctx context.Context, node string, r io.Reader, progress func(*apiv1.NodeImport)) (*apiv1.ImportImageResponse, error) {
	nodes, err := w.importTargets(node)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	imps := make([]*nodeImport, len(nodes))
	for i, n := range nodes {
		imp := &nodeImport{res: &apiv1.NodeImport{NodeId: n.GetId(), Node: w.nodeName(n.GetId())}}
		imps[i] = imp
		c, err := w.client(ctx, n.GetId())
		if err != nil {
			imp.err = err
			continue
		}
		if imp.stream, err = c.ImportImage(ctx); err != nil {
			imp.err = w.nodeError(n.GetId(), err)
		}
	}
	for _, imp := range imps {
		if imp.err != nil {
			progress(&apiv1.NodeImport{NodeId: imp.res.GetNodeId(), Node: imp.res.GetNode(), Error: imp.err.Error()})
		}
	}
	// The archive is read once and sent to every node as it comes; a node
	// that fails drops out, the others go on.
	for {
		// A fresh buffer each time: the streams may still hold the last one.
		buf := make([]byte, 256<<10)
		k, rerr := io.ReadFull(r, buf)
		if errors.Is(rerr, io.ErrUnexpectedEOF) {
			rerr = io.EOF
		}
		if k > 0 {
			var wg sync.WaitGroup
			for _, imp := range imps {
				if imp.err != nil {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := imp.stream.Send(&apiv1.ImportImageChunk{Data: buf[:k]}); err != nil {
						// io.EOF: the node ended the call; CloseAndRecv says why.
						if !errors.Is(err, io.EOF) {
							imp.err = w.nodeError(imp.res.GetNodeId(), err)
							progress(&apiv1.NodeImport{NodeId: imp.res.GetNodeId(), Node: imp.res.GetNode(), BytesSent: imp.res.GetBytesSent(), Error: imp.err.Error()})
						}
						return
					}
					imp.res.BytesSent += int64(k)
					progress(&apiv1.NodeImport{NodeId: imp.res.GetNodeId(), Node: imp.res.GetNode(), BytesSent: imp.res.GetBytesSent()})
				}()
			}
			wg.Wait()
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return nil, fmt.Errorf("reading the archive: %w", rerr)
		}
	}
	var wg sync.WaitGroup
	for _, imp := range imps {
		if imp.err != nil || imp.stream == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := imp.stream.CloseAndRecv()
			if err != nil {
				imp.err = w.nodeError(imp.res.GetNodeId(), err)
				progress(&apiv1.NodeImport{NodeId: imp.res.GetNodeId(), Node: imp.res.GetNode(), BytesSent: imp.res.GetBytesSent(), Error: imp.err.Error()})
				return
			}
			imp.res.Images, imp.res.Done = resp.GetImages(), true
			progress(&apiv1.NodeImport{NodeId: imp.res.GetNodeId(), Node: imp.res.GetNode(), BytesSent: imp.res.GetBytesSent(), Done: true, Images: resp.GetImages()})
		}()
	}
	wg.Wait()
	out := &apiv1.ImportImageResponse{}
	var failed []error
	for _, imp := range imps {
		if imp.err != nil {
			imp.res.Error = imp.err.Error()
			failed = append(failed, imp.err)
		} else {
			out.Nodes = append(out.Nodes, imp.res.GetNode())
			if len(out.Images) == 0 {
				out.Images = imp.res.GetImages()
			}
		}
		out.Results = append(out.Results, imp.res)
	}
	if len(failed) == len(imps) {
		// Nothing imported: the error of the first node says why (the same
		// bad archive fails everywhere alike).
		return nil, fmt.Errorf("no node imported the archive: %s: %w", imps[0].res.GetNode(), failed[0])
	}
	return out, nil
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, sdk.ErrInvalidArgument)...)
}

func (w *tunnelWorkers) Exec(ctx context.Context, nodeID string) (apiv1.NodeRuntime_ExecClient, error) {
	c, err := w.client(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	stream, err := c.Exec(ctx)
	if err != nil {
		return nil, w.nodeError(nodeID, err)
	}
	return stream, nil
}

// NodeError names the node in an error from its NodeRuntime.
func (w *tunnelWorkers) NodeError(nodeID string, err error) error { return w.nodeError(nodeID, err) }

func (w *localWorkers) Exec(context.Context, string) (apiv1.NodeRuntime_ExecClient, error) {
	return nil, fmt.Errorf("exec: run it on a manager: %w", sdk.ErrUnsupported)
}

func (w *localWorkers) NodeError(_ string, err error) error { return err }

func (w *tunnelWorkers) ListPlugins(ctx context.Context, nodeID string) ([]*apiv1.PluginStatus, error) {
	c, err := w.client(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	resp, err := c.ListPlugins(ctx, &apiv1.ListPluginsRequest{})
	if err != nil {
		return nil, w.nodeError(nodeID, err)
	}
	return resp.GetPlugins(), nil
}

func (w *localWorkers) ListPlugins(context.Context, string) ([]*apiv1.PluginStatus, error) {
	return nil, fmt.Errorf("plugins of other nodes: run it on a manager: %w", sdk.ErrUnsupported)
}

func (w *tunnelWorkers) ListImages(ctx context.Context, node string) ([]*apiv1.NodeImages, error) {
	nodes, err := w.importTargets(node)
	if err != nil {
		return nil, err
	}
	out := make([]*apiv1.NodeImages, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		out[i] = &apiv1.NodeImages{NodeId: n.GetId(), Node: w.nodeName(n.GetId())}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := func() (*apiv1.ListImagesResponse, error) {
				c, err := w.client(ctx, n.GetId())
				if err != nil {
					return nil, err
				}
				resp, err := c.ListImages(ctx, &apiv1.ListImagesRequest{})
				if err != nil {
					return nil, w.nodeError(n.GetId(), err)
				}
				return resp, nil
			}()
			if err != nil {
				out[i].Error = status.Convert(err).Message()
				return
			}
			for _, ni := range resp.GetNodes() {
				out[i].Images = append(out[i].Images, ni.GetImages()...)
			}
		}()
	}
	wg.Wait()
	return out, nil
}

func (w *localWorkers) ListImages(ctx context.Context, node string) ([]*apiv1.NodeImages, error) {
	if node != "" && node != w.nodeID && node != w.nodeName {
		return nil, fmt.Errorf("images of node %s: this worker lists only its own: %w", node, sdk.ErrInvalidArgument)
	}
	imgs, err := w.rt.ListImages(ctx)
	if err != nil {
		return nil, err
	}
	n := &apiv1.NodeImages{NodeId: w.nodeID, Node: w.nodeName}
	for _, img := range imgs {
		n.Images = append(n.Images, &apiv1.ImportedImage{Ref: img.Ref, Digest: img.Digest, Size: img.Size})
	}
	return []*apiv1.NodeImages{n}, nil
}

func (w *tunnelWorkers) VolumeSizes(ctx context.Context, nodeID string, names []string) (map[string]int64, error) {
	c, err := w.client(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	resp, err := c.VolumeSizes(ctx, &apiv1.VolumeSizesRequest{Names: names})
	if err != nil {
		return nil, w.nodeError(nodeID, err)
	}
	return resp.GetBytes(), nil
}

func (w *localWorkers) VolumeSizes(context.Context, string, []string) (map[string]int64, error) {
	return nil, fmt.Errorf("volume sizes: run it on a manager: %w", sdk.ErrUnsupported)
}

func (w *tunnelWorkers) TaskStats(ctx context.Context, nodeID string, taskIDs []string) ([]*apiv1.TaskStatsSample, error) {
	c, err := w.client(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	resp, err := c.TaskStats(ctx, &apiv1.NodeTaskStatsRequest{TaskIds: taskIDs})
	if err != nil {
		return nil, w.nodeError(nodeID, err)
	}
	return resp.GetStats(), nil
}

func (w *localWorkers) TaskStats(ctx context.Context, nodeID string, taskIDs []string) ([]*apiv1.TaskStatsSample, error) {
	if nodeID != w.nodeID {
		return nil, fmt.Errorf("stats of node %s: this worker samples only its own tasks: %w", nodeID, sdk.ErrUnsupported)
	}
	resp, err := (&nodeapi.Server{Runtime: w.rt}).TaskStats(ctx, &apiv1.NodeTaskStatsRequest{TaskIds: taskIDs})
	if err != nil {
		return nil, err
	}
	return resp.GetStats(), nil
}
