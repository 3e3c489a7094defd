package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// Workers reaches the runtimes of the cluster's workers.
type Workers interface {
	// TaskLogs streams a task's output to send until it is done (or, with
	// follow, until the task exits or ctx ends).
	TaskLogs(ctx context.Context, task *apiv1.Task, follow bool, tail int64, send func([]byte) error) error
	// ImportImage loads an image archive into the runtime of node (name
	// or ID), or of every ready worker when node is empty, and says per
	// node what it imported or why it failed. It fails only when no node
	// imported the archive.
	ImportImage(ctx context.Context, node string, r io.Reader) (*apiv1.ImportImageResponse, error)
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
			if err := s.opts.Workers.TaskLogs(ctx, t, false, req.GetTail(), send(t)); err != nil && !errors.Is(err, sdk.ErrNotFound) {
				return fmt.Errorf("logs of task %s: %w", t.GetId(), err)
			}
		}
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(tasks))
	for _, t := range tasks {
		go func() {
			err := s.opts.Workers.TaskLogs(ctx, t, true, req.GetTail(), send(t))
			if err != nil && !errors.Is(err, sdk.ErrNotFound) && ctx.Err() == nil {
				err = fmt.Errorf("logs of task %s: %w", t.GetId(), err)
			} else {
				err = nil
			}
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
	resp, err := s.opts.Workers.ImportImage(stream.Context(), first.GetNode(), pr)
	pr.CloseWithError(errors.New("import finished"))
	if err != nil {
		if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
			return err
		}
		return toStatus(fmt.Errorf("image import: %w", err))
	}
	return stream.SendAndClose(resp)
}

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
