package main_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/sdk/plugintest"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/runtimetest"
)

// The plugin binary is built once per test run; the plugin processes share
// one managed containerd, which the first of them starts. TestMain removes
// both, and every task, when the tests end.
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error

	daemon     *containerdtest.Daemon
	skipReason string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	defer func() {
		if buildDir != "" {
			os.RemoveAll(buildDir)
		}
	}()
	flag.Parse()
	if testing.Short() {
		skipReason = "builds and starts the plugin binary; skipped in -short mode"
		return m.Run()
	}
	if skipReason = containerdtest.Unavailable(); skipReason != "" {
		return m.Run()
	}
	var err error
	daemon, err = containerdtest.NewDaemon()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test daemon:", err)
		return 1
	}
	daemon.StopOnSignal()
	defer func() {
		if err := daemon.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test containerd:", err)
		}
	}()
	return m.Run()
}

// pluginBinary builds the plugin (once) and returns its path.
func pluginBinary(tb testing.TB) string {
	tb.Helper()
	if daemon == nil {
		tb.Skip(skipReason)
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "runtime-containerd-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "runtime-containerd")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// proc is one running plugin process.
type proc struct {
	*plugintest.Plugin
	rt runtime.Runtime
}

// start launches the plugin as the agent does and configures it on the
// test daemon. The process is killed when the test ends.
func start(tb testing.TB) *proc {
	tb.Helper()
	p := plugintest.Start(tb, pluginBinary(tb), plugintest.WithConfig(daemon.Config()))
	return &proc{Plugin: p, rt: runtime.NewClient(p.Conn)}
}

var errSeen = errors.New("seen")

// TestTasksSurvivePluginKill starts a task through a plugin process, kills
// the plugin with SIGKILL, and finds the task, still running with the same
// pid and its output, through a new plugin process on the same containerd.
func TestTasksSurvivePluginKill(t *testing.T) {
	p1 := start(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	img, archive := shellImage(t, "warren.test/busybox:1")
	if _, err := p1.rt.ImportImage(ctx, bytes.NewReader(archive)); err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	spec := runtime.TaskSpec{TaskID: fmt.Sprintf("survivor-%d", os.Getpid()), Image: img.Ref,
		Command: []string{"sh", "-c", "echo before the kill; exec sleep 3600"}}
	h, st, err := p1.rt.StartTask(ctx, spec)
	if err != nil {
		t.Fatalf("StartTask: %v", err)
	}
	destroyed := false
	t.Cleanup(func() {
		if destroyed {
			return
		}
		// The test failed half-way: destroy through a new plugin process.
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := start(t).rt.DestroyTask(dctx, spec.TaskID, true); err != nil {
			t.Errorf("cleanup: DestroyTask: %v", err)
		}
	})
	waitOutput(ctx, t, p1.rt, spec.TaskID, "before the kill")
	containerdPid := daemon.Pid()
	if containerdPid == 0 {
		t.Fatal("the plugin started no managed containerd (no pid file)")
	}

	p1.Kill9()
	for what, pid := range map[string]int{"the task": int(st.PID), "the managed containerd": containerdPid} {
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("%s (pid %d) died with the plugin: %v", what, pid, err)
		}
	}

	p2 := start(t)
	if pid := daemon.Pid(); pid != containerdPid {
		t.Errorf("the new plugin process started containerd %d instead of reusing %d", pid, containerdPid)
	}
	got, err := p2.rt.RecoverTask(ctx, h)
	if err != nil {
		t.Fatalf("RecoverTask: %v", err)
	}
	if got.State != runtime.StateRunning || got.PID != st.PID {
		t.Fatalf("RecoverTask = %+v, want running with pid %d", got, st.PID)
	}
	waitOutput(ctx, t, p2.rt, spec.TaskID, "before the kill")

	events, err := p2.rt.TaskEvents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stopped, err := p2.rt.StopTask(ctx, spec.TaskID, time.Second)
	if err != nil || stopped.State != runtime.StateExited {
		t.Fatalf("StopTask = %+v, %v; want exited", stopped, err)
	}
wait:
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the events channel closed")
			}
			if ev.TaskID == spec.TaskID && ev.Type == runtime.EventExited {
				break wait
			}
		case <-ctx.Done():
			t.Fatal("no exit event after StopTask")
		}
	}
	if err := p2.rt.DestroyTask(ctx, spec.TaskID, false); err != nil {
		t.Fatalf("DestroyTask: %v", err)
	}
	destroyed = true
}

// waitOutput follows the task's logs until want appears.
func waitOutput(ctx context.Context, t *testing.T, rt runtime.Runtime, id, want string) {
	t.Helper()
	var got strings.Builder
	err := rt.TaskLogs(ctx, runtime.LogsRequest{TaskID: id, Follow: true, Tail: runtime.TailAll}, func(c runtime.LogChunk) error {
		got.Write(c.Data)
		if strings.Contains(got.String(), want) {
			return errSeen
		}
		return nil
	})
	if err != errSeen {
		t.Fatalf("TaskLogs(%q) = %v after %q; want output %q", id, err, got.String(), want)
	}
}

// TestConformance runs the sdk's suite on real plugin processes, one per
// case, with the restart hook: RestartRecover kills the case's process with
// SIGKILL and recovers its tasks through a new one.
func TestConformance(t *testing.T) {
	bin := pluginBinary(t)
	img, archive := shellImage(t, "warren.test/conformance:1")
	var mu sync.Mutex
	procs := map[*testing.T]*plugintest.Plugin{}
	runtimetest.RunClient(t, func(t *testing.T) runtime.Runtime {
		p := plugintest.Start(t, bin, plugintest.WithConfig(daemon.Config()))
		mu.Lock()
		procs[t] = p
		mu.Unlock()
		return runtime.NewClient(p.Conn)
	}, runtimetest.Options{
		Image:        img.Ref,
		ImageTarball: func(*testing.T) io.Reader { return bytes.NewReader(archive) },
		LongCommand:  []string{"sleep", "3600"},
		ExitCommand:  func(code int) []string { return []string{"sh", "-c", fmt.Sprintf("exit %d", code)} },
		EnvCommand:   []string{"env"},
		EchoCommand:  []string{"echo"},
		Shell:        func(script string) []string { return []string{"sh", "-c", script} },
		Restart: func(t *testing.T) runtime.Runtime {
			mu.Lock()
			p := procs[t]
			mu.Unlock()
			p.Kill9()
			return runtime.NewClient(p.Restart().Conn)
		},
	})
}

// shellImage builds a busybox image ref whose command is sh, as an OCI
// archive to import.
func shellImage(t *testing.T, ref string) (containerdtest.Image, []byte) {
	t.Helper()
	img := containerdtest.Image{Ref: ref, Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}
	built, err := img.Build()
	if err != nil {
		t.Fatal(err)
	}
	archive, err := built.OCIArchive()
	if err != nil {
		t.Fatal(err)
	}
	return img, archive
}
