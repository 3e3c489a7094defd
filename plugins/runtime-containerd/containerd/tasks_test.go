package containerd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/snapshots"
	"github.com/opencontainers/image-spec/identity"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// testTimeout bounds one test's calls.
const testTimeout = 2 * time.Minute

var idSeq atomic.Int64

// newID returns a task ID unique to this test binary.
func newID() string {
	return fmt.Sprintf("it%d-%d", os.Getpid(), idSeq.Add(1))
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// start starts spec on rt, destroying the task when the test ends.
func start(t *testing.T, rt runtime.Runtime, spec runtime.TaskSpec) (runtime.TaskHandle, runtime.TaskStatus) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := rt.DestroyTask(ctx, spec.TaskID, true); err != nil {
			t.Errorf("cleanup: DestroyTask(%q): %v", spec.TaskID, err)
		}
	})
	h, st, err := rt.StartTask(testCtx(t), spec)
	if err != nil {
		t.Fatalf("StartTask(%q): %v", spec.TaskID, err)
	}
	return h, st
}

// output follows the task's logs to the end.
func output(t *testing.T, rt runtime.Runtime, id string) string {
	t.Helper()
	var b strings.Builder
	err := rt.TaskLogs(testCtx(t), runtime.LogsRequest{TaskID: id, Follow: true, Tail: runtime.TailAll}, func(c runtime.LogChunk) error {
		b.Write(c.Data)
		return nil
	})
	if err != nil {
		t.Fatalf("TaskLogs(%q): %v", id, err)
	}
	return b.String()
}

// waitExited polls until the task has exited.
func waitExited(t *testing.T, rt runtime.Runtime, id string) runtime.TaskStatus {
	t.Helper()
	ctx := testCtx(t)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st, err := rt.InspectTask(ctx, id)
		if err != nil {
			t.Fatalf("InspectTask(%q): %v", id, err)
		}
		if st.State == runtime.StateExited {
			return st
		}
		select {
		case <-ctx.Done():
			t.Fatalf("task %q did not exit: %+v", id, st)
		case <-tick.C:
		}
	}
}

// nextEvent returns the next event of task id.
func nextEvent(t *testing.T, events <-chan runtime.TaskEvent, id string) runtime.TaskEvent {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatal("the events channel closed")
			}
			if ev.TaskID == id {
				return ev
			}
		case <-timeout:
			t.Fatalf("no event for task %q within a minute", id)
		}
	}
}

func TestProcessSettings(t *testing.T) {
	rt := remote(t, newRuntime(t))
	importImage(t, rt, testImage)
	importImage(t, rt, echoImage)
	for _, tc := range []struct {
		name string
		spec runtime.TaskSpec
		want []string // lines the output must hold
	}{
		{"image env kept, spec env added and overriding",
			runtime.TaskSpec{Image: testImage.Ref, Command: []string{"env"}, Env: map[string]string{"FROM_IMAGE": "overridden", "EXTRA": "a b=c"}},
			[]string{"PATH=/bin", "FROM_IMAGE=overridden", "EXTRA=a b=c"}},
		{"image entrypoint and cmd",
			runtime.TaskSpec{Image: echoImage.Ref},
			[]string{"entry default args"}},
		{"args replace the image's cmd",
			runtime.TaskSpec{Image: echoImage.Ref, Args: []string{"my", "args"}},
			[]string{"entry my args"}},
		{"command replaces the entrypoint and drops the cmd",
			runtime.TaskSpec{Image: echoImage.Ref, Command: []string{"echo", "mine"}},
			[]string{"mine"}},
		{"command and args",
			runtime.TaskSpec{Image: echoImage.Ref, Command: []string{"echo"}, Args: []string{"x", "y"}},
			[]string{"x y"}},
		{"image working dir",
			runtime.TaskSpec{Image: echoImage.Ref, Command: []string{"pwd"}},
			[]string{"/tmp"}},
		{"spec working dir",
			runtime.TaskSpec{Image: testImage.Ref, Command: []string{"pwd"}, WorkingDir: "/home/warren"},
			[]string{"/home/warren"}},
		{"root by default",
			runtime.TaskSpec{Image: testImage.Ref, Command: []string{"id", "-u"}},
			[]string{"0"}},
		{"numeric uid:gid",
			runtime.TaskSpec{Image: testImage.Ref, Command: []string{"sh", "-c", "id -u; id -g"}, User: "4321:8765"},
			[]string{"4321", "8765"}},
		{"user name from the image's /etc/passwd",
			runtime.TaskSpec{Image: testImage.Ref, Command: []string{"sh", "-c", "id -un; id -g"}, User: containerdtest.TestUser},
			[]string{containerdtest.TestUser, strconv.Itoa(containerdtest.TestUID)}},
		{"hostname set",
			runtime.TaskSpec{Image: testImage.Ref, Command: []string{"cat", "/proc/sys/kernel/hostname"}, Hostname: "web-1"},
			[]string{"web-1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := tc.spec
			spec.TaskID = newID()
			start(t, rt, spec)
			out := lines(output(t, rt, spec.TaskID))
			for _, w := range tc.want {
				if !slices.Contains(out, w) {
					t.Errorf("output %q has no line %q", out, w)
				}
			}
			if st := waitExited(t, rt, spec.TaskID); st.ExitCode != 0 {
				t.Errorf("exit code %d, want 0 (output %q)", st.ExitCode, out)
			}
		})
	}

	t.Run("hostname defaults to the task ID", func(t *testing.T) {
		spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"cat", "/proc/sys/kernel/hostname"}}
		start(t, rt, spec)
		if out := lines(output(t, rt, spec.TaskID)); !slices.Equal(out, []string{spec.TaskID}) {
			t.Errorf("hostname %q, want %q", out, spec.TaskID)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		id := newID()
		_, _, err := rt.StartTask(testCtx(t), runtime.TaskSpec{TaskID: id, Image: testImage.Ref, Command: []string{"id"}, User: "nobody-here"})
		if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "nobody-here") {
			t.Fatalf("StartTask with an unknown user = %v, want ErrInvalidArgument naming the user", err)
		}
		if _, err := rt.InspectTask(testCtx(t), id); !errors.Is(err, sdk.ErrNotFound) {
			t.Errorf("InspectTask after the refused start = %v, want ErrNotFound (nothing left behind)", err)
		}
	})
}

func TestImageWithoutCommand(t *testing.T) {
	rt := remote(t, newRuntime(t))
	importImage(t, rt, bareImage)
	id := newID()
	_, _, err := rt.StartTask(testCtx(t), runtime.TaskSpec{TaskID: id, Image: bareImage.Ref})
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), "image "+bareImage.Ref+" has no command and the task gives none") {
		t.Fatalf("StartTask without a command = %v, want ErrInvalidArgument saying the image has no command", err)
	}
	if _, err := rt.InspectTask(testCtx(t), id); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("InspectTask after the refused start = %v, want ErrNotFound", err)
	}
	// With a command it runs.
	start(t, rt, runtime.TaskSpec{TaskID: id, Image: bareImage.Ref, Command: []string{"true"}})
	if st := waitExited(t, rt, id); st.ExitCode != 0 {
		t.Errorf("exit code %d, want 0", st.ExitCode)
	}
}

func TestUnknownImage(t *testing.T) {
	rt := remote(t, newRuntime(t))
	ref := "warren.test/not-imported:1"
	_, _, err := rt.StartTask(testCtx(t), runtime.TaskSpec{TaskID: newID(), Image: ref, Command: []string{"true"}})
	if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), ref) {
		t.Errorf("StartTask with an image that is not present = %v, want ErrNotFound naming the image", err)
	}
	missing := registry.Host + "/warren/nothing-here:1"
	_, err = rt.EnsureImage(testCtx(t), missing, false)
	if !errors.Is(err, sdk.ErrNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("EnsureImage(%q) = %v, want ErrNotFound naming the ref", missing, err)
	}
	_, err = rt.EnsureImage(testCtx(t), "Not A Ref", false)
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("EnsureImage of a malformed ref = %v, want ErrInvalidArgument", err)
	}
}

// TestMalformedImageHealthcheck: an image whose HEALTHCHECK cannot be
// honoured (a Test of an unknown kind) is imported and listed, and refused
// by EnsureImage with ErrInvalidArgument naming the image.
func TestMalformedImageHealthcheck(t *testing.T) {
	rt := remote(t, newRuntime(t))
	img := containerdtest.Image{Ref: "warren.test/bad-health:1", Cmd: []string{"sh"}, Env: []string{"PATH=/bin"},
		Healthcheck: &containerdtest.Healthcheck{Test: []string{"EXEC", "x"}}}
	if _, err := rt.ImportImage(testCtx(t), bytes.NewReader(archive(t, img, false))); err != nil {
		t.Fatalf("ImportImage of %s: %v", img.Ref, err)
	}
	_, err := rt.EnsureImage(testCtx(t), img.Ref, false)
	if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), img.Ref) || !strings.Contains(err.Error(), `unknown Test kind "EXEC"`) {
		t.Errorf("EnsureImage(%s) = %v, want ErrInvalidArgument naming the image and the Test kind", img.Ref, err)
	}
	imgs, err := rt.ListImages(testCtx(t))
	if err != nil || !slices.ContainsFunc(imgs, func(i runtime.Image) bool { return i.Ref == "docker.io/"+img.Ref || i.Ref == img.Ref }) {
		t.Errorf("ListImages = %v, %v; want it to list %s", imgs, err, img.Ref)
	}
}

func TestEnsureImagePulls(t *testing.T) {
	rt := remote(t, newRuntime(t))
	ctx := testCtx(t)
	built, err := testImage.Build()
	if err != nil {
		t.Fatal(err)
	}
	tag := newID() // a tag no earlier run pulled
	const repo = "warren/pulled"
	if err := registry.Add(ctx, repo, tag, built); err != nil {
		t.Fatal(err)
	}
	ref := registry.Host + "/" + repo + ":" + tag
	// Pulls are counted in the registry's access log: a pull resolves the
	// tag with one manifest request.
	pulls := func() int {
		t.Helper()
		n, err := registry.ManifestRequests(ctx, repo, tag)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := pulls()
	img, err := rt.EnsureImage(ctx, ref, false)
	if err != nil {
		t.Fatalf("EnsureImage(%q): %v", ref, err)
	}
	if img.Ref != ref || img.Digest != built.ManifestDigest || img.Size <= 0 {
		t.Errorf("EnsureImage = %+v, want ref %q, digest %s and a size", img, ref, built.ManifestDigest)
	}
	if got := pulls(); got != before+1 {
		t.Errorf("the registry served %d manifests for the tag, want 1", got-before)
	}
	again, err := rt.EnsureImage(ctx, ref, false)
	if err != nil || again != img {
		t.Errorf("EnsureImage again = %+v, %v; want %+v", again, err, img)
	}
	if got := pulls(); got != before+1 {
		t.Errorf("EnsureImage of a present image pulled again")
	}
	if _, err := rt.EnsureImage(ctx, ref, true); err != nil {
		t.Fatalf("EnsureImage(alwaysPull): %v", err)
	}
	if got := pulls(); got != before+2 {
		t.Errorf("EnsureImage(alwaysPull) served %d manifests for the tag, want 1", got-before-1)
	}
	spec := runtime.TaskSpec{TaskID: newID(), Image: ref, Command: []string{"echo", "pulled"}}
	start(t, rt, spec)
	if out := lines(output(t, rt, spec.TaskID)); !slices.Equal(out, []string{"pulled"}) {
		t.Errorf("output %q, want [pulled]", out)
	}
}

func TestImportImage(t *testing.T) {
	rt := remote(t, newRuntime(t))
	ctx := testCtx(t)
	dockerImage := containerdtest.Image{Ref: "warren.test/docker-archive:2", Cmd: []string{"echo", "from", "docker"}, Env: []string{"PATH=/bin"}}
	imgs, err := rt.ImportImage(ctx, strings.NewReader(string(archive(t, dockerImage, true))))
	if err != nil {
		t.Fatalf("ImportImage(docker archive): %v", err)
	}
	if len(imgs) != 1 || imgs[0].Ref != dockerImage.Ref || !strings.HasPrefix(imgs[0].Digest, "sha256:") || imgs[0].Size <= 0 {
		t.Fatalf("ImportImage(docker archive) = %+v, want one image %q with a digest and size", imgs, dockerImage.Ref)
	}
	spec := runtime.TaskSpec{TaskID: newID(), Image: dockerImage.Ref}
	start(t, rt, spec)
	if out := lines(output(t, rt, spec.TaskID)); !slices.Equal(out, []string{"from docker"}) {
		t.Errorf("output %q, want [from docker]", out)
	}

	// A short name in the archive is normalized.
	short := containerdtest.Image{Ref: "shortname:3", Cmd: []string{"true"}, Env: []string{"PATH=/bin"}}
	imgs, err = rt.ImportImage(ctx, strings.NewReader(string(archive(t, short, false))))
	if err != nil || len(imgs) != 1 || imgs[0].Ref != "docker.io/library/shortname:3" {
		t.Errorf("ImportImage(shortname:3) = %+v, %v; want docker.io/library/shortname:3", imgs, err)
	}
	if _, err := rt.EnsureImage(ctx, "shortname:3", false); err != nil {
		t.Errorf("EnsureImage(shortname:3) after import: %v", err)
	}

	_, err = rt.ImportImage(ctx, strings.NewReader("this is not a tarball"))
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("ImportImage(garbage) = %v, want ErrInvalidArgument", err)
	}
}

// failingReader returns part of an archive, then an error.
type failingReader struct {
	data []byte
	err  error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestImportImageReadError(t *testing.T) {
	rt := newRuntime(t)
	broken := errors.New("disk on fire")
	a := archive(t, testImage, false)
	_, err := rt.ImportImage(testCtx(t), &failingReader{data: a[:len(a)/2], err: broken})
	if err == nil || errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), broken.Error()) {
		t.Errorf("ImportImage with a failing reader = %v, want the reader's error, not ErrInvalidArgument", err)
	}
}

// cgroupFile returns the path of a cgroup file of controller for pid.
func cgroupFile(t *testing.T, pid uint32, controller, file string) string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	v2 := ""
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == controller {
				return filepath.Join("/sys/fs/cgroup", parts[1], parts[2], file)
			}
		}
	}
	return filepath.Join("/sys/fs/cgroup", v2, file)
}

func readTrim(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestLimits(t *testing.T) {
	rt := newRuntime(t)
	importImage(t, rt, testImage)
	const mem = 64 << 20
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"sleep", "3600"},
		Limits: runtime.Resources{NanoCPUs: 500_000_000, MemoryBytes: mem}}
	_, st := start(t, rt, spec)

	// What containerd was told.
	client, err := daemon.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, err := client.LoadContainer(testCtx(t), spec.TaskID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Spec(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	res := s.Linux.Resources
	if res.Memory == nil || res.Memory.Limit == nil || *res.Memory.Limit != mem {
		t.Errorf("OCI spec memory = %+v, want limit %d", res.Memory, mem)
	}
	if res.CPU == nil || res.CPU.Quota == nil || *res.CPU.Quota != 50_000 || res.CPU.Period == nil || *res.CPU.Period != 100_000 {
		t.Errorf("OCI spec CPU = %+v, want quota 50000 per 100000", res.CPU)
	}

	// What the kernel enforces.
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		if got := readTrim(t, cgroupFile(t, st.PID, "", "memory.max")); got != strconv.Itoa(mem) {
			t.Errorf("memory.max = %s, want %d", got, mem)
		}
		if got := readTrim(t, cgroupFile(t, st.PID, "", "cpu.max")); got != "50000 100000" {
			t.Errorf("cpu.max = %q, want 50000 100000", got)
		}
		return
	}
	if got := readTrim(t, cgroupFile(t, st.PID, "memory", "memory.limit_in_bytes")); got != strconv.Itoa(mem) {
		t.Errorf("memory.limit_in_bytes = %s, want %d", got, mem)
	}
	if p := cgroupFile(t, st.PID, "memory", "memory.memsw.limit_in_bytes"); fileExists(p) {
		if got := readTrim(t, p); got != strconv.Itoa(mem) {
			t.Errorf("memory.memsw.limit_in_bytes = %s, want %d (no swap)", got, mem)
		}
	}
	if got := readTrim(t, cgroupFile(t, st.PID, "cpu", "cpu.cfs_quota_us")); got != "50000" {
		t.Errorf("cpu.cfs_quota_us = %s, want 50000", got)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestOOMKilled(t *testing.T) {
	rt := remote(t, newRuntime(t))
	importImage(t, rt, testImage)
	events, err := rt.TaskEvents(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref,
		Command: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"},
		Limits:  runtime.Resources{MemoryBytes: 32 << 20}}
	start(t, rt, spec)
	var types []runtime.EventType
	for {
		ev := nextEvent(t, events, spec.TaskID)
		types = append(types, ev.Type)
		if ev.Type == runtime.EventExited {
			if ev.ExitCode != 137 {
				t.Errorf("exit event code %d, want 137", ev.ExitCode)
			}
			break
		}
	}
	if want := []runtime.EventType{runtime.EventStarted, runtime.EventOOM, runtime.EventExited}; !slices.Equal(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
	st := waitExited(t, rt, spec.TaskID)
	if !st.OOMKilled || st.ExitCode != 137 {
		t.Errorf("status %+v, want OOM killed with exit code 137", st)
	}
}

func TestKill9(t *testing.T) {
	rt := remote(t, newRuntime(t))
	importImage(t, rt, testImage)
	events, err := rt.TaskEvents(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"sleep", "3600"}}
	_, st := start(t, rt, spec)
	if ev := nextEvent(t, events, spec.TaskID); ev.Type != runtime.EventStarted {
		t.Fatalf("first event %+v, want started", ev)
	}
	if err := syscall.Kill(int(st.PID), syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", st.PID, err)
	}
	ev := nextEvent(t, events, spec.TaskID)
	if ev.Type != runtime.EventExited || ev.ExitCode != 137 || ev.Time.IsZero() {
		t.Errorf("event after kill -9 = %+v, want exited with code 137 and a time", ev)
	}
	got := waitExited(t, rt, spec.TaskID)
	if got.ExitCode != 137 || got.OOMKilled || got.FinishedAt.IsZero() {
		t.Errorf("status after kill -9 = %+v, want exit code 137, not OOM killed", got)
	}
}

func TestStopSignal(t *testing.T) {
	rt := remote(t, newRuntime(t))
	importImage(t, rt, testImage)
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref,
		Command:         []string{"sh", "-c", `trap "exit 7" USR1; echo ready; while true; do sleep 0.05; done`},
		StopSignal:      "SIGUSR1",
		StopGracePeriod: time.Minute}
	start(t, rt, spec)
	// Wait for the trap to be set.
	err := rt.TaskLogs(testCtx(t), runtime.LogsRequest{TaskID: spec.TaskID, Follow: true, Tail: runtime.TailAll}, func(c runtime.LogChunk) error {
		if strings.Contains(string(c.Data), "ready") {
			return errReady
		}
		return nil
	})
	if err != errReady {
		t.Fatalf("waiting for the task to be ready: %v", err)
	}
	begin := time.Now()
	st, err := rt.StopTask(testCtx(t), spec.TaskID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.StateExited || st.ExitCode != 7 {
		t.Errorf("StopTask = %+v, want exited with the trap's code 7", st)
	}
	if took := time.Since(begin); took > 30*time.Second {
		t.Errorf("StopTask took %v; the stop signal should have ended the task at once", took)
	}
}

var errReady = errors.New("ready")

func TestMounts(t *testing.T) {
	rt := remote(t, newRuntime(t))
	importImage(t, rt, testImage)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	roDir := t.TempDir()
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref,
		Command: []string{"sh", "-c", `cat /data/in; echo from the task > /data/out; ` +
			// The shell's complaint goes to /dev/null: stdout and stderr share
			// one log, and busybox writes it in pieces that may interleave
			// with the next line.
			`if (echo x > /ro/f) 2>/dev/null; then echo ro-writable; else echo ro-refused; fi; ` +
			`echo secret > /secrets/s && cat /secrets/s; grep " /secrets " /proc/mounts`},
		Mounts: []runtime.Mount{
			{Type: runtime.MountBind, Source: dir, Target: "/data"},
			{Type: runtime.MountBind, Source: roDir, Target: "/ro", ReadOnly: true},
			{Type: runtime.MountTmpfs, Target: "/secrets"},
		}}
	start(t, rt, spec)
	out := lines(output(t, rt, spec.TaskID))
	for _, want := range []string{"from the host", "ro-refused", "secret"} {
		if !slices.Contains(out, want) {
			t.Errorf("output %q has no line %q", out, want)
		}
	}
	if !slices.ContainsFunc(out, func(l string) bool { return strings.HasPrefix(l, "tmpfs /secrets tmpfs") }) {
		t.Errorf("output %q shows no tmpfs at /secrets", out)
	}
	if got := readTrim(t, filepath.Join(dir, "out")); got != "from the task" {
		t.Errorf("the task wrote %q to the bind mount, want %q", got, "from the task")
	}
	if fileExists(filepath.Join(roDir, "f")) {
		t.Error("the task wrote to a read-only bind mount")
	}

	_, _, err := rt.StartTask(testCtx(t), runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"true"},
		Mounts: []runtime.Mount{{Type: runtime.MountBind, Source: "/no/such/dir", Target: "/x"}}})
	if !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("StartTask with a missing bind source = %v, want ErrInvalidArgument", err)
	}
}

func TestNetworkNamespace(t *testing.T) {
	rt := remote(t, newRuntime(t))
	importImage(t, rt, testImage)

	t.Run("own namespace with loopback only", func(t *testing.T) {
		spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"cat", "/proc/net/dev"}}
		start(t, rt, spec)
		var ifaces []string
		for _, l := range lines(output(t, rt, spec.TaskID)) {
			if name, _, ok := strings.Cut(l, ":"); ok {
				ifaces = append(ifaces, strings.TrimSpace(name))
			}
		}
		if !slices.Equal(ifaces, []string{"lo"}) {
			t.Errorf("interfaces %q, want only lo", ifaces)
		}
	})

	t.Run("joins the given namespace", func(t *testing.T) {
		if _, err := exec.LookPath("ip"); err != nil {
			t.Skip("ip (iproute2) is not installed")
		}
		name := fmt.Sprintf("warren-test-%d", os.Getpid())
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
		path := "/run/netns/" + name
		var fi syscall.Stat_t
		if err := syscall.Stat(path, &fi); err != nil {
			t.Fatal(err)
		}
		spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"readlink", "/proc/self/ns/net"}, NetnsPath: path}
		start(t, rt, spec)
		want := fmt.Sprintf("net:[%d]", fi.Ino)
		if out := lines(output(t, rt, spec.TaskID)); !slices.Equal(out, []string{want}) {
			t.Errorf("the task's network namespace is %q, want %q", out, want)
		}
	})
}

// TestNoLeaks checks that destroying tasks, running or exited, leaves
// nothing in containerd or on disk.
func TestNoLeaks(t *testing.T) {
	rt := newRuntime(t)
	importImage(t, rt, testImage)
	ctx := testCtx(t)
	client, err := daemon.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	running := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"sleep", "3600"}}
	exited := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref, Command: []string{"echo", "bye"}}
	var logs []string
	for _, spec := range []runtime.TaskSpec{running, exited} {
		h, _ := start(t, rt, spec)
		var hs struct {
			LogPath string `json:"log_path"`
		}
		if err := json.Unmarshal(h.State, &hs); err != nil || !fileExists(hs.LogPath) {
			t.Fatalf("handle state %s: %v; want a log path that exists", h.State, err)
		}
		logs = append(logs, hs.LogPath)
	}
	waitExited(t, rt, exited.TaskID)
	if err := rt.DestroyTask(ctx, running.TaskID, true); err != nil {
		t.Fatal(err)
	}
	if err := rt.DestroyTask(ctx, exited.TaskID, false); err != nil {
		t.Fatal(err)
	}

	for i, id := range []string{running.TaskID, exited.TaskID} {
		if _, err := client.LoadContainer(ctx, id); !errdefs.IsNotFound(err) {
			t.Errorf("container %s after destroy: %v, want not found", id, err)
		}
		if _, err := client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
			t.Errorf("task %s after destroy: %v, want not found", id, err)
		}
		err := client.SnapshotService("overlayfs").Walk(ctx, func(_ context.Context, info snapshots.Info) error {
			if info.Name == id {
				t.Errorf("snapshot %s is left after destroy", id)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if fileExists(logs[i]) {
			t.Errorf("log %s is left after destroy", logs[i])
		}
		for _, p := range []string{
			filepath.Join(daemon.Dir, "state", "io.containerd.runtime.v2.task", daemon.Namespace, id),
			filepath.Join(daemon.Dir, "state", "runc", daemon.Namespace, id),
		} {
			if fileExists(p) {
				t.Errorf("%s is left after destroy", p)
			}
		}
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(mounts), "/"+id+"/") {
			t.Errorf("a mount of task %s is left after destroy", id)
		}
	}
	list, err := rt.ListTasks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range list {
		if st.TaskID == running.TaskID || st.TaskID == exited.TaskID {
			t.Errorf("ListTasks still has %q", st.TaskID)
		}
	}
}

// TestRecoverAfterExitWhileAway starts a task with one runtime, lets it exit
// while no runtime runs, and finds it with another.
func TestRecoverAfterExitWhileAway(t *testing.T) {
	first := newRuntime(t)
	importImage(t, first, testImage)
	ctl := t.TempDir()
	spec := runtime.TaskSpec{TaskID: newID(), Image: testImage.Ref,
		Command: []string{"sh", "-c", "while [ ! -e /ctl/go ]; do sleep 0.02; done; echo done; exit 3"},
		Mounts:  []runtime.Mount{{Type: runtime.MountBind, Source: ctl, Target: "/ctl"}}}
	cleaner := newRuntime(t) // destroys the task when the test ends
	t.Cleanup(func() { _ = cleaner.DestroyTask(context.Background(), spec.TaskID, true) })
	h, st, err := first.StartTask(testCtx(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	// Let the task finish while no runtime watches.
	if err := os.WriteFile(filepath.Join(ctl, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitGone(t, int(st.PID))

	second := remote(t, newRuntime(t))
	list, err := second.ListTasks(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(list, func(s runtime.TaskStatus) bool { return s.TaskID == spec.TaskID })
	if i < 0 || list[i].State != runtime.StateExited || list[i].ExitCode != 3 {
		t.Fatalf("ListTasks of a new runtime = %+v, want %q exited with code 3", list, spec.TaskID)
	}
	got, err := second.RecoverTask(testCtx(t), h)
	if err != nil {
		t.Fatalf("RecoverTask: %v", err)
	}
	if got.State != runtime.StateExited || got.ExitCode != 3 || got.FinishedAt.IsZero() || got.StartedAt.IsZero() {
		t.Errorf("RecoverTask = %+v, want exited with code 3, start and finish times", got)
	}
	if out := lines(output(t, second, spec.TaskID)); !slices.Equal(out, []string{"done"}) {
		t.Errorf("output %q, want [done]", out)
	}
	bad := []runtime.TaskHandle{
		{Version: 1, TaskID: spec.TaskID, Runtime: "runtime-other", State: h.State},
		{Version: 2, TaskID: spec.TaskID, Runtime: h.Runtime, State: h.State},
		{Version: 1, TaskID: spec.TaskID, Runtime: h.Runtime, State: []byte(`not json`)},
		{Version: 1, TaskID: "other-task", Runtime: h.Runtime, State: h.State},
		{Version: 1, TaskID: spec.TaskID, Runtime: h.Runtime,
			State: []byte(fmt.Sprintf(`{"container_id":%q,"namespace":"elsewhere"}`, spec.TaskID))},
	}
	for _, h := range bad {
		if _, err := second.RecoverTask(testCtx(t), h); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("RecoverTask(%+v) = %v, want ErrInvalidArgument", h, err)
		}
	}
}

// waitGone waits for process pid to end.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	ctx := testCtx(t)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("process %d did not end", pid)
		case <-tick.C:
		}
	}
}

// TestDestroyRemovesASnapshotNoContainerOwns: a start cut off after the
// task's snapshot was made and before its container (the plugin killed in
// between) leaves the snapshot; destroying the task removes it.
func TestDestroyRemovesASnapshotNoContainerOwns(t *testing.T) {
	rt := newRuntime(t)
	importImage(t, rt, testImage)
	ctx := testCtx(t)
	client, err := daemon.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	nctx := namespaces.WithNamespace(ctx, daemon.Namespace)
	img, err := client.GetImage(nctx, testImage.Ref)
	if err != nil {
		t.Fatal(err)
	}
	diffIDs, err := img.RootFS(nctx)
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	sn := client.SnapshotService("overlayfs")
	if _, err := sn.Prepare(nctx, id, identity.ChainID(diffIDs).String()); err != nil {
		t.Fatalf("prepare the snapshot a cut-off start leaves: %v", err)
	}
	if err := rt.DestroyTask(ctx, id, true); err != nil {
		t.Fatalf("DestroyTask: %v", err)
	}
	if _, err := sn.Stat(nctx, id); !errdefs.IsNotFound(err) {
		t.Fatalf("snapshot %s after destroy: %v, want not found", id, err)
	}
}
