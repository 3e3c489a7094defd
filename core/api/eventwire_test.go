package api

import (
	"fmt"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// TestEventWireKeepsItsBound: the cache keeps the latest events' wire
// forms up to its limit and forgets the oldest; an event it forgot is
// encoded again, the same bytes.
func TestEventWireKeepsItsBound(t *testing.T) {
	w := newEventWire(4 << 10)
	var evs []*apiv1.Event
	for i := range 200 {
		ev := &apiv1.Event{Index: uint64(i + 1), Kind: "task", Id: fmt.Sprintf("task-%03d", i), Name: "web"}
		evs = append(evs, ev)
		if _, err := w.encode(ev); err != nil {
			t.Fatal(err)
		}
		if w.bytes > w.limit || len(w.enc) != len(w.order) {
			t.Fatalf("after %d events: %d bytes kept (limit %d), %d encoded, %d in order", i+1, w.bytes, w.limit, len(w.enc), len(w.order))
		}
	}
	if _, kept := w.enc[evs[0]]; kept {
		t.Fatal("the oldest event is still kept past the limit")
	}
	if _, kept := w.enc[evs[len(evs)-1]]; !kept {
		t.Fatal("the latest event is not kept")
	}
	again, err := w.encode(evs[0])
	if err != nil || len(again) == 0 {
		t.Fatalf("re-encoding a forgotten event: %v, %d bytes", err, len(again))
	}
}
