package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

const (
	// logChunk is the most TaskLogs reads into one chunk.
	logChunk = 32 << 10
	// logPoll paces watching a followed log for growth.
	logPoll = 50 * time.Millisecond
	// exitCheck paces asking whether a followed task exited when no event
	// says so (the event stream is down, or the exit came before the
	// subscription).
	exitCheck = time.Second
)

// TaskLogs delivers the task's log file: the last req.Tail lines, then,
// with req.Follow, what the task writes until it has exited. A file the
// logger wrote (logger.go) gives each chunk its stream and honours
// req.Since and req.Timestamps; a plain one (from before) is all
// StreamStdout, without times.
func (r *Runtime) TaskLogs(ctx context.Context, req runtime.LogsRequest, fn func(runtime.LogChunk) error) error {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return err
	}
	vctx, vcancel := be.call(ctx, 0)
	v, err := be.view(vctx, req.TaskID)
	vcancel()
	if err != nil {
		return be.noAnswer(vctx, err)
	}
	path := v.c.Labels[labelLogPath]
	deliver := func(data []byte) error { return fn(runtime.LogChunk{Stream: runtime.StreamStdout, Data: data}) }
	if v.c.Labels[labelLogFormat] == logFormatCRI {
		d := &entryReader{since: req.Since, timestamps: req.Timestamps}
		deliver = func(data []byte) error {
			for _, p := range d.decode(data) {
				stream := runtime.StreamStdout
				if p.stream == "stderr" {
					stream = runtime.StreamStderr
				}
				if err := fn(runtime.LogChunk{Stream: stream, Data: p.data}); err != nil {
					return err
				}
			}
			return nil
		}
	}

	// Subscribe before looking at the task, so that an exit in between is
	// not missed. Without a live event stream, poll instead.
	var exits <-chan runtime.TaskEvent
	if req.Follow && r.hub.isLive() {
		if s, err := r.hub.subscribe(ctx, 0); err == nil {
			defer r.hub.unsubscribe(s)
			exits = s.ch
		}
	}

	// The shim creates the file when it creates the task; it is missing
	// only when the task was destroyed meanwhile.
	f, err := os.Open(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		f = nil
	case err != nil:
		return fmt.Errorf("task %q: log: %v: %w", req.TaskID, err, sdk.ErrInternal)
	default:
		defer f.Close()
		if err := seekTail(f, req.Tail); err != nil {
			return fmt.Errorf("task %q: log: %v: %w", req.TaskID, err, sdk.ErrInternal)
		}
	}

	buf := make([]byte, logChunk)
	finished := !req.Follow // deliver what is there, then return
	checkExit := true       // ask at the first end of the file
	lastCheck := time.Now()
	tick := time.NewTicker(logPoll)
	defer tick.Stop()
	for {
		if f != nil {
			n, err := f.Read(buf)
			if n > 0 {
				chunk := make([]byte, n) // fn may keep it
				copy(chunk, buf[:n])
				if err := deliver(chunk); err != nil {
					return err
				}
				continue
			}
			if err != nil && err != io.EOF {
				return fmt.Errorf("task %q: log: %v: %w", req.TaskID, err, sdk.ErrInternal)
			}
		}
		// At the end of what was written.
		if finished {
			return nil
		}
		if checkExit || time.Since(lastCheck) >= exitCheck {
			checkExit, lastCheck = false, time.Now()
			done, err := r.exitedAndReaped(ctx, be, req.TaskID)
			if err != nil {
				return err
			}
			if done {
				// The process has exited and its shim flushed the last
				// output: read to the end once more.
				finished = true
				continue
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-exits:
			if !ok {
				exits = nil // stream broke: rely on periodic checks
			} else if ev.TaskID == req.TaskID && ev.Type == runtime.EventExited {
				checkExit = true
			}
		case <-tick.C:
		}
	}
}

// exitedAndReaped reports whether the task's process has exited and been
// reaped (so all its output is in the log), reaping it if needed. A task
// destroyed meanwhile counts as done.
func (r *Runtime) exitedAndReaped(ctx context.Context, be *backend, id string) (bool, error) {
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	v, err := r.inspect(ctx, be, id)
	if errors.Is(err, sdk.ErrNotFound) {
		return true, nil
	}
	if err != nil {
		return false, be.noAnswer(ctx, err)
	}
	return v.p == nil, nil
}

// seekTail positions f at the start of its last n lines: TailAll (or any
// negative n) for the whole file, 0 for its end. A newline ending the file
// ends the last line rather than starting an empty one.
func seekTail(f *os.File, n int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	off, err := tailOffset(f, fi.Size(), n)
	if err != nil {
		return err
	}
	_, err = f.Seek(off, io.SeekStart)
	return err
}

// tailOffset returns the offset of the last n lines of the size bytes r
// holds, reading backwards in blocks.
func tailOffset(r io.ReaderAt, size, n int64) (int64, error) {
	switch {
	case n < 0:
		return 0, nil
	case n == 0:
		return size, nil
	}
	const block = 32 << 10
	buf := make([]byte, block)
	var lines int64
	for end := size; end > 0; {
		start := max(end-block, 0)
		b := buf[:end-start]
		if _, err := r.ReadAt(b, start); err != nil && err != io.EOF {
			return 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' || start+int64(i) == size-1 {
				continue
			}
			if lines++; lines == n {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}
