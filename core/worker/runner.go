package worker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Task states, shorter.
const (
	statePreparing = apiv1.TaskState_TASK_STATE_PREPARING
	stateStarting  = apiv1.TaskState_TASK_STATE_STARTING
	stateRunning   = apiv1.TaskState_TASK_STATE_RUNNING
	stateComplete  = apiv1.TaskState_TASK_STATE_COMPLETE
	stateFailed    = apiv1.TaskState_TASK_STATE_FAILED
	stateShutdown  = apiv1.TaskState_TASK_STATE_SHUTDOWN
	stateRejected  = apiv1.TaskState_TASK_STATE_REJECTED
	desiredRunning = apiv1.TaskState_TASK_STATE_RUNNING
)

// taskRunner converges one task. Its goroutine does every runtime call about
// the task, one at a time; the fields under mu are how the rest of the
// worker tells it what changed.
type taskRunner struct {
	w    *Worker
	id   string
	wake chan struct{}

	mu      sync.Mutex
	want    *apiv1.Task // the manager's latest copy; nil before the first
	removed bool        // the manager no longer lists the task
	check   bool        // an exit or OOM event arrived: act on it
	reload  bool        // events may have been missed: recover the handle again
	oom     bool        // the kernel's OOM killer hit the task
	abort   context.CancelFunc
	pub     LocalTask
	// exit is the task's exit event, when one arrived since the last step.
	exit *runtime.TaskEvent
	// healthRes is the task's health as its checks last found it, until
	// the goroutine acts on it.
	healthRes *healthResult

	// Owned by the goroutine.
	rec       *record // the stored handle; nil when there is none
	recovered bool    // rec was found again in the runtime
	// startedAt is when the runtime started rec's process, as it said;
	// zero when it did not say.
	startedAt time.Time
	state     apiv1.TaskState // what happened locally; 0 when unknown
	last      *apiv1.TaskStatusUpdate
	lastGen   uint64 // session generation last was reported in
	cleaned   bool   // the runtime holds nothing of the task any more
	timer     *time.Timer
	backoff   time.Duration
	checks    *healthChecks // the task's health checks, while they run
	// drainUntil is when a task behind published ports that the manager
	// wants stopped gets its stop signal (see portDrainLeft).
	drainUntil time.Time
}

func newRunner(w *Worker, id string, rec *record) *taskRunner {
	r := &taskRunner{w: w, id: id, wake: make(chan struct{}, 1), rec: rec}
	if rec != nil {
		// What was reported before the restart goes up again if the
		// manager turns out not to have it (lastGen 0 is no session).
		r.state = rec.state()
		r.last = &apiv1.TaskStatusUpdate{TaskId: id, State: r.state, ExitCode: rec.ExitCode, Error: rec.Error, Address: rec.Address, Time: timestamppb.Now()}
	}
	r.pub = LocalTask{ID: id, State: r.state, HasHandle: rec != nil}
	r.poke()
	return r
}

func (r *taskRunner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// assign records the manager's latest copy of the task.
func (r *taskRunner) assign(t *apiv1.Task) {
	r.mu.Lock()
	r.want = t
	r.removed = false
	if t.GetDesiredState() != desiredRunning && r.abort != nil {
		r.abort() // stop pulling an image nobody wants any more
	}
	r.mu.Unlock()
	r.poke()
}

// remove records that the manager no longer lists the task.
func (r *taskRunner) remove() {
	r.mu.Lock()
	r.removed = true
	if r.abort != nil {
		r.abort()
	}
	r.mu.Unlock()
	r.poke()
}

func (r *taskRunner) isRemoved() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.removed
}

// event records a runtime event about the task.
func (r *taskRunner) event(ev runtime.TaskEvent) {
	r.mu.Lock()
	switch ev.Type {
	case runtime.EventOOM:
		r.oom = true
		r.check = true
	case runtime.EventExited:
		r.check = true
		r.exit = &ev
	default:
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	r.poke()
}

// resync asks the runner to find its task again after events were missed.
func (r *taskRunner) resync() {
	r.mu.Lock()
	r.reload = true
	r.mu.Unlock()
	r.poke()
}

func (r *taskRunner) snapshot() LocalTask {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pub
}

func (r *taskRunner) publish() {
	r.mu.Lock()
	r.pub = LocalTask{ID: r.id, State: r.state, HasHandle: r.rec != nil}
	r.mu.Unlock()
}

// run is the runner's goroutine: one step per wake-up until the task is
// removed and cleaned up, or ctx ends.
func (r *taskRunner) run(ctx context.Context) {
	defer r.w.wg.Done()
	defer func() {
		if r.timer != nil {
			r.timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return
		default:
		}
		if r.step(ctx) && r.w.retire(r) {
			return
		}
		var timerC <-chan time.Time
		if r.timer != nil {
			timerC = r.timer.C
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timerC:
			r.timer = nil
		}
	}
}

// wakeAfter makes the runner step again after d (or earlier, when woken).
func (r *taskRunner) wakeAfter(d time.Duration) {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.timer = time.NewTimer(d)
}

// waiting reports, on a task that has not started, why it waits: a
// runtime call that is tried again (the runtime plugin restarting, or
// crash-looping, says so in err). The same reason is reported once. The
// message starts "waiting for ", which `warren service ps` shows as the
// task's problem.
func (r *taskRunner) waiting(err error) {
	msg := "waiting for the runtime: " + err.Error()
	if r.last != nil && r.last.GetMessage() == msg {
		return
	}
	st := r.state
	if dispatcher.Rank(st) < dispatcher.Rank(statePreparing) {
		st = statePreparing
	}
	if dispatcher.Rank(st) >= dispatcher.Rank(stateRunning) {
		return
	}
	r.report(&apiv1.TaskStatusUpdate{State: st, Message: msg})
}

// waitingFor reports, once, that the task waits for a secret or config
// the manager has not sent yet; the runner is poked when files arrive, and
// looks again after MaxBackoff in any case.
func (r *taskRunner) waitingFor(err error) {
	r.wakeAfter(r.w.opts.MaxBackoff)
	msg := "waiting for " + err.Error()
	if r.last != nil && r.last.GetMessage() == msg {
		return
	}
	r.report(&apiv1.TaskStatusUpdate{State: statePreparing, Message: msg})
}

// retryLater schedules another step after a failed runtime call.
func (r *taskRunner) retryLater(what string, err error) {
	r.backoff = min(max(2*r.backoff, r.w.opts.MinBackoff), r.w.opts.MaxBackoff)
	r.w.log.Warn("runtime call failed; retrying", "task", r.id, "call", what, "error", err, "in", r.backoff)
	r.wakeAfter(r.backoff)
}

// step acts on what changed. It reports whether the task was removed and
// the runtime holds nothing of it any more.
func (r *taskRunner) step(ctx context.Context) (done bool) {
	r.mu.Lock()
	want, removed, check, reload, oom, exit := r.want, r.removed, r.check, r.reload, r.oom, r.exit
	r.check, r.reload, r.exit = false, false, nil
	r.mu.Unlock()
	defer r.publish()

	if r.rec != nil && (!r.recovered || reload) {
		if err := r.recoverTask(ctx); err != nil {
			r.mu.Lock()
			r.reload = true
			r.mu.Unlock()
			r.retryLater("recover", err)
			return false
		}
	} else if check && !r.exitedAsEvent(exit, oom) {
		if err := r.inspect(ctx, oom); err != nil {
			r.mu.Lock()
			r.check = true
			r.mu.Unlock()
			r.retryLater("inspect", err)
			return false
		}
	}
	switch {
	case removed:
		if err := r.destroy(ctx); err != nil {
			r.retryLater("destroy", err)
			return false
		}
		r.state, r.last = 0, nil
		return true
	case want == nil:
		return false // recovered before the manager said anything
	case want.GetDesiredState() != desiredRunning:
		if err := r.shutdown(ctx, want); err != nil {
			r.retryLater("stop", err)
			return false
		}
	default:
		if err := r.start(ctx, want); err != nil {
			r.waiting(err)
			r.retryLater("start", err)
			return false
		}
	}
	r.backoff = 0
	r.checkHealthResult(ctx)
	r.syncChecks(ctx, want)
	r.rereport(want)
	return false
}

// recoverTask finds the stored handle's task in the runtime again.
func (r *taskRunner) recoverTask(ctx context.Context) error {
	cctx, cancel := r.w.call(ctx, 0)
	defer cancel()
	st, err := r.w.rt.RecoverTask(cctx, r.rec.handle())
	switch {
	case err == nil:
	case transient(err), ctx.Err() != nil:
		return err
	default:
		// Gone (the machine rebooted, someone removed it), or a handle this
		// runtime cannot read.
		r.w.log.Warn("task lost", "task", r.id, "error", err)
		r.dropRecord()
		if !dispatcher.Terminal(r.state) {
			r.report(&apiv1.TaskStatusUpdate{State: stateFailed, Error: fmt.Sprintf("lost after restart: %v", err)})
		}
		return nil
	}
	r.recovered, r.startedAt = true, st.StartedAt
	if st.State == runtime.StateExited && !dispatcher.Terminal(r.state) {
		r.exited(st, false)
	}
	return nil
}

// exitedAsEvent reports the task's exit as its exit event says, and
// reports whether it did: the event carries the exit status (the runtime
// contract), so asking the runtime again would only add a round trip
// between the exit and its report. An event it cannot vouch for (no
// event, a process whose start time is unknown, an exit from before that
// start: a process of an earlier start of the same task) is left to
// inspect.
func (r *taskRunner) exitedAsEvent(ev *runtime.TaskEvent, oom bool) bool {
	switch {
	case r.rec == nil || dispatcher.Terminal(r.state):
		return true // nothing runs here to report on
	case ev == nil, r.startedAt.IsZero(), ev.Time.Before(r.startedAt):
		return false
	}
	r.exited(runtime.TaskStatus{TaskID: r.id, State: runtime.StateExited, ExitCode: ev.ExitCode, StartedAt: r.startedAt, FinishedAt: ev.Time}, oom)
	return true
}

// inspect asks the runtime about the task after an OOM event without an
// exit, or an exit event that exitedAsEvent could not take as it is.
func (r *taskRunner) inspect(ctx context.Context, oom bool) error {
	if r.rec == nil || dispatcher.Terminal(r.state) {
		return nil
	}
	cctx, cancel := r.w.call(ctx, 0)
	defer cancel()
	st, err := r.w.rt.InspectTask(cctx, r.id)
	switch {
	case errors.Is(err, sdk.ErrNotFound):
		r.dropRecord()
		r.report(&apiv1.TaskStatusUpdate{State: stateFailed, Error: "the task disappeared from the runtime"})
		return nil
	case err != nil:
		return err
	case st.State == runtime.StateExited:
		r.exited(st, oom)
	}
	return nil
}

// exited reports how the task's process ended and records it with the
// handle, so a restarted worker does not report it again.
func (r *taskRunner) exited(st runtime.TaskStatus, oom bool) {
	u := &apiv1.TaskStatusUpdate{ExitCode: st.ExitCode}
	switch {
	case st.OOMKilled || oom:
		u.State, u.Error = stateFailed, "out of memory"
	case st.ExitCode == 0:
		u.State, u.Message = stateComplete, "exited with code 0"
	default:
		u.State, u.Error = stateFailed, fmt.Sprintf("exited with code %d", st.ExitCode)
		if st.Error != "" {
			u.Error += ": " + st.Error
		}
	}
	r.report(u)
	if r.rec != nil {
		r.rec.State, r.rec.ExitCode, r.rec.Error = u.State.String(), u.ExitCode, u.Error
		if err := r.w.handles.save(r.rec); err != nil {
			r.w.log.Error("recording the task's exit", "task", r.id, "error", err)
		}
	}
}

// start brings the task to RUNNING when the manager wants it running and it
// has not run here yet.
func (r *taskRunner) start(ctx context.Context, want *apiv1.Task) error {
	switch {
	case dispatcher.Terminal(r.state), r.rec != nil:
		return nil // it ran here (and may still run): nothing to start
	case dispatcher.Terminal(want.GetState()):
		r.state = want.GetState() // over, and the manager knows
		return nil
	case dispatcher.Rank(want.GetState()) >= dispatcher.Rank(stateRunning) && r.state == 0:
		// The manager saw it run here, but this worker has no trace of it.
		r.report(&apiv1.TaskStatusUpdate{State: stateFailed, Error: "lost after restart: this worker holds no handle for the task"})
		return nil
	}
	if nb := want.GetNotBefore(); nb != nil {
		if d := time.Until(nb.AsTime()); d > 0 {
			r.wakeAfter(d)
			return nil
		}
	}
	// A task on the overlay is checked with an empty attachment first: it
	// is attached while its image is ensured.
	var tn *taskNet
	overlay := r.w.net != nil && usesOverlay(want.GetSpec(), true)
	if overlay {
		tn = &taskNet{}
	}
	spec, err := taskSpec(want, tn, r.w.opts.VolumesDir)
	if err != nil {
		r.report(rejected(r.id, err))
		return nil
	}
	if err := ensureVolumes(r.w.opts.VolumesDir, want); err != nil {
		r.report(rejected(r.id, err))
		return nil
	}
	files, err := r.w.files.prepare(want)
	switch {
	case errors.Is(err, errFileMissing):
		r.waitingFor(err)
		return nil
	case err != nil:
		r.report(rejected(r.id, err))
		return nil
	}
	spec.Mounts = append(spec.Mounts, files...)
	if state.HasHealthCheck(want.GetSpec()) {
		if _, err := r.w.healthNetns(want, want.GetSpec().GetHealthCheck()); err != nil {
			r.report(rejected(r.id, err))
			return nil
		}
	}

	pullCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.abort = cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.abort = nil
		r.mu.Unlock()
	}()
	// The attachment does not depend on the image: it is made while the
	// image is ensured, and waited for before the step ends.
	attached := r.attachAsync(pullCtx, want, spec.Hostname, overlay)
	defer attached()
	var imageCheck *runtime.ImageHealthCheck // the image's own HEALTHCHECK
	if spec.Image != "" {
		r.report(&apiv1.TaskStatusUpdate{State: statePreparing, Message: "ensuring image " + spec.Image})
		ictx, icancel := context.WithTimeout(pullCtx, r.w.opts.ImageTimeout)
		defer icancel()
		img, err := r.w.rt.EnsureImage(ictx, spec.Image, false)
		if err != nil {
			switch {
			case ctx.Err() != nil, pullCtx.Err() != nil:
				return nil // shutting down, or the manager changed its mind: next step
			case r.w.noAnswer(ctx, err):
				r.dropAttachment(ctx, attached)
				r.report(r.w.failedNoAnswer(r.id, "EnsureImage", ictx, r.w.opts.ImageTimeout, err))
				return nil
			case transient(err):
				return err
			}
			r.dropAttachment(ctx, attached)
			r.report(rejected(r.id, r.w.refusal(spec, err)))
			return nil
		}
		imageCheck = img.HealthCheck
	}
	if !r.stillWanted() {
		return nil
	}

	var address string
	if overlay {
		tn, err = attached()
		switch {
		case err == nil:
		case ctx.Err() != nil, pullCtx.Err() != nil:
			return nil
		case transient(err):
			return err
		default:
			r.report(rejected(r.id, err))
			return nil
		}
		if spec, err = taskSpec(want, tn, r.w.opts.VolumesDir); err != nil {
			r.report(rejected(r.id, err))
			return nil
		}
		spec.Mounts = append(spec.Mounts, files...)
		address = tn.address.String()
	}

	r.report(&apiv1.TaskStatusUpdate{State: stateStarting, Address: address})
	h, st, err := r.startTask(ctx, spec)
	switch {
	case err == nil:
	case ctx.Err() != nil, errors.Is(err, errReported):
		return nil
	case transient(err):
		return err
	default:
		r.report(rejected(r.id, r.w.refusal(spec, err)))
		return nil
	}
	rec := newRecord(h, stateRunning)
	rec.Address = address
	rec.ImageHealthCheck = imageCheck
	if err := r.w.handles.save(rec); err != nil {
		// Without a stored handle a restart would start a duplicate.
		r.w.log.Error("storing a task handle", "task", r.id, "error", err)
		dctx, cancel := r.w.call(ctx, 0)
		_ = r.w.rt.DestroyTask(dctx, r.id, true)
		cancel()
		r.report(&apiv1.TaskStatusUpdate{State: stateFailed, Error: err.Error()})
		return nil
	}
	r.rec, r.recovered, r.cleaned, r.startedAt = rec, true, false, st.StartedAt
	up := &apiv1.TaskStatusUpdate{State: stateRunning, Message: "started", Address: address}
	if taskHealthCheck(want.GetSpec(), imageCheck) != nil {
		// With the RUNNING state, so that no manager counts the task as
		// serving before its first check passes (state.Serving).
		up.Health = healthStarting
	}
	r.report(up)
	if st.State == runtime.StateExited {
		r.mu.Lock()
		oom := r.oom
		r.mu.Unlock()
		r.exited(st, oom)
	}
	return nil
}

// attachAsync attaches the task to the overlay in the background when
// overlay is set; the returned function waits for the attachment and
// returns it (nil without overlay).
func (r *taskRunner) attachAsync(ctx context.Context, want *apiv1.Task, hostname string, overlay bool) func() (*taskNet, error) {
	if !overlay {
		return func() (*taskNet, error) { return nil, nil }
	}
	done := make(chan struct{})
	var tn *taskNet
	var err error
	go func() {
		defer close(done)
		tn, err = r.w.net.attach(ctx, want, hostname)
	}()
	return func() (*taskNet, error) {
		<-done
		return tn, err
	}
}

// dropAttachment undoes the attachment of a task that will not start here.
func (r *taskRunner) dropAttachment(ctx context.Context, attached func() (*taskNet, error)) {
	if tn, err := attached(); err != nil || tn == nil {
		return
	}
	if err := r.w.dropNetwork(ctx, r.id); err != nil {
		r.w.log.Warn("detaching a task that will not start", "task", r.id, "error", err)
	}
}

// startTask starts spec in the runtime, within RuntimeTimeout. A task
// started by an earlier run of this worker that died before storing the
// handle cannot be adopted without one: it is destroyed and started afresh.
// A start that runs out of time is reported FAILED here (and returns
// no error): the runtime did not answer, and the task may run elsewhere.
func (r *taskRunner) startTask(ctx context.Context, spec runtime.TaskSpec) (runtime.TaskHandle, runtime.TaskStatus, error) {
	cctx, cancel := r.w.call(ctx, 0)
	defer cancel()
	h, st, err := r.w.rt.StartTask(cctx, spec)
	if errors.Is(err, sdk.ErrAlreadyExists) {
		r.w.log.Warn("replacing a task started without a stored handle", "task", r.id)
		if err = r.w.rt.DestroyTask(cctx, r.id, true); err == nil {
			h, st, err = r.w.rt.StartTask(cctx, spec)
		}
	}
	if r.w.noAnswer(ctx, err) {
		r.report(r.w.failedNoAnswer(r.id, "StartTask", cctx, r.w.opts.RuntimeTimeout, err))
		return h, st, errReported
	}
	return h, st, err
}

// refusal is the error a task is rejected with when the runtime refused
// spec with err. A runtime that answers unsupported although it declares
// every capability spec needs breaks its own declaration: the error says
// so, for the plugin's author.
func (w *Worker) refusal(spec runtime.TaskSpec, err error) error {
	if !errors.Is(err, sdk.ErrUnsupported) {
		return err
	}
	needs := spec.Needs()
	for _, c := range needs {
		if !slices.Contains(w.rtCaps, c) {
			return err
		}
	}
	return fmt.Errorf("the runtime %s declares the capabilities this task needs (%v) but refused it: %w", w.rtName, needs, err)
}

// errReported is a failure the runner has reported already.
var errReported = errors.New("reported")

// stillWanted reports whether the manager still wants the task running.
func (r *taskRunner) stillWanted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.removed && r.want.GetDesiredState() == desiredRunning
}

// shutdown stops and destroys the task because the manager wants it down,
// and reports SHUTDOWN unless it had ended already.
func (r *taskRunner) shutdown(ctx context.Context, want *apiv1.Task) error {
	if d := r.portDrainLeft(want); d > 0 {
		r.wakeAfter(d)
		return nil
	}
	if err := r.destroy(ctx); err != nil {
		return err
	}
	if !dispatcher.Terminal(r.state) {
		if dispatcher.Terminal(want.GetState()) {
			r.state = want.GetState()
			return nil
		}
		r.report(&apiv1.TaskStatusUpdate{State: stateShutdown, Message: "stopped"})
	}
	return nil
}

// destroy stops the task within its grace period, removes it from the
// runtime and forgets its handle. Repeat-safe.
func (r *taskRunner) destroy(ctx context.Context) error {
	r.stopChecks()
	if r.cleaned {
		return nil
	}
	if !dispatcher.Terminal(r.state) {
		// Grace 0: the task's own stop_grace_period, kept by the runtime.
		sctx, cancel := r.w.call(ctx, r.stopGrace())
		_, err := r.w.rt.StopTask(sctx, r.id, 0)
		cancel()
		if err != nil && !errors.Is(err, sdk.ErrNotFound) {
			if transient(err) || ctx.Err() != nil {
				return err
			}
			r.w.log.Warn("stopping a task failed; killing it", "task", r.id, "error", err)
		}
	}
	// Also without a handle: a task started by an agent that died before
	// storing it may exist.
	dctx, cancel := r.w.call(ctx, 0)
	defer cancel()
	if err := r.w.rt.DestroyTask(dctx, r.id, true); err != nil {
		return err
	}
	if err := r.w.dropNetwork(ctx, r.id); err != nil {
		return err
	}
	if err := r.w.files.drop(r.id); err != nil {
		return err
	}
	r.dropRecord()
	r.cleaned = true
	return nil
}

// stopGrace is how long a stop of the task may wait for its exit: its
// stop_grace_period, or the runtime's default.
func (r *taskRunner) stopGrace() time.Duration {
	r.mu.Lock()
	want := r.want
	r.mu.Unlock()
	if g := want.GetSpec().GetStopGracePeriod().AsDuration(); g > 0 {
		return g
	}
	return runtime.DefaultStopGracePeriod
}

// dropRecord forgets the task's handle, on disk too.
func (r *taskRunner) dropRecord() {
	if r.rec == nil {
		return
	}
	if err := r.w.handles.remove(r.id); err != nil {
		r.w.log.Error("removing a task handle", "task", r.id, "error", err)
	}
	r.rec, r.recovered, r.startedAt = nil, false, time.Time{}
}

// report records a new local state and queues its report.
func (r *taskRunner) report(u *apiv1.TaskStatusUpdate) {
	u.TaskId = r.id
	u.Time = timestamppb.Now()
	r.state = u.GetState()
	r.last = u
	r.lastGen = r.w.gen.Load()
	r.w.reports.add(u)
	r.publish()
}

// rereport sends the last report again when the manager's copy is behind
// it and it was not sent in this session yet: a report the previous leader
// or session lost is not lost for good.
func (r *taskRunner) rereport(want *apiv1.Task) {
	if r.last == nil || want == nil || want.GetId() != r.id {
		return
	}
	gen := r.w.gen.Load()
	if r.lastGen == gen || dispatcher.Rank(want.GetState()) >= dispatcher.Rank(r.last.GetState()) {
		return
	}
	r.lastGen = gen
	r.w.reports.add(r.last)
}

// failedNoAnswer is the report of a task whose runtime call (call) ran out
// of time: see noAnswerError.
func (w *Worker) failedNoAnswer(taskID, call string, callCtx context.Context, limit time.Duration, err error) *apiv1.TaskStatusUpdate {
	return &apiv1.TaskStatusUpdate{TaskId: taskID, State: stateFailed, Error: w.noAnswerError(call, callCtx, limit, err), Time: timestamppb.Now()}
}

// rejected is the report of a task that cannot run here.
func rejected(taskID string, err error) *apiv1.TaskStatusUpdate {
	return &apiv1.TaskStatusUpdate{TaskId: taskID, State: stateRejected, Error: err.Error(), Time: timestamppb.Now()}
}

// transient reports whether a runtime call may succeed when retried: the
// plugin is restarting, the call timed out or the worker is stopping.
func transient(err error) bool {
	return errors.Is(err, sdk.ErrPluginUnavailable) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
