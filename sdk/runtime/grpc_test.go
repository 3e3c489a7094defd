package runtime_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"google.golang.org/grpc"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/runtimetest"
)

// wire serves impl over a real go-plugin connection and returns the client
// and the connection.
func wire(t *testing.T, impl runtime.Runtime) (runtime.Runtime, *grpc.ClientConn) {
	t.Helper()
	conn := sdk.TestConn(t, impl, runtime.Register(impl))
	// Closed before TestConn's own cleanup stops the server, so that the two
	// do not stop it concurrently (see runtimetest.Run).
	t.Cleanup(func() { conn.Close() })
	return runtime.NewClient(conn), conn
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// featureRuntime is a FakeRuntime with hooks for what the fake lacks.
type featureRuntime struct {
	*runtimetest.FakeRuntime
	importFn func(ctx context.Context, r io.Reader) ([]runtime.Image, error)
	logsFn   func(ctx context.Context, req runtime.LogsRequest, fn func(runtime.LogChunk) error) error
}

func (f *featureRuntime) ImportImage(ctx context.Context, r io.Reader) ([]runtime.Image, error) {
	if f.importFn != nil {
		return f.importFn(ctx, r)
	}
	return f.FakeRuntime.ImportImage(ctx, r)
}

func (f *featureRuntime) TaskLogs(ctx context.Context, req runtime.LogsRequest, fn func(runtime.LogChunk) error) error {
	if f.logsFn != nil {
		return f.logsFn(ctx, req, fn)
	}
	return f.FakeRuntime.TaskLogs(ctx, req, fn)
}

func TestErrorsCrossTheWire(t *testing.T) {
	const image = "example.com/img:1"
	unsupported := &featureRuntime{
		FakeRuntime: runtimetest.NewFakeRuntime(image),
		importFn: func(context.Context, io.Reader) ([]runtime.Image, error) {
			return nil, fmt.Errorf("import image: %w", sdk.ErrUnsupported)
		},
	}
	rt, _ := wire(t, unsupported)
	ctx := testCtx(t)
	if _, err := rt.EnsureImage(ctx, image, false); err != nil {
		t.Fatal(err)
	}
	spec := runtime.TaskSpec{TaskID: "dup", Image: image, Command: []string{"sleep", "1"}}
	if _, _, err := rt.StartTask(ctx, spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rt.DestroyTask(context.Background(), "dup", true) })

	for _, tc := range []struct {
		name    string
		call    func() error
		want    error
		message string
	}{
		{"not found", func() error { _, err := rt.InspectTask(ctx, "nope"); return err }, sdk.ErrNotFound, `task "nope": not found`},
		{"image not found", func() error { _, err := rt.EnsureImage(ctx, "example.com/none:1", false); return err }, sdk.ErrNotFound, `image "example.com/none:1": not found`},
		{"already exists", func() error { _, _, err := rt.StartTask(ctx, spec); return err }, sdk.ErrAlreadyExists, `task "dup": already exists`},
		{"unsupported", func() error { _, err := rt.ImportImage(ctx, bytes.NewReader(nil)); return err }, sdk.ErrUnsupported, "import image: unsupported"},
		{"failed precondition", func() error { return rt.DestroyTask(ctx, "dup", false) }, sdk.ErrFailedPrecondition, ""},
		{"invalid argument", func() error { _, err := rt.StopTask(ctx, "dup", -time.Second); return err }, sdk.ErrInvalidArgument, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want an error wrapping %v", err, tc.want)
			}
			if tc.message != "" && err.Error() != tc.message {
				t.Errorf("message %q, want %q", err.Error(), tc.message)
			}
		})
	}
}

func TestImportImageStreamsInChunks(t *testing.T) {
	archive := make([]byte, 5<<20/2)
	_, _ = rand.Read(archive)
	var got []byte
	impl := &featureRuntime{
		FakeRuntime: runtimetest.NewFakeRuntime(),
		importFn: func(_ context.Context, r io.Reader) ([]runtime.Image, error) {
			var err error
			got, err = io.ReadAll(r)
			return []runtime.Image{{Ref: "imported", Digest: "sha256:x"}}, err
		},
	}
	rt, _ := wire(t, impl)
	// HalfReader returns short reads: the client must still fill its chunks.
	imgs, err := rt.ImportImage(testCtx(t), iotest.HalfReader(bytes.NewReader(archive)))
	if err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	if !bytes.Equal(got, archive) {
		t.Errorf("server read %d bytes, want the %d sent", len(got), len(archive))
	}
	if len(imgs) != 1 || imgs[0].Ref != "imported" {
		t.Errorf("ImportImage = %+v", imgs)
	}
}

func TestImportImageErrors(t *testing.T) {
	rt, _ := wire(t, runtimetest.NewFakeRuntime())
	ctx := testCtx(t)

	// The server refuses after the first line while the client still sends.
	garbage := append([]byte("not an archive\n"), make([]byte, 3<<20)...)
	_, err := rt.ImportImage(ctx, bytes.NewReader(garbage))
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("ImportImage of garbage = %v, want ErrInvalidArgument", err)
	}

	// A failing reader fails the call with its own error.
	errRead := errors.New("disk on fire")
	r := io.MultiReader(runtimetest.FakeArchive("a:1"), iotest.ErrReader(errRead))
	_, err = rt.ImportImage(ctx, r)
	if !errors.Is(err, errRead) {
		t.Errorf("ImportImage with a failing reader = %v, want it to wrap %v", err, errRead)
	}

	imgs, err := rt.ImportImage(ctx, runtimetest.FakeArchive("a:1", "b:2"))
	if err != nil || len(imgs) != 2 || imgs[1].Ref != "b:2" {
		t.Errorf("ImportImage after failures = %+v, %v", imgs, err)
	}
}

func TestTaskLogsSplitsLargeChunks(t *testing.T) {
	big := make([]byte, 5<<20/2)
	_, _ = rand.Read(big)
	impl := &featureRuntime{
		FakeRuntime: runtimetest.NewFakeRuntime(),
		logsFn: func(_ context.Context, req runtime.LogsRequest, fn func(runtime.LogChunk) error) error {
			if err := fn(runtime.LogChunk{Stream: runtime.StreamStderr, Data: big}); err != nil {
				return err
			}
			return fn(runtime.LogChunk{Stream: runtime.StreamStdout, Data: []byte(req.TaskID)})
		},
	}
	rt, _ := wire(t, impl)
	var stderr, stdout []byte
	var chunks int
	err := rt.TaskLogs(testCtx(t), runtime.LogsRequest{TaskID: "t1", Tail: runtime.TailAll}, func(c runtime.LogChunk) error {
		chunks++
		if len(c.Data) > 1<<20 {
			t.Errorf("chunk of %d bytes, more than 1 MiB", len(c.Data))
		}
		switch c.Stream {
		case runtime.StreamStderr:
			stderr = append(stderr, c.Data...)
		case runtime.StreamStdout:
			stdout = append(stdout, c.Data...)
		default:
			t.Errorf("chunk from stream %v", c.Stream)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("TaskLogs: %v", err)
	}
	if !bytes.Equal(stderr, big) || string(stdout) != "t1" {
		t.Errorf("got %d stderr bytes and stdout %q, want %d and %q", len(stderr), stdout, len(big), "t1")
	}
	if chunks != 4 {
		t.Errorf("got %d chunks, want 3 for stderr and 1 for stdout", chunks)
	}
}

func TestTaskEventsCloseWhenPluginGoesAway(t *testing.T) {
	rt, conn := wire(t, runtimetest.NewFakeRuntime())
	ctx := testCtx(t)
	events, err := rt.TaskEvents(ctx)
	if err != nil {
		t.Fatalf("TaskEvents: %v", err)
	}
	conn.Close()
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-ctx.Done():
			t.Fatal("events channel stayed open after the connection closed")
		}
	}
}

func TestTaskEventsSubscribeFailure(t *testing.T) {
	rt, conn := wire(t, runtimetest.NewFakeRuntime())
	conn.Close()
	if _, err := rt.TaskEvents(testCtx(t)); err == nil {
		t.Fatal("TaskEvents on a closed connection succeeded")
	}
}

// TestPanicInAStreamIsThatCallsError: a handler of a streaming call that
// panics ends that call with an internal error; the plugin goes on serving.
func TestPanicInAStreamIsThatCallsError(t *testing.T) {
	impl := &featureRuntime{FakeRuntime: runtimetest.NewFakeRuntime()}
	impl.logsFn = func(context.Context, runtime.LogsRequest, func(runtime.LogChunk) error) error {
		panic("logs exploded")
	}
	rt, _ := wire(t, impl)
	err := rt.TaskLogs(testCtx(t), runtime.LogsRequest{TaskID: "t1"}, func(runtime.LogChunk) error { return nil })
	if !errors.Is(err, sdk.ErrInternal) || !strings.Contains(err.Error(), "panic in /warren.sdk.runtime.v1.Runtime/TaskLogs: logs exploded") {
		t.Fatalf("TaskLogs = %v, want an internal error naming the panic", err)
	}
	if _, err := rt.Fingerprint(testCtx(t)); err != nil {
		t.Fatalf("after the panic, Fingerprint = %v; want the plugin still serving", err)
	}
}

// TestHealthCrossesTheWire: Health's answer, healthy or not, keeps its
// text and its sentinel across the wire, and a plugin built before Health
// existed answers ErrUnsupported.
func TestHealthCrossesTheWire(t *testing.T) {
	fake := runtimetest.NewFakeRuntime()
	rt, conn := wire(t, fake)
	ctx := testCtx(t)
	if err := rt.Health(ctx); err != nil {
		t.Fatalf("Health of a healthy runtime: %v", err)
	}
	frozen := fmt.Errorf("backend at /run/x.sock did not answer within 2s: %w", context.DeadlineExceeded)
	fake.SetHealth(frozen)
	err := rt.Health(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || err.Error() != frozen.Error() {
		t.Errorf("Health = %v, want %q wrapping context.DeadlineExceeded", err, frozen)
	}
	// No Health method on the server side: Unimplemented.
	if err := conn.Invoke(ctx, "/warren.sdk.runtime.v1.Runtime/NoSuchMethod", nil, nil); err == nil {
		t.Fatal("calling a method the plugin lacks succeeded")
	} else if err := sdk.FromStatus(err); !errors.Is(err, sdk.ErrUnsupported) {
		t.Errorf("a method the plugin lacks = %v, want ErrUnsupported", err)
	}
}
