package orchestrator

import (
	"testing"
	"time"
)

// TestRecheckWakesTheLoop: a Recheck action queues its service for a round
// at its time and wakes the loop then, not before.
func TestRecheckWakesTheLoop(t *testing.T) {
	w := &watcher{ids: map[string]struct{}{}, nodes: map[string]struct{}{}, wake: make(chan struct{}, 1)}
	rc := newRechecker(w, time.Now)
	at := time.Now().Add(50 * time.Millisecond)
	rc.ask([]Action{Recheck{ServiceID: "s1", At: at}, Recheck{ServiceID: "s1", At: at.Add(time.Hour)}})
	select {
	case <-w.wake:
	case <-time.After(10 * time.Second):
		t.Fatal("no wake-up for the recheck")
	}
	if now := time.Now(); now.Before(at) {
		t.Fatalf("woke %s before the recheck's time", at.Sub(now))
	}
	ids, _, full := w.take()
	if _, ok := ids["s1"]; !ok || full {
		t.Fatalf("queued %v (full %v), want s1", ids, full)
	}
}
