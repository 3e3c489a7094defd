package containerd_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/sdk/runtime"
)

// TestHungContainerd freezes the managed containerd (SIGSTOP): every call
// must come back within call_timeout with an error that says containerd
// did not answer, Health must say so too, and after SIGCONT the runtime
// works again without a restart.
func TestHungContainerd(t *testing.T) {
	needDaemon(t)
	const callTimeout = time.Second
	impl := containerd.New()
	t.Cleanup(func() { impl.Close() })
	rt := remote(t, impl)
	ctx := t.Context()
	if err := rt.Configure(ctx, configJSON(t, containerd.Config{
		Managed:            true,
		DataDir:            daemon.Dir,
		Namespace:          daemon.Namespace,
		InsecureRegistries: daemon.Insecure,
		CallTimeout:        callTimeout.String(),
	})); err != nil {
		t.Fatalf("Configure: %v", err)
	}
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
		if err := rt.DestroyTask(context.Background(), spec.TaskID, true); err != nil {
			t.Errorf("DestroyTask: %v", err)
		}
	})
	if st.State != runtime.StateRunning {
		t.Errorf("StartTask after SIGCONT: state %v, want running", st.State)
	}
}
