package schedloop

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
)

func taskEvent(action apiv1.EventAction, t *apiv1.Task) *apiv1.Event {
	return &apiv1.Event{Kind: "task", Action: action, Id: t.GetId(), Object: &apiv1.Event_Task{Task: t}}
}

// TestWatcherTriggers feeds events straight to add and checks which call
// for a round.
func TestWatcherTriggers(t *testing.T) {
	updated := apiv1.EventAction_EVENT_ACTION_UPDATED
	deleted := apiv1.EventAction_EVENT_ACTION_DELETED
	pending := unplaced("a", 1)
	pending.State = tsPending
	steps := []struct {
		name    string
		ev      *apiv1.Event
		fire    bool
		waiting []string
	}{
		{"a new task waits", taskEvent(updated, unplaced("a", 1)), true, []string{"a"}},
		{"the same task, now pending: no new round", taskEvent(updated, pending), false, []string{"a"}},
		{"a running task changes: nothing", taskEvent(updated, on("x", "n1", tsRunning, nil)), false, []string{"a"}},
		{"a task on a node finishes while a waits", taskEvent(updated, on("x", "n1", tsFailed, nil)), true, []string{"a"}},
		{"a live task on a node is removed", taskEvent(deleted, on("y", "n1", tsRunning, nil)), true, []string{"a"}},
		{"a node changes", &apiv1.Event{Kind: "node", Id: "n1"}, true, []string{"a"}},
		{"a is placed: it no longer waits", taskEvent(updated, on("a", "n1", tsAssigned, nil)), false, nil},
		{"room freed with nothing waiting: nothing", taskEvent(updated, on("x", "n1", tsComplete, nil)), false, nil},
	}
	w := newWatcher(events.NewBroker(), hclog.NewNullLogger())
	for _, st := range steps {
		w.add(st.ev)
		_, _, fired := w.take()
		if fired != st.fire {
			t.Errorf("%s: round = %v, want %v", st.name, fired, st.fire)
		}
		var waiting []string
		for id := range w.waiting {
			waiting = append(waiting, id)
		}
		slices.Sort(waiting)
		if !slices.Equal(waiting, st.waiting) {
			t.Errorf("%s: waiting = %v, want %v", st.name, waiting, st.waiting)
		}
	}
}

func TestWatcherResubscribesWhenLagged(t *testing.T) {
	bus := events.NewBroker()
	w := newWatcher(bus, hclog.NewNullLogger())
	evs := make([]*apiv1.Event, eventBuffer+1)
	for i := range evs {
		evs[i] = &apiv1.Event{Kind: "node", Id: "n1"}
	}
	bus.Publish(evs)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); <-w.done })
	go w.run(ctx)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case <-w.wake:
			if _, full, _ := w.take(); full {
				return
			}
		case <-deadline:
			t.Fatal("no full rescan after the subscription lagged")
		}
	}
}
