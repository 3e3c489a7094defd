package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/containers"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/oci"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Container labels. LabelTaskID marks a container as a Warren task; the
// others, under labelPrefix, are the plugin's bookkeeping. A spec may not
// set any of them.
const (
	// LabelTaskID holds the task ID on every task's container.
	LabelTaskID = "warren.task-id"

	labelPrefix     = "warren.runtime."
	labelLogPath    = labelPrefix + "log-path"
	labelLogFormat  = labelPrefix + "log-format"
	labelStopSignal = labelPrefix + "stop-signal"
	labelStopGrace  = labelPrefix + "stop-grace"
	labelStartedAt  = labelPrefix + "started-at"
	labelExitCode   = labelPrefix + "exit-code"
	labelExitedAt   = labelPrefix + "exited-at"
	labelOOMKilled  = labelPrefix + "oom-killed"
)

const (
	// handleVersion is the format of TaskHandle.State this plugin writes.
	handleVersion = 1
	// cfsPeriod is the CFS period of CPU limits, in microseconds.
	cfsPeriod = 100_000
	// minCFSQuota is the smallest quota the kernel accepts.
	minCFSQuota = 1_000
	// lostExitCode is reported for a task whose process vanished without
	// its exit being recorded.
	lostExitCode = 255
)

// handleState is TaskHandle.State, version 1, as JSON.
type handleState struct {
	ContainerID string `json:"container_id"`
	Namespace   string `json:"namespace"`
	LogPath     string `json:"log_path"`
	Address     string `json:"address"`
}

// taskView is what containerd holds about one task: its container and, while
// containerd still has it, its process.
type taskView struct {
	c containers.Container
	p *task.Process // nil once the task was deleted (reaped)
}

// lost reports a container whose process is gone without a recorded exit:
// the machine restarted, or a start was interrupted.
func (v taskView) lost() bool {
	_, recorded := v.c.Labels[labelExitCode]
	return v.p == nil && !recorded
}

// status is the sdk's view of v.
func (v taskView) status() runtime.TaskStatus {
	l := v.c.Labels
	st := runtime.TaskStatus{TaskID: v.c.ID, StartedAt: parseTime(l[labelStartedAt])}
	if v.p != nil {
		switch v.p.Status {
		case task.Status_RUNNING, task.Status_PAUSED, task.Status_PAUSING:
			st.State, st.PID = runtime.StateRunning, v.p.Pid
		case task.Status_CREATED:
			st.State = runtime.StateCreated
		case task.Status_STOPPED:
			st.State = runtime.StateExited
			st.ExitCode = int32(v.p.ExitStatus)
			st.FinishedAt = v.p.GetExitedAt().AsTime()
			st.OOMKilled = l[labelOOMKilled] == "true" && st.ExitCode == 137
		default:
			st.State = runtime.StateUnknown
			st.Error = "containerd reports the task's state as unknown"
		}
		return st
	}
	st.State = runtime.StateExited
	code, err := strconv.Atoi(l[labelExitCode])
	if err != nil {
		st.ExitCode = lostExitCode
		st.Error = "the task's process is gone and its exit was not recorded (did the machine restart?)"
		return st
	}
	st.ExitCode = int32(code)
	st.FinishedAt = parseTime(l[labelExitedAt])
	st.OOMKilled = l[labelOOMKilled] == "true" && code == 137
	return st
}

func parseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// userError marks a spec option's failure as the spec's fault.
type userError struct{ err error }

func (e *userError) Error() string { return e.err.Error() }
func (e *userError) Unwrap() error { return e.err }

// asUserError makes o's errors userErrors.
func asUserError(o oci.SpecOpts) oci.SpecOpts {
	return func(ctx context.Context, c oci.Client, ctr *containers.Container, s *oci.Spec) error {
		if err := o(ctx, c, ctr, s); err != nil {
			return &userError{err}
		}
		return nil
	}
}

// commandLine is the process's argv with docker's semantics: Command
// replaces the image's entrypoint and drops its CMD; Args replaces the CMD.
func commandLine(img ocispec.ImageConfig, command, args []string) []string {
	entry, cmd := img.Entrypoint, img.Cmd
	if len(command) > 0 {
		entry, cmd = command, nil
	}
	if len(args) > 0 {
		cmd = args
	}
	return append(slices.Clone(entry), cmd...)
}

// checkSpec refuses what Validate does not but this runtime cannot do.
func (be *backend) checkSpec(spec runtime.TaskSpec) error {
	bad := func(kind error, format string, args ...any) error {
		return fmt.Errorf("task %q: %s: %w", spec.TaskID, fmt.Sprintf(format, args...), kind)
	}
	for k := range spec.Labels {
		if k == LabelTaskID || strings.HasPrefix(k, labelPrefix) {
			return bad(sdk.ErrInvalidArgument, "label %q is reserved for the runtime", k)
		}
	}
	if spec.StopSignal != "" {
		if _, err := containerd.ParseSignal(spec.StopSignal); err != nil {
			return bad(sdk.ErrInvalidArgument, "stop signal %q: %v", spec.StopSignal, err)
		}
	}
	if spec.Image == "" {
		return bad(sdk.ErrInvalidArgument, "no image: %s runs tasks from images", Name)
	}
	if spec.Limits.MemoryBytes > 0 && !be.cgroups.memory {
		return bad(sdk.ErrUnsupported, "memory limit: this machine's cgroups (%s) have no memory controller", be.cgroups.mode)
	}
	if spec.Limits.NanoCPUs > 0 && !be.cgroups.cpu {
		return bad(sdk.ErrUnsupported, "CPU limit: this machine's cgroups (%s) have no CPU (CFS) controller", be.cgroups.mode)
	}
	for i, m := range spec.Mounts {
		if m.Type == runtime.MountBind {
			if _, err := os.Stat(m.Source); err != nil {
				return bad(sdk.ErrInvalidArgument, "mount %d: bind source %q: %v", i, m.Source, err)
			}
		}
	}
	if spec.NetnsPath != "" {
		if _, err := os.Stat(spec.NetnsPath); err != nil {
			return bad(sdk.ErrInvalidArgument, "network namespace %q: %v", spec.NetnsPath, err)
		}
	}
	return nil
}

// specOpts builds the OCI spec of a task on top of containerd's defaults
// and the image's config.
func (be *backend) specOpts(spec runtime.TaskSpec, img containerd.Image, argv []string) []oci.SpecOpts {
	hostname := spec.Hostname
	if hostname == "" {
		hostname = spec.TaskID[:min(len(spec.TaskID), 63)]
	}
	opts := []oci.SpecOpts{
		oci.WithImageConfig(img),
		oci.WithProcessArgs(argv...),
		oci.WithHostname(hostname),
	}
	if len(spec.Env) > 0 {
		env := make([]string, 0, len(spec.Env))
		for k, v := range spec.Env {
			env = append(env, k+"="+v)
		}
		slices.Sort(env)
		opts = append(opts, oci.WithEnv(env))
	}
	if spec.WorkingDir != "" {
		opts = append(opts, oci.WithProcessCwd(spec.WorkingDir))
	}
	if spec.User != "" {
		opts = append(opts, asUserError(oci.WithUser(spec.User)))
	}
	if m := spec.Limits.MemoryBytes; m > 0 {
		opts = append(opts, oci.WithMemoryLimit(uint64(m)))
		if be.cgroups.swap {
			opts = append(opts, oci.WithMemorySwap(m)) // memory+swap = memory: no swap
		}
	}
	if n := spec.Limits.NanoCPUs; n > 0 {
		quota := max(n*cfsPeriod/1_000_000_000, minCFSQuota)
		opts = append(opts, oci.WithCPUCFS(quota, cfsPeriod))
	}
	if len(spec.Mounts) > 0 {
		var mounts []specs.Mount
		for _, m := range spec.Mounts {
			rw := "rw"
			if m.ReadOnly {
				rw = "ro"
			}
			switch m.Type {
			case runtime.MountBind:
				mounts = append(mounts, specs.Mount{Type: "bind", Source: m.Source, Destination: m.Target,
					Options: []string{"rbind", "rprivate", rw}})
			case runtime.MountTmpfs:
				mode := uint32(0o1777)
				if m.TmpfsMode != 0 {
					mode = m.TmpfsMode
				}
				o := []string{"nosuid", "nodev", "noexec", fmt.Sprintf("mode=%o", mode), rw}
				if m.TmpfsSize > 0 {
					o = append(o, fmt.Sprintf("size=%d", m.TmpfsSize))
				}
				mounts = append(mounts, specs.Mount{Type: "tmpfs", Source: "tmpfs", Destination: m.Target, Options: o})
			}
		}
		opts = append(opts, oci.WithMounts(mounts))
	}
	switch {
	case spec.NetnsPath != "":
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: spec.NetnsPath}))
	case spec.HostNetwork:
		// The plugin runs in the node's network namespace: the task joins
		// the plugin's own.
		opts = append(opts, oci.WithLinuxNamespace(specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: hostNetns}))
	}
	// Otherwise containerd's default spec gives the task a new network
	// namespace, in which runc brings up loopback only.
	return opts
}

// runtimeOptions are the runc shim's options: a managed containerd keeps
// runc's state under its own state dir.
func (be *backend) runtimeOptions() any {
	if be.s.managed == nil {
		return nil
	}
	return &options.Options{Root: be.s.managed.runcRoot()}
}

// StartTask creates the task's container (a new snapshot of the image, the
// OCI spec from the image and the spec) and starts its process, with
// output going to its log file.
func (r *Runtime) StartTask(ctx context.Context, spec runtime.TaskSpec) (_ runtime.TaskHandle, _ runtime.TaskStatus, err error) {
	var none runtime.TaskHandle
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return none, runtime.TaskStatus{}, err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	end, err := be.beginStart()
	if err != nil {
		return none, runtime.TaskStatus{}, err
	}
	defer end()
	if err := spec.Validate(); err != nil {
		return none, runtime.TaskStatus{}, err
	}
	if err := be.checkSpec(spec); err != nil {
		return none, runtime.TaskStatus{}, err
	}
	id := spec.TaskID
	name, err := normalizeRef(spec.Image)
	if err != nil {
		return none, runtime.TaskStatus{}, fmt.Errorf("task %q: %w", id, err)
	}

	unlock := r.locks.lock(id)
	defer unlock()
	img, err := be.client.GetImage(ctx, name)
	if errdefs.IsNotFound(err) {
		return none, runtime.TaskStatus{}, fmt.Errorf("task %q: image %q is not present (EnsureImage or ImportImage it first): %w", id, spec.Image, sdk.ErrNotFound)
	} else if err != nil {
		return none, runtime.TaskStatus{}, wrapErr(err, "task %q: image %q", id, spec.Image)
	}
	facts, err := be.prepareImage(ctx, img)
	if err != nil {
		return none, runtime.TaskStatus{}, fmt.Errorf("task %q: %w", id, err)
	}
	argv := commandLine(facts.config.Config, spec.Command, spec.Args)
	if len(argv) == 0 {
		return none, runtime.TaskStatus{}, fmt.Errorf("task %q: image %s has no command and the task gives none: %w", id, spec.Image, sdk.ErrInvalidArgument)
	}

	logPath := filepath.Join(be.s.logDir, be.s.namespace, id+"-"+randomHex(4)+".log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		return none, runtime.TaskStatus{}, fmt.Errorf("task %q: log dir: %v: %w", id, err, sdk.ErrInternal)
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelTaskID] = id
	labels[labelLogPath] = logPath
	logIO := cio.LogFile(logPath)
	if r.logger != "" {
		labels[labelLogFormat] = logFormatCRI
		logIO = cio.BinaryIO(r.logger, map[string]string{LoggerFlag: logPath})
	}
	if spec.StopSignal != "" {
		labels[labelStopSignal] = spec.StopSignal
	}
	if spec.StopGracePeriod > 0 {
		labels[labelStopGrace] = spec.StopGracePeriod.String()
	}
	copts := []containerd.NewContainerOpts{
		containerd.WithImage(img),
		containerd.WithSnapshotter(snapshotter),
		containerd.WithNewSnapshot(id, img),
		containerd.WithRuntime(runcShim, be.runtimeOptions()),
		containerd.WithContainerLabels(labels),
		containerd.WithNewSpec(be.specOpts(spec, img, argv)...),
	}

	// Undo everything on failure, even when the caller's ctx has ended.
	cctx, ccancel := be.cleanup(ctx)
	defer ccancel()
	container, err := be.client.NewContainer(ctx, id, copts...)
	if err != nil && errdefs.IsAlreadyExists(err) {
		// The task's container exists (asked only now: a start that goes
		// through needs no lookup first), or a snapshot is left by an
		// interrupted start or destroy: with no container it is no one's.
		if _, gerr := be.client.ContainerService().Get(ctx, id); gerr == nil {
			return none, runtime.TaskStatus{}, fmt.Errorf("task %q: %w", id, sdk.ErrAlreadyExists)
		} else if !errdefs.IsNotFound(gerr) {
			return none, runtime.TaskStatus{}, wrapErr(gerr, "task %q", id)
		}
		if rerr := be.client.SnapshotService(snapshotter).Remove(cctx, id); rerr == nil {
			container, err = be.client.NewContainer(ctx, id, copts...)
		}
	}
	if err != nil {
		if rerr := be.client.SnapshotService(snapshotter).Remove(cctx, id); rerr != nil && !errdefs.IsNotFound(rerr) {
			r.log.Warn("removing the snapshot of a failed start", "task", id, "error", rerr)
		}
		var ue *userError
		if errors.As(err, &ue) {
			return none, runtime.TaskStatus{}, wrapAs(sdk.ErrInvalidArgument, err, "task %q: user %q", id, spec.User)
		}
		return none, runtime.TaskStatus{}, wrapErr(err, "task %q: creating the container", id)
	}
	undo := func() {
		if err := container.Delete(cctx, containerd.WithSnapshotCleanup); err != nil && !errdefs.IsNotFound(err) {
			r.log.Warn("removing the container of a failed start", "task", id, "error", err)
		}
		_ = os.Remove(logPath)
	}
	t, err := container.NewTask(ctx, logIO)
	if err != nil {
		undo()
		return none, runtime.TaskStatus{}, wrapErr(err, "task %q: creating the task", id)
	}
	startedAt := time.Now() // before Start, so that it never follows the exit
	if err := t.Start(ctx); err != nil {
		if _, derr := t.Delete(cctx, containerd.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
			r.log.Warn("deleting the task of a failed start", "task", id, "error", derr)
		}
		undo()
		return none, runtime.TaskStatus{}, wrapErr(err, "task %q: starting %q", id, argv[0])
	}
	stamp := startedAt.UTC().Format(time.RFC3339Nano)
	if _, err := be.client.ContainerService().Update(cctx,
		containers.Container{ID: id, Labels: map[string]string{labelStartedAt: stamp}},
		"labels."+labelStartedAt); err != nil {
		r.log.Warn("recording the start time", "task", id, "error", err)
	}

	state, _ := json.Marshal(handleState{ContainerID: id, Namespace: be.s.namespace, LogPath: logPath, Address: be.s.address})
	h := runtime.TaskHandle{Version: handleVersion, TaskID: id, Runtime: Name, State: state}
	return h, runtime.TaskStatus{TaskID: id, State: runtime.StateRunning, PID: t.Pid(), StartedAt: parseTime(stamp)}, nil
}

// getProcess returns the task's process as containerd has it, or nil when
// containerd has no task for the container.
func (be *backend) getProcess(ctx context.Context, id string) (*task.Process, error) {
	resp, err := be.client.TaskService().Get(ctx, &tasks.GetRequest{ContainerID: id})
	if err != nil {
		if errNotFound(err) {
			return nil, nil
		}
		return nil, wrapErr(err, "task %q", id)
	}
	return resp.GetProcess(), nil
}

// view loads what containerd holds about task id. A container that is not a
// Warren task is not found.
func (be *backend) view(ctx context.Context, id string) (taskView, error) {
	c, err := be.client.ContainerService().Get(ctx, id)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return taskView{}, fmt.Errorf("task %q: %w", id, sdk.ErrNotFound)
		}
		return taskView{}, wrapErr(err, "task %q", id)
	}
	if c.Labels[LabelTaskID] != id {
		return taskView{}, fmt.Errorf("task %q: container %q is not a Warren task: %w", id, id, sdk.ErrNotFound)
	}
	p, err := be.getProcess(ctx, id)
	if err != nil {
		return taskView{}, err
	}
	return taskView{c: c, p: p}, nil
}

// inspect returns the task's view, reaping its process first if it has
// exited.
func (r *Runtime) inspect(ctx context.Context, be *backend, id string) (taskView, error) {
	unlock := r.locks.lock(id)
	defer unlock()
	v, err := be.view(ctx, id)
	if err != nil {
		return v, err
	}
	if v.p != nil && v.p.Status == task.Status_STOPPED {
		if c, err := r.reapLocked(ctx, be, v); err != nil {
			r.log.Warn("recording a task's exit", "task", id, "error", err)
		} else {
			v = taskView{c: c}
		}
	}
	return v, nil
}

// reapLocked records an exited process on its container (exit code, time,
// OOM) and deletes the containerd task, which ends the shim once the last
// output is in the log. The caller holds the task's lock.
func (r *Runtime) reapLocked(ctx context.Context, be *backend, v taskView) (containers.Container, error) {
	id, p := v.c.ID, v.p
	ctx, cancel := be.cleanup(ctx)
	defer cancel()
	labels := map[string]string{
		labelExitCode: strconv.FormatUint(uint64(p.ExitStatus), 10),
		labelExitedAt: p.GetExitedAt().AsTime().UTC().Format(time.RFC3339Nano),
	}
	if v.c.Labels[labelOOMKilled] == "true" || (p.ExitStatus == 137 && be.oomKilled(ctx, id)) {
		labels[labelOOMKilled] = "true"
	}
	var paths []string
	for k := range labels {
		paths = append(paths, "labels."+k)
	}
	c, err := be.client.ContainerService().Update(ctx, containers.Container{ID: id, Labels: labels}, paths...)
	if err != nil {
		return v.c, wrapErr(err, "task %q: recording the exit", id)
	}
	if _, err := be.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id}); err != nil && !errNotFound(err) {
		return c, wrapErr(err, "task %q: deleting the exited process", id)
	}
	return c, nil
}

// InspectTask returns the task's status. It reads containerd's view
// without the task's lock: an exited process is answered at once from
// that view, while recording its exit and deleting it (reapLocked, which
// waits for the shim to end) goes on behind, so that a worker asking
// right after an exit event does not wait for the reap that the event
// started. Only a view caught in the middle of a reap (the process gone,
// its exit not yet recorded) is read again under the lock.
func (r *Runtime) InspectTask(ctx context.Context, taskID string) (_ runtime.TaskStatus, err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return runtime.TaskStatus{}, err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	v, err := be.view(ctx, taskID)
	if err != nil {
		return runtime.TaskStatus{}, err
	}
	if v.lost() {
		if v, err = r.inspect(ctx, be, taskID); err != nil {
			return runtime.TaskStatus{}, err
		}
		return v.status(), nil
	}
	st := v.status()
	if v.p != nil && v.p.Status == task.Status_STOPPED {
		// The cgroup is there until the reap deletes the process.
		if st.ExitCode == 137 && !st.OOMKilled && be.oomKilled(ctx, taskID) {
			st.OOMKilled = true
		}
		go r.reap(be, taskID) // a no-op when the exit event's reap was first
	}
	return st, nil
}

// StopTask signals the task, waits up to the grace period and kills it.
func (r *Runtime) StopTask(ctx context.Context, taskID string, grace time.Duration) (_ runtime.TaskStatus, err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return runtime.TaskStatus{}, err
	}
	if grace < 0 {
		return runtime.TaskStatus{}, fmt.Errorf("task %q: negative grace period %v: %w", taskID, grace, sdk.ErrInvalidArgument)
	}
	defer func() { err = be.noAnswer(ctx, err) }()
	ictx, icancel := be.call(ctx, 0)
	v, err := r.inspect(ictx, be, taskID)
	err = be.noAnswer(ictx, err)
	icancel()
	if err != nil {
		return runtime.TaskStatus{}, err
	}
	if v.p == nil {
		return v.status(), nil // exited already
	}
	if grace == 0 {
		grace = runtime.DefaultStopGracePeriod
		if g, err := time.ParseDuration(v.c.Labels[labelStopGrace]); err == nil && g > 0 {
			grace = g
		}
	}
	sig := syscall.SIGTERM
	if name := v.c.Labels[labelStopSignal]; name != "" {
		if s, err := containerd.ParseSignal(name); err == nil {
			sig = s
		}
	}

	// The grace period comes on top of the call's own time.
	ctx, ccancel := be.call(ctx, grace)
	defer ccancel()
	// Wait returns at once for a process that has exited already, so it
	// may start after the signal.
	exited := make(chan error, 1)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		_, err := be.client.TaskService().Wait(wctx, &tasks.WaitRequest{ContainerID: taskID})
		exited <- err
	}()
	if err := be.kill(ctx, taskID, sig); err != nil {
		return runtime.TaskStatus{}, err
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case err = <-exited:
	case <-timer.C:
		if err := be.kill(ctx, taskID, syscall.SIGKILL); err != nil {
			return runtime.TaskStatus{}, err
		}
		err = <-exited
	}
	if err != nil && !errNotFound(err) {
		return runtime.TaskStatus{}, wrapErr(err, "task %q: waiting for the exit", taskID)
	}
	v, err = r.inspect(ctx, be, taskID)
	if err != nil {
		return runtime.TaskStatus{}, err
	}
	return v.status(), nil
}

// kill sends sig to the task's process; a process that is gone already is
// not an error.
func (be *backend) kill(ctx context.Context, id string, sig syscall.Signal) error {
	_, err := be.client.TaskService().Kill(ctx, &tasks.KillRequest{ContainerID: id, Signal: uint32(sig)})
	if err != nil && !errNotFound(err) {
		return wrapErr(err, "task %q: sending %v", id, sig)
	}
	return nil
}

// DestroyTask removes the task's process (killing it with force), its
// container, snapshot and log.
func (r *Runtime) DestroyTask(ctx context.Context, taskID string, force bool) (err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	if runtime.ValidateTaskID(taskID) != nil {
		return nil // no such task can exist
	}
	unlock := r.locks.lock(taskID)
	defer unlock()
	return r.destroyLocked(ctx, be, taskID, force)
}

func (r *Runtime) destroyLocked(ctx context.Context, be *backend, id string, force bool) error {
	v, err := be.view(ctx, id)
	if errors.Is(err, sdk.ErrNotFound) {
		// A start cut off between the snapshot and the container (the
		// plugin killed in between) leaves the task's snapshot, which no
		// container owns: it goes with the task.
		if err := be.client.SnapshotService(snapshotter).Remove(ctx, id); err != nil && !errdefs.IsNotFound(err) {
			return wrapErr(err, "task %q: removing a snapshot no container owns", id)
		}
		return nil
	} else if err != nil {
		return err
	}
	if v.p != nil {
		if v.p.Status != task.Status_STOPPED {
			if !force {
				return fmt.Errorf("task %q is %s; stop it first or destroy with force: %w",
					id, strings.ToLower(v.p.Status.String()), sdk.ErrFailedPrecondition)
			}
			wctx, cancel := context.WithCancel(ctx)
			exited := make(chan error, 1)
			go func() {
				_, err := be.client.TaskService().Wait(wctx, &tasks.WaitRequest{ContainerID: id})
				exited <- err
			}()
			err := be.kill(ctx, id, syscall.SIGKILL)
			if err == nil {
				err = <-exited
			}
			cancel()
			if err != nil && !errNotFound(err) {
				return wrapErr(err, "task %q: waiting for the exit", id)
			}
		}
		if _, err := be.client.TaskService().Delete(ctx, &tasks.DeleteTaskRequest{ContainerID: id}); err != nil && !errNotFound(err) {
			return wrapErr(err, "task %q: deleting the process", id)
		}
	}
	if v.c.SnapshotKey != "" {
		sn := v.c.Snapshotter
		if sn == "" {
			sn = snapshotter
		}
		if err := be.client.SnapshotService(sn).Remove(ctx, v.c.SnapshotKey); err != nil && !errdefs.IsNotFound(err) {
			return wrapErr(err, "task %q: removing its snapshot", id)
		}
	}
	if err := be.client.ContainerService().Delete(ctx, id); err != nil && !errdefs.IsNotFound(err) {
		return wrapErr(err, "task %q: removing its container", id)
	}
	if p := v.c.Labels[labelLogPath]; p != "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Warn("removing a destroyed task's log", "task", id, "path", p, "error", err)
		}
	}
	return nil
}

// RecoverTask finds the task of a handle again. A task whose process
// vanished without a recorded exit (the machine restarted) is not found,
// and its remains are removed so that the ID is free.
func (r *Runtime) RecoverTask(ctx context.Context, h runtime.TaskHandle) (_ runtime.TaskStatus, err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return runtime.TaskStatus{}, err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("task %q: handle %s: %w", h.TaskID, fmt.Sprintf(format, args...), sdk.ErrInvalidArgument)
	}
	if h.Runtime != Name {
		return runtime.TaskStatus{}, bad("is from runtime %q, not %q", h.Runtime, Name)
	}
	if h.Version == 0 || h.Version > handleVersion {
		return runtime.TaskStatus{}, bad("has version %d; this plugin reads versions 1 to %d", h.Version, handleVersion)
	}
	var hs handleState
	if err := json.Unmarshal(h.State, &hs); err != nil {
		return runtime.TaskStatus{}, bad("state: %v", err)
	}
	if hs.ContainerID != h.TaskID || runtime.ValidateTaskID(hs.ContainerID) != nil {
		return runtime.TaskStatus{}, bad("names container %q", hs.ContainerID)
	}
	if hs.Namespace != be.s.namespace {
		return runtime.TaskStatus{}, bad("is for containerd namespace %q; this plugin uses %q", hs.Namespace, be.s.namespace)
	}
	v, err := r.inspect(ctx, be, hs.ContainerID)
	if err != nil {
		return runtime.TaskStatus{}, err
	}
	if v.lost() {
		unlock := r.locks.lock(hs.ContainerID)
		derr := r.destroyLocked(ctx, be, hs.ContainerID, true)
		unlock()
		if derr != nil {
			r.log.Warn("removing the remains of a lost task", "task", h.TaskID, "error", derr)
		}
		return runtime.TaskStatus{}, fmt.Errorf("task %q: %s: %w", h.TaskID, v.status().Error, sdk.ErrNotFound)
	}
	return v.status(), nil
}

// ListTasks returns the status of every Warren task in the namespace.
func (r *Runtime) ListTasks(ctx context.Context) (_ []runtime.TaskStatus, err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	cs, err := be.client.ContainerService().List(ctx, fmt.Sprintf("labels.%q", LabelTaskID))
	if err != nil {
		return nil, wrapErr(err, "listing containers")
	}
	resp, err := be.client.TaskService().List(ctx, &tasks.ListTasksRequest{})
	if err != nil {
		return nil, wrapErr(err, "listing tasks")
	}
	procs := map[string]*task.Process{}
	for _, p := range resp.GetTasks() {
		procs[p.ID] = p // containerd lists init processes, by container ID
	}
	out := make([]runtime.TaskStatus, 0, len(cs))
	for _, c := range cs {
		if c.Labels[LabelTaskID] != c.ID {
			continue
		}
		v := taskView{c: c, p: procs[c.ID]}
		if v.p != nil && v.p.Status == task.Status_STOPPED {
			if v, err = r.inspect(ctx, be, c.ID); errors.Is(err, sdk.ErrNotFound) {
				continue // destroyed meanwhile
			} else if err != nil {
				return nil, err
			}
		}
		out = append(out, v.status())
	}
	return out, nil
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
