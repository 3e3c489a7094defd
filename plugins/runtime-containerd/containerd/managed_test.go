package containerd_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

func configJSON(t *testing.T, c containerd.Config) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConfigureRefuses(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(containerd.DataDirEnv, "")
	for _, tc := range []struct {
		name string
		json string
	}{
		{"unknown attribute", `{"sockett": "/run/containerd/containerd.sock"}`},
		{"socket and managed", `{"socket": "/run/containerd/containerd.sock", "managed": true, "data_dir": "` + dir + `"}`},
		{"bad namespace", `{"namespace": "no/slashes", "data_dir": "` + dir + `"}`},
		{"relative data dir", `{"data_dir": "relative/dir"}`},
		{"relative log dir", `{"socket": "/x.sock", "log_dir": "logs"}`},
		{"managed without a data dir", `{"managed": true}`},
		{"socket without a log dir", `{"socket": "/x.sock"}`},
		{"containerd path with a socket", `{"socket": "/x.sock", "log_dir": "` + dir + `", "containerd_path": "/usr/bin/containerd"}`},
		{"containerd path not executable", `{"data_dir": "` + dir + `", "containerd_path": "` + notExec + `"}`},
		{"registry with a scheme", `{"data_dir": "` + dir + `", "insecure_registries": ["http://127.0.0.1:5000"]}`},
		{"call timeout not a duration", `{"data_dir": "` + dir + `", "call_timeout": "soon"}`},
		{"call timeout zero", `{"data_dir": "` + dir + `", "call_timeout": "0s"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := containerd.New()
			t.Cleanup(func() { rt.Close() })
			err := remote(t, rt).Configure(t.Context(), []byte(tc.json))
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("Configure(%s) = %v, want ErrInvalidArgument", tc.json, err)
			}
		})
	}
}

func TestNotConfigured(t *testing.T) {
	rt := remote(t, containerd.New())
	ctx := t.Context()
	_, err := rt.Fingerprint(ctx)
	if !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Fingerprint before Configure = %v, want ErrFailedPrecondition", err)
	}
	_, _, err = rt.StartTask(ctx, runtime.TaskSpec{TaskID: "a", Image: "busybox"})
	if !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("StartTask before Configure = %v, want ErrFailedPrecondition", err)
	}
}

// TestExternalSocket uses the test daemon as a containerd the plugin does
// not manage.
func TestExternalSocket(t *testing.T) {
	needDaemon(t)
	impl := containerd.New()
	t.Cleanup(func() { impl.Close() })
	rt := remote(t, impl)
	err := rt.Configure(t.Context(), configJSON(t, containerd.Config{
		Socket: daemon.Socket(), Namespace: daemon.Namespace, LogDir: t.TempDir(),
	}))
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	if err := rt.Configure(t.Context(), configJSON(t, containerd.Config{Socket: daemon.Socket(), LogDir: t.TempDir()})); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("a second Configure = %v, want ErrFailedPrecondition", err)
	}
	fp, err := rt.Fingerprint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fp.RuntimeName != "containerd" || fp.RuntimeVersion == "" || fp.Attributes["containerd.managed"] != "false" ||
		fp.Attributes["containerd.namespace"] != daemon.Namespace {
		t.Errorf("Fingerprint = %+v", fp)
	}
	importImage(t, rt, testImage)
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"echo", "external"}}
	start(t, rt, spec)
	if out := lines(output(t, rt, spec.TaskID)); !slices.Equal(out, []string{"external"}) {
		t.Errorf("output %q, want [external]", out)
	}

	bad := containerd.New()
	t.Cleanup(func() { bad.Close() })
	err = bad.Configure(t.Context(), configJSON(t, containerd.Config{Socket: filepath.Join(t.TempDir(), "none.sock"), LogDir: t.TempDir()}))
	if !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("Configure on a socket nobody serves = %v, want ErrFailedPrecondition", err)
	}
}

// TestContainerdRestart kills a managed containerd under a runtime: the
// event channel closes, the runtime starts containerd again, the task
// survives, and new subscriptions see its exit.
func TestContainerdRestart(t *testing.T) {
	needDaemon(t)
	d, err := containerdtest.NewDaemon()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Stop(); err != nil {
			t.Errorf("stopping the second containerd: %v", err)
		}
	})
	impl := containerd.New()
	if err := impl.Configure(t.Context(), d.Config()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { impl.Close() })
	rt := remote(t, impl)
	importImage(t, rt, testImage)
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"sleep", "3600"}}
	_, st := start(t, rt, spec)

	ctx := testCtx(t)
	events, err := rt.TaskEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldPid := d.Pid()
	if err := syscall.Kill(oldPid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 containerd %d: %v", oldPid, err)
	}
	closed := time.After(time.Minute)
	for open := true; open; {
		select {
		case _, open = <-events:
		case <-closed:
			t.Fatal("the events channel stayed open after containerd died")
		}
	}

	// The runtime restarts containerd; subscribe again once it is back.
	deadline := time.Now().Add(time.Minute)
	for {
		// TaskEvents waits a while for the event stream itself.
		events, err = rt.TaskEvents(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TaskEvents after containerd's restart: %v", err)
		}
	}
	if pid := d.Pid(); pid == oldPid || pid == 0 {
		t.Errorf("containerd pid %d after the restart, want a new one (old %d)", pid, oldPid)
	}
	got, err := rt.InspectTask(ctx, spec.TaskID)
	if err != nil || got.State != runtime.StateRunning || got.PID != st.PID {
		t.Fatalf("InspectTask after containerd's restart = %+v, %v; want running with pid %d", got, err, st.PID)
	}
	if _, err := rt.StopTask(ctx, spec.TaskID, time.Second); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events, spec.TaskID); ev.Type != runtime.EventExited || ev.ExitCode != 137 {
		t.Errorf("event after the stop = %+v, want exited with 137", ev)
	}
}

// A start in flight when Close begins finishes before Close goes on (with
// stop_on_exit, before the tasks to destroy are listed), and a start asked
// for meanwhile is refused.
func TestCloseWaitsForStartsInFlight(t *testing.T) {
	rt := newRuntime(t)
	end, err := containerd.HoldStart(rt)
	if err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- rt.Close() }()
	deadline := time.Now().Add(10 * time.Second)
	for !containerd.Closing(rt) {
		if time.Now().After(deadline) {
			end()
			t.Fatal("Close did not begin")
		}
		time.Sleep(time.Millisecond) // polling for Close's first step
	}
	if _, _, err := rt.StartTask(context.Background(), runtime.TaskSpec{TaskID: "late", Image: "busybox"}); !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("StartTask during Close: %v, want a shutting-down refusal", err)
	}
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a start was in flight", err)
	default:
	}
	end()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not return once the start ended")
	}
}
