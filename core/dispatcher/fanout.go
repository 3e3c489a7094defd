package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
)

// fanoutBuffer is how many events the dispatcher's one subscription may
// hold before it falls behind the bus: a placement of 10,000 tasks is
// 10,000 events in one Publish. Falling behind resends every session its
// full set.
const fanoutBuffer = 1 << 16

// fanout routes the task events of the dispatcher's one subscription to
// the sessions they concern: the sessions of the task's node, and the
// sessions that told their worker about the task (it may have moved away
// or gone). Routing an event costs two map lookups, whatever the number
// of sessions, and runs on the fanout's goroutine, never on the FSM's.
// Cluster events (a snapshot restore) resync every session.
//
// A session's known set lives here, guarded by mu, so that a session
// reading the state and recording what it told its worker (full,
// incremental) and the routing of an event are ordered: an event whose
// change that read missed is routed after the session's set is updated.
type fanout struct {
	mu     sync.Mutex
	byNode map[string]map[*session]struct{}
	byTask map[string]map[*session]struct{}
	// err is set when the bus closed: every session, and every session
	// added later, ends with it.
	err error
	// backlog counts the events taken and not routed yet (the sessions'
	// inboxes count what they hold).
	backlog *backlog
	// buf is the subscription's buffer (fanoutBuffer).
	buf int
}

func newFanout(b *backlog) *fanout {
	return &fanout{byNode: map[string]map[*session]struct{}{}, byTask: map[string]map[*session]struct{}{}, backlog: b, buf: fanoutBuffer}
}

// inbox is what the fanout left for one session: the IDs of the tasks
// that changed since the session last took them, or a resync once it fell
// behind. ready holds a value (changes coalesce) when there is something
// to take. A session never blocks the fanout.
type inbox struct {
	mu      sync.Mutex
	changed map[string]struct{}
	resync  bool
	lagged  bool // the resync is because the session fell behind
	err     error
	ready   chan struct{}
	// backlog counts the changed IDs held here (and, once taken, until the
	// session sent them).
	backlog *backlog
}

func newInbox(b *backlog) *inbox {
	return &inbox{changed: map[string]struct{}{}, ready: make(chan struct{}, 1), backlog: b}
}

// dropLocked empties changed, uncounting what it held.
func (in *inbox) dropLocked() {
	in.backlog.done(len(in.changed))
	clear(in.changed)
}

// drop empties the inbox of a session that ends.
func (in *inbox) drop() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.dropLocked()
}

func (in *inbox) poke() {
	select {
	case in.ready <- struct{}{}:
	default:
	}
}

// add records that task id changed; past eventBuffer waiting IDs the
// session has fallen behind and gets its full set instead.
func (in *inbox) add(id string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.resync || in.err != nil {
		return
	}
	if _, ok := in.changed[id]; !ok {
		in.changed[id] = struct{}{}
		in.backlog.add(1)
	}
	if len(in.changed) > eventBuffer {
		in.dropLocked()
		in.resync, in.lagged = true, true
	}
	in.poke()
}

// resyncAll asks for the full set (lagged: because events were lost).
func (in *inbox) setResync(lagged bool) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.resync {
		in.dropLocked()
		in.resync = true
	}
	in.lagged = in.lagged || lagged
	in.poke()
}

func (in *inbox) fail(err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.err == nil {
		in.err = err
	}
	in.poke()
}

// take returns what waits and empties the inbox: the changed IDs (into
// changed, which it clears first), whether to resync and whether that is
// because the session fell behind, or the error that ends the session.
func (in *inbox) take(changed map[string]struct{}) (resync, lagged bool, err error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	clear(changed)
	if in.err != nil {
		in.dropLocked()
		return false, false, in.err
	}
	resync, lagged = in.resync, in.lagged
	if resync {
		in.dropLocked()
	} else {
		// What is taken stays counted until the session sent it.
		for id := range in.changed {
			changed[id] = struct{}{}
		}
		clear(in.changed)
	}
	in.resync, in.lagged = false, false
	return resync, lagged, nil
}

// isFanoutEvent selects what the fanout routes.
func isFanoutEvent(ev *apiv1.Event) bool {
	switch ev.GetKind() {
	case "task", "cluster":
		return true
	}
	return false
}

// routeBatch bounds how many waiting events the fanout routes under one
// hold of its lock.
const routeBatch = 512

// subscription is the fanout's subscription to the bus. Each event it
// takes counts in the backlog from its publication until it is routed: a
// writer that waits on the backlog right after its commit (the scheduling
// loop) sees its own changes waiting before the fanout got to them.
type subscription struct {
	*events.Subscription
	offered atomic.Int64 // events the filter took, on the publisher's goroutine
	routed  int64        // events routed, on the fanout's
}

func (f *fanout) subscribe(bus *events.Broker) *subscription {
	s := &subscription{}
	s.Subscription = bus.Subscribe(func(ev *apiv1.Event) bool {
		if !isFanoutEvent(ev) {
			return false
		}
		s.offered.Add(1)
		f.backlog.add(1)
		return true
	}, f.buf)
	return s
}

// end uncounts what the ended subscription took and will not route: the
// bus calls its filter no more once it is closed.
func (s *subscription) end(b *backlog) {
	b.done(int(s.offered.Load() - s.routed))
}

// run routes the events of sub (from f.subscribe) until ctx
// ends, taking the events that wait together under one hold of the lock:
// the sessions take the lock too, and a placement of thousands of tasks
// must not wait for each of them once per event. Falling behind the bus
// resubscribes and resyncs every session; the bus closing ends every
// session.
func (f *fanout) run(ctx context.Context, bus *events.Broker, sub *subscription, onLag func()) {
	evs := make([]*apiv1.Event, 0, routeBatch)
	for {
		select {
		case <-ctx.Done():
			sub.Close()
			sub.end(f.backlog)
			return
		case ev, ok := <-sub.C:
			if ok {
				evs = append(evs[:0], ev)
				for open := true; open && len(evs) < routeBatch; {
					select {
					case ev, open = <-sub.C:
						if open {
							evs = append(evs, ev)
						}
					default:
						open = false
					}
				}
				f.route(evs...)
				sub.routed += int64(len(evs))
				f.backlog.done(len(evs))
				clear(evs)
				continue
			}
			sub.end(f.backlog)
			err := sub.Err()
			if !errors.Is(err, events.ErrLagged) {
				f.close(fmt.Errorf("event bus: %w", err))
				return
			}
			onLag()
			sub = f.subscribe(bus)
			f.resyncAll(true)
		}
	}
}

// route hands ev to the sessions it concerns. A worker's own status
// report is not echoed to the sessions of its node that told it about the
// task: the worker holds that change, and the task stays one it must
// know. Only a report that ends that (a task down for good) goes out, as
// the task to forget.
func (f *fanout) route(evs ...*apiv1.Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ev := range evs {
		switch ev.GetKind() {
		case "task":
			id := ev.GetId()
			echo := ev.GetWorkerReport() && Relevant(ev.GetTask())
			for s := range f.byNode[ev.GetTask().GetNodeId()] {
				if _, known := s.known[id]; known && echo {
					continue
				}
				s.inbox.add(id)
			}
			for s := range f.byTask[id] {
				if s.nodeID != ev.GetTask().GetNodeId() {
					s.inbox.add(id)
				}
			}
		case "cluster":
			f.resyncAllLocked(false)
		}
	}
}

func (f *fanout) resyncAll(lagged bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resyncAllLocked(lagged)
}

func (f *fanout) resyncAllLocked(lagged bool) {
	for _, ss := range f.byNode {
		for s := range ss {
			s.inbox.setResync(lagged)
		}
	}
}

// close ends every session with err, and every one added later.
func (f *fanout) close(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
	for _, ss := range f.byNode {
		for s := range ss {
			s.inbox.fail(err)
		}
	}
}

// add starts routing the events of s's node to s. Call it before the
// session first reads the state, so that no change is missed.
func (f *fanout) add(s *session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		s.inbox.fail(f.err)
	}
	ss := f.byNode[s.nodeID]
	if ss == nil {
		ss = map[*session]struct{}{}
		f.byNode[s.nodeID] = ss
	}
	ss[s] = struct{}{}
}

// remove stops routing to s and forgets what it knew.
func (f *fanout) remove(s *session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s.inbox.drop()
	f.setKnownLocked(s, nil)
	if ss := f.byNode[s.nodeID]; ss != nil {
		delete(ss, s)
		if len(ss) == 0 {
			delete(f.byNode, s.nodeID)
		}
	}
}

// knowLocked records that s told its worker about task id.
func (f *fanout) knowLocked(s *session, id string) {
	if _, ok := s.known[id]; ok {
		return
	}
	s.known[id] = struct{}{}
	ss := f.byTask[id]
	if ss == nil {
		ss = map[*session]struct{}{}
		f.byTask[id] = ss
	}
	ss[s] = struct{}{}
}

// forgetLocked records that s told its worker to forget task id.
func (f *fanout) forgetLocked(s *session, id string) {
	delete(s.known, id)
	if ss := f.byTask[id]; ss != nil {
		delete(ss, s)
		if len(ss) == 0 {
			delete(f.byTask, id)
		}
	}
}

// setKnownLocked replaces the known set of s (nil: none).
func (f *fanout) setKnownLocked(s *session, known map[string]struct{}) {
	for id := range s.known {
		if _, keep := known[id]; !keep {
			f.forgetLocked(s, id)
		}
	}
	for id := range known {
		f.knowLocked(s, id)
	}
}
