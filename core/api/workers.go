package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/metrics"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// Workers reaches the runtimes of the cluster's workers.
type Workers interface {
	// TaskLogs streams a task's output to send until it is done (or, with
	// req.follow, until the task exits or ctx ends); req.task_id is task's.
	TaskLogs(ctx context.Context, task *apiv1.Task, req *apiv1.NodeTaskLogsRequest, send func([]byte) error) error
	// ImportImage loads an image archive into the runtime of node (name
	// or ID), or of every ready worker when node is empty, and says per
	// node what it imported or why it failed. It fails only when no node
	// imported the archive. progress, called from any goroutine, gets each
	// node's bytes sent as they go, then its done or its error.
	ImportImage(ctx context.Context, node string, r io.Reader, progress func(*apiv1.NodeImport)) (*apiv1.ImportImageResponse, error)
	// Exec opens an Exec stream to nodeID's NodeRuntime; the stream ends
	// with ctx.
	Exec(ctx context.Context, nodeID string) (apiv1.NodeRuntime_ExecClient, error)
	// ListImages lists the images of node (name or ID), or of every ready
	// worker; a node that does not answer has its error set.
	ListImages(ctx context.Context, node string) ([]*apiv1.NodeImages, error)
	// ListPlugins lists the plugins of nodeID.
	ListPlugins(ctx context.Context, nodeID string) ([]*apiv1.PluginStatus, error)
	// VolumeSizes measures, on nodeID, the named volumes that live there:
	// bytes per name.
	VolumeSizes(ctx context.Context, nodeID string, names []string) (map[string]int64, error)
	// NodeError names nodeID in an error its NodeRuntime stream returned.
	NodeError(nodeID string, err error) error
	// TaskStats samples the named tasks on nodeID; a task that cannot be
	// sampled has its error set, a node that does not answer is the error.
	TaskStats(ctx context.Context, nodeID string, taskIDs []string) ([]*apiv1.TaskStatsSample, error)
}

// ExecTask runs a command in a running task on its node: the first input
// is start (task by ID or unique prefix); the rest goes to the command and
// its output comes back, exit_code last.
func (s *Server) ExecTask(stream apiv1.Warren_ExecTaskServer) error {
	return toStatus(s.execTask(stream))
}

func (s *Server) execTask(stream apiv1.Warren_ExecTaskServer) error {
	if s.opts.Workers == nil {
		return fmt.Errorf("exec: this agent reaches no worker: %w", sdk.ErrUnsupported)
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	switch {
	case start == nil:
		return invalid("exec: the first message must be start")
	case len(start.GetCmd()) == 0 || start.GetCmd()[0] == "":
		return invalid("exec: give the command to run")
	}
	t, err := s.lookupTask(start.GetTask())
	if err != nil {
		return err
	}
	if t.GetState() != apiv1.TaskState_TASK_STATE_RUNNING {
		where := ""
		if n, ok := s.opts.State.Node(t.GetNodeId()); ok {
			where = fmt.Sprintf(" (node %s is %s)", n.GetName(), strings.ToLower(strings.TrimPrefix(n.GetStatus().String(), "NODE_STATUS_")))
		}
		return fmt.Errorf("task %s is %s, not running%s: there is nothing to exec into: %w", t.GetId(), metrics.TaskStateLabel(t.GetState()), where, sdk.ErrFailedPrecondition)
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	node, err := s.opts.Workers.Exec(ctx, t.GetNodeId())
	if err != nil {
		return err
	}
	start = proto.CloneOf(start)
	start.Task = t.GetId()
	if err := node.Send(&apiv1.ExecInput{Msg: &apiv1.ExecInput_Start{Start: start}}); err != nil {
		_, err = node.Recv()
		return s.opts.Workers.NodeError(t.GetNodeId(), err)
	}
	go func() {
		for {
			in, err := stream.Recv()
			if err != nil {
				_ = node.CloseSend()
				return
			}
			if _, ok := in.GetMsg().(*apiv1.ExecInput_Start); ok {
				continue
			}
			if node.Send(in) != nil {
				return
			}
		}
	}()
	for {
		out, err := node.Recv()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("exec in task %s: the node ended the command without an exit code: %w", t.GetId(), sdk.ErrInternal)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return s.opts.Workers.NodeError(t.GetNodeId(), err)
		}
		if err := stream.Send(out); err != nil {
			return err
		}
		if _, ok := out.GetMsg().(*apiv1.ExecOutput_ExitCode); ok {
			return nil
		}
	}
}

// TaskLogs streams the logs of one task or of a service's current tasks.
func (s *Server) TaskLogs(req *apiv1.TaskLogsRequest, stream apiv1.Warren_TaskLogsServer) error {
	err := s.taskLogs(req, stream)
	return toStatus(err)
}

func (s *Server) taskLogs(req *apiv1.TaskLogsRequest, stream apiv1.Warren_TaskLogsServer) error {
	if s.opts.Workers == nil {
		return fmt.Errorf("logs: this agent reaches no worker: %w", sdk.ErrUnsupported)
	}
	tasks, err := s.logTasks(req)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	nodeReq := func(t *apiv1.Task) *apiv1.NodeTaskLogsRequest {
		return &apiv1.NodeTaskLogsRequest{TaskId: t.GetId(), Follow: req.GetFollow(), Tail: req.GetTail(), SinceUnixNano: req.GetSinceUnixNano(), Timestamps: req.GetTimestamps()}
	}
	var sendMu sync.Mutex
	send := func(t *apiv1.Task) func([]byte) error {
		return func(b []byte) error {
			sendMu.Lock()
			defer sendMu.Unlock()
			return stream.Send(&apiv1.LogChunk{TaskId: t.GetId(), Slot: t.GetSlot(), NodeId: t.GetNodeId(), Data: b})
		}
	}
	if !req.GetFollow() {
		for _, t := range tasks {
			if err := s.opts.Workers.TaskLogs(ctx, t, nodeReq(t), send(t)); err != nil && !errors.Is(err, sdk.ErrNotFound) {
				return prefixed(err, "logs of task %s", t.GetId())
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(tasks))
	for _, t := range tasks {
		go func() {
			err := s.opts.Workers.TaskLogs(ctx, t, nodeReq(t), send(t))
			if ctx.Err() != nil {
				errs <- nil
				return
			}
			var end string
			switch {
			case err == nil:
				end = fmt.Sprintf("task %s ended", t.GetId())
				// The worker's report of the exit may still be on its way.
				if now, ok := s.opts.State.Task(t.GetId()); ok && now.GetState() != apiv1.TaskState_TASK_STATE_RUNNING {
					end = fmt.Sprintf("task %s ended: %s", t.GetId(), metrics.TaskStateLabel(now.GetState()))
				}
			case errors.Is(err, sdk.ErrNotFound):
				end = fmt.Sprintf("task %s ended: its container is gone", t.GetId())
			case len(tasks) == 1:
				errs <- prefixed(err, "logs of task %s", t.GetId())
				return
			default:
				end = prefixed(err, "logs of task %s", t.GetId()).Error()
			}
			sendMu.Lock()
			err = stream.Send(&apiv1.LogChunk{TaskId: t.GetId(), Slot: t.GetSlot(), NodeId: t.GetNodeId(), End: end})
			sendMu.Unlock()
			errs <- err
		}()
	}
	for range tasks {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// logTasks resolves a logs request to tasks placed on a node.
func (s *Server) logTasks(req *apiv1.TaskLogsRequest) ([]*apiv1.Task, error) {
	switch {
	case (req.GetService() == "") == (req.GetTask() == ""):
		return nil, invalid("logs: give either a service or a task")
	case req.GetTask() != "":
		t, err := s.lookupTask(req.GetTask())
		if err != nil {
			return nil, err
		}
		if t.GetNodeId() == "" {
			return nil, fmt.Errorf("task %s is not placed on a node yet: %w", t.GetId(), sdk.ErrFailedPrecondition)
		}
		return []*apiv1.Task{t}, nil
	}
	svc, err := s.lookupService(req.GetService())
	if err != nil {
		return nil, err
	}
	var out []*apiv1.Task
	for _, t := range s.opts.State.Tasks(state.TaskFilter{ServiceID: svc.GetId()}) {
		if t.GetNodeId() != "" && Current(t) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *apiv1.Task) int { return int(a.GetSlot()) - int(b.GetSlot()) })
	return out, nil
}

func (s *Server) lookupTask(idOrPrefix string) (*apiv1.Task, error) {
	t, res := s.opts.State.LookupTask(idOrPrefix)
	switch res {
	case state.NotFound:
		return nil, fmt.Errorf("task %q: %w", idOrPrefix, sdk.ErrNotFound)
	case state.Ambiguous:
		return nil, invalid("task ID prefix %q matches more than one task", idOrPrefix)
	}
	return t, nil
}

// ImportImage streams an image archive to the workers' runtimes.
func (s *Server) ImportImage(stream apiv1.Warren_ImportImageServer) error {
	if s.opts.Workers == nil {
		return toStatus(fmt.Errorf("image import: this agent reaches no worker: %w", sdk.ErrUnsupported))
	}
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return toStatus(invalid("image import: the archive is empty"))
	}
	if err != nil {
		return err
	}
	pr := ChunkReader(first, stream.Recv)
	var sendMu sync.Mutex
	sent := map[string]time.Time{}
	progress := func(n *apiv1.NodeImport) {
		sendMu.Lock()
		defer sendMu.Unlock()
		if !n.GetDone() && n.GetError() == "" {
			if time.Since(sent[n.GetNodeId()]) < importProgressEvery {
				return
			}
			sent[n.GetNodeId()] = time.Now()
		}
		// A client gone away ends the call through its context.
		_ = stream.Send(&apiv1.ImportImageProgress{Node: n})
	}
	resp, err := s.opts.Workers.ImportImage(stream.Context(), first.GetNode(), pr, progress)
	pr.CloseWithError(errors.New("import finished"))
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return err
		}
		return toStatus(fmt.Errorf("image import: %w", err))
	}
	sendMu.Lock()
	defer sendMu.Unlock()
	return stream.Send(&apiv1.ImportImageProgress{Result: resp})
}

// importProgressEvery is how often at most a node's bytes sent are
// reported during an import.
const importProgressEvery = 250 * time.Millisecond

// ChunkReader reads the data of an ImportImage stream: first's, then that
// of each chunk recv returns until io.EOF (another error of recv is the
// reader's error). Close the reader with an error to stop it.
func ChunkReader(first *apiv1.ImportImageChunk, recv func() (*apiv1.ImportImageChunk, error)) *io.PipeReader {
	pr, pw := io.Pipe()
	go func() {
		chunk := first
		for {
			if chunk != nil {
				if _, err := pw.Write(chunk.GetData()); err != nil {
					return
				}
			}
			var err error
			chunk, err = recv()
			if errors.Is(err, io.EOF) {
				pw.Close()
				return
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// prefixed is err with what was being done in front; a gRPC status (a
// node's answer) keeps its code, its message prefixed.
func prefixed(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		return status.Error(st.Code(), what+": "+st.Message())
	}
	return fmt.Errorf("%s: %w", what, err)
}

// pluginListTimeout bounds how long ListPlugins waits for one node.
const pluginListTimeout = 5 * time.Second

// listPlugins returns this agent's plugins and, with node empty, every
// other worker's; a node that does not answer is one row in state
// "unreachable" saying why.
func (s *Server) listPlugins(ctx context.Context, node string) ([]*apiv1.PluginStatus, error) {
	var own []*apiv1.PluginStatus
	if s.opts.Plugins != nil {
		own = s.opts.Plugins()
	}
	for _, p := range own {
		p.Node = s.opts.NodeName
	}
	if node == s.opts.NodeName || node == s.opts.NodeID {
		return own, nil
	}
	if s.opts.Workers == nil || s.opts.State == nil {
		if node != "" {
			return nil, fmt.Errorf("plugins of node %s: this agent lists only its own: %w", node, sdk.ErrUnsupported)
		}
		return own, nil
	}
	var nodes []*apiv1.Node
	for _, n := range s.opts.State.Nodes() {
		switch {
		case node != "" && (n.GetId() == node || n.GetName() == node):
			nodes = []*apiv1.Node{n}
		case node == "" && n.GetWorker() && n.GetId() != s.opts.NodeID:
			nodes = append(nodes, n)
		}
	}
	if node != "" {
		if len(nodes) != 1 {
			return nil, fmt.Errorf("node %q: %w", node, sdk.ErrNotFound)
		}
		own = nil
	}
	lists := make([][]*apiv1.PluginStatus, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, pluginListTimeout)
			defer cancel()
			ps, err := s.opts.Workers.ListPlugins(cctx, n.GetId())
			if err != nil {
				ps = []*apiv1.PluginStatus{{Node: n.GetName(), State: "unreachable", LastError: status.Convert(err).Message()}}
			}
			for _, p := range ps {
				p.Node = n.GetName()
			}
			lists[i] = ps
		}()
	}
	wg.Wait()
	for _, ps := range lists {
		own = append(own, ps...)
	}
	return own, nil
}

// imageListTimeout bounds how long ListImages waits for the nodes.
const imageListTimeout = 10 * time.Second

// ListImages lists the images of every ready worker, or of one node.
func (s *Server) ListImages(ctx context.Context, req *apiv1.ListImagesRequest) (*apiv1.ListImagesResponse, error) {
	if s.opts.Workers == nil {
		return nil, toStatus(fmt.Errorf("image ls: this agent reaches no worker: %w", sdk.ErrUnsupported))
	}
	ctx, cancel := context.WithTimeout(ctx, imageListTimeout)
	defer cancel()
	nodes, err := s.opts.Workers.ListImages(ctx, req.GetNode())
	if err != nil {
		return nil, toStatus(err)
	}
	return &apiv1.ListImagesResponse{Nodes: nodes}, nil
}
