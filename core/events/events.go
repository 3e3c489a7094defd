// Package events is the core's in-process event bus: the FSM publishes what
// each applied command changed, and loops and API watchers subscribe instead
// of polling.
package events

import (
	"context"
	"errors"
	"sync"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// ErrLagged is the reason a subscription is closed when its reader fell so
// far behind that its buffer filled: the bus never blocks the FSM.
var ErrLagged = errors.New("event subscriber fell behind and was dropped")

// ErrClosed is the reason subscriptions end when the bus shuts down.
var ErrClosed = errors.New("event bus closed")

// Broker fans events out to subscribers.
type Broker struct {
	mu     sync.Mutex
	subs   map[*Subscription]struct{}
	closed bool
}

// NewBroker returns an empty broker.
func NewBroker() *Broker {
	return &Broker{subs: map[*Subscription]struct{}{}}
}

// Subscription receives events on C until it is closed; Err then says why.
type Subscription struct {
	C      <-chan *apiv1.Event
	c      chan *apiv1.Event
	filter func(*apiv1.Event) bool
	b      *Broker
	err    error
	done   bool
}

// Subscribe returns a subscription receiving the events that filter accepts
// (all when nil), buffered up to buf events.
func (b *Broker) Subscribe(filter func(*apiv1.Event) bool, buf int) *Subscription {
	if buf < 1 {
		buf = 1
	}
	c := make(chan *apiv1.Event, buf)
	s := &Subscription{C: c, c: c, filter: filter, b: b}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		s.closeLocked(ErrClosed)
		return s
	}
	b.subs[s] = struct{}{}
	return s
}

// Publish delivers evs to every subscriber without blocking; a subscriber
// whose buffer is full is dropped with ErrLagged.
func (b *Broker) Publish(evs []*apiv1.Event) {
	if len(evs) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for _, ev := range evs {
			if s.filter != nil && !s.filter(ev) {
				continue
			}
			select {
			case s.c <- ev:
			default:
				s.closeLocked(ErrLagged)
			}
			if s.done {
				break
			}
		}
	}
}

// Close ends every subscription with ErrClosed.
func (b *Broker) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for s := range b.subs {
		s.closeLocked(ErrClosed)
	}
}

func (s *Subscription) closeLocked(err error) {
	if s.done {
		return
	}
	s.done = true
	s.err = err
	close(s.c)
	delete(s.b.subs, s)
}

// Close ends the subscription.
func (s *Subscription) Close() {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	s.closeLocked(nil)
}

// Err reports why the subscription ended: nil after Close, ErrLagged or
// ErrClosed otherwise. Read it after C is closed.
func (s *Subscription) Err() error {
	s.b.mu.Lock()
	defer s.b.mu.Unlock()
	return s.err
}

// Watcher is a subscription that survives falling behind: when its buffer
// fills it subscribes again and tells its owner, which must then read the
// whole state again because events were lost.
type Watcher struct {
	b      *Broker
	filter func(*apiv1.Event) bool
	buf    int
	sub    *Subscription
}

// Watch subscribes now, so nothing published after Watch returns is missed
// even if Run starts later.
func (b *Broker) Watch(filter func(*apiv1.Event) bool, buf int) *Watcher {
	return &Watcher{b: b, filter: filter, buf: buf, sub: b.Subscribe(filter, buf)}
}

// Run hands every event to onEvent until ctx ends (it returns nil) or the
// broker closes (ErrClosed). After falling behind it resubscribes and calls
// onLagged before delivering more events.
func (w *Watcher) Run(ctx context.Context, onEvent func(*apiv1.Event), onLagged func()) error {
	for {
		select {
		case <-ctx.Done():
			w.sub.Close()
			return nil
		case ev, ok := <-w.sub.C:
			if ok {
				onEvent(ev)
				continue
			}
			if !errors.Is(w.sub.Err(), ErrLagged) {
				return ErrClosed
			}
			w.sub = w.b.Subscribe(w.filter, w.buf)
			onLagged()
		}
	}
}
