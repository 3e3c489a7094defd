package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

// Paging of the List calls, as Google's AIP-158 describes it: a request
// names a page_size and the page_token of the previous response; a
// response carries the next_page_token, empty on the last page. A request
// that sets no page_size gets the largest, so that a caller that does not
// page yet (an older CLI) gets as much as a page can hold.
const (
	// MaxPageSize is the largest page size served; larger requests get it.
	MaxPageSize = 1000
	// MaxBasicTaskPageSize is MaxPageSize for tasks in the BASIC view,
	// which leaves out their specs: a task is then a few hundred bytes, so
	// a page of 10,000 stays within MaxPageBytes and a service of 10,000
	// tasks is listed in one round trip or two.
	MaxBasicTaskPageSize = 10000
	// MaxPageBytes bounds the encoded objects of one page: a page ends before
	// the object that would take it past this bound (a page always holds at
	// least one object, and one object is bounded by MaxSpecBytes and the
	// like). It keeps every list response well under gRPC's default 4 MiB
	// receive limit, which clients keep.
	MaxPageBytes = 2 << 20
)

// pageRequest is a List request that pages.
type pageRequest interface {
	proto.Message
	GetPageSize() uint32
	GetPageToken() string
}

// A page token is opaque to clients. Inside it is, base64url-encoded:
// tokenVersion, the list's kind, a fingerprint of the request without its
// page fields (a token serves only the query it was made for), and the
// protobuf of a stub of the page's last object holding just the fields its
// list is sorted by. The next page starts after that position, so objects
// created or removed between pages move no other object from one page to
// another: each object present throughout is listed exactly once.
const (
	tokenVersion     = 1
	fingerprintBytes = 8
)

// lister pages one kind of object.
type lister[T proto.Message] struct {
	kind byte
	// what names the objects in errors.
	what string
	// compare is the order the list is sorted in (state.CompareX).
	compare func(a, b T) int
	// stub keeps what compare reads.
	stub func(T) T
}

var (
	servicePager = lister[*apiv1.Service]{kind: 's', what: "services", compare: state.CompareServices,
		stub: func(s *apiv1.Service) *apiv1.Service {
			return &apiv1.Service{Id: s.GetId(), Spec: &apiv1.ServiceSpec{Name: s.GetSpec().GetName()}}
		}}
	nodePager = lister[*apiv1.Node]{kind: 'n', what: "nodes", compare: state.CompareNodes,
		stub: func(n *apiv1.Node) *apiv1.Node { return &apiv1.Node{Id: n.GetId(), Name: n.GetName()} }}
	taskPager = lister[*apiv1.Task]{kind: 't', what: "tasks", compare: state.CompareTasks,
		stub: func(t *apiv1.Task) *apiv1.Task {
			return &apiv1.Task{Id: t.GetId(), ServiceName: t.GetServiceName(), Slot: t.GetSlot(), CreatedAt: t.GetCreatedAt()}
		}}
)

// page returns the page of sorted (in l.compare order) that req asks for,
// keeping only the objects keep accepts (nil keeps all), and the token of
// the next page ("" when no kept object follows). size is the encoded size
// of an object as the response holds it (nil: proto.Size). maxSize is the
// largest page size served (MaxPageSize unless the kind says otherwise):
// the default, and the bound of larger requests.
func (l lister[T]) page(req pageRequest, sorted []T, keep func(T) bool, size func(T) int, maxSize int) ([]T, string, error) {
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		after, err := l.decode(req, tok)
		if err != nil {
			return nil, "", err
		}
		i, found := slices.BinarySearchFunc(sorted, after, l.compare)
		if found {
			i++
		}
		start = i
	}
	limit := int(req.GetPageSize())
	if limit == 0 {
		limit = maxSize
	}
	limit = min(limit, maxSize)
	var out []T
	total := 0
	for _, o := range sorted[start:] {
		if keep != nil && !keep(o) {
			continue
		}
		// The object and its field tag and length in the response.
		var n int
		if size != nil {
			n = size(o)
		} else {
			n = proto.Size(o)
		}
		n += 1 + protowire.SizeVarint(uint64(n))
		if len(out) > 0 && (len(out) >= limit || total+n > MaxPageBytes) {
			next, err := l.encode(req, out[len(out)-1])
			return out, next, err
		}
		out = append(out, o)
		total += n
	}
	return out, "", nil
}

func (l lister[T]) encode(req pageRequest, last T) (string, error) {
	fp, err := fingerprint(req)
	if err != nil {
		return "", err
	}
	b, err := proto.Marshal(l.stub(last))
	if err != nil {
		return "", err
	}
	tok := append([]byte{tokenVersion, l.kind}, fp...)
	return base64.RawURLEncoding.EncodeToString(append(tok, b...)), nil
}

func (l lister[T]) decode(req pageRequest, tok string) (T, error) {
	var zero T
	bad := func(why string) (T, error) {
		return zero, invalid("list %s: page_token %.40q %s: pass the next_page_token of the previous response with the same other fields, or no token for the first page", l.what, tok, why)
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 2+fingerprintBytes || b[0] != tokenVersion || b[1] != l.kind {
		return bad("is not a page token of this list")
	}
	fp, err := fingerprint(req)
	if err != nil {
		return zero, err
	}
	if !bytes.Equal(b[2:2+fingerprintBytes], fp) {
		return bad("was given for a request with other fields")
	}
	after := zero.ProtoReflect().New().Interface().(T)
	if err := proto.Unmarshal(b[2+fingerprintBytes:], after); err != nil {
		return bad("is damaged")
	}
	return after, nil
}

// fingerprint sums req without its paging fields.
func fingerprint(req pageRequest) ([]byte, error) {
	q := proto.Clone(req)
	m := q.ProtoReflect()
	for _, name := range []protoreflect.Name{"page_size", "page_token"} {
		if fd := m.Descriptor().Fields().ByName(name); fd != nil {
			m.Clear(fd)
		}
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(q)
	if err != nil {
		return nil, invalid("list request: %v", err)
	}
	sum := sha256.Sum256(b)
	return sum[:fingerprintBytes], nil
}
