package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"syscall"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Exec runs a command in a running task as a containerd exec process of
// the task's container, with the process spec of the task's own process
// (user, cwd, capabilities) and the command, environment and terminal of
// the request.
func (r *Runtime) Exec(ctx context.Context, req runtime.ExecRequest) (int, error) {
	if len(req.Cmd) == 0 || req.Cmd[0] == "" {
		return -1, fmt.Errorf("exec in task %q: no command: %w", req.TaskID, sdk.ErrInvalidArgument)
	}
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return -1, err
	}
	p, err := r.startExec(ctx, be, req)
	if err != nil {
		return -1, err
	}
	cctx, cancel := be.cleanup(ctx)
	defer cancel()
	defer func() {
		if _, err := p.Delete(cctx, containerd.WithProcessKill); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("deleting an exec process", "task", req.TaskID, "exec", p.ID(), "error", err)
		}
	}()
	return r.waitExec(ctx, cctx, p, req)
}

// startExec creates and starts the exec process.
func (r *Runtime) startExec(ctx context.Context, be *backend, req runtime.ExecRequest) (containerd.Process, error) {
	sctx, cancel := be.call(ctx, 0)
	defer cancel()
	v, err := be.view(sctx, req.TaskID)
	if err != nil {
		return nil, be.noAnswer(sctx, err)
	}
	if v.p == nil || v.p.Status != task.Status_RUNNING {
		return nil, fmt.Errorf("exec in task %q: the task is not running: %w", req.TaskID, sdk.ErrFailedPrecondition)
	}
	c, err := be.client.LoadContainer(sctx, req.TaskID)
	if err != nil {
		return nil, be.noAnswer(sctx, wrapErr(err, "exec in task %q", req.TaskID))
	}
	t, err := c.Task(sctx, nil)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("exec in task %q: the task is not running: %w", req.TaskID, sdk.ErrFailedPrecondition)
		}
		return nil, be.noAnswer(sctx, wrapErr(err, "exec in task %q", req.TaskID))
	}
	spec, err := c.Spec(sctx)
	if err != nil || spec.Process == nil {
		return nil, be.noAnswer(sctx, wrapErr(err, "exec in task %q: reading its spec", req.TaskID))
	}
	pspec := *spec.Process
	pspec.Args = req.Cmd
	pspec.Env = append(append([]string(nil), pspec.Env...), req.Env...)
	pspec.Terminal = req.TTY

	var id [6]byte
	_, _ = rand.Read(id[:])
	execID := "exec-" + hex.EncodeToString(id[:])
	stdout, stderr := req.Stdout, req.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	ready := make(chan containerd.Process, 1)
	var stdin io.Reader
	if req.Stdin != nil {
		// At the end of the input, close the process's stdin: closing the
		// FIFO alone does not end it.
		stdin = &eofReader{r: req.Stdin, onEOF: func() {
			select {
			case p := <-ready:
				ready <- p
				cctx, cancel := be.cleanup(ctx)
				defer cancel()
				_ = p.CloseIO(cctx, containerd.WithStdinCloser)
			case <-ctx.Done():
			}
		}}
	}
	opts := []cio.Opt{cio.WithStreams(stdin, stdout, stderr)}
	if req.TTY {
		opts = []cio.Opt{cio.WithStreams(stdin, stdout, nil), cio.WithTerminal}
	}
	p, err := t.Exec(sctx, execID, &pspec, cio.NewCreator(opts...))
	if err != nil {
		return nil, be.noAnswer(sctx, wrapErr(err, "exec %q in task %q", req.Cmd[0], req.TaskID))
	}
	ready <- p
	return p, nil
}

// waitExec starts p and waits for its exit, its resizes applied, killing
// it when ctx ends.
func (r *Runtime) waitExec(ctx, cctx context.Context, p containerd.Process, req runtime.ExecRequest) (int, error) {
	exited, err := p.Wait(cctx)
	if err != nil {
		return -1, wrapErr(err, "exec in task %q: waiting", req.TaskID)
	}
	if err := p.Start(ctx); err != nil {
		// The command could not start (not found in the task's files).
		p.IO().Cancel()
		return -1, fmt.Errorf("exec %q in task %q: %v: %w", req.Cmd[0], req.TaskID, errdefs.FromGRPC(err), sdk.ErrInvalidArgument)
	}
	if req.TTY && req.Size.Width > 0 && req.Size.Height > 0 {
		_ = p.Resize(ctx, uint32(req.Size.Width), uint32(req.Size.Height))
	}
	for {
		select {
		case sz, ok := <-req.Resize:
			if !ok {
				req.Resize = nil
				continue
			}
			if req.TTY {
				_ = p.Resize(ctx, uint32(sz.Width), uint32(sz.Height))
			}
		case st := <-exited:
			// The output is all delivered once the copies end.
			p.IO().Wait()
			code, _, err := st.Result()
			if err != nil {
				return -1, wrapErr(err, "exec in task %q", req.TaskID)
			}
			return int(code), nil
		case <-ctx.Done():
			_ = p.Kill(cctx, syscall.SIGKILL)
			select {
			case <-exited:
			case <-cctx.Done():
			}
			p.IO().Cancel()
			return -1, fmt.Errorf("exec in task %q: %w", req.TaskID, ctx.Err())
		}
	}
}

// eofReader calls onEOF (in its own goroutine) once r is at its end.
type eofReader struct {
	r     io.Reader
	onEOF func()
	once  sync.Once
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if errors.Is(err, io.EOF) {
		e.once.Do(func() { go e.onEOF() })
	}
	return n, err
}
