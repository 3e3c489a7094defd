package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/orchestrator"
	"github.com/warrenorch/warren/core/state"
)

// Waiting for a service to converge: `service create`, `scale` and `update`
// open an Events subscription before their change, then list the service's
// tasks again on each event about it (and on a slow safety ticker) until
// every slot runs a task of the new spec and no task that is no longer
// wanted still runs.

const (
	// defaultConvergeTimeout is --timeout-converge's default.
	defaultConvergeTimeout = 2 * time.Minute
	// maxSlotLines is the most slots the terminal display draws a line for;
	// beyond it, only the overall progress shows (as docker does).
	maxSlotLines = 20
	// barWidth is the width of a slot's progress bar.
	barWidth = 50
)

// convergeResync is how often the tasks are listed again when no event
// comes: a safety net, events do the work. A variable for tests.
var convergeResync = time.Second

// convergeOptions are the flags of the commands that change a service and
// wait for it to converge.
type convergeOptions struct {
	detach  bool
	quiet   bool
	timeout time.Duration
}

func (o *convergeOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVarP(&o.detach, "detach", "d", false, "return once the change is committed, without waiting for the tasks to converge")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "print no progress while waiting")
	f.DurationVar(&o.timeout, "timeout-converge", defaultConvergeTimeout, "give up waiting for the tasks to converge after this long (0: no limit)")
}

// check refuses flag values that make no sense.
func (o *convergeOptions) check() error {
	if o.timeout < 0 {
		return usageErrorf("invalid --timeout-converge %s: cannot be negative (0 means no limit)", o.timeout)
	}
	return nil
}

// watchService subscribes to service and task events when the command is to
// wait, before it changes anything, so that no change of the tasks is missed
// between the change and the first listing. It returns nil with --detach.
func (o *convergeOptions) watchService(ctx context.Context, c *agentClient) (*watch, error) {
	if o.detach {
		return nil, nil
	}
	return startWatch(ctx, c)
}

// connect checks the wait flags, dials the agent and, unless --detach,
// subscribes before the command changes anything. The caller runs done
// when it is finished with both.
func (o *convergeOptions) connect(ctx context.Context, g *globalOptions) (c *agentClient, w *watch, done func(), err error) {
	if err := o.check(); err != nil {
		return nil, nil, nil, err
	}
	if c, err = g.dial(ctx); err != nil {
		return nil, nil, nil, err
	}
	if w, err = o.watchService(ctx, c); err != nil {
		c.Close()
		return nil, nil, nil, err
	}
	return c, w, func() { w.stop(); c.Close() }, nil
}

// wait waits until svc (as the change left it) converges, printing progress
// to cmd's output unless --quiet. verb says what was done ("created"), for
// the messages. It returns nil with --detach (w is nil then).
func (o *convergeOptions) wait(cmd *cobra.Command, c *agentClient, w *watch, svc *apiv1.Service, verb string) error {
	if o.detach || w == nil {
		return nil
	}
	switch mode := svc.GetSpec().GetMode(); {
	case apiv1.IsJob(mode):
		fmt.Fprintf(cmd.ErrOrStderr(), "job: not waiting for it to complete (see 'warren service ls' and 'warren service ps %s')\n", svc.GetSpec().GetName())
		return nil
	case mode == apiv1.ServiceMode_SERVICE_MODE_GLOBAL:
		fmt.Fprintf(cmd.ErrOrStderr(), "global service: not waiting for its tasks (see 'warren service ps %s')\n", svc.GetSpec().GetName())
		return nil
	}
	out := cmd.OutOrStdout()
	p := newProgressPrinter(out, isTerminal(out))
	if o.quiet {
		p = newProgressPrinter(io.Discard, false)
	}
	wt := &waiter{c: c, w: w, svc: svc, verb: verb, timeout: o.timeout, p: p, stderr: cmd.ErrOrStderr()}
	return wt.run(cmd.Context())
}

// isTerminal reports whether w (a command's output or input) is a
// terminal.
func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// ---- the event subscription ----

// watch is an Events subscription (kinds service and task) read by a
// goroutine into events. After a lagging subscription is dropped by the
// agent it subscribes again and sends a nil event: list everything again.
type watch struct {
	c      *agentClient
	events chan *apiv1.Event
	cancel context.CancelFunc
	// done is closed when the subscription has ended for good, err saying
	// why.
	done chan struct{}
	err  error
}

// startWatch subscribes and returns once the agent has confirmed the
// subscription (the agent sends the stream's headers when it has
// subscribed), so that every change after it is seen.
func startWatch(ctx context.Context, c *agentClient) (*watch, error) {
	ctx, cancel := context.WithCancel(ctx)
	w := &watch{
		c:      c,
		events: make(chan *apiv1.Event, 256),
		cancel: cancel,
		done:   make(chan struct{}),
	}
	stream, err := w.subscribe(ctx)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("cannot follow the service's tasks (nothing was changed; --detach does not wait): %w", err)
	}
	go w.read(ctx, stream)
	return w, nil
}

func (w *watch) subscribe(ctx context.Context) (apiv1.Warren_EventsClient, error) {
	stream, err := w.c.Events(ctx, &apiv1.EventsRequest{Kinds: []string{"service", "task"}})
	if err != nil {
		return nil, err
	}
	if _, err := stream.Header(); err != nil {
		return nil, err
	}
	return stream, nil
}

func (w *watch) read(ctx context.Context, stream apiv1.Warren_EventsClient) {
	defer close(w.done)
	for {
		ev, err := stream.Recv()
		if status.Code(err) == codes.ResourceExhausted && ctx.Err() == nil {
			// The agent dropped us for falling behind: subscribe again,
			// and have everything listed again for what was missed.
			if stream, err = w.subscribe(ctx); err == nil {
				ev = nil
			}
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("the agent ended the event stream")
		}
		if err != nil {
			w.err = err
			return
		}
		select {
		case w.events <- ev:
		case <-ctx.Done():
			w.err = ctx.Err()
			return
		}
	}
}

// stop ends the subscription and waits for its goroutine.
func (w *watch) stop() {
	if w == nil {
		return
	}
	w.cancel()
	<-w.done
}

// ---- the wait ----

// waiter waits for one service.
type waiter struct {
	c       *agentClient
	w       *watch
	svc     *apiv1.Service
	verb    string
	timeout time.Duration
	p       *progressPrinter
	stderr  io.Writer
}

func (wt *waiter) run(ctx context.Context) error {
	var timeout <-chan time.Time
	if wt.timeout > 0 {
		t := time.NewTimer(wt.timeout)
		defer t.Stop()
		timeout = t.C
	}
	resync := time.NewTicker(convergeResync)
	defer resync.Stop()

	var last convergence
	relist := true
	for {
		if relist {
			tasks, err := wt.c.listTasks(ctx, &apiv1.ListTasksRequest{Service: wt.svc.GetId(), All: true, View: apiv1.TaskView_TASK_VIEW_BASIC})
			if err != nil {
				return wt.failed(ctx, err)
			}
			last = assess(wt.svc, tasks)
			wt.p.update(wt.svc, last, tasks)
			if err := updateEnded(wt.svc); err != nil {
				return err
			}
			if n := canariesWaiting(wt.svc, tasks, time.Now()); n > 0 {
				name := wt.svc.GetSpec().GetName()
				fmt.Fprintf(wt.p.out, "canary: %d task(s) of the new spec serving beside the old ones; 'warren service promote %s' rolls the rest, 'warren service rollback %s' undoes the update\n", n, name, name)
				return nil
			}
			if last.done {
				wt.p.converged()
				return nil
			}
			if last.stuck != "" {
				return fmt.Errorf("service %s but not converging: every slot failed %d times in a row with %s; see 'warren service ps %s'",
					wt.verb, stuckFailures, last.stuck, wt.svc.GetSpec().GetName())
			}
			relist = false
		}
		select {
		case <-ctx.Done():
			return wt.interrupted()
		case <-timeout:
			return fmt.Errorf("service %s but not converged after %s: %s; see 'warren service ps %s'",
				wt.verb, wt.timeout, last.summary(), wt.svc.GetSpec().GetName())
		case <-resync.C:
			relist = true
		case <-wt.w.done:
			return wt.failed(ctx, wt.w.err)
		case ev := <-wt.w.events:
			for more := true; more; {
				r, err := wt.handle(ev)
				if err != nil {
					return err
				}
				relist = relist || r
				select {
				case ev = <-wt.w.events:
				default:
					more = false
				}
			}
		}
	}
}

// updateEnded is the error that ends the wait for svc when its update
// stopped short: paused, or rolled back (or rolling back).
func updateEnded(svc *apiv1.Service) error {
	st := svc.GetUpdateStatus()
	name := svc.GetSpec().GetName()
	switch st.GetState() {
	case apiv1.UpdateStatus_STATE_PAUSED, apiv1.UpdateStatus_STATE_ROLLBACK_PAUSED:
		return fmt.Errorf("service %s: %s; a new 'warren service update' or 'warren service rollback %s' resumes", name, st.GetMessage(), name)
	case apiv1.UpdateStatus_STATE_ROLLBACK_STARTED, apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED:
		if strings.HasPrefix(st.GetMessage(), "update rolled back") {
			return fmt.Errorf("service %s: %s; see 'warren service inspect %s'", name, st.GetMessage(), name)
		}
	}
	return nil
}

// canariesWaiting returns how many canaries of svc serve while its update
// waits for a promote by hand: 0 unless the update is in state CANARY
// without auto_promote and all its canaries have served (RUNNING and, with
// a health check, healthy) through the monitor window, as long as a
// failure still rolls them back by the orchestrator's measure (from their
// last change).
func canariesWaiting(svc *apiv1.Service, tasks []*apiv1.Task, now time.Time) int {
	p := svc.GetSpec().GetUpdatePolicy()
	if svc.GetUpdateStatus().GetState() != apiv1.UpdateStatus_STATE_CANARY || p.GetAutoPromote() {
		return 0
	}
	monitor := orchestrator.DefaultMonitor
	if m := p.GetMonitor(); m != nil {
		monitor = m.AsDuration()
	}
	key, n := state.SpecDigest(svc.GetSpec()), 0
	for _, t := range tasks {
		if t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && state.Serving(t) && t.GetSpecDigest() == key {
			if now.Sub(t.GetUpdatedAt().AsTime()) < monitor {
				return 0
			}
			n++
		}
	}
	if want := int(min(uint64(p.GetCanary()), svc.GetSpec().GetReplicas())); n < want {
		return 0
	}
	return n
}

// handle takes in one event and reports whether the tasks are to be listed
// again.
func (wt *waiter) handle(ev *apiv1.Event) (relist bool, err error) {
	if ev == nil {
		return true, nil // subscribed again after lagging
	}
	switch ev.GetKind() {
	case "task":
		t := ev.GetTask()
		if t == nil {
			return true, nil
		}
		if t.GetServiceId() != wt.svc.GetId() {
			return false, nil
		}
		// Events carry the task as it is: a failure is reported even when
		// the task is replaced before the next listing.
		wt.p.observe(wt.svc, t)
		return true, nil
	case "service":
		if ev.GetId() != wt.svc.GetId() {
			return false, nil
		}
		if ev.GetAction() == apiv1.EventAction_EVENT_ACTION_DELETED {
			return false, fmt.Errorf("service %s was removed while waiting for it to converge", wt.svc.GetSpec().GetName())
		}
		if s := ev.GetService(); s != nil && s.GetVersion() > wt.svc.GetVersion() {
			wt.svc = s // changed again since: wait for what it is now
		}
		return true, nil
	}
	return true, nil // kind cluster (state restored from a snapshot) and the like
}

// failed is the error for a call that failed while waiting: an interrupt,
// or the agent's error with a word on the change, which was made.
func (wt *waiter) failed(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return wt.interrupted()
	}
	return fmt.Errorf("service %s, but following its tasks failed: %w; see 'warren service ps %s'",
		wt.verb, err, wt.svc.GetSpec().GetName())
}

// interrupted says that the change stays, and ends the command with 130.
func (wt *waiter) interrupted() error {
	name := wt.svc.GetSpec().GetName()
	fmt.Fprintf(wt.stderr, "Error: interrupted while waiting: service %s was %s and stays so; its tasks keep converging (see 'warren service ps %s')\n",
		name, wt.verb, name)
	return &reportedError{code: 130}
}

// ---- what converged means ----

// convergence is where a service's tasks stand against its spec.
type convergence struct {
	replicas uint64
	// slots holds the task that stands for each slot 1..replicas: its
	// newest task of the current spec that the cluster wants running. A
	// slot without one is missing.
	slots map[uint64]*apiv1.Task
	// running counts the slots whose task serves: runs and, when it is
	// health-checked (the service's check or its image's), is healthy.
	running uint64
	// stale counts the tasks that still run (or start) but are not wanted:
	// older versions, slots beyond replicas.
	stale int
	done  bool
	// stuck is the failure every slot has had stuckFailures times in a
	// row, when they all have: waiting longer shows nothing new.
	stuck string
}

// stuckFailures is how many failures in a row of every slot, all the
// same, end the wait before its timeout.
const stuckFailures = 3

// assess compares tasks (all the tasks of svc, history included) with svc.
// svc has converged when every slot 1..replicas has a task of the current
// spec (its version or a later one, or an older version with the same spec
// once replicas and update policy are set aside, as a scale leaves them)
// that is wanted and serving (state.Serving: running and, when it is
// health-checked, healthy: an update whose new task never passes its
// check does not converge, it rolls back or pauses), and no other task
// runs. With 0 replicas, when no task runs.
func assess(svc *apiv1.Service, tasks []*apiv1.Task) convergence {
	c := convergence{replicas: svc.GetSpec().GetReplicas(), slots: map[uint64]*apiv1.Task{}}
	key := state.SpecDigest(svc.GetSpec())
	for _, t := range tasks {
		s := t.GetSlot()
		if !wanted(t) || s < 1 || s > c.replicas || !upToDate(t, svc, key) {
			continue
		}
		if cur := c.slots[s]; cur == nil || newer(t, cur) {
			c.slots[s] = t
		}
	}
	for _, t := range tasks {
		if t == c.slots[t.GetSlot()] {
			if state.Serving(t) {
				c.running++
			}
		} else if active(t) {
			c.stale++
		}
	}
	c.done = c.running == c.replicas && c.stale == 0
	c.stuck = c.commonFailure()
	return c
}

// commonFailure is the failure every slot's task follows, when every slot
// has one that has not started after stuckFailures failures in a row (its
// attempt counts them) and they all say the same; "" otherwise.
func (c convergence) commonFailure() string {
	if c.replicas == 0 || c.running > 0 || uint64(len(c.slots)) < c.replicas {
		return ""
	}
	common := ""
	for _, t := range c.slots {
		msg, previous := slotProblem(t)
		if !previous || t.GetAttempt() <= stuckFailures || (common != "" && msg != common) {
			return ""
		}
		common = msg
	}
	return common
}

// wanted reports whether the cluster wants t to run.
func wanted(t *apiv1.Task) bool {
	return t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING
}

// active reports whether t runs or is about to: it counts against a
// converged service when it is not wanted.
func active(t *apiv1.Task) bool {
	s := t.GetState()
	return s == apiv1.TaskState_TASK_STATE_STARTING || s == apiv1.TaskState_TASK_STATE_RUNNING
}

// upToDate reports whether t (as ListTasks lists it, in either view) was
// made from svc's current spec; key is state.SpecDigest(svc.spec).
func upToDate(t *apiv1.Task, svc *apiv1.Service, key string) bool {
	if t.GetServiceVersion() >= svc.GetVersion() {
		return true
	}
	return t.GetSpecDigest() != "" && t.GetSpecDigest() == key
}

// newer reports whether a was made after b.
func newer(a, b *apiv1.Task) bool {
	return cmp.Or(
		a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()),
		cmp.Compare(a.GetServiceVersion(), b.GetServiceVersion()),
		cmp.Compare(a.GetId(), b.GetId()),
	) > 0
}

// summary says how far from converged c is: "1/3 running", with
// ", 2 old tasks still running" when tasks no longer wanted still run.
func (c convergence) summary() string {
	s := fmt.Sprintf("%d/%d running", c.running, c.replicas)
	if c.stale > 0 {
		s += ", " + plural(c.stale, "task") + " to stop still running"
	}
	return s
}

// plural is "1 task", "2 tasks".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// ---- progress output ----

// progressPrinter shows a wait: on a terminal, an overall line and a line
// per slot redrawn in place; elsewhere, a line each time the overall
// progress changes. In both, task failures (and why a task is pending) are
// printed as they happen, once for a slot whose tasks keep failing the same
// way:
//
//	1/3: rejected "image busybox:nope not found"
type progressPrinter struct {
	out io.Writer
	tty bool

	// reported holds what was said about each task, so it is said once;
	// lastBySlot the last thing said about each slot, so that a crash loop
	// failing the same way each time is reported once.
	reported   map[string]string
	lastBySlot map[uint64]string
	// seen holds the tasks seen unfinished during the wait: their failures
	// are news, whatever their version.
	seen map[string]bool

	lastOverall string // plain: the last progress line printed
	lastStale   string
	drawn       []string // terminal: the block on the screen
	pending     []string // lines to print above the block
}

func newProgressPrinter(out io.Writer, tty bool) *progressPrinter {
	return &progressPrinter{out: out, tty: tty, reported: map[string]string{}, lastBySlot: map[uint64]string{}, seen: map[string]bool{}}
}

// observe notes a task and queues a line about its failure, or why it is
// pending, the first time.
func (p *progressPrinter) observe(svc *apiv1.Service, t *apiv1.Task) {
	state := t.GetState()
	if state < apiv1.TaskState_TASK_STATE_COMPLETE {
		p.seen[t.GetId()] = true
	}
	replicas := svc.GetSpec().GetReplicas()
	if t.GetSlot() < 1 || t.GetSlot() > replicas {
		return // being removed: its fate is not news
	}
	// Only this change's tasks, or tasks seen during the wait: not the
	// failures kept as history from before.
	if t.GetServiceVersion() < svc.GetVersion() && !p.seen[t.GetId()] {
		return
	}
	var why string
	switch state {
	case apiv1.TaskState_TASK_STATE_FAILED, apiv1.TaskState_TASK_STATE_REJECTED,
		apiv1.TaskState_TASK_STATE_ORPHANED, apiv1.TaskState_TASK_STATE_COMPLETE:
		why = cmp.Or(t.GetError(), t.GetMessage())
		if why == "" && state != apiv1.TaskState_TASK_STATE_ORPHANED {
			why = fmt.Sprintf("exit code %d", t.GetExitCode())
		}
	case apiv1.TaskState_TASK_STATE_PENDING:
		why = t.GetMessage()
		if why == "" {
			return
		}
	default:
		return
	}
	line := fmt.Sprintf("%d/%d: %s %q", t.GetSlot(), replicas, enumText(state, "-"), why)
	if p.reported[t.GetId()] == line {
		return
	}
	p.reported[t.GetId()] = line
	if p.lastBySlot[t.GetSlot()] == line {
		return // the slot's replacement failed as the one before
	}
	p.lastBySlot[t.GetSlot()] = line
	p.pending = append(p.pending, line)
}

// update shows c, after observing tasks.
func (p *progressPrinter) update(svc *apiv1.Service, c convergence, tasks []*apiv1.Task) {
	for _, t := range tasks {
		p.observe(svc, t)
	}
	overall := fmt.Sprintf("overall progress: %d out of %d tasks", c.running, c.replicas)
	stale := ""
	if c.running == c.replicas && c.stale > 0 {
		stale = "verify: waiting for " + plural(c.stale, "task") + " to stop"
	}
	if p.tty {
		block := []string{overall}
		if c.replicas <= maxSlotLines {
			for s := uint64(1); s <= c.replicas; s++ {
				block = append(block, slotLine(s, c.replicas, c.slots[s]))
			}
		}
		if stale != "" {
			block = append(block, stale)
		}
		p.redraw(block)
		return
	}
	var b strings.Builder
	for _, l := range p.pending {
		b.WriteString(l + "\n")
	}
	p.pending = nil
	if overall != p.lastOverall {
		b.WriteString(overall + "\n")
		p.lastOverall = overall
	}
	if stale != p.lastStale && stale != "" {
		b.WriteString(stale + "\n")
	}
	p.lastStale = stale
	io.WriteString(p.out, b.String())
}

// redraw replaces the block on the terminal, printing the queued lines
// above it (where they stay).
func (p *progressPrinter) redraw(block []string) {
	if len(p.pending) == 0 && slices.Equal(block, p.drawn) {
		return
	}
	var b strings.Builder
	if len(p.drawn) > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", len(p.drawn)) // back to the block's first line
	}
	for _, l := range append(p.pending, block...) {
		b.WriteString("\x1b[2K" + l + "\n") // clear the line, write the new one
	}
	b.WriteString("\x1b[J") // clear what a longer block left below
	p.pending, p.drawn = nil, block
	io.WriteString(p.out, b.String())
}

// converged ends the display.
func (p *progressPrinter) converged() {
	io.WriteString(p.out, "verify: Service converged\n")
}

// slotLine is a slot on the terminal:
//
//	1/3: running   [==================================================>]
//	2/3: preparing [=================================>                 ]
func slotLine(slot, replicas uint64, t *apiv1.Task) string {
	state, step := "waiting", 0
	if t != nil {
		state = enumText(t.GetState(), "new")
		switch s := t.GetState(); {
		case s <= apiv1.TaskState_TASK_STATE_NEW:
			step = 1
		case s <= apiv1.TaskState_TASK_STATE_RUNNING:
			step = int(s) // PENDING 2 ... RUNNING 6
		}
	}
	fill := barWidth * step / int(apiv1.TaskState_TASK_STATE_RUNNING)
	return fmt.Sprintf("%d/%d: %-9s [%s>%s]", slot, replicas, state,
		strings.Repeat("=", fill), strings.Repeat(" ", barWidth-fill))
}
