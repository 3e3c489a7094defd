package events

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func ev(kind, name string) *apiv1.Event { return &apiv1.Event{Kind: kind, Name: name} }

func TestSubscriptionFilterAndOrder(t *testing.T) {
	b := NewBroker()
	sub := b.Subscribe(func(e *apiv1.Event) bool { return e.GetKind() == "task" }, 8)
	defer sub.Close()
	b.Publish([]*apiv1.Event{ev("service", "s"), ev("task", "a"), ev("task", "b")})
	for _, want := range []string{"a", "b"} {
		if got := <-sub.C; got.GetName() != want {
			t.Fatalf("got %q, want %q", got.GetName(), want)
		}
	}
	select {
	case e := <-sub.C:
		t.Fatalf("filtered event delivered: %v", e)
	default:
	}
}

func TestEndings(t *testing.T) {
	tests := []struct {
		name string
		end  func(b *Broker, s *Subscription)
		want error
	}{
		{"closed by its owner", func(_ *Broker, s *Subscription) { s.Close() }, nil},
		{"broker closed", func(b *Broker, _ *Subscription) { b.Close() }, ErrClosed},
		{"fell behind", func(b *Broker, _ *Subscription) { b.Publish([]*apiv1.Event{ev("x", "1"), ev("x", "2"), ev("x", "3")}) }, ErrLagged},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBroker()
			s := b.Subscribe(nil, 2)
			tt.end(b, s)
			for range s.C { // drain until closed
			}
			if !errors.Is(s.Err(), tt.want) || (tt.want == nil && s.Err() != nil) {
				t.Fatalf("Err() = %v, want %v", s.Err(), tt.want)
			}
		})
	}
}

func TestPublishNeverBlocks(t *testing.T) {
	b := NewBroker()
	slow := b.Subscribe(nil, 1) // never read
	fast := b.Subscribe(nil, 100)
	done := make(chan struct{})
	go func() {
		for i := 0; i < 50; i++ {
			b.Publish([]*apiv1.Event{ev("x", "e")})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a slow subscriber")
	}
	if n := len(fast.C); n != 50 {
		t.Fatalf("fast subscriber got %d events, want 50", n)
	}
	for range slow.C {
	}
	if !errors.Is(slow.Err(), ErrLagged) {
		t.Fatalf("slow subscriber: %v", slow.Err())
	}
}

func TestWatcherResubscribesAfterLagging(t *testing.T) {
	b := NewBroker()
	w := b.Watch(nil, 1)
	// Overflow the buffer before Run starts: the subscription is dropped.
	b.Publish([]*apiv1.Event{ev("x", "lost-1"), ev("x", "lost-2")})

	got := make(chan string, 10)
	lagged := make(chan struct{}, 1)
	errc := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		errc <- w.Run(ctx, func(e *apiv1.Event) { got <- e.GetName() }, func() { lagged <- struct{}{} })
	}()
	// The first event was buffered before the drop; then Run notices the
	// lag and resubscribes.
	if name := <-got; name != "lost-1" {
		t.Fatalf("first event %q", name)
	}
	<-lagged
	b.Publish([]*apiv1.Event{ev("x", "after")})
	if name := <-got; name != "after" {
		t.Fatalf("after resubscribing got %q", name)
	}
	b.Close()
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after broker close = %v, want ErrClosed", err)
	}
}

func TestSubscriberByteBudget(t *testing.T) {
	big := func(name string) *apiv1.Event { return &apiv1.Event{Kind: "x", Name: name + strings.Repeat("b", 400)} }
	tests := []struct {
		name string
		// read is how many events the subscriber takes after each publish.
		read       int
		publish    int
		wantLagged bool
	}{
		{"a reader that keeps up is never dropped", 1, 20, false},
		{"a reader that stops is dropped past the budget", 0, 20, true},
		{"within the budget nothing is dropped", 0, 2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBroker()
			s := b.SubscribeBytes(nil, 100, 1000) // two of these events
			defer s.Close()
			for i := range tt.publish {
				b.Publish([]*apiv1.Event{big(strconv.Itoa(i))})
				for range tt.read {
					<-s.C
				}
			}
			b.Close()
			for range s.C {
			}
			lagged := errors.Is(s.Err(), ErrLagged)
			if lagged != tt.wantLagged {
				t.Fatalf("Err() = %v, want lagged %v", s.Err(), tt.wantLagged)
			}
			if lagged && !strings.Contains(s.Err().Error(), "fell behind by more than 1000 bytes of events") {
				t.Fatalf("Err() = %q does not name the bound", s.Err())
			}
		})
	}
}

func TestEventLargerThanBudgetIsDelivered(t *testing.T) {
	b := NewBroker()
	s := b.SubscribeBytes(nil, 10, 10)
	defer s.Close()
	b.Publish([]*apiv1.Event{ev("x", strings.Repeat("n", 100))})
	if e := <-s.C; e == nil {
		t.Fatalf("the one large event was not delivered: %v", s.Err())
	}
}

// TestNotify: an accepted event gives a notice, so does Poke, Wait returns
// once ctx has ended, and Ended is closed when the broker closes.
// (Notices coalesce by construction: the channel holds one.)
func TestNotify(t *testing.T) {
	b := NewBroker()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	n := b.Notify(ctx, func(ev *apiv1.Event) bool { return ev.GetKind() == "node" }, 8)
	if cap(n.C) != 1 {
		t.Fatalf("notice channel holds %d, want 1 (coalescing)", cap(n.C))
	}
	b.Publish([]*apiv1.Event{{Kind: "task"}, {Kind: "node"}})
	select {
	case <-n.C:
	case <-time.After(10 * time.Second):
		t.Fatal("no notice after a node event")
	}
	n.Poke()
	select {
	case <-n.C:
	default:
		t.Fatal("no notice after Poke")
	}
	cancel()
	done := make(chan struct{})
	go func() { n.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after ctx ended")
	}
	select {
	case <-n.Ended:
		t.Fatal("Ended closed when only ctx ended")
	default:
	}

	b2 := NewBroker()
	n2 := b2.Notify(context.Background(), nil, 8)
	b2.Close()
	select {
	case <-n2.Ended:
	case <-time.After(10 * time.Second):
		t.Fatal("Ended not closed after the broker closed")
	}
	n2.Wait()
}
