package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

const (
	// caseTimeout bounds one case, image pulls included.
	caseTimeout = 2 * time.Minute
	// cleanupTimeout bounds the destroy of one task after a case.
	cleanupTimeout = 30 * time.Second
	// stopSlack is how long a stop may take beyond its grace period.
	stopSlack = 20 * time.Second
	// healthLimit is how long Health may take.
	healthLimit = 5 * time.Second
	// pollInterval paces polling for a state change.
	pollInterval = 20 * time.Millisecond
)

// env is what one case works with.
type env struct {
	*suite
	t  *testing.T
	rt runtime.Runtime
}

var cases = []struct {
	name string
	fn   func(t *testing.T, e *env)
}{
	{"Info", testInfo},
	{"Fingerprint", testFingerprint},
	{"Health", testHealth},
	{"ImportImage", testImportImage},
	{"EnsureImage", testEnsureImage},
	{"ListImages", testListImages},
	{"ImageHealthCheck", testImageHealthCheck},
	{"EnsureImageMissing", testEnsureImageMissing},
	{"StartMissingImage", testStartMissingImage},
	{"StartInvalidSpec", testStartInvalidSpec},
	{"StartInspect", testStartInspect},
	{"StartTwice", testStartTwice},
	{"StartConcurrent", testStartConcurrent},
	{"ExitCode", testExitCode},
	{"StopOverridesGrace", testStopOverridesGrace},
	{"StopSpecGrace", testStopSpecGrace},
	{"MissingTask", testMissingTask},
	{"DestroyRunning", testDestroyRunning},
	{"DestroyExited", testDestroyExited},
	{"EnvAndArgs", testEnvAndArgs},
	{"LogsTail", testLogsTail},
	{"LogsFollow", testLogsFollow},
	{"Exec", testExec},
	{"Recover", testRecover},
	{"EventsClose", testEventsClose},
	{"Hostname", testHostname},
	{"User", testUser},
	{"WorkingDir", testWorkingDir},
	{"MemoryLimit", testMemoryLimit},
	{"OOM", testOOM},
	{"TaskStats", testTaskStats},
	{"StopSignalDelivered", testStopSignalDelivered},
	{"RestartRecover", testRestartRecover},
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(e.t.Context(), caseTimeout)
	e.t.Cleanup(cancel)
	return ctx
}

func (e *env) newID() string {
	return fmt.Sprintf("%s-%d", e.prefix, e.seq.Add(1))
}

// ensureImage makes opts.Image available, importing it when a tarball is
// given.
func (e *env) ensureImage(ctx context.Context) runtime.Image {
	e.t.Helper()
	if e.opts.ImageTarball != nil {
		if _, err := e.rt.ImportImage(ctx, e.opts.ImageTarball(e.t)); err != nil {
			e.t.Fatalf("ImportImage: %v", err)
		}
	}
	img, err := e.rt.EnsureImage(ctx, e.opts.Image, false)
	if err != nil {
		e.t.Fatalf("EnsureImage(%q): %v", e.opts.Image, err)
	}
	return img
}

func (e *env) missingRef() string {
	if e.opts.MissingImage != "" {
		return e.opts.MissingImage
	}
	return "warren-conformance.invalid/missing/" + randomHex(4) + ":1"
}

// spec returns a spec for a new task running command in the test image.
func (e *env) spec(command []string) runtime.TaskSpec {
	return runtime.TaskSpec{
		TaskID:          e.newID(),
		Image:           e.opts.Image,
		Command:         command,
		StopGracePeriod: time.Second,
		Labels:          map[string]string{"warren.conformance": e.prefix},
	}
}

// destroyLater destroys the task when the case ends, whatever happened.
func (e *env) destroyLater(id string) {
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if err := e.rt.DestroyTask(ctx, id, true); err != nil {
			e.t.Errorf("cleanup: DestroyTask(%q, force): %v", id, err)
		}
	})
}

// start starts spec and checks that it was accepted.
func (e *env) start(ctx context.Context, spec runtime.TaskSpec) (runtime.TaskHandle, runtime.TaskStatus) {
	e.t.Helper()
	e.destroyLater(spec.TaskID)
	h, st, err := e.rt.StartTask(ctx, spec)
	if err != nil {
		e.t.Fatalf("StartTask(%q): %v", spec.TaskID, err)
	}
	if st.TaskID != spec.TaskID {
		e.t.Fatalf("StartTask(%q): status names task %q", spec.TaskID, st.TaskID)
	}
	return h, st
}

// startRunning starts a long-running task and checks it runs.
func (e *env) startRunning(ctx context.Context, spec runtime.TaskSpec) (runtime.TaskHandle, runtime.TaskStatus) {
	e.t.Helper()
	h, st := e.start(ctx, spec)
	if st.State != runtime.StateRunning || st.PID == 0 {
		e.t.Fatalf("StartTask(%q) = state %v pid %d, want running with a pid (error %q)", spec.TaskID, st.State, st.PID, st.Error)
	}
	return h, st
}

// waitExited polls the task until it has exited.
func (e *env) waitExited(ctx context.Context, id string) runtime.TaskStatus {
	e.t.Helper()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		st, err := e.rt.InspectTask(ctx, id)
		if err != nil {
			e.t.Fatalf("InspectTask(%q): %v", id, err)
		}
		if st.State == runtime.StateExited {
			return st
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("task %q did not exit: last state %v", id, st.State)
		case <-tick.C:
		}
	}
}

// logs returns the task's output, both streams in arrival order.
func (e *env) logs(ctx context.Context, req runtime.LogsRequest) string {
	e.t.Helper()
	var b strings.Builder
	err := e.rt.TaskLogs(ctx, req, func(c runtime.LogChunk) error {
		b.Write(c.Data)
		return nil
	})
	if err != nil {
		e.t.Fatalf("TaskLogs(%+v): %v", req, err)
	}
	return b.String()
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want one wrapping %v", what, err, want)
	}
}

func testInfo(t *testing.T, e *env) {
	info, err := e.rt.Info(e.ctx())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindRuntime {
		t.Errorf("Info kind = %q, want %q", info.Kind, sdk.KindRuntime)
	}
	if info.Name == "" || !slices.Contains(info.APIVersions, sdk.APIVersion) {
		t.Errorf("Info = %+v, want a name and API version %d", info, sdk.APIVersion)
	}
}

// testHealth: a configured runtime whose backend answers is healthy, and
// says so within a few seconds.
func testHealth(t *testing.T, e *env) {
	ctx, cancel := context.WithTimeout(e.ctx(), healthLimit)
	defer cancel()
	if err := e.rt.Health(ctx); err != nil {
		t.Fatalf("Health of a configured runtime: %v", err)
	}
}

func testFingerprint(t *testing.T, e *env) {
	fp, err := e.rt.Fingerprint(e.ctx())
	if err != nil {
		t.Fatalf("Fingerprint: %v", err)
	}
	if fp.NanoCPUs <= 0 || fp.MemoryBytes <= 0 {
		t.Errorf("Fingerprint cpu %d memory %d, want both > 0", fp.NanoCPUs, fp.MemoryBytes)
	}
	if fp.OS == "" || fp.Arch == "" || fp.RuntimeName == "" {
		t.Errorf("Fingerprint = %+v, want OS, Arch and RuntimeName", fp)
	}
}

func testImportImage(t *testing.T, e *env) {
	if e.opts.ImageTarball == nil {
		t.Skip("no Options.ImageTarball")
	}
	ctx := e.ctx()
	imgs, err := e.rt.ImportImage(ctx, e.opts.ImageTarball(t))
	if err != nil {
		t.Fatalf("ImportImage: %v", err)
	}
	if len(imgs) == 0 {
		t.Fatal("ImportImage returned no images")
	}
	for _, img := range imgs {
		if img.Ref == "" || img.Digest == "" {
			t.Errorf("ImportImage returned %+v, want a ref and a digest", img)
		}
	}
	img, err := e.rt.EnsureImage(ctx, e.opts.Image, false)
	if err != nil {
		t.Fatalf("EnsureImage(%q) after import: %v", e.opts.Image, err)
	}
	if img.Ref == "" || img.Digest == "" {
		t.Errorf("EnsureImage = %+v, want a ref and a digest", img)
	}
}

func testListImages(t *testing.T, e *env) {
	ctx := e.ctx()
	img := e.ensureImage(ctx)
	imgs, err := e.rt.ListImages(ctx)
	if err != nil {
		t.Fatalf("ListImages: %v", err)
	}
	if !slices.ContainsFunc(imgs, func(i runtime.Image) bool { return i.Ref == img.Ref && i.Digest == img.Digest }) {
		t.Fatalf("ListImages = %v, lacks %v", imgs, img)
	}
	if !slices.IsSortedFunc(imgs, func(a, b runtime.Image) int { return strings.Compare(a.Ref, b.Ref) }) {
		t.Errorf("ListImages is not sorted by ref: %v", imgs)
	}
}

func testEnsureImage(t *testing.T, e *env) {
	ctx := e.ctx()
	first := e.ensureImage(ctx)
	if first.Ref == "" || first.Digest == "" {
		t.Errorf("EnsureImage = %+v, want a ref and a digest", first)
	}
	again, err := e.rt.EnsureImage(ctx, e.opts.Image, false)
	if err != nil {
		t.Fatalf("EnsureImage(%q) again: %v", e.opts.Image, err)
	}
	if !reflect.DeepEqual(again, first) {
		t.Errorf("EnsureImage again = %+v, want %+v", again, first)
	}
}

func testImageHealthCheck(t *testing.T, e *env) {
	hc := e.opts.HealthCheckImage
	if hc == nil {
		t.Skip("no Options.HealthCheckImage")
	}
	ctx := e.ctx()
	if hc.Tarball != nil {
		if _, err := e.rt.ImportImage(ctx, hc.Tarball(t)); err != nil {
			t.Fatalf("ImportImage(%s): %v", hc.Ref, err)
		}
	}
	img, err := e.rt.EnsureImage(ctx, hc.Ref, false)
	if err != nil {
		t.Fatalf("EnsureImage(%q): %v", hc.Ref, err)
	}
	if img.HealthCheck == nil || !reflect.DeepEqual(*img.HealthCheck, hc.Want) {
		t.Fatalf("EnsureImage(%q).HealthCheck = %+v, want %+v", hc.Ref, img.HealthCheck, hc.Want)
	}
	if plain := e.ensureImage(ctx); hc.Ref != e.opts.Image && plain.HealthCheck != nil && reflect.DeepEqual(*plain.HealthCheck, hc.Want) {
		t.Errorf("EnsureImage(%q) has the health check of %q", e.opts.Image, hc.Ref)
	}
}

func testEnsureImageMissing(t *testing.T, e *env) {
	ref := e.missingRef()
	_, err := e.rt.EnsureImage(e.ctx(), ref, false)
	if e.opts.MissingImage != "" {
		wantErr(t, fmt.Sprintf("EnsureImage(%q)", ref), err, sdk.ErrNotFound)
		return
	}
	if err == nil || !strings.Contains(err.Error(), ref) {
		t.Fatalf("EnsureImage(%q) = %v, want an error naming the ref", ref, err)
	}
}

func testStartMissingImage(t *testing.T, e *env) {
	spec := e.spec(e.opts.LongCommand)
	spec.Image = e.missingRef()
	e.destroyLater(spec.TaskID)
	_, _, err := e.rt.StartTask(e.ctx(), spec)
	wantErr(t, fmt.Sprintf("StartTask with image %q", spec.Image), err, sdk.ErrNotFound)
}

func testStartInvalidSpec(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	for _, tc := range []struct {
		name   string
		modify func(*runtime.TaskSpec)
	}{
		{"empty ID", func(s *runtime.TaskSpec) { s.TaskID = "" }},
		{"ID with slash", func(s *runtime.TaskSpec) { s.TaskID = "a/b" }},
		{"ID with leading dash", func(s *runtime.TaskSpec) { s.TaskID = "-a" }},
		{"ID too long", func(s *runtime.TaskSpec) { s.TaskID = strings.Repeat("a", runtime.MaxTaskIDLen+1) }},
		{"neither an image nor a command", func(s *runtime.TaskSpec) { s.Image, s.Command, s.Args = "", nil, nil }},
		{"a netns path and the host's network", func(s *runtime.TaskSpec) { s.NetnsPath, s.HostNetwork = "/proc/1/ns/net", true }},
		{"relative mount target", func(s *runtime.TaskSpec) {
			s.Mounts = []runtime.Mount{{Type: runtime.MountTmpfs, Target: "relative"}}
		}},
		{"negative grace", func(s *runtime.TaskSpec) { s.StopGracePeriod = -time.Second }},
	} {
		spec := e.spec(e.opts.LongCommand)
		tc.modify(&spec)
		if runtime.ValidateTaskID(spec.TaskID) == nil {
			e.destroyLater(spec.TaskID)
		}
		_, _, err := e.rt.StartTask(ctx, spec)
		if !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("StartTask with %s: got %v, want ErrInvalidArgument", tc.name, err)
		}
	}
}

func testStartInspect(t *testing.T, e *env) {
	ctx := e.ctx()
	info, err := e.rt.Info(ctx)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	e.ensureImage(ctx)
	spec := e.spec(e.opts.LongCommand)
	h, st := e.startRunning(ctx, spec)
	if h.TaskID != spec.TaskID || h.Runtime != info.Name || h.Version == 0 {
		t.Errorf("handle = {Version: %d, TaskID: %q, Runtime: %q}, want version > 0, task %q, runtime %q",
			h.Version, h.TaskID, h.Runtime, spec.TaskID, info.Name)
	}
	if len(h.State) > runtime.MaxHandleStateLen {
		t.Errorf("handle state is %d bytes, more than %d", len(h.State), runtime.MaxHandleStateLen)
	}
	got, err := e.rt.InspectTask(ctx, spec.TaskID)
	if err != nil {
		t.Fatalf("InspectTask: %v", err)
	}
	if got.State != runtime.StateRunning || got.PID != st.PID || got.StartedAt.IsZero() {
		t.Errorf("InspectTask = %+v, want running, pid %d, a start time", got, st.PID)
	}
	list, err := e.rt.ListTasks(ctx)
	if err != nil {
		t.Fatalf("ListTasks: %v", err)
	}
	i := slices.IndexFunc(list, func(s runtime.TaskStatus) bool { return s.TaskID == spec.TaskID })
	if i < 0 || list[i].State != runtime.StateRunning {
		t.Errorf("ListTasks does not have %q running: %+v", spec.TaskID, list)
	}
}

func testStartTwice(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.LongCommand)
	_, st := e.startRunning(ctx, spec)
	_, _, err := e.rt.StartTask(ctx, spec)
	wantErr(t, "StartTask with a running task's ID", err, sdk.ErrAlreadyExists)
	got, err := e.rt.InspectTask(ctx, spec.TaskID)
	if err != nil || got.State != runtime.StateRunning || got.PID != st.PID {
		t.Errorf("InspectTask after the second start = %+v, %v; want the first task running", got, err)
	}
}

func testStartConcurrent(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	specs := make([]runtime.TaskSpec, 4)
	for i := range specs {
		specs[i] = e.spec(e.opts.LongCommand)
		e.destroyLater(specs[i].TaskID)
	}
	statuses := make([]runtime.TaskStatus, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Go(func() { _, statuses[i], errs[i] = e.rt.StartTask(ctx, spec) })
	}
	wg.Wait()
	pids := map[uint32]string{}
	for i, spec := range specs {
		if errs[i] != nil {
			t.Fatalf("StartTask(%q): %v", spec.TaskID, errs[i])
		}
		st := statuses[i]
		if st.State != runtime.StateRunning || st.PID == 0 {
			t.Errorf("StartTask(%q) = %+v, want running", spec.TaskID, st)
		}
		if other, ok := pids[st.PID]; ok {
			t.Errorf("tasks %q and %q share pid %d", other, spec.TaskID, st.PID)
		}
		pids[st.PID] = spec.TaskID
	}
}

func testExitCode(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	events, err := e.rt.TaskEvents(ctx)
	if err != nil {
		t.Fatalf("TaskEvents: %v", err)
	}
	want := map[string]int32{}
	for _, code := range []int32{0, 3, 42} {
		spec := e.spec(e.opts.ExitCommand(int(code)))
		e.start(ctx, spec)
		want[spec.TaskID] = code
	}
	// Events of each task must come in order: started, then exited.
	started := map[string]bool{}
	for exited := 0; exited < len(want); {
		var ev runtime.TaskEvent
		var ok bool
		select {
		case ev, ok = <-events:
			if !ok {
				t.Fatalf("the events channel closed early (started %v)", started)
			}
		case <-ctx.Done():
			t.Fatalf("waiting for exit events: %v (started %v)", ctx.Err(), started)
		}
		code, ours := want[ev.TaskID]
		if !ours {
			continue
		}
		switch ev.Type {
		case runtime.EventStarted:
			started[ev.TaskID] = true
		case runtime.EventExited:
			if !started[ev.TaskID] {
				t.Errorf("task %q: exited event before started event", ev.TaskID)
			}
			if ev.ExitCode != code {
				t.Errorf("task %q: exited event with code %d, want %d", ev.TaskID, ev.ExitCode, code)
			}
			if ev.Time.IsZero() {
				t.Errorf("task %q: exited event without a time", ev.TaskID)
			}
			exited++
		}
	}
	for id, code := range want {
		st := e.waitExited(ctx, id)
		if st.ExitCode != code || st.FinishedAt.IsZero() || st.FinishedAt.Before(st.StartedAt) {
			t.Errorf("InspectTask(%q) = %+v, want exit code %d and a finish time after the start", id, st, code)
		}
	}
}

// stopWithin stops a task and checks that it exited within limit.
func (e *env) stopWithin(ctx context.Context, id string, grace, limit time.Duration) runtime.TaskStatus {
	e.t.Helper()
	begin := time.Now()
	st, err := e.rt.StopTask(ctx, id, grace)
	if err != nil {
		e.t.Fatalf("StopTask(%q, %v): %v", id, grace, err)
	}
	if took := time.Since(begin); took > limit {
		e.t.Errorf("StopTask(%q, %v) took %v, want at most %v", id, grace, took, limit)
	}
	if st.State != runtime.StateExited || st.FinishedAt.IsZero() {
		e.t.Errorf("StopTask(%q) = %+v, want exited with a finish time", id, st)
	}
	return st
}

func testStopOverridesGrace(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.LongCommand)
	spec.StopGracePeriod = time.Hour
	e.startRunning(ctx, spec)
	st := e.stopWithin(ctx, spec.TaskID, time.Second, time.Second+stopSlack)
	again, err := e.rt.StopTask(ctx, spec.TaskID, time.Second)
	if err != nil {
		t.Fatalf("StopTask on an exited task: %v", err)
	}
	if again.State != runtime.StateExited || again.ExitCode != st.ExitCode || !again.FinishedAt.Equal(st.FinishedAt) {
		t.Errorf("StopTask again = %+v, want the first stop's status %+v", again, st)
	}
	got, err := e.rt.InspectTask(ctx, spec.TaskID)
	if err != nil || got.State != runtime.StateExited {
		t.Errorf("InspectTask after stop = %+v, %v; want exited", got, err)
	}
}

func testStopSpecGrace(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.LongCommand)
	spec.StopGracePeriod = time.Second
	e.startRunning(ctx, spec)
	e.stopWithin(ctx, spec.TaskID, 0, spec.StopGracePeriod+stopSlack)
}

func testMissingTask(t *testing.T, e *env) {
	ctx := e.ctx()
	id := e.newID()
	_, err := e.rt.InspectTask(ctx, id)
	wantErr(t, "InspectTask of a missing task", err, sdk.ErrNotFound)
	_, err = e.rt.StopTask(ctx, id, 0)
	wantErr(t, "StopTask of a missing task", err, sdk.ErrNotFound)
	_, err = e.rt.TaskStats(ctx, id)
	wantErr(t, "TaskStats of a missing task", err, sdk.ErrNotFound)
	err = e.rt.TaskLogs(ctx, runtime.LogsRequest{TaskID: id, Tail: runtime.TailAll}, func(runtime.LogChunk) error { return nil })
	wantErr(t, "TaskLogs of a missing task", err, sdk.ErrNotFound)
	if err := e.rt.DestroyTask(ctx, id, false); err != nil {
		t.Errorf("DestroyTask of a missing task: %v, want nil", err)
	}
}

func testDestroyRunning(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.LongCommand)
	e.startRunning(ctx, spec)
	err := e.rt.DestroyTask(ctx, spec.TaskID, false)
	wantErr(t, "DestroyTask of a running task without force", err, sdk.ErrFailedPrecondition)
	if st, err := e.rt.InspectTask(ctx, spec.TaskID); err != nil || st.State != runtime.StateRunning {
		t.Fatalf("InspectTask after a refused destroy = %+v, %v; want running", st, err)
	}
	if err := e.rt.DestroyTask(ctx, spec.TaskID, true); err != nil {
		t.Fatalf("DestroyTask(force): %v", err)
	}
	_, err = e.rt.InspectTask(ctx, spec.TaskID)
	wantErr(t, "InspectTask after destroy", err, sdk.ErrNotFound)
	list, err := e.rt.ListTasks(ctx)
	if err != nil {
		t.Fatalf("ListTasks: %v", err)
	}
	if slices.ContainsFunc(list, func(s runtime.TaskStatus) bool { return s.TaskID == spec.TaskID }) {
		t.Errorf("ListTasks still has destroyed task %q", spec.TaskID)
	}
	if err := e.rt.DestroyTask(ctx, spec.TaskID, true); err != nil {
		t.Errorf("DestroyTask again: %v, want nil", err)
	}
	// The ID is free again.
	e.startRunning(ctx, spec)
}

func testDestroyExited(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.ExitCommand(0))
	e.start(ctx, spec)
	e.waitExited(ctx, spec.TaskID)
	if err := e.rt.DestroyTask(ctx, spec.TaskID, false); err != nil {
		t.Fatalf("DestroyTask of an exited task: %v", err)
	}
	_, err := e.rt.InspectTask(ctx, spec.TaskID)
	wantErr(t, "InspectTask after destroy", err, sdk.ErrNotFound)
}

func testEnvAndArgs(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)

	envSpec := e.spec(e.opts.EnvCommand)
	value := "conformance " + e.prefix + " a=b"
	envSpec.Env = map[string]string{"WARREN_CONFORMANCE": value}
	e.start(ctx, envSpec)
	out := e.logs(ctx, runtime.LogsRequest{TaskID: envSpec.TaskID, Follow: true, Tail: runtime.TailAll})
	if want := "WARREN_CONFORMANCE=" + value; !slices.Contains(lines(out), want) {
		t.Errorf("env task wrote %q, want a line %q", out, want)
	}

	echoSpec := e.spec(e.opts.EchoCommand)
	echoSpec.Args = []string{"hello", "warren conformance"}
	e.start(ctx, echoSpec)
	out = e.logs(ctx, runtime.LogsRequest{TaskID: echoSpec.TaskID, Follow: true, Tail: runtime.TailAll})
	if want := "hello warren conformance"; !slices.Contains(lines(out), want) {
		t.Errorf("echo task wrote %q, want a line %q", out, want)
	}
}

func testLogsTail(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.EnvCommand)
	spec.Env = map[string]string{}
	for i := range 5 {
		spec.Env[fmt.Sprintf("WARREN_TAIL_%d", i)] = e.prefix
	}
	e.start(ctx, spec)
	e.waitExited(ctx, spec.TaskID)

	all := lines(e.logs(ctx, runtime.LogsRequest{TaskID: spec.TaskID, Tail: runtime.TailAll}))
	if len(all) < 5 {
		t.Fatalf("env task wrote %d lines, want at least 5: %q", len(all), all)
	}
	for _, tc := range []struct {
		tail int64
		want []string
	}{
		{0, nil},
		{2, all[len(all)-2:]},
		{int64(len(all)), all},
		{int64(len(all)) + 100, all},
	} {
		got := lines(e.logs(ctx, runtime.LogsRequest{TaskID: spec.TaskID, Tail: tc.tail}))
		if !slices.Equal(got, tc.want) {
			t.Errorf("TaskLogs tail %d = %q, want %q", tc.tail, got, tc.want)
		}
	}
}

func testLogsFollow(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	discard := func(runtime.LogChunk) error { return nil }

	// Following a running task ends when it exits.
	spec := e.spec(e.opts.LongCommand)
	e.startRunning(ctx, spec)
	done := make(chan error, 1)
	go func() {
		done <- e.rt.TaskLogs(ctx, runtime.LogsRequest{TaskID: spec.TaskID, Follow: true, Tail: runtime.TailAll}, discard)
	}()
	e.stopWithin(ctx, spec.TaskID, time.Second, time.Second+stopSlack)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("following logs of a stopped task: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("following logs did not end when the task exited")
	}

	// Following ends with ctx.
	spec = e.spec(e.opts.LongCommand)
	e.startRunning(ctx, spec)
	fctx, cancel := context.WithCancel(ctx)
	go func() {
		done <- e.rt.TaskLogs(fctx, runtime.LogsRequest{TaskID: spec.TaskID, Follow: true}, discard)
	}()
	cancel()
	select {
	case err := <-done:
		wantErr(t, "following logs with a cancelled context", err, context.Canceled)
	case <-ctx.Done():
		t.Fatal("following logs did not end when its context was cancelled")
	}

	// A callback error ends the stream and comes back unchanged.
	spec = e.spec(e.opts.EchoCommand)
	spec.Args = []string{"stop", "here"}
	e.start(ctx, spec)
	errStop := errors.New("enough")
	err := e.rt.TaskLogs(ctx, runtime.LogsRequest{TaskID: spec.TaskID, Follow: true, Tail: runtime.TailAll},
		func(runtime.LogChunk) error { return errStop })
	if err != errStop {
		t.Errorf("TaskLogs with a failing callback = %v, want the callback's error", err)
	}
}

func testRecover(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)

	spec := e.spec(e.opts.LongCommand)
	h, st := e.startRunning(ctx, spec)
	for range 2 {
		got, err := e.rt.RecoverTask(ctx, h)
		if err != nil {
			t.Fatalf("RecoverTask: %v", err)
		}
		if got.State != runtime.StateRunning || got.PID != st.PID {
			t.Errorf("RecoverTask = %+v, want running with pid %d", got, st.PID)
		}
	}
	if err := e.rt.DestroyTask(ctx, spec.TaskID, true); err != nil {
		t.Fatalf("DestroyTask: %v", err)
	}
	_, err := e.rt.RecoverTask(ctx, h)
	wantErr(t, "RecoverTask of a destroyed task", err, sdk.ErrNotFound)

	exitSpec := e.spec(e.opts.ExitCommand(7))
	h, _ = e.start(ctx, exitSpec)
	e.waitExited(ctx, exitSpec.TaskID)
	got, err := e.rt.RecoverTask(ctx, h)
	if err != nil {
		t.Fatalf("RecoverTask of an exited task: %v", err)
	}
	if got.State != runtime.StateExited || got.ExitCode != 7 {
		t.Errorf("RecoverTask of an exited task = %+v, want exited with code 7", got)
	}
}

func testEventsClose(t *testing.T, e *env) {
	ctx := e.ctx()
	sctx, cancel := context.WithCancel(ctx)
	events, err := e.rt.TaskEvents(sctx)
	if err != nil {
		t.Fatalf("TaskEvents: %v", err)
	}
	cancel()
	for {
		select {
		case _, ok := <-events:
			if !ok {
				return
			}
		case <-ctx.Done():
			t.Fatal("the events channel stayed open after its context ended")
		}
	}
}

// testExec runs commands in a running task: output, input, environment
// and exit code come back; a deadline kills a command that hangs (the
// health-check use); bad requests get typed errors.
func testExec(t *testing.T, e *env) {
	ctx := e.ctx()
	e.ensureImage(ctx)
	spec := e.spec(e.opts.LongCommand)
	e.startRunning(ctx, spec)
	for _, tc := range []struct {
		name     string
		cmd      []string
		env      []string
		stdin    string
		want     string // in stdout
		wantCode int
	}{
		{"echo", []string{"echo", "exec-ok"}, nil, "", "exec-ok\n", 0},
		{"stdin", []string{"cat"}, nil, "line one\nline two\n", "line one\nline two\n", 0},
		{"env", []string{"env"}, []string{"WARREN_EXEC=" + e.prefix}, "", "WARREN_EXEC=" + e.prefix, 0},
		{"exit code", []string{"false"}, nil, "", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut strings.Builder
			req := runtime.ExecRequest{TaskID: spec.TaskID, Cmd: tc.cmd, Env: tc.env, Stdout: &out, Stderr: &errOut}
			if tc.stdin != "" {
				req.Stdin = strings.NewReader(tc.stdin)
			}
			code, err := e.rt.Exec(ctx, req)
			if err != nil {
				t.Fatalf("Exec %q: %v", tc.cmd, err)
			}
			if code != tc.wantCode || !strings.Contains(out.String(), tc.want) {
				t.Fatalf("Exec %q = exit %d, stdout %q, stderr %q; want exit %d and %q in stdout", tc.cmd, code, out.String(), errOut.String(), tc.wantCode, tc.want)
			}
		})
	}

	// A deadline ends a command that does not end by itself.
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	begin := time.Now()
	_, err := e.rt.Exec(dctx, runtime.ExecRequest{TaskID: spec.TaskID, Cmd: []string{"sleep", "60"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec past its deadline: %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(begin); took > 10*time.Second {
		t.Errorf("Exec past its deadline returned after %s", took)
	}

	wantErr(t, "Exec without a command", func() error {
		_, err := e.rt.Exec(ctx, runtime.ExecRequest{TaskID: spec.TaskID})
		return err
	}(), sdk.ErrInvalidArgument)
	wantErr(t, "Exec in a missing task", func() error {
		_, err := e.rt.Exec(ctx, runtime.ExecRequest{TaskID: e.newID(), Cmd: []string{"echo"}})
		return err
	}(), sdk.ErrNotFound)
	e.stopWithin(ctx, spec.TaskID, time.Second, time.Second+stopSlack)
	wantErr(t, "Exec in an exited task", func() error {
		_, err := e.rt.Exec(ctx, runtime.ExecRequest{TaskID: spec.TaskID, Cmd: []string{"echo"}})
		return err
	}(), sdk.ErrFailedPrecondition)
}
