package runtimetest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// runsImages reports whether the runtime runs tasks from images (a
// container runtime: runtime.CapImages). It is the one place the suite
// decides this.
func runsImages(fp runtime.Fingerprint) bool {
	return slices.Contains(fp.Capabilities, runtime.CapImages)
}

// needContainer skips a case that runs a shell script from the image when
// the runtime runs no images or the options give no Shell.
func (e *env) needContainer(ctx context.Context) {
	e.t.Helper()
	fp, err := e.rt.Fingerprint(ctx)
	if err != nil {
		e.t.Fatalf("Fingerprint: %v", err)
	}
	if !runsImages(fp) {
		e.t.Skipf("runtime %q does not declare the capability %q: this case runs a shell from the image", fp.RuntimeName, runtime.CapImages)
	}
	if e.opts.Shell == nil {
		e.t.Skip("Options.Shell is not set: this case runs a shell script in the image")
	}
}

// output runs script to its end in a new task changed by edit and returns
// its output, trimmed, after checking it exited 0.
func (e *env) output(ctx context.Context, script string, edit func(*runtime.TaskSpec)) string {
	e.t.Helper()
	spec := e.spec(e.opts.Shell(script))
	if edit != nil {
		edit(&spec)
	}
	e.start(ctx, spec)
	st := e.waitExited(ctx, spec.TaskID)
	out := e.logs(ctx, runtime.LogsRequest{TaskID: spec.TaskID, Tail: runtime.TailAll})
	if st.ExitCode != 0 {
		e.t.Fatalf("task running %q exited %d (error %q), output %q", script, st.ExitCode, st.Error, out)
	}
	return strings.TrimSpace(out)
}

func testHostname(t *testing.T, e *env) {
	ctx := e.ctx()
	e.needContainer(ctx)
	e.ensureImage(ctx)
	const want = "conformance-host"
	got := e.output(ctx, "cat /proc/sys/kernel/hostname", func(s *runtime.TaskSpec) { s.Hostname = want })
	if got != want {
		t.Errorf("task with Hostname %q sees hostname %q", want, got)
	}
}

func testUser(t *testing.T, e *env) {
	ctx := e.ctx()
	e.needContainer(ctx)
	e.ensureImage(ctx)
	tests := []struct{ user, want string }{
		{"0", "0:0"},
		{"1234:1234", "1234:1234"},
		{"65534:65534", "65534:65534"},
	}
	for _, tt := range tests {
		got := e.output(ctx, `echo "$(id -u):$(id -g)"`, func(s *runtime.TaskSpec) { s.User = tt.user })
		if got != tt.want {
			t.Errorf("task with User %q runs as %q, want %q", tt.user, got, tt.want)
		}
	}
}

func testWorkingDir(t *testing.T, e *env) {
	ctx := e.ctx()
	e.needContainer(ctx)
	e.ensureImage(ctx)
	for _, dir := range []string{"/tmp", "/bin"} {
		if got := e.output(ctx, "pwd", func(s *runtime.TaskSpec) { s.WorkingDir = dir }); got != dir {
			t.Errorf("task with WorkingDir %q runs in %q", dir, got)
		}
	}
}

// memoryLimit is the limit of the memory cases: small, so that allocating
// beyond it is quick.
const memoryLimit = 32 << 20

// testMemoryLimit checks that a task using a quarter of its memory limit
// runs to its end: the limit is not set too low (in KiB, say). testOOM
// checks the other side.
func testMemoryLimit(t *testing.T, e *env) {
	ctx := e.ctx()
	spec := e.limitedSpec(ctx, "exec dd if=/dev/zero of=/dev/null bs=8M count=4")
	e.start(ctx, spec)
	st := e.waitExited(ctx, spec.TaskID)
	if st.ExitCode != 0 || st.OOMKilled {
		t.Errorf("task using 8 MiB under a %d MiB memory limit = %+v, want a clean exit", memoryLimit>>20, st)
	}
}

func testOOM(t *testing.T, e *env) {
	ctx := e.ctx()
	e.needContainer(ctx)
	e.ensureImage(ctx)
	events, err := e.rt.TaskEvents(ctx)
	if err != nil {
		t.Fatalf("TaskEvents: %v", err)
	}
	// dd's 64 MiB block buffer is filled from /dev/zero: twice the limit.
	spec := e.spec(e.opts.Shell("exec dd if=/dev/zero of=/dev/null bs=64M count=1"))
	spec.Limits.MemoryBytes = memoryLimit
	e.start(ctx, spec)
	st := e.waitExited(ctx, spec.TaskID)
	if !st.OOMKilled || st.ExitCode != 137 {
		t.Errorf("InspectTask of a task allocating twice its memory limit = %+v, want exit code 137 and OOMKilled", st)
	}
	var oom, exited bool
	for !exited {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the events channel closed before the task's exit event")
			}
			if ev.TaskID != spec.TaskID {
				continue
			}
			switch ev.Type {
			case runtime.EventOOM:
				oom = true
			case runtime.EventExited:
				exited = true
				if ev.ExitCode != 137 {
					t.Errorf("exit event of the OOM-killed task: exit code %d, want 137", ev.ExitCode)
				}
			}
		case <-ctx.Done():
			t.Fatal("no exit event for the OOM-killed task")
		}
	}
	if !oom {
		t.Error("no EventOOM for the OOM-killed task before its exit event")
	}
}

func testStopSignalDelivered(t *testing.T, e *env) {
	ctx := e.ctx()
	e.needContainer(ctx)
	e.ensureImage(ctx)
	// The task traps only its stop signal, SIGUSR1, and exits 0 on it. As
	// the container's first process it ignores any other signal it does
	// not trap, so only the right signal ends it before the grace period.
	const grace = 10 * time.Second
	spec := e.spec(e.opts.Shell(`trap 'echo got USR1; exit 0' USR1; echo ready; while :; do sleep 1 & wait $!; done`))
	spec.StopSignal = "SIGUSR1"
	spec.StopGracePeriod = grace
	e.startRunning(ctx, spec)
	e.waitLogs(ctx, spec.TaskID, "ready")
	begin := time.Now()
	st, err := e.rt.StopTask(ctx, spec.TaskID, 0)
	if err != nil {
		t.Fatalf("StopTask(%q): %v", spec.TaskID, err)
	}
	took := time.Since(begin)
	if took > grace/2 {
		t.Errorf("StopTask of a task that exits on its stop signal took %v (grace period %v): the signal did not reach it", took, grace)
	}
	if st.State != runtime.StateExited || st.ExitCode != 0 {
		t.Errorf("StopTask = %+v, want exited with code 0 (the task's own clean exit)", st)
	}
	if out := e.logs(ctx, runtime.LogsRequest{TaskID: spec.TaskID, Tail: runtime.TailAll}); !strings.Contains(out, "got USR1") {
		t.Errorf("task output %q, want it to say it got SIGUSR1", out)
	}
}

// waitLogs follows the task's output until it holds want.
func (e *env) waitLogs(ctx context.Context, id, want string) {
	e.t.Helper()
	var b strings.Builder
	err := e.rt.TaskLogs(ctx, runtime.LogsRequest{TaskID: id, Follow: true, Tail: runtime.TailAll}, func(c runtime.LogChunk) error {
		b.Write(c.Data)
		if strings.Contains(b.String(), want) {
			return errFound
		}
		return nil
	})
	if err != errFound {
		e.t.Fatalf("TaskLogs(%q) = %v with output %q; want output %q", id, err, b.String(), want)
	}
}

var errFound = errors.New("found")

func testRestartRecover(t *testing.T, e *env) {
	if e.opts.Restart == nil {
		t.Skip("Options.Restart is not set: recovery across a real plugin restart needs a factory that can kill and restart the plugin process")
	}
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.LongCommand)
	h, st := e.startRunning(ctx, spec)
	exitSpec := e.spec(e.opts.ExitCommand(7))
	exitH, _ := e.start(ctx, exitSpec)
	e.waitExited(ctx, exitSpec.TaskID)

	e.rt = e.opts.Restart(t) // cleanups destroy through the new process
	got, err := e.rt.RecoverTask(ctx, h)
	if err != nil {
		t.Fatalf("RecoverTask after the plugin was killed and restarted: %v", err)
	}
	if got.State != runtime.StateRunning || got.PID != st.PID {
		t.Fatalf("RecoverTask after a plugin restart = %+v, want running with pid %d", got, st.PID)
	}
	got, err = e.rt.RecoverTask(ctx, exitH)
	if err != nil {
		t.Fatalf("RecoverTask of an exited task after a plugin restart: %v", err)
	}
	if got.State != runtime.StateExited || got.ExitCode != 7 {
		t.Errorf("RecoverTask of an exited task after a plugin restart = %+v, want exited with code 7", got)
	}
	// The new process drives the recovered task: it stops it.
	e.stopWithin(ctx, spec.TaskID, time.Second, time.Second+stopSlack)
}

// testTaskStats checks that a busy task shows CPU time, memory and its
// memory limit.
func testTaskStats(t *testing.T, e *env) {
	ctx := e.ctx()
	spec := e.limitedSpec(ctx, "while :; do :; done")
	e.startRunning(ctx, spec)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := e.rt.TaskStats(ctx, spec.TaskID)
		if err != nil {
			t.Fatalf("TaskStats: %v", err)
		}
		if st.CPUUsageNanos > 0 && st.MemoryBytes > 0 {
			if st.MemoryLimitBytes != memoryLimit {
				t.Errorf("TaskStats memory limit = %d, want %d", st.MemoryLimitBytes, memoryLimit)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TaskStats of a busy task = %+v after 10s, want CPU and memory > 0", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := e.rt.StopTask(ctx, spec.TaskID, time.Second); err != nil {
		t.Fatalf("StopTask: %v", err)
	}
	_, err := e.rt.TaskStats(ctx, spec.TaskID)
	wantErr(t, "TaskStats of an exited task", err, sdk.ErrFailedPrecondition)
}

// limitedSpec skips runtimes that run no containers, makes the test image
// available and returns a spec running script in a shell under memoryLimit.
func (e *env) limitedSpec(ctx context.Context, script string) runtime.TaskSpec {
	e.needContainer(ctx)
	e.ensureImage(ctx)
	spec := e.spec(e.opts.Shell(script))
	spec.Limits.MemoryBytes = memoryLimit
	return spec
}
