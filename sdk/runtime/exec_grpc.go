package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/warrenorch/warren/sdk"
	runtimev1 "github.com/warrenorch/warren/sdk/proto/runtime/v1"
)

func (s *server) Exec(stream runtimev1.Runtime_ExecServer) error {
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
	resize := make(chan TermSize, 4)
	var stdinR *io.PipeReader
	var stdinW *io.PipeWriter
	if start.GetStdin() {
		stdinR, stdinW = io.Pipe()
		defer stdinR.Close()
	}
	// Input after start: stdin data, its end, and resizes.
	go func() {
		for {
			in, err := stream.Recv()
			if err != nil {
				if stdinW != nil {
					stdinW.CloseWithError(io.EOF)
				}
				return
			}
			switch m := in.GetMsg().(type) {
			case *runtimev1.ExecInput_Stdin:
				if stdinW != nil {
					if _, err := stdinW.Write(m.Stdin); err != nil {
						continue
					}
				}
			case *runtimev1.ExecInput_StdinClose:
				if stdinW != nil {
					stdinW.Close()
				}
			case *runtimev1.ExecInput_Resize:
				select {
				case resize <- termFromPB(m.Resize):
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	var sendMu sync.Mutex
	out := func(stderr bool) io.Writer {
		return writerFunc(func(p []byte) (int, error) {
			sendMu.Lock()
			defer sendMu.Unlock()
			for data := p; len(data) > 0; {
				n := min(len(data), chunkBytes)
				msg := &runtimev1.ExecOutput{Msg: &runtimev1.ExecOutput_Stdout{Stdout: data[:n]}}
				if stderr {
					msg.Msg = &runtimev1.ExecOutput_Stderr{Stderr: data[:n]}
				}
				if err := stream.Send(msg); err != nil {
					return len(p) - len(data), err
				}
				data = data[n:]
			}
			return len(p), nil
		})
	}
	req := ExecRequest{
		TaskID: start.GetTaskId(), Cmd: start.GetCmd(), Env: start.GetEnv(), TTY: start.GetTty(),
		Size: termFromPB(start.GetSize()), Resize: resize, Stdout: out(false), Stderr: out(true),
	}
	if stdinR != nil {
		req.Stdin = stdinR
	}
	code, err := s.impl.Exec(ctx, req)
	if err != nil {
		return sdk.ToStatus(err)
	}
	sendMu.Lock()
	defer sendMu.Unlock()
	return stream.Send(&runtimev1.ExecOutput{Msg: &runtimev1.ExecOutput_ExitCode{ExitCode: int32(code)}})
}

func (c *client) Exec(ctx context.Context, req ExecRequest) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.Exec(ctx)
	if err != nil {
		return -1, sdk.FromStatus(err)
	}
	start := &runtimev1.ExecStart{TaskId: req.TaskID, Cmd: req.Cmd, Env: req.Env, Tty: req.TTY, Stdin: req.Stdin != nil, Size: termToPB(req.Size)}
	var sendMu sync.Mutex
	send := func(in *runtimev1.ExecInput) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(in)
	}
	if err := send(&runtimev1.ExecInput{Msg: &runtimev1.ExecInput_Start{Start: start}}); err != nil {
		return -1, execRecvErr(stream)
	}
	if req.Stdin != nil {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := req.Stdin.Read(buf)
				if n > 0 {
					if send(&runtimev1.ExecInput{Msg: &runtimev1.ExecInput_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
						return
					}
				}
				if err != nil {
					_ = send(&runtimev1.ExecInput{Msg: &runtimev1.ExecInput_StdinClose{StdinClose: true}})
					return
				}
			}
		}()
	}
	if req.Resize != nil {
		go func() {
			for {
				select {
				case <-ctx.Done():
					return
				case sz, ok := <-req.Resize:
					if !ok {
						return
					}
					if send(&runtimev1.ExecInput{Msg: &runtimev1.ExecInput_Resize{Resize: termToPB(sz)}}) != nil {
						return
					}
				}
			}
		}()
	}
	for {
		out, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return -1, fmt.Errorf("exec: the plugin ended the stream without an exit code: %w", sdk.ErrInternal)
			}
			return -1, sdk.FromStatus(err)
		}
		switch m := out.GetMsg().(type) {
		case *runtimev1.ExecOutput_Stdout:
			if req.Stdout != nil {
				if _, err := req.Stdout.Write(m.Stdout); err != nil {
					return -1, err
				}
			}
		case *runtimev1.ExecOutput_Stderr:
			if req.Stderr != nil {
				if _, err := req.Stderr.Write(m.Stderr); err != nil {
					return -1, err
				}
			}
		case *runtimev1.ExecOutput_ExitCode:
			return int(m.ExitCode), nil
		}
	}
}

// execRecvErr is the plugin's reason for refusing a stream whose send failed.
func execRecvErr(stream runtimev1.Runtime_ExecClient) error {
	_, err := stream.Recv()
	return sdk.FromStatus(err)
}

func termFromPB(t *runtimev1.TermSize) TermSize {
	return TermSize{Width: uint16(t.GetWidth()), Height: uint16(t.GetHeight())}
}

func termToPB(t TermSize) *runtimev1.TermSize {
	return &runtimev1.TermSize{Width: uint32(t.Width), Height: uint32(t.Height)}
}

// writerFunc is a function as an io.Writer.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
