package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
)

func taskEvent(id, node string) *apiv1.Event {
	return &apiv1.Event{Kind: "task", Id: id, Object: &apiv1.Event_Task{Task: &apiv1.Task{Id: id, NodeId: node}}}
}

// reportEvent is the event of a worker's own report that task id on node
// is in state s, wanted running or (shutdown) not.
func reportEvent(id, node string, s apiv1.TaskState, shutdown bool) *apiv1.Event {
	ev := taskEvent(id, node)
	ev.WorkerReport = true
	ev.GetTask().State, ev.GetTask().DesiredState = s, apiv1.TaskState_TASK_STATE_RUNNING
	if shutdown {
		ev.GetTask().DesiredState = apiv1.TaskState_TASK_STATE_SHUTDOWN
	}
	return ev
}

// taken empties s's inbox and returns the changed IDs, sorted, or
// "resync".
func taken(s *session) []string {
	changed := map[string]struct{}{}
	resync, _, err := s.inbox.take(changed)
	s.inbox.backlog.done(len(changed)) // sent, as a session would
	switch {
	case err != nil:
		return []string{"error: " + err.Error()}
	case resync:
		return []string{"resync"}
	}
	return slices.Sorted(maps.Keys(changed))
}

// TestFanoutRoutesToTheSessionsConcerned: a task event reaches only the
// sessions of its node, and those that told their worker about the task
// (a task that moved away reaches its old and its new node); a cluster
// event resyncs every session.
func TestFanoutRoutesToTheSessionsConcerned(t *testing.T) {
	tests := []struct {
		name string
		ev   *apiv1.Event
		want map[string][]string // by node; nil: nothing
	}{
		{"task on its node", taskEvent("t1", "n1"), map[string][]string{"n1": {"t1"}}},
		{"task on another node", taskEvent("t2", "n2"), map[string][]string{"n2": {"t2"}}},
		{"task moved away from a node that knows it", taskEvent("known", "n2"), map[string][]string{"n1": {"known"}, "n2": {"known"}}},
		{"known task on its node, once", taskEvent("known", "n1"), map[string][]string{"n1": {"known"}}},
		{"task on a node without a session", taskEvent("t3", "n9"), nil},
		{"task without a node", taskEvent("t4", ""), nil},
		{"snapshot restored", &apiv1.Event{Kind: "cluster"}, map[string][]string{"n1": {"resync"}, "n2": {"resync"}, "n3": {"resync"}}},
		{"worker's report of a known task is not echoed", reportEvent("known", "n1", apiv1.TaskState_TASK_STATE_RUNNING, false), nil},
		{"worker's report that fails a task still wanted running is not echoed", reportEvent("known", "n1", apiv1.TaskState_TASK_STATE_FAILED, false), nil},
		{"worker's report that ends a task for good is sent", reportEvent("known", "n1", apiv1.TaskState_TASK_STATE_SHUTDOWN, true), map[string][]string{"n1": {"known"}}},
		{"worker's report of a task the session did not send is sent", reportEvent("t5", "n1", apiv1.TaskState_TASK_STATE_RUNNING, false), map[string][]string{"n1": {"t5"}}},
		{"service event", &apiv1.Event{Kind: "service", Id: "svc"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFanout(newBacklog())
			sessions := map[string]*session{}
			for _, n := range []string{"n1", "n2", "n3"} {
				s := &session{nodeID: n, inbox: newInbox(newBacklog()), known: map[string]struct{}{}}
				f.add(s)
				sessions[n] = s
			}
			f.mu.Lock()
			f.knowLocked(sessions["n1"], "known")
			f.mu.Unlock()
			f.route(tt.ev)
			for n, s := range sessions {
				if got := taken(s); !slices.Equal(got, tt.want[n]) {
					t.Errorf("session of %s got %v, want %v", n, got, tt.want[n])
				}
			}
		})
	}
}

// TestFanoutForgetsEndedSessions: a removed session gets nothing more,
// and what it knew no longer routes to it.
func TestFanoutForgetsEndedSessions(t *testing.T) {
	f := newFanout(newBacklog())
	old := &session{nodeID: "n1", inbox: newInbox(newBacklog()), known: map[string]struct{}{}}
	cur := &session{nodeID: "n1", inbox: newInbox(newBacklog()), known: map[string]struct{}{}}
	f.add(old)
	f.add(cur)
	f.mu.Lock()
	f.setKnownLocked(old, map[string]struct{}{"a": {}, "b": {}})
	f.setKnownLocked(old, map[string]struct{}{"b": {}}) // told to forget a
	f.mu.Unlock()
	f.route(taskEvent("a", "n2"))
	if got := taken(old); got != nil {
		t.Fatalf("a forgotten task reached the session: %v", got)
	}
	f.route(taskEvent("b", "n2"))
	if got := taken(old); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("old session got %v, want [b]", got)
	}
	f.remove(old)
	f.route(taskEvent("b", "n2"))
	f.route(taskEvent("c", "n1"))
	if got := taken(old); got != nil {
		t.Fatalf("a removed session got %v", got)
	}
	if got := taken(cur); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("the node's other session got %v, want [c]", got)
	}
	if len(f.byTask) != 0 || len(f.byNode) != 1 {
		t.Fatalf("index after remove: by task %v, by node %v", f.byTask, f.byNode)
	}
	f.close(fmt.Errorf("event bus: %w", events.ErrClosed))
	if got := taken(cur); len(got) != 1 || got[0] != "error: event bus: event bus closed" {
		t.Fatalf("after close the session got %v", got)
	}
}

// TestInboxFallsBehind: a session with more than eventBuffer changes
// waiting gets its full set instead, and is told it fell behind; the
// fanout never waits for it.
func TestInboxFallsBehind(t *testing.T) {
	in := newInbox(newBacklog())
	for i := range eventBuffer + 1 {
		in.add(fmt.Sprint("t", i))
	}
	changed := map[string]struct{}{}
	resync, lagged, err := in.take(changed)
	if err != nil || !resync || !lagged || len(changed) != 0 {
		t.Fatalf("take = resync %v lagged %v err %v, %d changed; want a lagged resync", resync, lagged, err, len(changed))
	}
	in.add("t1")
	if resync, lagged, _ := in.take(changed); resync || lagged || len(changed) != 1 {
		t.Fatalf("after the resync: resync %v lagged %v, %d changed; want [t1]", resync, lagged, len(changed))
	}
}

// TestFanoutResyncsWhenItFallsBehind: the dispatcher's subscription
// falling behind the bus resyncs every session (nothing is lost) and the
// fanout goes on routing on a new subscription. The backlog counts no
// event that was lost or routed.
func TestFanoutResyncsWhenItFallsBehind(t *testing.T) {
	bus := events.NewBroker()
	defer bus.Close()
	b := newBacklog()
	f := newFanout(b)
	f.buf = 1
	s := &session{nodeID: "n1", inbox: newInbox(b), known: map[string]struct{}{}}
	f.add(s)
	sub := f.subscribe(bus)
	bus.Publish([]*apiv1.Event{taskEvent("a", "n1"), taskEvent("b", "n1")}) // one more than fits
	ctx, cancel := context.WithCancel(context.Background())
	lags := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.run(ctx, bus, sub, func() { lags <- struct{}{} })
	}()
	ended := false
	defer func() {
		if !ended {
			cancel()
			<-done
		}
	}()
	<-lags
	for {
		<-s.inbox.ready
		got := taken(s)
		if slices.Equal(got, []string{"resync"}) {
			break
		}
		if len(got) > 0 && !slices.Equal(got, []string{"a"}) {
			t.Fatalf("before the resync the session got %v, want [a]", got)
		}
	}
	bus.Publish([]*apiv1.Event{taskEvent("c", "n1")})
	for {
		<-s.inbox.ready
		if got := taken(s); len(got) > 0 {
			if !slices.Equal(got, []string{"c"}) {
				t.Fatalf("after the resubscription the session got %v, want [c]", got)
			}
			break
		}
	}
	cancel()
	<-done
	ended = true
	if n := b.len(); n != 0 {
		t.Fatalf("with every event routed or lost and every change sent, the backlog counts %d; want 0", n)
	}
}

// BenchmarkTaskEventFanout measures the bus and the routing of task
// events, from Publish (in batches of 100, as the FSM applies them) until
// each event reached the session of its node, with 1,000 sessions: each
// session subscribed with its own filter (as before the fanout), and one
// subscription routed by the fanout; the floor is Publish to one
// subscriber that takes every event. The publisher stays within 10,000
// events of the readers, so that none falls behind and loses events.
func BenchmarkTaskEventFanout(b *testing.B) {
	const nodes, perNode, batchLen, window = 1000, 10, 100, 10000
	evs := make([]*apiv1.Event, nodes*perNode)
	for i := range evs {
		evs[i] = taskEvent(fmt.Sprintf("task-%d", i), fmt.Sprintf("node-%d", i%nodes))
	}
	// run publishes b.N events while got (events delivered) keeps up, then
	// waits for all of them; lost reports a reader that fell behind.
	run := func(b *testing.B, bus *events.Broker, got *atomic.Int64, lost func() bool) {
		b.ResetTimer()
		for i := 0; i < b.N; i += batchLen {
			for int64(i)-got.Load() > window {
				if lost() {
					b.Fatal("a reader fell behind")
				}
				runtime.Gosched()
			}
			j := i % len(evs)
			bus.Publish(evs[j:min(j+batchLen, j+b.N-i)])
		}
		for got.Load() < int64(b.N) {
			if lost() {
				b.Fatal("a reader fell behind")
			}
			runtime.Gosched()
		}
		b.StopTimer()
	}
	b.Run("floor: one subscriber", func(b *testing.B) {
		bus := events.NewBroker()
		defer bus.Close()
		sub := bus.Subscribe(nil, fanoutBuffer)
		var got atomic.Int64
		var lagged atomic.Bool
		go func() {
			for range sub.C {
				got.Add(1)
			}
			lagged.Store(errors.Is(sub.Err(), events.ErrLagged))
		}()
		run(b, bus, &got, lagged.Load)
	})
	b.Run("a subscription per session", func(b *testing.B) {
		bus := events.NewBroker()
		defer bus.Close()
		var got atomic.Int64
		var lagged atomic.Bool
		var wg sync.WaitGroup
		defer wg.Wait()
		defer bus.Close()
		for n := range nodes {
			node := fmt.Sprintf("node-%d", n)
			var mu sync.Mutex
			known := map[string]struct{}{}
			sub := bus.Subscribe(func(ev *apiv1.Event) bool { // the sessions' former filter
				if ev.GetKind() != "task" {
					return ev.GetKind() == "cluster"
				}
				if ev.GetTask().GetNodeId() == node {
					return true
				}
				mu.Lock()
				defer mu.Unlock()
				_, ok := known[ev.GetId()]
				return ok
			}, eventBuffer)
			wg.Go(func() {
				for range sub.C {
					got.Add(1)
				}
				if errors.Is(sub.Err(), events.ErrLagged) {
					lagged.Store(true)
				}
			})
		}
		run(b, bus, &got, lagged.Load)
	})
	b.Run("one subscription, routed", func(b *testing.B) {
		bus := events.NewBroker()
		defer bus.Close()
		f := newFanout(newBacklog())
		for n := range nodes {
			f.add(&session{nodeID: fmt.Sprintf("node-%d", n), inbox: newInbox(newBacklog()), known: map[string]struct{}{}})
		}
		sub := bus.Subscribe(isFanoutEvent, fanoutBuffer)
		var got atomic.Int64
		var lagged atomic.Bool
		go func() { // fanout.run's loop, counting
			for ev := range sub.C {
				f.route(ev)
				got.Add(1)
			}
			lagged.Store(errors.Is(sub.Err(), events.ErrLagged))
		}()
		run(b, bus, &got, lagged.Load)
	})
}
