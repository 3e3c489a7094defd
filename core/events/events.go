// Package events is the core's in-process event bus: the FSM publishes what
// each applied command changed, and loops and API watchers subscribe instead
// of polling.
package events

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// ErrLagged is the reason a subscription is closed when its reader fell so
// far behind that its buffer filled, in events or in bytes: the bus never
// blocks the FSM. The subscription's Err wraps it with the limit passed.
var ErrLagged = errors.New("event subscriber fell behind")

// DefaultSubscriberBytes is a bound for SubscribeBytes: how many bytes of
// events (their protobuf size) an API subscriber may have waiting.
const DefaultSubscriberBytes = 4 << 20

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
	// maxBytes bounds the events waiting, in protobuf bytes; 0: no bound.
	maxBytes int
	// sizes are the protobuf sizes of the events sent on c, oldest first,
	// and queued their sum; those the reader took are dropped from the
	// front at the next send (c holds len(c) of them).
	sizes  []int
	queued int
}

// Subscribe returns a subscription receiving the events that filter accepts
// (all when nil), buffered up to buf events. It suits the core's own loops:
// their waiting events are shared with the state, so only the count is
// bounded.
func (b *Broker) Subscribe(filter func(*apiv1.Event) bool, buf int) *Subscription {
	return b.SubscribeBytes(filter, buf, 0)
}

// SubscribeBytes is Subscribe with the events waiting also bounded to
// maxBytes of protobuf (none when 0): for subscribers outside the agent,
// whose events are marshaled for a client that may not read them. One
// event larger than maxBytes is still delivered when nothing else waits.
func (b *Broker) SubscribeBytes(filter func(*apiv1.Event) bool, buf, maxBytes int) *Subscription {
	if buf < 1 {
		buf = 1
	}
	c := make(chan *apiv1.Event, buf)
	s := &Subscription{C: c, c: c, filter: filter, b: b, maxBytes: max(maxBytes, 0)}
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
// whose buffer is full, in events or in bytes, is dropped with ErrLagged.
// What was already waiting for it is still delivered before C closes.
func (b *Broker) Publish(evs []*apiv1.Event) {
	if len(evs) == 0 {
		return
	}
	sizes := make([]int, len(evs)) // computed once, for the first taker
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		for i, ev := range evs {
			if s.filter != nil && !s.filter(ev) {
				continue
			}
			if s.maxBytes > 0 && sizes[i] == 0 {
				sizes[i] = max(proto.Size(ev), 1)
			}
			if err := s.offerLocked(ev, sizes[i]); err != nil {
				s.closeLocked(err)
				break
			}
		}
	}
}

// offerLocked sends ev (of size bytes) on s.c unless that would put more
// than s.maxBytes, or more than the buffer's events, in waiting.
func (s *Subscription) offerLocked(ev *apiv1.Event, size int) error {
	if s.maxBytes > 0 {
		for len(s.sizes) > len(s.c) { // the reader took these
			s.queued -= s.sizes[0]
			s.sizes = s.sizes[1:]
		}
		if len(s.sizes) > 0 && s.queued+size > s.maxBytes {
			return fmt.Errorf("%w by more than %s of events (%d events waiting); resubscribe", ErrLagged, byteSize(s.maxBytes), len(s.sizes))
		}
	}
	select {
	case s.c <- ev:
		if s.maxBytes > 0 {
			s.sizes = append(s.sizes, size)
			s.queued += size
		}
		return nil
	default:
		return fmt.Errorf("%w by more than %d events; resubscribe", ErrLagged, cap(s.c))
	}
}

// byteSize writes n in the largest binary unit that divides it (4 MiB).
func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
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
	s.sizes = nil
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

// Notifier tells a loop that something it watches changed, not what.
type Notifier struct {
	// C holds one value (changes coalesce) after an event the filter
	// accepts, after falling behind, and after Poke.
	C <-chan struct{}
	// Ended is closed when the broker closes (the watching ends with
	// ErrClosed); not when ctx ends.
	Ended <-chan struct{}

	c    chan struct{}
	done chan struct{}
}

// Notify returns a Notifier for the events filter accepts, until ctx
// ends. It subscribes now, as Watch does.
func (b *Broker) Notify(ctx context.Context, filter func(*apiv1.Event) bool, buf int) *Notifier {
	c := make(chan struct{}, 1)
	ended := make(chan struct{})
	n := &Notifier{C: c, Ended: ended, c: c, done: make(chan struct{})}
	w := b.Watch(filter, buf)
	go func() {
		defer close(n.done)
		if err := w.Run(ctx, func(*apiv1.Event) { n.Poke() }, n.Poke); err != nil {
			close(ended)
		}
	}()
	return n
}

// Poke puts a notice in C, as a change would (a loop asking itself for a
// round).
func (n *Notifier) Poke() {
	select {
	case n.c <- struct{}{}:
	default:
	}
}

// Wait returns once the watching goroutine has; call it after ctx ended.
func (n *Notifier) Wait() { <-n.done }
