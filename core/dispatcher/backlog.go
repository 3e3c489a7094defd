package dispatcher

import (
	"context"
	"sync"
)

// backlog counts the task changes the fanout routed to sessions and the
// sessions have not sent to their workers yet: those waiting in an inbox
// and those a session took and is sending. A writer of many placements
// (the scheduling loop) waits on it between its entries, so that what it
// commits reaches the workers within a delivery or two of its commit
// instead of queueing behind thousands of others (AwaitDelivered).
type backlog struct {
	mu sync.Mutex
	n  int
	// lowered is closed and replaced when n goes down while someone waits.
	lowered chan struct{}
	waiters int
}

func newBacklog() *backlog { return &backlog{lowered: make(chan struct{})} }

// add counts k more changes waiting.
func (b *backlog) add(k int) {
	if k == 0 {
		return
	}
	b.mu.Lock()
	b.n += k
	b.mu.Unlock()
}

// done counts k changes as sent (or dropped with their session).
func (b *backlog) done(k int) {
	if k == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.n -= k
	if b.waiters > 0 {
		close(b.lowered)
		b.lowered = make(chan struct{})
	}
}

func (b *backlog) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

// wait returns once at most limit changes wait, or with ctx's error.
func (b *backlog) wait(ctx context.Context, limit int) error {
	b.mu.Lock()
	b.waiters++
	defer func() {
		b.mu.Lock()
		b.waiters--
		b.mu.Unlock()
	}()
	for b.n > limit {
		lowered := b.lowered
		b.mu.Unlock()
		select {
		case <-lowered:
		case <-ctx.Done():
			return ctx.Err()
		}
		b.mu.Lock()
	}
	b.mu.Unlock()
	return nil
}

// AwaitDelivered returns once at most limit task changes wait to be sent
// to the workers of this manager's sessions, or with ctx's error (give it
// a deadline: a worker that stops reading holds its changes until its
// session ends). A manager that is not leading has none waiting.
func (d *Dispatcher) AwaitDelivered(ctx context.Context, limit int) error {
	return d.backlog.wait(ctx, limit)
}
