package orchestrator

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
)

// waitWake waits for the watcher's signal that there is work.
func waitWake(t *testing.T, w *watcher) {
	t.Helper()
	select {
	case <-w.wake:
	case <-time.After(10 * time.Second):
		t.Fatal("the watcher never signalled work")
	}
}

func startWatcher(t *testing.T, bus *events.Broker) *watcher {
	w := newWatcher(bus, hclog.NewNullLogger())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); <-w.done })
	go w.run(ctx)
	return w
}

func TestWatcherCollectsServices(t *testing.T) {
	bus := events.NewBroker()
	w := startWatcher(t, bus)
	bus.Publish([]*apiv1.Event{
		{Kind: "service", Id: "s1"},
		{Kind: "task", Id: "t1", Object: &apiv1.Event_Task{Task: &apiv1.Task{Id: "t1", ServiceId: "s2"}}},
		{Kind: "node", Id: "n1"},
	})
	waitWake(t, w)
	// The events were published in one batch; they may arrive one by one.
	deadline := time.Now().Add(10 * time.Second)
	got, gotNodes := map[string]struct{}{}, map[string]struct{}{}
	for (len(got) < 2 || len(gotNodes) < 1) && time.Now().Before(deadline) {
		ids, nodes, full := w.take()
		if full {
			t.Fatal("full resync without a reason")
		}
		for id := range ids {
			got[id] = struct{}{}
		}
		for id := range nodes {
			gotNodes[id] = struct{}{}
		}
		if len(got) < 2 || len(gotNodes) < 1 {
			waitWake(t, w)
		}
	}
	if _, ok := got["s1"]; !ok || len(got) != 2 {
		t.Errorf("collected %v, want s1 and s2", got)
	}
	if _, ok := got["s2"]; !ok {
		t.Errorf("collected %v, want s1 and s2", got)
	}
	if _, ok := gotNodes["n1"]; !ok || len(gotNodes) != 1 {
		t.Errorf("collected nodes %v, want n1", gotNodes)
	}
}

func TestWatcherResyncsAfterRestore(t *testing.T) {
	bus := events.NewBroker()
	w := startWatcher(t, bus)
	bus.Publish([]*apiv1.Event{{Kind: "cluster", Name: "restored-from-snapshot"}})
	waitWake(t, w)
	if _, _, full := w.take(); !full {
		t.Error("a snapshot restore did not ask for a full resync")
	}
}

// TestWatcherResubscribesWhenLagged overflows the subscription before the
// watcher reads it: it must subscribe again and ask for a full resync.
func TestWatcherResubscribesWhenLagged(t *testing.T) {
	bus := events.NewBroker()
	w := newWatcher(bus, hclog.NewNullLogger())
	evs := make([]*apiv1.Event, eventBuffer+1)
	for i := range evs {
		evs[i] = &apiv1.Event{Kind: "service", Id: "s1"}
	}
	bus.Publish(evs)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); <-w.done })
	go w.run(ctx)

	deadline := time.After(10 * time.Second)
	for {
		waitWake(t, w)
		if _, _, full := w.take(); full {
			break
		}
		select {
		case <-deadline:
			t.Fatal("no full resync after the subscription lagged")
		default:
		}
	}
	// The new subscription delivers.
	bus.Publish([]*apiv1.Event{{Kind: "service", Id: "s9"}})
	for {
		waitWake(t, w)
		if ids, _, _ := w.take(); len(ids) > 0 {
			if _, ok := ids["s9"]; ok {
				return
			}
		}
	}
}
