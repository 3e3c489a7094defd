package leaderloop

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/warrenorch/warren/core/events"
)

// recorder is a loop's watcher and round as a test drives them.
type recorder struct {
	mu     sync.Mutex
	full   int
	failed int
	rounds chan bool  // each round's full flag
	result chan error // each round's outcome, given by the test
	wake   chan struct{}
	ended  chan struct{}
	wanted bool
}

func newRecorder() *recorder {
	return &recorder{rounds: make(chan bool), result: make(chan error), wake: make(chan struct{}, 1), ended: make(chan struct{})}
}

func (r *recorder) loop(resync time.Duration) Loop {
	return r.loopWindow(resync, time.Millisecond)
}

// loopWindow is loop with a batch window of window.
func (r *recorder) loopWindow(resync, window time.Duration) Loop {
	return Loop{
		Name: "test", Round: "test round", Logger: hclog.NewNullLogger(),
		BatchWindow: window, Resync: resync,
		Wake: r.wake, Ended: r.ended,
		// Like the loops' watchers, asking for a full round wakes the loop.
		Full: func() {
			r.mu.Lock()
			r.full++
			r.wanted = true
			r.mu.Unlock()
			select {
			case r.wake <- struct{}{}:
			default:
			}
		},
		Run: func(ctx context.Context) error {
			r.mu.Lock()
			full := r.wanted
			r.wanted = false
			r.mu.Unlock()
			select {
			case r.rounds <- full:
				return <-r.result
			case <-ctx.Done():
				return ctx.Err()
			}
		},
		Failed: func() { r.mu.Lock(); r.failed++; r.wanted = true; r.mu.Unlock() },
	}
}

// next waits for the next round, which ends with err, and returns its
// full flag.
func next(t *testing.T, r *recorder, err error) bool {
	t.Helper()
	select {
	case full := <-r.rounds:
		r.result <- err
		return full
	case <-time.After(10 * time.Second):
		t.Fatal("no round within 10s")
		return false
	}
}

func start(t *testing.T, l Loop) chan error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, events.ErrClosed) {
			t.Errorf("Run: %v", err)
		}
	})
	return done
}

// TestRunRounds: a full first round, a round after a wake-up, a failed
// round retried (full, after Failed) and no round in between.
func TestRunRounds(t *testing.T) {
	r := newRecorder()
	start(t, r.loop(time.Hour))
	if !next(t, r, nil) {
		t.Error("the first round is not full")
	}
	r.wake <- struct{}{}
	if next(t, r, nil) {
		t.Error("a round after a wake-up is full")
	}
	r.wake <- struct{}{}
	if next(t, r, errors.New("commit failed")) {
		t.Error("the round that fails is full")
	}
	if !next(t, r, nil) {
		t.Error("the retry does not see what Failed put back")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failed != 1 {
		t.Errorf("Failed called %d times, want 1", r.failed)
	}
}

// TestRunResyncs: each Resync brings a full round without any event.
func TestRunResyncs(t *testing.T) {
	r := newRecorder()
	start(t, r.loop(20*time.Millisecond))
	for full := 0; full < 3; {
		if next(t, r, nil) {
			full++
		}
	}
}

// TestRunEndsWithTheSubscription: Run returns ErrClosed when the watcher's
// subscription ends.
func TestRunEndsWithTheSubscription(t *testing.T) {
	r := newRecorder()
	done := start(t, r.loop(time.Hour))
	next(t, r, nil)
	close(r.ended)
	select {
	case err := <-done:
		if !errors.Is(err, events.ErrClosed) {
			t.Errorf("Run = %v, want ErrClosed", err)
		}
		done <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not end with its subscription")
	}
}

// TestRunWindowOnlyUnderLoad: with a batch window of an hour, the first
// round (after a quiet spell: there was none before) runs at once, while a
// wake-up right after a round waits for the window.
func TestRunWindowOnlyUnderLoad(t *testing.T) {
	r := newRecorder()
	start(t, r.loopWindow(time.Hour, time.Hour))
	if !next(t, r, nil) { // would wait an hour if every wake-up waited
		t.Error("the first round is not full")
	}
	r.wake <- struct{}{}
	select {
	case <-r.rounds:
		t.Fatal("a wake-up within the window of the last round ran a round at once")
	case <-time.After(50 * time.Millisecond):
	}
}
