package runtimetest

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// FakeRuntime is an in-memory runtime.Runtime for testing the sdk's gRPC
// glue and this suite itself. It runs nothing: it is never a default and no
// plugin should ship it.
//
// Its "processes" are simulated from the task's Command followed by Args:
//
//	sleep ...     runs until stopped; exits 143 on StopTask, 137 on a forced DestroyTask
//	exit N        exits at once with code N
//	env           writes the spec's Env as sorted NAME=value lines, exits 0
//	echo ARGS...  writes ARGS joined by spaces as one line, exits 0
//	anything else writes an error to stderr and exits 127
//
// Processes that exit at once do so just after StartTask returns, so
// callers see Running, then Exited. Grace periods and stop signals are
// accepted and ignored. Images are refs: those given to NewFakeRuntime can be
// "pulled" by EnsureImage, and ImportImage reads archives made by
// FakeArchive. FakeOptions returns suite Options that fit it.
type FakeRuntime struct {
	mu       sync.Mutex
	registry map[string]bool
	images   map[string]runtime.Image
	tasks    map[string]*fakeTask
	subs     map[chan runtime.TaskEvent]bool
	nextPID  uint32
	health   error // what Health returns; see SetHealth
}

// fakeHandleVersion is the only handle format the fake writes and reads.
const fakeHandleVersion = 1

// fakeArchiveHeader starts every archive FakeArchive makes.
const fakeArchiveHeader = "warren-fake-archive"

// fakeSubBuffer is how far a subscriber may fall behind before its channel
// is closed.
const fakeSubBuffer = 256

type fakeTask struct {
	spec   runtime.TaskSpec
	status runtime.TaskStatus
	logs   []runtime.LogChunk
	done   chan struct{} // closed when the process exits
}

// NewFakeRuntime returns an empty FakeRuntime whose EnsureImage can pull the
// given refs.
func NewFakeRuntime(registry ...string) *FakeRuntime {
	f := &FakeRuntime{
		registry: map[string]bool{},
		images:   map[string]runtime.Image{},
		tasks:    map[string]*fakeTask{},
		subs:     map[chan runtime.TaskEvent]bool{},
	}
	for _, ref := range registry {
		f.registry[ref] = true
	}
	return f
}

// FakeArchive returns an archive FakeRuntime.ImportImage accepts, holding
// the given refs.
func FakeArchive(refs ...string) io.Reader {
	return strings.NewReader(fakeArchiveHeader + "\n" + strings.Join(refs, "\n") + "\n")
}

// FakeOptions returns suite Options for a FakeRuntime: the image is
// imported from a FakeArchive (so NewFakeRuntime needs no registry), and the
// commands are the ones the fake simulates.
func FakeOptions() Options {
	const image = "example.com/warren/fake:1"
	return Options{
		Image:        image,
		ImageTarball: func(*testing.T) io.Reader { return FakeArchive(image) },
		MissingImage: "example.com/warren/missing:1",
		LongCommand:  []string{"sleep", "3600"},
		ExitCommand:  func(code int) []string { return []string{"exit", strconv.Itoa(code)} },
		EnvCommand:   []string{"env"},
		EchoCommand:  []string{"echo"},
		// No Shell: the fake runs no programs, so the container cases
		// (hostname, user, OOM...) are skipped.
	}
}

// Info reports kind runtime, name "fake".
func (f *FakeRuntime) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Kind:        sdk.KindRuntime,
		Name:        "fake",
		Version:     "0.0.0",
		APIVersions: []uint32{sdk.APIVersion},
		Description: "in-memory fake for testing the sdk; runs nothing",
	}, nil
}

// ConfigSchema reports no attributes.
func (f *FakeRuntime) ConfigSchema(context.Context) (sdk.Schema, error) { return sdk.Schema{}, nil }

// Configure accepts only an empty configuration.
func (f *FakeRuntime) Configure(_ context.Context, configJSON []byte) error {
	return sdk.DecodeConfig(configJSON, &struct{}{})
}

// SetHealth makes Health return err (nil: healthy), to stand for a backend
// that stops answering and comes back.
func (f *FakeRuntime) SetHealth(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.health = err
}

// Health returns what SetHealth set last, nil at first.
func (f *FakeRuntime) Health(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.health
}

// Fingerprint reports this machine's CPUs, a fixed 1 GiB of memory and
// every capability of the contract.
func (f *FakeRuntime) Fingerprint(context.Context) (runtime.Fingerprint, error) {
	return runtime.Fingerprint{
		NanoCPUs:       int64(goruntime.NumCPU()) * 1e9,
		MemoryBytes:    1 << 30,
		OS:             goruntime.GOOS,
		Arch:           goruntime.GOARCH,
		RuntimeName:    "fake",
		RuntimeVersion: "0.0.0",
		Capabilities:   runtime.Capabilities,
	}, nil
}

func fakeImage(ref string) runtime.Image {
	sum := sha256.Sum256([]byte(ref))
	return runtime.Image{Ref: ref, Digest: "sha256:" + hex.EncodeToString(sum[:]), Size: int64(len(ref))}
}

func checkRef(ref string) error {
	if ref == "" || strings.ContainsAny(ref, " \t\n") {
		return fmt.Errorf("image ref %q: %w", ref, sdk.ErrInvalidArgument)
	}
	return nil
}

// EnsureImage returns an imported or pulled image, pulling refs from the
// registry given to NewFakeRuntime.
func (f *FakeRuntime) EnsureImage(_ context.Context, ref string, alwaysPull bool) (runtime.Image, error) {
	if err := checkRef(ref); err != nil {
		return runtime.Image{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if img, ok := f.images[ref]; ok && !alwaysPull {
		return img, nil
	}
	if !f.registry[ref] {
		return runtime.Image{}, fmt.Errorf("image %q: %w", ref, sdk.ErrNotFound)
	}
	f.images[ref] = fakeImage(ref)
	return f.images[ref], nil
}

// ImportImage reads an archive made by FakeArchive.
func (f *FakeRuntime) ImportImage(_ context.Context, r io.Reader) ([]runtime.Image, error) {
	sc := bufio.NewScanner(r)
	if !sc.Scan() || sc.Text() != fakeArchiveHeader {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("import image: %w", err)
		}
		return nil, fmt.Errorf("import image: not a fake archive: %w", sdk.ErrInvalidArgument)
	}
	var imgs []runtime.Image
	for sc.Scan() {
		if err := checkRef(sc.Text()); err != nil {
			return nil, fmt.Errorf("import image: %w", err)
		}
		imgs = append(imgs, fakeImage(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("import image: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, img := range imgs {
		f.images[img.Ref] = img
	}
	return imgs, nil
}

// StartTask starts a simulated process; see FakeRuntime.
func (f *FakeRuntime) StartTask(_ context.Context, spec runtime.TaskSpec) (runtime.TaskHandle, runtime.TaskStatus, error) {
	if err := spec.Validate(); err != nil {
		return runtime.TaskHandle{}, runtime.TaskStatus{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.images[spec.Image]; !ok {
		return runtime.TaskHandle{}, runtime.TaskStatus{}, fmt.Errorf("task %q: image %q: %w", spec.TaskID, spec.Image, sdk.ErrNotFound)
	}
	if _, ok := f.tasks[spec.TaskID]; ok {
		return runtime.TaskHandle{}, runtime.TaskStatus{}, fmt.Errorf("task %q: %w", spec.TaskID, sdk.ErrAlreadyExists)
	}
	f.nextPID++
	task := &fakeTask{
		spec: spec,
		status: runtime.TaskStatus{
			TaskID:    spec.TaskID,
			State:     runtime.StateRunning,
			PID:       1000 + f.nextPID,
			StartedAt: time.Now(),
		},
		done: make(chan struct{}),
	}
	f.tasks[spec.TaskID] = task
	f.emit(runtime.TaskEvent{TaskID: spec.TaskID, Type: runtime.EventStarted, Time: task.status.StartedAt})

	argv := append(slices.Clone(spec.Command), spec.Args...)
	if len(argv) == 0 || argv[0] != "sleep" {
		code, logs := simulate(spec, argv)
		go func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			task.logs = append(task.logs, logs...)
			f.exit(task, code)
		}()
	}
	handle := runtime.TaskHandle{Version: fakeHandleVersion, TaskID: spec.TaskID, Runtime: "fake", State: []byte(spec.TaskID)}
	return handle, task.status, nil
}

// simulate returns what a process that exits at once writes and its code.
func simulate(spec runtime.TaskSpec, argv []string) (int32, []runtime.LogChunk) {
	line := func(stream runtime.LogStream, s string) runtime.LogChunk {
		return runtime.LogChunk{Stream: stream, Data: []byte(s + "\n")}
	}
	if len(argv) == 0 {
		return 127, []runtime.LogChunk{line(runtime.StreamStderr, "fake: no command")}
	}
	switch argv[0] {
	case "exit":
		if len(argv) == 2 {
			if code, err := strconv.ParseInt(argv[1], 10, 32); err == nil {
				return int32(code), nil
			}
		}
		return 2, []runtime.LogChunk{line(runtime.StreamStderr, "fake: usage: exit N")}
	case "env":
		var logs []runtime.LogChunk
		for _, k := range slices.Sorted(maps.Keys(spec.Env)) {
			logs = append(logs, line(runtime.StreamStdout, k+"="+spec.Env[k]))
		}
		return 0, logs
	case "echo":
		return 0, []runtime.LogChunk{line(runtime.StreamStdout, strings.Join(argv[1:], " "))}
	}
	return 127, []runtime.LogChunk{line(runtime.StreamStderr, fmt.Sprintf("fake: %s: command not found", argv[0]))}
}

// exit ends task's process with code if it still runs. f.mu must be held.
func (f *FakeRuntime) exit(task *fakeTask, code int32) {
	if task.status.State != runtime.StateRunning {
		return
	}
	now := time.Now()
	task.status.State = runtime.StateExited
	task.status.PID = 0
	task.status.ExitCode = code
	task.status.FinishedAt = now
	close(task.done)
	f.emit(runtime.TaskEvent{TaskID: task.spec.TaskID, Type: runtime.EventExited, ExitCode: code, Time: now})
}

// emit hands ev to every subscriber, closing the channels of those that
// fell behind. f.mu must be held.
func (f *FakeRuntime) emit(ev runtime.TaskEvent) {
	for ch := range f.subs {
		select {
		case ch <- ev:
		default:
			delete(f.subs, ch)
			close(ch)
		}
	}
}

// StopTask ends a running simulated process with exit code 143.
func (f *FakeRuntime) StopTask(_ context.Context, taskID string, grace time.Duration) (runtime.TaskStatus, error) {
	if grace < 0 {
		return runtime.TaskStatus{}, fmt.Errorf("task %q: negative grace period %v: %w", taskID, grace, sdk.ErrInvalidArgument)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	task, ok := f.tasks[taskID]
	if !ok {
		return runtime.TaskStatus{}, fmt.Errorf("task %q: %w", taskID, sdk.ErrNotFound)
	}
	f.exit(task, 128+15)
	return task.status, nil
}

// DestroyTask forgets a task, killing it first (exit code 137) when forced.
func (f *FakeRuntime) DestroyTask(_ context.Context, taskID string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	task, ok := f.tasks[taskID]
	if !ok {
		return nil
	}
	if task.status.State == runtime.StateRunning {
		if !force {
			return fmt.Errorf("task %q: running, stop it or force: %w", taskID, sdk.ErrFailedPrecondition)
		}
		f.exit(task, 128+9)
	}
	delete(f.tasks, taskID)
	return nil
}

// InspectTask returns a task's status.
func (f *FakeRuntime) InspectTask(_ context.Context, taskID string) (runtime.TaskStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	task, ok := f.tasks[taskID]
	if !ok {
		return runtime.TaskStatus{}, fmt.Errorf("task %q: %w", taskID, sdk.ErrNotFound)
	}
	return task.status, nil
}

// TaskStats returns fixed, non-zero usage for a running task: the fake
// runs no process whose use it could measure.
func (f *FakeRuntime) TaskStats(_ context.Context, taskID string) (runtime.TaskStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	task, ok := f.tasks[taskID]
	if !ok {
		return runtime.TaskStats{}, fmt.Errorf("task %q: %w", taskID, sdk.ErrNotFound)
	}
	if task.status.State != runtime.StateRunning {
		return runtime.TaskStats{}, fmt.Errorf("task %q is %s, not running: %w", taskID, task.status.State, sdk.ErrFailedPrecondition)
	}
	return runtime.TaskStats{CPUUsageNanos: 1, MemoryBytes: 1, MemoryLimitBytes: uint64(max(task.spec.Limits.MemoryBytes, 0))}, nil
}

// RecoverTask checks a handle the fake wrote and returns its task's status.
// The fake's tasks live in memory, so only tasks of this FakeRuntime are
// found.
func (f *FakeRuntime) RecoverTask(ctx context.Context, h runtime.TaskHandle) (runtime.TaskStatus, error) {
	if h.Runtime != "fake" || h.Version != fakeHandleVersion || string(h.State) != h.TaskID {
		return runtime.TaskStatus{}, fmt.Errorf("task %q: handle version %d of runtime %q is not the fake's: %w", h.TaskID, h.Version, h.Runtime, sdk.ErrInvalidArgument)
	}
	return f.InspectTask(ctx, h.TaskID)
}

// ListTasks returns the status of every task not destroyed.
func (f *FakeRuntime) ListTasks(context.Context) ([]runtime.TaskStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]runtime.TaskStatus, 0, len(f.tasks))
	for _, task := range f.tasks {
		out = append(out, task.status)
	}
	return out, nil
}

// TaskEvents subscribes to task events until ctx ends.
func (f *FakeRuntime) TaskEvents(ctx context.Context) (<-chan runtime.TaskEvent, error) {
	ch := make(chan runtime.TaskEvent, fakeSubBuffer)
	f.mu.Lock()
	f.subs[ch] = true
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.subs[ch] {
			delete(f.subs, ch)
			close(ch)
		}
	})
	return ch, nil
}

// TaskLogs delivers a task's simulated output, one chunk per line.
func (f *FakeRuntime) TaskLogs(ctx context.Context, req runtime.LogsRequest, fn func(runtime.LogChunk) error) error {
	f.mu.Lock()
	task, ok := f.tasks[req.TaskID]
	var pos int
	if ok {
		pos = len(task.logs)
		if req.Tail >= 0 && int(req.Tail) < pos {
			pos -= int(req.Tail)
		} else {
			pos = 0
		}
	}
	f.mu.Unlock()
	if !ok {
		return fmt.Errorf("task %q: %w", req.TaskID, sdk.ErrNotFound)
	}
	for {
		f.mu.Lock()
		chunks := slices.Clone(task.logs[pos:])
		pos = len(task.logs)
		exited := task.status.State != runtime.StateRunning
		f.mu.Unlock()
		for _, c := range chunks {
			if err := fn(c); err != nil {
				return err
			}
		}
		if !req.Follow || exited {
			return nil
		}
		select {
		case <-task.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Exec simulates a few commands in a running task: "echo ARGS..." writes
// its arguments, "cat" copies its input, "env" writes the extra
// variables, "exit N" exits with N, "sleep" waits for ctx; anything else
// writes "CMD: not found" to stderr and exits 127.
func (f *FakeRuntime) Exec(ctx context.Context, req runtime.ExecRequest) (int, error) {
	if len(req.Cmd) == 0 {
		return -1, fmt.Errorf("exec in task %q: no command: %w", req.TaskID, sdk.ErrInvalidArgument)
	}
	f.mu.Lock()
	task, ok := f.tasks[req.TaskID]
	running := ok && task.status.State == runtime.StateRunning
	f.mu.Unlock()
	if !ok {
		return -1, fmt.Errorf("task %q: %w", req.TaskID, sdk.ErrNotFound)
	}
	if !running {
		return -1, fmt.Errorf("exec in task %q: the task is not running: %w", req.TaskID, sdk.ErrFailedPrecondition)
	}
	stdout, stderr := req.Stdout, req.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil || req.TTY {
		stderr = stdout
	}
	switch req.Cmd[0] {
	case "echo":
		_, err := fmt.Fprintln(stdout, strings.Join(req.Cmd[1:], " "))
		return 0, err
	case "cat":
		if req.Stdin == nil {
			return 0, nil
		}
		_, err := io.Copy(stdout, req.Stdin)
		return 0, err
	case "env":
		for _, e := range req.Env {
			fmt.Fprintln(stdout, e)
		}
		return 0, nil
	case "false":
		return 1, nil
	case "sleep":
		<-ctx.Done()
		return -1, ctx.Err()
	}
	fmt.Fprintf(stderr, "%s: not found\n", req.Cmd[0])
	return 127, nil
}

// ListImages lists the fake's images, sorted by ref.
func (f *FakeRuntime) ListImages(context.Context) ([]runtime.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Collect(maps.Values(f.images))
	slices.SortFunc(out, func(a, b runtime.Image) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}
