package dispatcher

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

// TestBacklogCountsWhatWaitsToBeSent: a change counts from its routing
// until its session sent it (taken and done), is counted once however
// often it changes meanwhile, and is uncounted when its session resyncs,
// fails or goes; AwaitDelivered returns once the count is at its limit.
func TestBacklogCountsWhatWaitsToBeSent(t *testing.T) {
	b := newBacklog()
	f := newFanout(b)
	s1 := &session{nodeID: "n1", inbox: newInbox(b), known: map[string]struct{}{}}
	s2 := &session{nodeID: "n2", inbox: newInbox(b), known: map[string]struct{}{}}
	f.add(s1)
	f.add(s2)
	f.route(taskEvent("a", "n1"), taskEvent("a", "n1"), taskEvent("b", "n1"), taskEvent("c", "n2"), taskEvent("d", "nobody"))
	if got := b.len(); got != 3 {
		t.Fatalf("after routing: %d waiting; want 3 (a, b on n1, c on n2; d has no session)", got)
	}

	changed := map[string]struct{}{}
	if _, _, err := s1.inbox.take(changed); err != nil || len(changed) != 2 {
		t.Fatalf("take = %v, %v; want a and b", changed, err)
	}
	if got := b.len(); got != 3 {
		t.Fatalf("taken, not sent: %d waiting; want 3", got)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if err := b.wait(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for ≤ 1 with 3 waiting and nobody sending = %v; want the deadline", err)
	}
	waited := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		waited <- b.wait(ctx, 1)
	}()
	// The waiter is blocked before the send that must wake it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b.mu.Lock()
		w := b.waiters
		b.mu.Unlock()
		if w == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the waiter never started waiting")
		}
		runtime.Gosched()
	}
	b.done(len(changed)) // s1 sent them
	if err := <-waited; err != nil {
		t.Fatalf("wait for ≤ 1 with 1 waiting: %v", err)
	}

	f.remove(s2)
	if got := b.len(); got != 0 {
		t.Fatalf("after n2's session went: %d waiting; want 0", got)
	}
	f.route(taskEvent("e", "n1"))
	s1.inbox.setResync(false)
	if got := b.len(); got != 0 {
		t.Fatalf("after a resync: %d waiting; want 0 (the full set replaces the changes)", got)
	}
	f.route(taskEvent("f", "n1"))
	f.close(errors.New("bus closed"))
	if _, _, err := s1.inbox.take(changed); err == nil || b.len() != 0 {
		t.Fatalf("after the fanout closed: take err %v, %d waiting; want an error and 0", err, b.len())
	}
}
