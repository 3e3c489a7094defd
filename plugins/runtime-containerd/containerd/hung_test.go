package containerd_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/sdk/runtime"
)

// shortDeadlines returns a runtime on the test daemon with call_timeout
// d, over a real gRPC connection.
func shortDeadlines(t *testing.T, d time.Duration) runtime.Runtime {
	t.Helper()
	needDaemon(t)
	impl := containerd.New()
	t.Cleanup(func() { impl.Close() })
	rt := remote(t, impl)
	if err := rt.Configure(t.Context(), configJSON(t, containerd.Config{
		Managed:            true,
		DataDir:            daemon.Dir,
		Namespace:          daemon.Namespace,
		InsecureRegistries: daemon.Insecure,
		CallTimeout:        d.String(),
	})); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return rt
}

// TestHungContainerd freezes the managed containerd (SIGSTOP): every call
// must come back within call_timeout with an error that says containerd
// did not answer, Health must say so too, and after SIGCONT the runtime
// works again without a restart.
func TestHungContainerd(t *testing.T) {
	const callTimeout = time.Second
	rt := shortDeadlines(t, callTimeout)
	ctx := t.Context()
	importImage(t, rt, testImage)
	tar := archive(t, echoImage, true)
	spec := runtime.TaskSpec{TaskID: "hung-" + time.Now().Format("150405.000000"), Image: testImage.Ref, Command: []string{"sleep", "3600"}}
	spec.TaskID = strings.ReplaceAll(spec.TaskID, ".", "")

	thaw := containerdtest.Freeze(t, daemon.Pid())
	// limit is how long a call may take with the frozen containerd: its
	// deadline and some slack for the machine.
	const limit = callTimeout + 2*time.Second
	for _, tc := range []struct {
		name string
		call func(context.Context) error
		want string // in the error
	}{
		{"Health", rt.Health, "did not answer within"},
		{"ImportImage", func(ctx context.Context) error {
			_, err := rt.ImportImage(ctx, bytes.NewReader(tar))
			return err
		}, "no progress for 1s"},
		{"EnsureImage", func(ctx context.Context) error {
			_, err := rt.EnsureImage(ctx, testImage.Ref, false)
			return err
		}, "did not answer in time"},
		{"EnsureImage pull", func(ctx context.Context) error {
			_, err := rt.EnsureImage(ctx, registry.Host+"/warren/missing:1", true)
			return err
		}, "no progress for 1s"},
		{"StartTask", func(ctx context.Context) error {
			_, _, err := rt.StartTask(ctx, spec)
			return err
		}, "did not answer in time"},
		{"InspectTask", func(ctx context.Context) error {
			_, err := rt.InspectTask(ctx, spec.TaskID)
			return err
		}, "did not answer in time"},
		{"ListTasks", func(ctx context.Context) error {
			_, err := rt.ListTasks(ctx)
			return err
		}, "did not answer in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The test's own bound, far above the limit: without deadlines
			// in the plugin the call would hang until then.
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			err := tc.call(cctx)
			took := time.Since(start)
			switch {
			case err == nil:
				t.Fatalf("%s with a frozen containerd succeeded", tc.name)
			case cctx.Err() != nil:
				t.Fatalf("%s hung until the test's own deadline (%v): %v", tc.name, took, err)
			case took > limit:
				t.Errorf("%s took %v, want at most %v", tc.name, took, limit)
			case !errors.Is(err, context.DeadlineExceeded):
				t.Errorf("%s = %v, want an error wrapping context.DeadlineExceeded", tc.name, err)
			case !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), daemon.Socket()):
				t.Errorf("%s = %q, want it to say %q and name %s", tc.name, err, tc.want, daemon.Socket())
			}
			t.Logf("%s: %v after %v", tc.name, err, took.Round(time.Millisecond))
		})
	}

	thaw()
	deadline := time.Now().Add(30 * time.Second)
	for err := rt.Health(ctx); err != nil; err = rt.Health(ctx) {
		if time.Now().After(deadline) {
			t.Fatalf("Health after SIGCONT: %v", err)
		}
	}
	_, st, err := rt.StartTask(ctx, spec)
	if err != nil {
		t.Fatalf("StartTask after SIGCONT: %v", err)
	}
	t.Cleanup(func() {
		// A containerd just thawed on a loaded machine may still miss the
		// 1s call_timeout once: retry within a deadline.
		deadline := time.Now().Add(30 * time.Second)
		for err := rt.DestroyTask(context.Background(), spec.TaskID, true); err != nil; err = rt.DestroyTask(context.Background(), spec.TaskID, true) {
			if time.Now().After(deadline) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("DestroyTask: %v", err)
				return
			}
		}
	})
	if st.State != runtime.StateRunning {
		t.Errorf("StartTask after SIGCONT: state %v, want running", st.State)
	}
}

// pacedReader hands out its data in chunks, one per tick: a slow source
// that keeps moving.
type pacedReader struct {
	data  []byte
	chunk int
	tick  <-chan time.Time
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(p.data) == 0 {
		return 0, io.EOF
	}
	<-p.tick
	n := copy(b[:min(len(b), p.chunk)], p.data)
	p.data = p.data[n:]
	return n, nil
}

// TestImportBoundedByProgress: an import that keeps moving is not cut off
// by call_timeout, however long it takes as a whole.
func TestImportBoundedByProgress(t *testing.T) {
	const callTimeout = 500 * time.Millisecond
	rt := shortDeadlines(t, callTimeout)
	tar := archive(t, echoImage, false)
	tick := time.NewTicker(callTimeout / 5)
	defer tick.Stop()
	// At least 10 ticks: twice call_timeout in all.
	src := &pacedReader{data: tar, chunk: max(len(tar)/10, 1), tick: tick.C}
	start := time.Now()
	imgs, err := rt.ImportImage(t.Context(), src)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("a slow import that keeps moving (%v in all, call_timeout %v): %v", took, callTimeout, err)
	}
	if took < 2*callTimeout {
		t.Fatalf("the import took %v, less than twice call_timeout: the test proves nothing", took)
	}
	if len(imgs) != 1 || imgs[0].Ref != echoImage.Ref {
		t.Errorf("imported %v, want %s", imgs, echoImage.Ref)
	}
}
