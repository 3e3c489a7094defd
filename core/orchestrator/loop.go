package orchestrator

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/leaderloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// Defaults for Deps.
const (
	DefaultResync      = 30 * time.Second
	DefaultBatchWindow = 2 * time.Millisecond
)

// eventBuffer is the subscription's buffer. A dedicated goroutine drains
// it, so it only has to absorb one applied batch's burst.
const eventBuffer = 1 << 16

// Proposer proposes a typed command through Raft and waits until it is
// applied (raftnode.Node).
type Proposer interface {
	Apply(ctx context.Context, cmd fsm.Command) (any, error)
}

// Deps are what Run needs.
type Deps struct {
	State  *state.State
	Events *events.Broker
	Raft   Proposer
	Logger hclog.Logger
	// Clock returns the time; nil means time.Now.
	Clock func() time.Time
	// Resync is the period of the safety-net reconcile of every service;
	// 0 means DefaultResync.
	Resync time.Duration
	// BatchWindow is how long after a round the next one waits to collect
	// more events (an event after a quiet spell gets its round at once,
	// see leaderloop.Loop); 0 means DefaultBatchWindow.
	BatchWindow time.Duration
	Config      Config
	// NewID returns the IDs of new tasks; nil means api.NewID.
	NewID func() string
	// OnRestarts, if set, is told how many replacement tasks (Create with
	// Restart) a round committed (metrics).
	OnRestarts func(n int)
}

// Run reconciles services until ctx ends, then returns nil. It must run on
// the Raft leader only: start it when this manager becomes leader and
// cancel ctx when it stops being leader (commits then fail with
// raftnode.ErrNotLeader and are retried with backoff until ctx ends).
//
// Run reconciles every service at start, then the services named by
// service and task events and those with tasks on the nodes named by node
// events (at once after a quiet spell, else collected until BatchWindow
// after the last round), and every service
// again each Resync and after a snapshot restore or a lagged event
// subscription, and a service at the time a Recheck action of its round
// asks for (see rechecker). Each round's actions are committed in one SetDesiredState
// (shutdowns, orphans and notes) and one CreateTasks, in one entry when both
// fit, and one RemoveTasks entry, split only past leaderloop.MaxEntryBytes. Rounds run one at a time, and Apply returns once
// the entry is in the state, so a round always sees the previous round's
// writes.
func Run(ctx context.Context, d Deps) error {
	if d.State == nil || d.Events == nil || d.Raft == nil {
		return errors.New("orchestrator: State, Events and Raft are required")
	}
	l := &loop{Deps: d}
	if l.Logger == nil {
		l.Logger = hclog.NewNullLogger()
	}
	l.Logger = l.Logger.Named("orchestrator")
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
	wctx, stop := context.WithCancel(ctx)
	defer func() { stop(); <-w.done }()
	go w.run(wctx)
	l.rechecks = newRechecker(w, l.Clock)

	var ids, nodes map[string]struct{}
	var full bool
	return leaderloop.Run(ctx, leaderloop.Loop{
		Name: "orchestrator", Round: "reconcile round", Logger: l.Logger,
		BatchWindow: l.BatchWindow, Resync: l.Resync,
		Wake: w.wake, Ended: w.ended, Full: w.markFull,
		Run: func(ctx context.Context) error {
			ids, nodes, full = w.take()
			if len(ids) == 0 && len(nodes) == 0 && !full {
				return nil
			}
			return l.round(ctx, ids, nodes, full)
		},
		Failed: func() { w.requeue(ids, nodes, full) },
	})
}

type loop struct {
	Deps
	rechecks *rechecker
}

// round reconciles the services in ids and those with tasks on the nodes
// in nodes (every service when full) and commits the actions.
func (l *loop) round(ctx context.Context, ids, nodes map[string]struct{}, full bool) error {
	now := l.Clock()
	if full {
		ids = map[string]struct{}{}
		for _, s := range l.State.Services() {
			ids[s.GetId()] = struct{}{}
		}
		// Tasks whose service is gone.
		for _, t := range l.State.Tasks(state.TaskFilter{}) {
			ids[t.GetServiceId()] = struct{}{}
		}
	} else if len(nodes) > 0 {
		all := make(map[string]struct{}, len(ids))
		for id := range ids {
			all[id] = struct{}{}
		}
		for n := range nodes {
			for _, t := range l.State.Tasks(state.TaskFilter{NodeID: n}) {
				all[t.GetServiceId()] = struct{}{}
			}
		}
		// A node that joins, or becomes eligible, has no task yet: every
		// global service looks at it.
		for _, s := range l.State.Services() {
			if apiv1.IsGlobal(s.GetSpec().GetMode()) {
				all[s.GetId()] = struct{}{}
			}
		}
		ids = all
	}
	var actions []Action
	for id := range ids {
		svc, _ := l.State.Service(id)
		tasks := l.State.Tasks(state.TaskFilter{ServiceID: id})
		if svc == nil && len(tasks) == 0 {
			continue
		}
		actions = append(actions, Reconcile(Input{Service: svc, Tasks: tasks, Now: now, Config: l.Config, NewID: l.NewID, Node: l.State.Node, Nodes: l.State.Nodes})...)
	}
	if l.rechecks != nil {
		l.rechecks.ask(actions)
	}
	if len(actions) == 0 {
		return nil
	}
	return l.commit(ctx, actions, now)
}

// commit writes actions: one SetDesiredState for shutdowns, orphans and
// notes, one CreateTasks for new tasks (after the ends, so a replacement
// never shows before what it replaces ends; both in one Raft entry when
// they fit in one), then one RemoveTasks. The FSM
// applies each end to the task as it is then, so a status written
// meanwhile is kept; an action that changes nothing of the task as it is
// now is left out, several on one task are checked in turn.
func (l *loop) commit(ctx context.Context, actions []Action, now time.Time) error {
	var creates []*apiv1.Task
	var ends []*fsmpb.TaskEnd
	var removes []string
	removed := map[string]bool{}
	for _, a := range actions {
		if a, ok := a.(Remove); ok {
			removed[a.TaskID] = true
		}
	}
	// seen holds this round's view of each task it changes, by ID.
	seen := map[string]*apiv1.Task{}
	end := func(id string, kind fsmpb.TaskEnd_Kind, reason string, change func(*apiv1.Task) (*apiv1.Task, bool)) bool {
		if removed[id] {
			return false
		}
		t, ok := seen[id]
		if !ok {
			if t, ok = l.State.Task(id); !ok {
				return false
			}
		}
		t, ok = change(t)
		if !ok {
			return false
		}
		seen[id] = t
		ends = append(ends, &fsmpb.TaskEnd{TaskId: id, Kind: kind, Reason: reason, UpdatedAt: timestamppb.New(now)})
		return true
	}
	created, restarts, stopped, orphaned, noted := 0, 0, 0, 0, 0
	var statuses []serviceStatus
	for _, a := range actions {
		switch a := a.(type) {
		case Create:
			creates = append(creates, a.Task)
			created++
			if a.Restart {
				restarts++
			}
		case Shutdown:
			if end(a.TaskID, fsmpb.TaskEnd_KIND_SHUTDOWN, a.Reason, func(t *apiv1.Task) (*apiv1.Task, bool) { return ShutdownTask(t, a.Reason, now) }) {
				stopped++
			}
		case Orphan:
			if end(a.TaskID, fsmpb.TaskEnd_KIND_ORPHAN, a.Reason, func(t *apiv1.Task) (*apiv1.Task, bool) { return OrphanTask(t, a.Reason, now) }) {
				orphaned++
			}
		case Note:
			if end(a.TaskID, fsmpb.TaskEnd_KIND_NOTE, a.Message, func(t *apiv1.Task) (*apiv1.Task, bool) { return NoteTask(t, a.Message) }) {
				noted++
			}
		case Remove:
			if _, ok := l.State.Task(a.TaskID); ok {
				removes = append(removes, a.TaskID)
			}
		case serviceStatus:
			statuses = append(statuses, a)
		}
		if l.Logger.IsDebug() {
			l.Logger.Debug("action", "action", a.String())
		}
	}
	endsCmd, createsCmd := &fsmpb.SetDesiredState{Tasks: ends}, &fsmpb.CreateTasks{Tasks: creates}
	if len(ends) > 0 && len(creates) > 0 && proto.Size(endsCmd)+proto.Size(createsCmd) <= leaderloop.MaxEntryBytes {
		// Ends and replacements in one entry, in that order: a restart
		// or an update waits for one commit, not two.
		if err := leaderloop.ApplyInOrder(ctx, l.Raft.Apply, endsCmd, createsCmd); err != nil {
			return fmt.Errorf("commit %d task ends and %d new tasks: %w", len(ends), len(creates), err)
		}
		ends, creates = nil, nil
	}
	for _, chunk := range leaderloop.Chunks(ends, leaderloop.MaxEntryBytes) {
		if _, err := l.Raft.Apply(ctx, &fsmpb.SetDesiredState{Tasks: chunk}); err != nil {
			return fmt.Errorf("commit %d task ends: %w", len(chunk), err)
		}
	}
	for _, chunk := range leaderloop.Chunks(creates, leaderloop.MaxEntryBytes) {
		if _, err := l.Raft.Apply(ctx, &fsmpb.CreateTasks{Tasks: chunk}); err != nil {
			return fmt.Errorf("commit %d new tasks: %w", len(chunk), err)
		}
	}
	if restarts > 0 && l.OnRestarts != nil {
		l.OnRestarts(restarts)
	}
	if len(removes) > 0 {
		if _, err := l.Raft.Apply(ctx, &fsmpb.RemoveTasks{Ids: removes}); err != nil {
			return fmt.Errorf("remove %d tasks: %w", len(removes), err)
		}
	}
	for _, a := range statuses {
		id, version := a.service()
		svc, ok := l.State.Service(id)
		if !ok || svc.GetVersion() != version {
			continue // changed meanwhile: the next round decides again
		}
		_, err := l.Raft.Apply(ctx, &fsmpb.UpdateService{Service: a.applyTo(svc), ExpectedVersion: version})
		if errors.Is(err, sdk.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("service %s: %s: %w", id, a, err)
		}
		l.Logger.Info("service status", "service", svc.GetSpec().GetName(), "status", a.String())
	}
	if created+stopped+orphaned+len(removes) > 0 {
		l.Logger.Info("reconciled", "created", created, "shut_down", stopped, "orphaned", orphaned, "noted", noted, "removed", len(removes))
	} else if noted > 0 {
		l.Logger.Debug("reconciled", "noted", noted)
	}
	return nil
}

// watcher drains the event subscription in its own goroutine and collects
// the IDs of the services to reconcile, and of the nodes whose tasks'
// services are to be reconciled.
type watcher struct {
	bus    *events.Broker
	logger hclog.Logger
	watch  *events.Watcher

	mu    sync.Mutex
	ids   map[string]struct{}
	nodes map[string]struct{}
	full  bool

	wake  chan struct{} // one pending signal: there is work
	ended chan struct{} // closed when the bus closed
	done  chan struct{} // closed when run returns
}

func newWatcher(bus *events.Broker, logger hclog.Logger) *watcher {
	w := &watcher{
		bus: bus, logger: logger, ids: map[string]struct{}{}, nodes: map[string]struct{}{},
		wake: make(chan struct{}, 1), ended: make(chan struct{}), done: make(chan struct{}),
	}
	// Subscribe before the first round reads the state: nothing is missed.
	w.watch = bus.Watch(wanted, eventBuffer)
	return w
}

func wanted(ev *apiv1.Event) bool {
	switch ev.GetKind() {
	case "service", "task", "node", "cluster":
		return true
	}
	return false
}

func (w *watcher) run(ctx context.Context) {
	defer close(w.done)
	err := w.watch.Run(ctx, w.add, func() {
		w.logger.Warn("event subscription fell behind; resubscribing and reconciling everything")
		w.markFull()
	})
	if err != nil {
		close(w.ended)
	}
}

func (w *watcher) add(ev *apiv1.Event) {
	var id string
	switch ev.GetKind() {
	case "service":
		id = ev.GetId()
	case "task":
		id = ev.GetTask().GetServiceId()
	case "node":
		// A node's status or availability changed, or it was removed: its
		// tasks' services are found when the round runs.
		if ev.GetId() != "" {
			w.mu.Lock()
			w.nodes[ev.GetId()] = struct{}{}
			w.mu.Unlock()
			w.signal()
		}
		return
	case "cluster":
		w.markFull()
		return
	}
	if id == "" {
		return
	}
	w.mu.Lock()
	w.ids[id] = struct{}{}
	w.mu.Unlock()
	w.signal()
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

// take returns and clears what was collected: service IDs, node IDs and
// whether everything is to be reconciled.
func (w *watcher) take() (ids, nodes map[string]struct{}, full bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids, nodes, full = w.ids, w.nodes, w.full
	w.ids, w.nodes, w.full = map[string]struct{}{}, map[string]struct{}{}, false
	return ids, nodes, full
}

// requeue puts back the work of a failed round, without waking the loop.
func (w *watcher) requeue(ids, nodes map[string]struct{}, full bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id := range ids {
		w.ids[id] = struct{}{}
	}
	for id := range nodes {
		w.nodes[id] = struct{}{}
	}
	w.full = w.full || full
}
