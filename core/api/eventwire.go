package api

import (
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	encproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// wireBytes is a message already in its protobuf wire form. The server's
// codec sends it as it is, so every stream that sends the same event shares
// one copy of its bytes instead of marshaling its own.
type wireBytes []byte

// wireCodec is the proto codec, except that wireBytes go out unchanged.
type wireCodec struct{ encoding.CodecV2 }

// Marshal encodes v; wireBytes are already encoded.
func (c wireCodec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(wireBytes); ok {
		// A SliceBuffer is never returned to a pool: the bytes stay
		// shared and unchanged.
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.CodecV2.Marshal(v)
}

// codecOption makes a server use wireCodec over RequestCodec's codec: a
// server has one codec, so this one must also hand requests' bytes to
// RegisterService's handlers.
func codecOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(wireCodec{requestCodec{encoding.GetCodecV2(encproto.Name)}})
}

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
		w.order = w.order[1:]
		w.bytes -= len(w.enc[old])
		delete(w.enc, old)
	}
	return b, nil
}
