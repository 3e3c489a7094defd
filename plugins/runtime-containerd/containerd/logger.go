package containerd

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/containerd/containerd/runtime/v2/logging"
)

// A task's output goes through a logger: this very binary, which the
// task's shim starts with LoggerFlag and the log file's path, and which
// writes each line to the file with the time it read it, in the CRI log
// format:
//
//	2026-12-02T20:00:00.123456789Z stdout F a whole line
//	2026-12-02T20:00:00.2Z stderr P part of a longer line
//
// F ends a line of the task's output, P is a piece of one (a line longer
// than the logger's buffer, or output that ends without a newline). The
// shim owns the logger, so a restart of the plugin loses no output, and it
// closes the pipes and waits for the logger before it reports a task
// deleted, so a reaped task's output is all in the file. Tasks started
// before loggers existed have a plain file the shim wrote (no
// labelLogFormat): it is read as it is, without times.
const (
	// LoggerFlag, as the first argument, runs the binary as a logger.
	LoggerFlag = "--warren-task-log"
	// logFormatCRI is labelLogFormat's value for the format above.
	logFormatCRI = "cri"
	// loggerLine is the longest piece of a line one entry holds.
	loggerLine = 16 << 10
	// loggerDrain is how long a logger told to stop waits for the end of
	// its pipes (a process the task left behind may still hold them).
	loggerDrain = 2 * time.Second
)

// RunLogger, in a process started as a task's logger (LoggerFlag, then
// the log file's path), writes the task's output to the file and exits.
// Elsewhere it returns at once: call it first in main.
func RunLogger() {
	if len(os.Args) < 3 || os.Args[1] != LoggerFlag {
		return
	}
	path := os.Args[2]
	logging.Run(func(ctx context.Context, cfg *logging.Config, ready func() error) error {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("task log: %w", err)
		}
		defer f.Close()
		w := &entryWriter{w: f, now: time.Now}
		done := make(chan struct{})
		var wg sync.WaitGroup
		for _, s := range []struct {
			name string
			r    io.Reader
		}{{"stdout", cfg.Stdout}, {"stderr", cfg.Stderr}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				w.copy(s.name, s.r)
			}()
		}
		go func() { wg.Wait(); close(done) }()
		if err := ready(); err != nil {
			return err
		}
		select {
		case <-done:
		case <-ctx.Done():
			select {
			case <-done:
			case <-time.After(loggerDrain):
			}
		}
		return w.err
	})
}

// entryWriter writes log entries of several streams to one file.
type entryWriter struct {
	mu  sync.Mutex
	w   io.Writer
	now func() time.Time
	err error
}

// copy writes what r gives as entries of stream until r ends.
func (e *entryWriter) copy(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, loggerLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			tag := "P"
			if line[len(line)-1] == '\n' {
				tag, line = "F", line[:len(line)-1]
			}
			e.write(stream, tag, line)
		}
		if err != nil && err != bufio.ErrBufferFull {
			return
		}
	}
}

func (e *entryWriter) write(stream, tag string, content []byte) {
	var b bytes.Buffer
	b.Grow(len(content) + 48)
	b.WriteString(e.now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(content)
	b.WriteByte('\n')
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, err := e.w.Write(b.Bytes()); err != nil && e.err == nil {
		e.err = fmt.Errorf("task log: %w", err)
	}
}

// entryReader turns log entries back into the task's output, leaving out
// those before since and putting each line's time in front of it with
// timestamps.
type entryReader struct {
	since      time.Time
	timestamps bool
	// pending is the start of an entry not yet complete in the file.
	pending []byte
	// midLine says, per stream, that its last entry was a P.
	midLine map[string]bool
}

// decode takes the next bytes of the file and returns the output of the
// complete entries among them, one chunk per run of one stream.
func (d *entryReader) decode(data []byte) []logPiece {
	d.pending = append(d.pending, data...)
	end := bytes.LastIndexByte(d.pending, '\n')
	if end < 0 {
		return nil
	}
	entries := d.pending[:end+1]
	var out []logPiece
	for len(entries) > 0 {
		i := bytes.IndexByte(entries, '\n')
		entry := entries[:i]
		entries = entries[i+1:]
		ts, stream, tag, content, ok := parseEntry(entry)
		if !ok {
			continue // not an entry: a torn write; skip it
		}
		start := !d.midLine[stream]
		if d.midLine == nil {
			d.midLine = map[string]bool{}
		}
		d.midLine[stream] = tag == "P"
		if !d.since.IsZero() && ts.Before(d.since) {
			continue
		}
		if len(out) == 0 || out[len(out)-1].stream != stream {
			out = append(out, logPiece{stream: stream})
		}
		p := &out[len(out)-1]
		if d.timestamps && start {
			p.data = append(p.data, ts.UTC().Format(time.RFC3339Nano)...)
			p.data = append(p.data, ' ')
		}
		p.data = append(p.data, content...)
		if tag == "F" {
			p.data = append(p.data, '\n')
		}
	}
	d.pending = append(d.pending[:0], d.pending[end+1:]...)
	return out
}

// logPiece is output of one stream.
type logPiece struct {
	stream string
	data   []byte
}

// parseEntry splits "TIME STREAM TAG CONTENT".
func parseEntry(e []byte) (ts time.Time, stream, tag string, content []byte, ok bool) {
	f := bytes.SplitN(e, []byte{' '}, 4)
	if len(f) < 3 {
		return time.Time{}, "", "", nil, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return time.Time{}, "", "", nil, false
	}
	stream, tag = string(f[1]), string(f[2])
	if (stream != "stdout" && stream != "stderr") || (tag != "F" && tag != "P") {
		return time.Time{}, "", "", nil, false
	}
	if len(f) == 4 {
		content = f[3]
	}
	return ts, stream, tag, content, true
}
