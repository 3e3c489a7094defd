package storetest

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
)

func put(bucket, key, value string) store.Op {
	return store.Op{Type: store.OpPut, Bucket: bucket, Key: key, Value: []byte(value)}
}

func putBytes(bucket, key string, value []byte) store.Op {
	return store.Op{Type: store.OpPut, Bucket: bucket, Key: key, Value: value}
}

func del(bucket, key string) store.Op {
	return store.Op{Type: store.OpDelete, Bucket: bucket, Key: key}
}

func rec(bucket, key, value string) store.Record {
	return store.Record{Bucket: bucket, Key: key, Value: []byte(value)}
}

// fill returns n bytes that depend on seed, so a value read back under the
// wrong key does not compare equal.
func fill(seed, n int) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// apply applies b and fails the test unless it was applied.
func apply(t *testing.T, s store.Store, b store.Batch) {
	t.Helper()
	applied, err := s.Apply(t.Context(), b)
	if err != nil {
		t.Fatalf("Apply(index %d, %d ops): %v", b.Index, len(b.Ops), err)
	}
	if !applied {
		t.Fatalf("Apply(index %d, %d ops) = false, want true", b.Index, len(b.Ops))
	}
}

func wantIndex(t *testing.T, s store.Store, want uint64) {
	t.Helper()
	got, err := s.AppliedIndex(t.Context())
	if err != nil {
		t.Fatalf("AppliedIndex: %v", err)
	}
	if got != want {
		t.Fatalf("AppliedIndex = %d, want %d", got, want)
	}
}

func wantValue(t *testing.T, s store.Store, bucket, key, want string) {
	t.Helper()
	got, err := s.Get(t.Context(), bucket, key)
	if err != nil {
		t.Fatalf("Get(%q, %q): %v, want %q", bucket, key, err, want)
	}
	if string(got) != want {
		t.Fatalf("Get(%q, %q) = %q, want %q", bucket, key, short(got), short([]byte(want)))
	}
}

func wantNotFound(t *testing.T, s store.Store, bucket, key string) {
	t.Helper()
	got, err := s.Get(t.Context(), bucket, key)
	if !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("Get(%q, %q) = %q, %v; want an error wrapping sdk.ErrNotFound", bucket, key, short(got), err)
	}
}

func list(t *testing.T, s store.Store, bucket, prefix string) []store.Record {
	t.Helper()
	recs, err := s.List(t.Context(), bucket, prefix)
	if err != nil {
		t.Fatalf("List(%q, %q): %v", bucket, prefix, err)
	}
	return recs
}

// wantList checks List(bucket, prefix) against want, order included.
func wantList(t *testing.T, s store.Store, bucket, prefix string, want ...store.Record) {
	t.Helper()
	if d := diffRecords(list(t, s, bucket, prefix), want); d != "" {
		t.Fatalf("List(%q, %q): %s", bucket, prefix, d)
	}
}

// readSnapshot takes a snapshot, reads it whole and closes it, returning its
// index and its records sorted by bucket then key.
func readSnapshot(t *testing.T, s store.Store) (uint64, []store.Record) {
	t.Helper()
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Close()
	recs := readAllSorted(t, snap)
	return snap.Index(), recs
}

func readAllSorted(t *testing.T, r store.RecordReader) []store.Record {
	t.Helper()
	recs, err := store.ReadAll(r)
	if err != nil {
		t.Fatalf("reading snapshot: %v", err)
	}
	sortRecords(recs)
	return recs
}

func sortRecords(recs []store.Record) {
	slices.SortFunc(recs, func(a, b store.Record) int {
		return cmp.Or(strings.Compare(a.Bucket, b.Bucket), strings.Compare(a.Key, b.Key))
	})
}

// diffRecords describes the first difference between got and want, or
// returns "" when they are equal. A nil and an empty value are equal.
func diffRecords(got, want []store.Record) string {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(got):
			return fmt.Sprintf("got %d records, want %d; first missing: %s", len(got), len(want), fmtRec(want[i]))
		case i >= len(want):
			return fmt.Sprintf("got %d records, want %d; first extra: %s", len(got), len(want), fmtRec(got[i]))
		case got[i].Bucket != want[i].Bucket || got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value):
			return fmt.Sprintf("record %d = %s, want %s", i, fmtRec(got[i]), fmtRec(want[i]))
		}
	}
	return ""
}

func fmtRec(r store.Record) string {
	return fmt.Sprintf("%q/%q=%q", r.Bucket, r.Key, short(r.Value))
}

// short abbreviates long values in failure messages.
func short(v []byte) string {
	if len(v) <= 40 {
		return string(v)
	}
	return fmt.Sprintf("%s...(%d bytes)", v[:32], len(v))
}

// errorReader yields its records, then fails with err.
type errorReader struct {
	store.SliceReader
	err error
}

func (r *errorReader) Next() (store.Record, error) {
	rec, err := r.SliceReader.Next()
	if err != nil {
		return store.Record{}, r.err
	}
	return rec, nil
}
