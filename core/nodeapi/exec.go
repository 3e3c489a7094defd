package nodeapi

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Exec runs a command in a running task through the runtime's Exec: the
// first input is start; stdin, its end and resizes follow; the output
// streams back and exit_code ends it.
func (s *Server) Exec(stream apiv1.NodeRuntime_ExecServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return sdk.ToStatus(fmt.Errorf("exec: the first message must be start: %w", sdk.ErrInvalidArgument))
	}
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	if ms := start.GetTimeoutMs(); ms > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	req := runtime.ExecRequest{
		TaskID: start.GetTask(), Cmd: start.GetCmd(), Env: start.GetEnv(), TTY: start.GetTty(),
		Size: termSize(start.GetSize()),
	}
	resize := make(chan runtime.TermSize, 4)
	req.Resize = resize
	var stdinW *io.PipeWriter
	if start.GetStdin() {
		var stdinR *io.PipeReader
		stdinR, stdinW = io.Pipe()
		defer stdinR.Close()
		req.Stdin = stdinR
	}
	go func() {
		for {
			in, err := stream.Recv()
			if err != nil {
				if stdinW != nil {
					stdinW.Close()
				}
				return
			}
			switch m := in.GetMsg().(type) {
			case *apiv1.ExecInput_Stdin:
				if stdinW != nil {
					_, _ = stdinW.Write(m.Stdin)
				}
			case *apiv1.ExecInput_StdinClose:
				if stdinW != nil {
					stdinW.Close()
				}
			case *apiv1.ExecInput_Resize:
				select {
				case resize <- termSize(m.Resize):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var sendMu sync.Mutex
	send := func(out *apiv1.ExecOutput) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(out)
	}
	req.Stdout = outWriter(func(p []byte) error {
		return send(&apiv1.ExecOutput{Msg: &apiv1.ExecOutput_Stdout{Stdout: p}})
	})
	req.Stderr = outWriter(func(p []byte) error {
		return send(&apiv1.ExecOutput{Msg: &apiv1.ExecOutput_Stderr{Stderr: p}})
	})
	code, err := s.Runtime.Exec(ctx, req)
	if err != nil {
		return sdk.ToStatus(err)
	}
	return send(&apiv1.ExecOutput{Msg: &apiv1.ExecOutput_ExitCode{ExitCode: int32(code)}})
}

func termSize(t *apiv1.TermSize) runtime.TermSize {
	return runtime.TermSize{Width: uint16(t.GetWidth()), Height: uint16(t.GetHeight())}
}

// outWriter sends what is written as copies of at most 64 KiB.
type outWriter func([]byte) error

func (w outWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += 64 << 10 {
		end := min(off+64<<10, len(p))
		if err := w(append([]byte(nil), p[off:end]...)); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
