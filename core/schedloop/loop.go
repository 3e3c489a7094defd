package schedloop

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/leaderloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Defaults for Deps.
const (
	DefaultBatchWindow = 2 * time.Millisecond
	DefaultResync      = 10 * time.Second
)

// A round's placements are committed in entries of at most PaceTasks
// tasks, each once the sessions have no more than PaceBacklog changes
// left to send (Deps.AwaitDelivered), waiting at most PaceWait: a worker
// that stops reading holds its changes until its session ends, and must
// not hold up the placements of every other node for long.
const (
	PaceTasks   = 250
	PaceBacklog = 50
	PaceWait    = 200 * time.Millisecond
)

// ScheduleTimeout bounds one call of the scheduler plugin.
const ScheduleTimeout = 30 * time.Second

const eventBuffer = 1 << 16

// Proposer proposes a typed command through Raft and waits until it is
// applied (raftnode.Node).
type Proposer interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
}

// Deps are what Run needs.
type Deps struct {
	State     *state.State
	Events    *events.Broker
	Raft      Proposer
	Scheduler scheduler.Scheduler
	Logger    hclog.Logger
	// BatchWindow is how long after a round the next one waits to collect
	// more events (an event after a quiet spell gets its round at once,
	// see leaderloop.Loop); 0 means DefaultBatchWindow.
	BatchWindow time.Duration
	// Resync is the period of the safety-net round over every task; 0
	// means DefaultResync.
	Resync time.Duration
	// Clock returns the time; nil means time.Now.
	Clock func() time.Time
	// AwaitDelivered, if set, returns once at most limit task changes
	// wait to be sent to the workers, or with ctx's error
	// (dispatcher.Dispatcher.AwaitDelivered); the loop paces its entries
	// of placements with it.
	AwaitDelivered func(ctx context.Context, limit int) error
	// OnSchedule, if set, is told of every call to the scheduler plugin:
	// how long it took, how many tasks it was asked to place and its
	// error (metrics).
	OnSchedule func(took time.Duration, tasks int, err error)
}

// Run places tasks until ctx ends, then returns nil. It must run on the
// Raft leader only: start it when this manager becomes leader and cancel
// ctx when it stops being leader.
//
// It wakes when a task starts waiting for a node, when a node changes, and
// when a task on a node finishes or is removed while others wait (room
// was freed); also every Resync and after a snapshot restore or a lagged
// subscription, which rescan every task. At once after a quiet spell (else
// once BatchWindow after the last round has passed) it gathers every
// waiting task, calls the scheduler once for all of them and commits the
// outcome in AssignTasks entries of PaceTasks tasks each, paced to what the
// sessions have sent (see PaceTasks). Rounds run one
// at a time and Apply returns once the entry is in the state, so a round
// never places a task again that an earlier round placed; a task changed
// by someone else between the plan and the commit is left for the next
// round.
func Run(ctx context.Context, d Deps) error {
	if d.State == nil || d.Events == nil || d.Raft == nil || d.Scheduler == nil {
		return errors.New("schedloop: State, Events, Raft and Scheduler are required")
	}
	l := &loop{Deps: d}
	if l.Logger == nil {
		l.Logger = hclog.NewNullLogger()
	}
	l.Logger = l.Logger.Named("schedloop")
	if l.Clock == nil {
		l.Clock = time.Now
	}
	if l.Resync <= 0 {
		l.Resync = DefaultResync
	}
	if l.BatchWindow <= 0 {
		l.BatchWindow = DefaultBatchWindow
	}

	w := newWatcher(d.Events, l.Logger)
	l.w = w
	wctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-w.done }()
	go w.run(wctx)

	return leaderloop.Run(ctx, leaderloop.Loop{
		Name: "schedloop", Round: "scheduling round", Logger: l.Logger,
		BatchWindow: l.BatchWindow, Resync: l.Resync,
		Wake: w.wake, Ended: w.ended, Full: w.markFull,
		Run: func(ctx context.Context) error {
			ids, full, ok := w.take()
			if !ok {
				return nil
			}
			return l.round(ctx, ids, full)
		},
	})
}

type loop struct {
	Deps
	w *watcher
}

// round places the waiting tasks among ids (all tasks when full).
func (l *loop) round(ctx context.Context, ids []string, full bool) error {
	now := l.Clock()
	var batch []*apiv1.Task
	var gone []string
	if full {
		for _, t := range l.State.Tasks(state.TaskFilter{}) {
			if NeedsPlacement(t) {
				batch = append(batch, t)
			}
		}
	} else {
		for _, id := range ids {
			if t, ok := l.State.Task(id); ok && NeedsPlacement(t) {
				batch = append(batch, t)
			} else {
				gone = append(gone, id)
			}
		}
	}
	l.w.track(batch, gone)
	if len(batch) == 0 {
		return nil
	}
	writes, err := l.schedule(ctx, batch, now)
	if err != nil {
		// The tasks say why they wait; the round is tried again.
		if cerr := l.commit(ctx, writes); cerr != nil {
			l.Logger.Error("marking the batch pending", "error", cerr)
		}
		return err
	}
	return l.commit(ctx, writes)
}

// schedule asks the scheduler for a plan for batch and returns the task
// writes it calls for. An error means the plugin could not be asked: the
// writes then make the batch PENDING with SchedulerFailedPrefix and the
// error. An invalid plan is not an error but PENDING tasks.
func (l *loop) schedule(ctx context.Context, batch []*apiv1.Task, now time.Time) ([]*apiv1.Task, error) {
	// Oldest first: placements follow the batch's order.
	slices.SortFunc(batch, func(a, b *apiv1.Task) int {
		if c := a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()); c != 0 {
			return c
		}
		if c := strings.Compare(a.GetServiceName(), b.GetServiceName()); c != 0 {
			return c
		}
		if c := cmp.Compare(a.GetSlot(), b.GetSlot()); c != 0 {
			return c
		}
		return strings.Compare(a.GetId(), b.GetId())
	})
	tasksOn := func(id string) []*apiv1.Task { return l.State.Tasks(state.TaskFilter{NodeID: id}) }
	req, sent, rejected := BuildRequest(l.State.Nodes(), tasksOn, batch, l.State.VolumeByName)

	var writes []*apiv1.Task
	for _, t := range batch {
		if msg, bad := rejected[t.GetId()]; bad {
			if w, ok := Pending(t, msg, now); ok {
				writes = append(writes, w)
			}
		}
	}
	if len(sent) == 0 {
		return writes, nil
	}
	cctx, cancel := context.WithTimeout(ctx, ScheduleTimeout)
	start := time.Now()
	plan, err := l.Scheduler.Schedule(cctx, req)
	cancel()
	if l.OnSchedule != nil {
		l.OnSchedule(time.Since(start), len(sent), err)
	}
	if err != nil {
		msg := SchedulerFailedPrefix + err.Error()
		for _, t := range sent {
			if w, ok := Pending(t, msg, now); ok {
				writes = append(writes, w)
			}
		}
		return writes, fmt.Errorf("scheduler plugin: schedule %d tasks: %w", len(sent), err)
	}
	invalid := scheduler.Validate(req, plan)
	if invalid != nil {
		l.Logger.Error("scheduler returned an invalid plan; the batch stays pending", "tasks", len(sent), "error", invalid)
	}
	return append(writes, Outcome(sent, plan, invalid, now)...), nil
}

// commit writes the outcome of a round as assignments, each expecting
// the task version the round read: the FSM skips a task that changed since
// (another writer got there first). Those that changed already are left
// out here too, which spares the entry when none is left.
func (l *loop) commit(ctx context.Context, writes []*apiv1.Task) error {
	var as []*fsmpb.TaskAssignment
	placed := 0
	for _, w := range writes {
		cur, ok := l.State.Task(w.GetId())
		if !ok || cur.GetVersion() != w.GetVersion() || !NeedsPlacement(cur) {
			continue
		}
		a := &fsmpb.TaskAssignment{TaskId: w.GetId(), ExpectedVersion: w.GetVersion(), UpdatedAt: w.GetUpdatedAt()}
		if w.GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED {
			a.NodeId = w.GetNodeId()
			placed++
		} else {
			a.Message = w.GetMessage()
		}
		as = append(as, a)
	}
	// By node, so that an entry holds all of a node's placements of the
	// round and its worker gets them in one message.
	slices.SortStableFunc(as, func(a, b *fsmpb.TaskAssignment) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
	for _, chunk := range leaderloop.Chunks(as, leaderloop.MaxEntryBytes) {
		for run := range slices.Chunk(chunk, PaceTasks) {
			l.pace(ctx)
			if _, err := l.Raft.Apply(ctx, &fsmpb.AssignTasks{Assignments: run}); err != nil {
				return fmt.Errorf("commit placements of %d tasks: %w", len(run), err)
			}
		}
	}
	if len(as) > 0 {
		l.Logger.Info("scheduled", "assigned", placed, "pending", len(as)-placed)
	}
	return nil
}

// pace waits, before an entry of placements, until the sessions have at
// most PaceBacklog changes left to send (for at most PaceWait): a placement
// then reaches its worker within a delivery or two of its commit instead
// of queueing behind the rest of a large round.
func (l *loop) pace(ctx context.Context) {
	if l.AwaitDelivered == nil {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, PaceWait)
	defer cancel()
	if err := l.AwaitDelivered(wctx, PaceBacklog); err != nil && ctx.Err() == nil {
		l.Logger.Debug("placing on: the sessions are still sending", "waited", PaceWait)
	}
}

// watcher drains the event subscription in its own goroutine. It keeps the
// set of tasks waiting for a node (so rounds need no full scan) and whether
// anything happened that calls for a round.
type watcher struct {
	bus    *events.Broker
	logger hclog.Logger
	watch  *events.Watcher

	mu      sync.Mutex
	waiting map[string]struct{}
	trigger bool
	full    bool

	wake  chan struct{}
	ended chan struct{}
	done  chan struct{}
}

func newWatcher(bus *events.Broker, logger hclog.Logger) *watcher {
	w := &watcher{
		bus: bus, logger: logger, waiting: map[string]struct{}{},
		wake: make(chan struct{}, 1), ended: make(chan struct{}), done: make(chan struct{}),
	}
	w.watch = bus.Watch(wanted, eventBuffer)
	return w
}

func wanted(ev *apiv1.Event) bool {
	switch ev.GetKind() {
	case "task", "node", "volume", "cluster":
		return true
	}
	return false
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	err := w.watch.Run(ctx, w.add, func() {
		w.logger.Warn("event subscription fell behind; resubscribing and rescanning every task")
		w.markFull()
	})
	if err != nil {
		close(w.ended)
	}
}

func (w *watcher) add(ev *apiv1.Event) {
	switch ev.GetKind() {
	case "node", "volume":
		// A node's change, or a volume put on a node, may let waiting
		// tasks be placed.
		w.mu.Lock()
		w.trigger = true
		w.mu.Unlock()
		w.signal()
		return
	case "cluster":
		w.markFull()
		return
	}
	t := ev.GetTask()
	id := t.GetId()
	w.mu.Lock()
	_, known := w.waiting[id]
	fire := false
	switch {
	case ev.GetAction() == apiv1.EventAction_EVENT_ACTION_DELETED:
		delete(w.waiting, id)
		// Room freed on its node for the tasks that wait.
		fire = t.GetNodeId() != "" && !terminal(t.GetState()) && len(w.waiting) > 0
	case NeedsPlacement(t):
		// New work; a task already waiting (PENDING again after a round)
		// calls for no round of its own.
		w.waiting[id] = struct{}{}
		fire = !known
	default:
		delete(w.waiting, id)
		fire = t.GetNodeId() != "" && terminal(t.GetState()) && len(w.waiting) > 0
	}
	if fire {
		w.trigger = true
	}
	w.mu.Unlock()
	if fire {
		w.signal()
	}
}

func (w *watcher) markFull() {
	w.mu.Lock()
	w.full = true
	w.mu.Unlock()
	w.signal()
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// track records what a round found: batch waits for a node, gone no
// longer does (and never will again: states only move forward).
func (w *watcher) track(batch []*apiv1.Task, gone []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, t := range batch {
		w.waiting[t.GetId()] = struct{}{}
	}
	for _, id := range gone {
		delete(w.waiting, id)
	}
}

// take returns the waiting tasks' IDs and whether to rescan everything; ok
// is false when nothing calls for a round.
func (w *watcher) take() (ids []string, full, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.trigger && !w.full {
		return nil, false, false
	}
	full = w.full
	w.trigger, w.full = false, false
	if full {
		return nil, true, true
	}
	ids = make([]string, 0, len(w.waiting))
	for id := range w.waiting {
		ids = append(ids, id)
	}
	return ids, false, true
}
