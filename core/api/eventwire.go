package api

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// wireBytes is a message already in its protobuf wire form. The server's
// codec (RequestCodec) sends it as it is, so every stream that sends the
// same event shares one copy of its bytes instead of marshaling its own.
type wireBytes []byte

// eventWire keeps the wire form of the latest events, up to limit bytes,
// so that an event published to many subscribers is marshaled once. A
// miss (an event older than the cache holds) only costs a marshal.
type eventWire struct {
	mu    sync.Mutex
	enc   map[*apiv1.Event]wireBytes
	order []*apiv1.Event // oldest first
	bytes int
	limit int
}

func newEventWire(limit int) *eventWire {
	return &eventWire{enc: map[*apiv1.Event]wireBytes{}, limit: limit}
}

// encode returns ev's wire form. Events are never changed once published,
// so their pointer identifies their bytes.
func (w *eventWire) encode(ev *apiv1.Event) (wireBytes, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if b, ok := w.enc[ev]; ok {
		return b, nil
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode %s event %q at index %d: %w", ev.GetKind(), ev.GetName(), ev.GetIndex(), err)
	}
	w.enc[ev] = b
	w.order = append(w.order, ev)
	w.bytes += len(b)
	for w.bytes > w.limit && len(w.order) > 1 {
		old := w.order[0]
		w.order[0] = nil // the backing array must not keep it alive
		w.order = w.order[1:]
		w.bytes -= len(w.enc[old])
		delete(w.enc, old)
	}
	return b, nil
}
