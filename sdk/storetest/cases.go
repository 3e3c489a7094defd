package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
)

func testInfo(t *testing.T, newStore newHarness) {
	h := newStore(t)
	info, err := h.s.Info(t.Context())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindStore {
		t.Errorf("Info().Kind = %q, want %q", info.Kind, sdk.KindStore)
	}
	if info.Name == "" {
		t.Errorf("Info().Name is empty")
	}
	if !slices.Contains(info.APIVersions, uint32(sdk.APIVersion)) {
		t.Errorf("Info().APIVersions = %v, want it to hold %d", info.APIVersions, sdk.APIVersion)
	}
	schema, err := h.s.ConfigSchema(t.Context())
	if err != nil {
		t.Fatalf("ConfigSchema: %v", err)
	}
	seen := map[string]bool{}
	for _, a := range schema.Attributes {
		if a.Name == "" || seen[a.Name] {
			t.Errorf("ConfigSchema: attribute name %q is empty or repeated", a.Name)
		}
		seen[a.Name] = true
		if !a.Type.Valid() {
			t.Errorf("ConfigSchema: attribute %q has type %q, not one of sdk's types", a.Name, a.Type)
		}
	}
}

func testEmptyStore(t *testing.T, newStore newHarness) {
	h := newStore(t)
	wantIndex(t, h.s, 0)
	wantNotFound(t, h.s, "nodes", "n1")
	wantList(t, h.s, "nodes", "")
	wantList(t, h.s, "nodes", "n")
	idx, recs := readSnapshot(t, h.s)
	if idx != 0 || len(recs) != 0 {
		t.Fatalf("snapshot of an empty store: index %d, %d records; want 0, 0", idx, len(recs))
	}
}

func testApplyGetList(t *testing.T, newStore newHarness) {
	h := newStore(t)
	steps := []struct {
		name  string
		batch store.Batch
		// want is the whole content of buckets a and b after the batch.
		want []store.Record
		gone [][2]string
	}{
		{
			name:  "puts create records in two buckets",
			batch: store.Batch{Index: 1, Ops: []store.Op{put("a", "k1", "v1"), put("a", "k2", "v2"), put("b", "k1", "b1")}},
			want:  []store.Record{rec("a", "k1", "v1"), rec("a", "k2", "v2"), rec("b", "k1", "b1")},
		},
		{
			name:  "put replaces and delete removes",
			batch: store.Batch{Index: 2, Ops: []store.Op{put("a", "k2", "v2'"), del("a", "k1")}},
			want:  []store.Record{rec("a", "k2", "v2'"), rec("b", "k1", "b1")},
			gone:  [][2]string{{"a", "k1"}},
		},
		{
			name:  "deleting the last record of a bucket empties it",
			batch: store.Batch{Index: 5, Ops: []store.Op{del("b", "k1"), put("a", "k3", "v3")}},
			want:  []store.Record{rec("a", "k2", "v2'"), rec("a", "k3", "v3")},
			gone:  [][2]string{{"a", "k1"}, {"b", "k1"}},
		},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			apply(t, h.s, st.batch)
			wantIndex(t, h.s, st.batch.Index)
			for _, r := range st.want {
				wantValue(t, h.s, r.Bucket, r.Key, string(r.Value))
			}
			for _, g := range st.gone {
				wantNotFound(t, h.s, g[0], g[1])
			}
			var wantA, wantB []store.Record
			for _, r := range st.want {
				if r.Bucket == "a" {
					wantA = append(wantA, r)
				} else {
					wantB = append(wantB, r)
				}
			}
			wantList(t, h.s, "a", "", wantA...)
			wantList(t, h.s, "b", "", wantB...)
		})
	}
}

func testOpsInOrder(t *testing.T, newStore newHarness) {
	h := newStore(t)
	cases := []struct {
		name string
		ops  []store.Op
		want string // "" means no record
	}{
		{"put then delete", []store.Op{put("o", "k1", "x"), del("o", "k1")}, ""},
		{"delete then put", []store.Op{del("o", "k2"), put("o", "k2", "x")}, "x"},
		{"put twice keeps the last", []store.Op{put("o", "k3", "first"), put("o", "k3", "last")}, "last"},
		{"put, delete, put", []store.Op{put("o", "k4", "a"), del("o", "k4"), put("o", "k4", "b")}, "b"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			apply(t, h.s, store.Batch{Index: uint64(i + 1), Ops: c.ops})
			key := c.ops[0].Key
			if c.want == "" {
				wantNotFound(t, h.s, "o", key)
			} else {
				wantValue(t, h.s, "o", key, c.want)
			}
		})
	}
}

func testListPrefixAndOrder(t *testing.T, newStore newHarness) {
	h := newStore(t)
	// Byte-wise order, which is neither insertion order nor a
	// locale's order: "\x01" < "A" < "a" < "a/" < ... < "~" < "é" < "日".
	sorted := []string{"\x01", "A", "a", "a/", "a/1", "a/2", "a0", "ab", "b", "~", "é", "日"}
	shuffled := []string{"ab", "日", "a/2", "A", "b", "a", "é", "\x01", "a0", "~", "a/1", "a/"}
	var ops []store.Op
	for _, k := range shuffled {
		ops = append(ops, put("svc", k, "v:"+k))
	}
	// Buckets whose names share a prefix with "svc" must not leak into it.
	ops = append(ops, put("sv", "a/1", "other"), put("svc2", "a/1", "other"), put("svcx", "a", "other"))
	apply(t, h.s, store.Batch{Index: 1, Ops: ops})

	recsFor := func(keys ...string) []store.Record {
		var out []store.Record
		for _, k := range keys {
			out = append(out, rec("svc", k, "v:"+k))
		}
		return out
	}
	cases := []struct {
		prefix string
		want   []store.Record
	}{
		{"", recsFor(sorted...)},
		{"a", recsFor("a", "a/", "a/1", "a/2", "a0", "ab")},
		{"a/", recsFor("a/", "a/1", "a/2")},
		{"a/1", recsFor("a/1")},
		{"a/3", nil},
		{"A", recsFor("A")},
		{"é", recsFor("é")},
		{"~", recsFor("~")},
		{"zzz", nil},
		{"a/1/deeper", nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("prefix %q", c.prefix), func(t *testing.T) {
			wantList(t, h.s, "svc", c.prefix, c.want...)
		})
	}
	t.Run("buckets are separate", func(t *testing.T) {
		wantList(t, h.s, "sv", "", rec("sv", "a/1", "other"))
		wantList(t, h.s, "s", "")
		wantNotFound(t, h.s, "sv", "a")
	})
}

// manyRecords returns n records of about 1 KiB in bucket, keyed
// key-00000... so a List of them runs over several 1 MiB stream chunks.
func manyRecords(bucket string, n int) []store.Record {
	recs := make([]store.Record, n)
	for i := range recs {
		recs[i] = store.Record{Bucket: bucket, Key: fmt.Sprintf("key-%05d", i), Value: fill(i, 1000+i%48)}
	}
	return recs
}

// applyShuffled puts recs in a scrambled order, perBatch ops per batch,
// starting at index first, and returns the last index used.
func applyShuffled(t *testing.T, s store.Store, recs []store.Record, perBatch int, first uint64) uint64 {
	t.Helper()
	n := len(recs)
	idx := first
	var ops []store.Op
	for i := range n {
		r := recs[(i*7919)%n] // 7919 is prime: a permutation unless it divides n
		ops = append(ops, putBytes(r.Bucket, r.Key, r.Value))
		if len(ops) == perBatch || i == n-1 {
			apply(t, s, store.Batch{Index: idx, Ops: ops})
			idx++
			ops = nil
		}
	}
	return idx - 1
}

func testManyKeys(t *testing.T, newStore newHarness) {
	h := newStore(t)
	const n = 2000
	recs := manyRecords("big", n)
	last := applyShuffled(t, h.s, recs, 500, 1)
	wantIndex(t, h.s, last)
	cases := []struct {
		prefix string
		want   []store.Record
	}{
		{"", recs},
		{"key-01", recs[1000:2000]},
		{"key-0199", recs[1990:2000]},
		{"key-00042", recs[42:43]},
		{"key-2", nil},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("prefix %q", c.prefix), func(t *testing.T) {
			wantList(t, h.s, "big", c.prefix, c.want...)
		})
	}
	t.Run("snapshot", func(t *testing.T) {
		idx, got := readSnapshot(t, h.s)
		if idx != last {
			t.Errorf("snapshot index = %d, want %d", idx, last)
		}
		if d := diffRecords(got, recs); d != "" {
			t.Fatalf("snapshot: %s", d)
		}
	})
}

func testDeleteMissing(t *testing.T, newStore newHarness) {
	h := newStore(t)
	apply(t, h.s, store.Batch{Index: 1, Ops: []store.Op{put("d", "keep", "v")}})
	cases := []struct {
		name string
		op   store.Op
	}{
		{"missing key in a written bucket", del("d", "nope")},
		{"key in a bucket never written", del("never", "nope")},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			idx := uint64(i + 2)
			apply(t, h.s, store.Batch{Index: idx, Ops: []store.Op{c.op}})
			wantIndex(t, h.s, idx)
			wantValue(t, h.s, "d", "keep", "v")
			wantNotFound(t, h.s, c.op.Bucket, c.op.Key)
		})
	}
}

func testLimitsAccepted(t *testing.T, newStore newHarness) {
	h := newStore(t)
	longBucket := strings.Repeat("b", store.MaxBucketLen)
	longKey := strings.Repeat("k", store.MaxKeyLen)
	cases := []struct {
		name        string
		op          store.Op
		needsDirect bool
	}{
		{"bucket of MaxBucketLen", put(longBucket, "k", "v"), false},
		{"key of MaxKeyLen", put("lim", longKey, "v"), false},
		{"empty value", put("lim", "empty", ""), false},
		{"value of MaxValueLen", putBytes("lim", "huge", fill(7, store.MaxValueLen)), true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := h.s
			if c.needsDirect {
				s = h.direct
			}
			apply(t, s, store.Batch{Index: uint64(i + 1), Ops: []store.Op{c.op}})
			wantValue(t, h.s, c.op.Bucket, c.op.Key, string(c.op.Value))
			recs := list(t, h.s, c.op.Bucket, c.op.Key)
			if len(recs) != 1 || recs[0].Key != c.op.Key || len(recs[0].Value) != len(c.op.Value) {
				t.Fatalf("List(%q, key) = %d records, want the one record of %d bytes", c.op.Bucket, len(recs), len(c.op.Value))
			}
		})
	}
}

func testInvalidBatch(t *testing.T, newStore newHarness) {
	h := newStore(t)
	apply(t, h.s, store.Batch{Index: 1, Ops: []store.Op{put("b", "keep", "v1")}})
	cases := []struct {
		name string
		bad  store.Op
		// needsDirect: the batch is too big for the in-process test
		// connection, which keeps gRPC's default 4 MiB limit.
		needsDirect bool
	}{
		{"empty bucket", put("", "k", "v"), false},
		{"empty key", put("b", "", "v"), false},
		{"delete with empty key", del("b", ""), false},
		{"delete with empty bucket", del("", "k"), false},
		{"bucket over MaxBucketLen", put(strings.Repeat("b", store.MaxBucketLen+1), "k", "v"), false},
		{"key over MaxKeyLen", put("b", strings.Repeat("k", store.MaxKeyLen+1), "v"), false},
		{"delete with key over MaxKeyLen", del("b", strings.Repeat("k", store.MaxKeyLen+1)), false},
		{"value over MaxValueLen", putBytes("b", "k", make([]byte, store.MaxValueLen+1)), true},
		{"op type 0", store.Op{Bucket: "b", Key: "k"}, false},
		{"unknown op type", store.Op{Type: 99, Bucket: "b", Key: "k"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := h.s
			if c.needsDirect {
				s = h.direct
			}
			b := store.Batch{Index: 2, Ops: []store.Op{
				put("b", "new", "x"),
				put("b", "keep", "changed"),
				c.bad,
				put("c", "after", "y"),
			}}
			applied, err := s.Apply(t.Context(), b)
			if !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Apply(batch with %s) = %v, %v; want an error wrapping sdk.ErrInvalidArgument", c.name, applied, err)
			}
			if applied {
				t.Errorf("Apply(batch with %s) reported applied=true along with its error", c.name)
			}
			wantIndex(t, h.s, 1)
			wantValue(t, h.s, "b", "keep", "v1")
			wantNotFound(t, h.s, "b", "new")
			wantNotFound(t, h.s, "c", "after")
			wantList(t, h.s, "b", "", rec("b", "keep", "v1"))
			wantList(t, h.s, "c", "")
		})
	}
	t.Run("the index is still free", func(t *testing.T) {
		apply(t, h.s, store.Batch{Index: 2, Ops: []store.Op{put("b", "new", "x")}})
		wantValue(t, h.s, "b", "new", "x")
		wantIndex(t, h.s, 2)
	})
}

func testRepeatSafe(t *testing.T, newStore newHarness) {
	h := newStore(t)
	apply(t, h.s, store.Batch{Index: 5, Ops: []store.Op{put("r", "k", "five")}})
	cases := []struct {
		name  string
		batch store.Batch
	}{
		{"same index, other content", store.Batch{Index: 5, Ops: []store.Op{put("r", "k", "again"), put("r", "other", "x")}}},
		{"lower index", store.Batch{Index: 4, Ops: []store.Op{put("r", "other", "x")}}},
		{"lower index deleting", store.Batch{Index: 3, Ops: []store.Op{del("r", "k")}}},
		{"index 0", store.Batch{Index: 0, Ops: []store.Op{put("r", "other", "x")}}},
		{"same index, no ops", store.Batch{Index: 5}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			applied, err := h.s.Apply(t.Context(), c.batch)
			if err != nil || applied {
				t.Fatalf("Apply(index %d) at applied index 5 = %v, %v; want false, nil", c.batch.Index, applied, err)
			}
			wantIndex(t, h.s, 5)
			wantValue(t, h.s, "r", "k", "five")
			wantNotFound(t, h.s, "r", "other")
		})
	}
}

func testEmptyBatch(t *testing.T, newStore newHarness) {
	h := newStore(t)
	cases := []struct {
		name  string
		batch store.Batch
	}{
		{"nil ops", store.Batch{Index: 3}},
		{"empty ops after a gap", store.Batch{Index: 10, Ops: []store.Op{}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			apply(t, h.s, c.batch)
			wantIndex(t, h.s, c.batch.Index)
		})
	}
	_, recs := readSnapshot(t, h.s)
	if len(recs) != 0 {
		t.Fatalf("empty batches left %d records", len(recs))
	}
}

func testSnapshotPointInTime(t *testing.T, newStore newHarness) {
	h := newStore(t)
	apply(t, h.s, store.Batch{Index: 1, Ops: []store.Op{put("a", "1", "one"), put("a", "2", "two"), put("b", "1", "bee")}})
	snap1, err := h.s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap1.Close()

	apply(t, h.s, store.Batch{Index: 2, Ops: []store.Op{put("a", "1", "ONE"), del("a", "2"), put("a", "3", "three"), del("b", "1")}})
	snap2, err := h.s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap2.Close()
	// Enough writes after the snapshots that a store reusing freed space
	// would overwrite what they still have to read.
	for i := range 20 {
		apply(t, h.s, store.Batch{Index: uint64(3 + i), Ops: []store.Op{
			put("a", "1", fmt.Sprintf("later-%d", i)),
			putBytes("c", fmt.Sprintf("%02d", i), fill(i, 4096)),
		}})
	}

	cases := []struct {
		name      string
		snap      store.Snapshot
		wantIndex uint64
		want      []store.Record
	}{
		{"taken at 1", snap1, 1, []store.Record{rec("a", "1", "one"), rec("a", "2", "two"), rec("b", "1", "bee")}},
		{"taken at 2", snap2, 2, []store.Record{rec("a", "1", "ONE"), rec("a", "3", "three")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.snap.Index(); got != c.wantIndex {
				t.Errorf("Index() = %d, want %d", got, c.wantIndex)
			}
			got := readAllSorted(t, c.snap)
			if d := diffRecords(got, c.want); d != "" {
				t.Fatalf("snapshot content: %s", d)
			}
			if err := c.snap.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if err := c.snap.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
	wantIndex(t, h.s, 22)
	wantValue(t, h.s, "a", "1", "later-19")
}

// fixture is a store content spread over several buckets and batches.
func fixture(t *testing.T, s store.Store) (uint64, []store.Record) {
	t.Helper()
	big := manyRecords("big", 1500)
	last := applyShuffled(t, s, big, 500, 1)
	small := []store.Record{rec("nodes", "n1", "node one"), rec("nodes", "n2", "node two"), rec("services", "web", "svc"), rec("empty-value", "k", "")}
	var ops []store.Op
	for _, r := range small {
		ops = append(ops, putBytes(r.Bucket, r.Key, r.Value))
	}
	ops = append(ops, put("nodes", "gone", "x"), del("nodes", "gone"))
	last += 40 // a gap, as Raft leaves for its own entries
	apply(t, s, store.Batch{Index: last, Ops: ops})
	all := append(slices.Clone(big), small...)
	sortRecords(all)
	return last, all
}

func testSnapshotRestoreRoundTrip(t *testing.T, newStore newHarness) {
	src := newStore(t)
	dst := newStore(t)
	last, all := fixture(t, src.s)

	snap, err := src.s.Snapshot(t.Context())
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Close()
	if snap.Index() != last {
		t.Fatalf("snapshot index = %d, want %d", snap.Index(), last)
	}
	if err := dst.s.Restore(t.Context(), snap.Index(), snap); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if err := snap.Close(); err != nil {
		t.Fatalf("snapshot Close: %v", err)
	}

	wantIndex(t, dst.s, last)
	idx, got := readSnapshot(t, dst.s)
	if idx != last {
		t.Errorf("restored store's snapshot index = %d, want %d", idx, last)
	}
	if d := diffRecords(got, all); d != "" {
		t.Fatalf("restored content: %s", d)
	}
	wantValue(t, dst.s, "nodes", "n2", "node two")
	wantList(t, dst.s, "nodes", "n", rec("nodes", "n1", "node one"), rec("nodes", "n2", "node two"))

	applied, err := dst.s.Apply(t.Context(), store.Batch{Index: last, Ops: []store.Op{put("nodes", "n3", "x")}})
	if err != nil || applied {
		t.Fatalf("Apply(restored index %d) = %v, %v; want false, nil", last, applied, err)
	}
	apply(t, dst.s, store.Batch{Index: last + 1, Ops: []store.Op{put("nodes", "n3", "x")}})
	wantValue(t, dst.s, "nodes", "n3", "x")
}

func testRestoreReplaces(t *testing.T, newStore newHarness) {
	cases := []struct {
		name    string
		index   uint64
		records []store.Record
	}{
		{"with other records", 4, []store.Record{rec("x", "2", "new"), rec("z", "1", "zed"), rec("z", "0", "first")}},
		{"with nothing", 7, nil},
		{"at a higher index", 1000, []store.Record{rec("y", "1", "why")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newStore(t)
			apply(t, h.s, store.Batch{Index: 10, Ops: []store.Op{put("x", "1", "old"), put("x", "2", "old"), put("y", "1", "old")}})
			if err := h.s.Restore(t.Context(), c.index, &store.SliceReader{Records: c.records}); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			wantIndex(t, h.s, c.index)
			want := slices.Clone(c.records)
			sortRecords(want)
			_, got := readSnapshot(t, h.s)
			if d := diffRecords(got, want); d != "" {
				t.Fatalf("content after Restore: %s", d)
			}
			for _, b := range []string{"x", "y", "z"} {
				var inBucket []store.Record
				for _, r := range want {
					if r.Bucket == b {
						inBucket = append(inBucket, r)
					}
				}
				wantList(t, h.s, b, "", inBucket...)
			}
			wantNotFound(t, h.s, "x", "1")
		})
	}
}

func testFailedRestore(t *testing.T, newStore newHarness) {
	h := newStore(t)
	apply(t, h.s, store.Batch{Index: 10, Ops: []store.Op{put("x", "1", "old"), put("y", "1", "old")}})
	errBoom := errors.New("reader broke")
	valid := []store.Record{rec("x", "1", "NEW"), rec("z", "1", "zed")}
	cases := []struct {
		name        string
		src         store.RecordReader
		wantInvalid bool
	}{
		{"reader fails midway", &errorReader{SliceReader: store.SliceReader{Records: valid}, err: errBoom}, false},
		{"reader fails at once", &errorReader{err: errBoom}, false},
		{"record with empty key", &store.SliceReader{Records: append(slices.Clone(valid), rec("z", "", "v"))}, true},
		{"record with empty bucket", &store.SliceReader{Records: append(slices.Clone(valid), rec("", "k", "v"))}, true},
		{"record with key over MaxKeyLen", &store.SliceReader{Records: append(slices.Clone(valid), rec("z", strings.Repeat("k", store.MaxKeyLen+1), "v"))}, true},
	}
	index := uint64(10)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// A client whose reader fails leaves its stream open; ending
			// the context is what tells the server to give up.
			ctx, cancel := context.WithCancel(t.Context())
			err := h.s.Restore(ctx, 99, c.src)
			cancel()
			if err == nil {
				t.Fatalf("Restore succeeded, want an error")
			}
			if c.wantInvalid && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Fatalf("Restore = %v, want an error wrapping sdk.ErrInvalidArgument", err)
			}
			// The next index must still apply: had the failed Restore set
			// the index to 99, this would be skipped. It also waits for a
			// store that holds its write lock until the Restore unwinds.
			index++
			apply(t, h.s, store.Batch{Index: index, Ops: []store.Op{put("probe", "k", fmt.Sprint(index))}})
			wantIndex(t, h.s, index)
			wantValue(t, h.s, "x", "1", "old")
			wantValue(t, h.s, "y", "1", "old")
			wantNotFound(t, h.s, "z", "1")
			wantList(t, h.s, "z", "")
		})
	}
}

func testConcurrentReads(t *testing.T, newStore newHarness) {
	h := newStore(t)
	const batches = 200
	keys := make([]string, 10)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i+1)
	}
	version := func(i uint64) string { return fmt.Sprintf("v%04d", i) }

	done := make(chan struct{})
	errs := make(chan error, 3)
	reader := func(name string, check func() error) {
		rounds := 0
		var err error
		defer func() {
			if err == nil && rounds == 0 {
				err = fmt.Errorf("%s: no round ran", name)
			}
			errs <- err
		}()
		for {
			if err = check(); err != nil {
				err = fmt.Errorf("%s, round %d: %w", name, rounds, err)
				return
			}
			rounds++
			select {
			case <-done:
				return
			default:
			}
		}
	}
	// checkWhole checks that recs are the ten keys of one batch (or none)
	// and returns that batch's version.
	checkWhole := func(recs []store.Record) (string, error) {
		if len(recs) == 0 {
			return "", nil
		}
		if len(recs) != len(keys) {
			return "", fmt.Errorf("saw %d of the %d keys a batch writes", len(recs), len(keys))
		}
		for _, r := range recs {
			if string(r.Value) != string(recs[0].Value) {
				return "", fmt.Errorf("saw %s next to %s: half a batch", fmtRec(r), fmtRec(recs[0]))
			}
		}
		return string(recs[0].Value), nil
	}

	lastSeen := ""
	go reader("List", func() error {
		recs, err := h.s.List(t.Context(), "c", "k")
		if err != nil {
			return err
		}
		v, err := checkWhole(recs)
		if err != nil {
			return err
		}
		if v < lastSeen {
			return fmt.Errorf("went back from %s to %s", lastSeen, v)
		}
		lastSeen = v
		return nil
	})
	go reader("Snapshot", func() error {
		snap, err := h.s.Snapshot(t.Context())
		if err != nil {
			return err
		}
		defer snap.Close()
		recs, err := store.ReadAll(snap)
		if err != nil {
			return err
		}
		sortRecords(recs)
		var inC []store.Record
		mirror := ""
		for _, r := range recs {
			switch r.Bucket {
			case "c":
				inC = append(inC, r)
			case "d":
				mirror = string(r.Value)
			}
		}
		v, err := checkWhole(inC)
		if err != nil {
			return err
		}
		want := ""
		if snap.Index() > 0 {
			want = version(snap.Index())
		}
		if v != want || mirror != want {
			return fmt.Errorf("snapshot at index %d holds %q in bucket c and %q in bucket d, want %q in both", snap.Index(), v, mirror, want)
		}
		return nil
	})
	go reader("AppliedIndex then Get", func() error {
		idx, err := h.s.AppliedIndex(t.Context())
		if err != nil {
			return err
		}
		if idx == 0 {
			return nil
		}
		v, err := h.s.Get(t.Context(), "c", keys[0])
		if err != nil {
			return fmt.Errorf("Get after AppliedIndex %d: %w", idx, err)
		}
		if string(v) < version(idx) {
			return fmt.Errorf("Get returned %s after AppliedIndex reported %d", v, idx)
		}
		return nil
	})

	func() {
		defer close(done)
		for i := uint64(1); i <= batches; i++ {
			ops := []store.Op{put("d", "mirror", version(i))}
			for _, k := range keys {
				ops = append(ops, put("c", k, version(i)))
			}
			if _, err := h.s.Apply(t.Context(), store.Batch{Index: i, Ops: ops}); err != nil {
				t.Errorf("Apply(index %d): %v", i, err)
				return
			}
		}
	}()
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func testCallerOwnsValues(t *testing.T, newStore newHarness) {
	h := newStore(t)
	paths := []struct {
		name string
		s    store.Store
	}{{"direct", h.direct}}
	if h.wired() {
		paths = append(paths, struct {
			name string
			s    store.Store
		}{"over the wire", h.s})
	}
	index := uint64(0)
	next := func() uint64 { index++; return index }
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			s := p.s
			bucket := "own-" + strings.ReplaceAll(p.name, " ", "-")
			// Padding makes the bucket big enough that a store keeping
			// small buckets inline (as bbolt does) still hands out values
			// that live in its own storage.
			var pads []store.Record
			var ops []store.Op
			for i := range 4 {
				r := store.Record{Bucket: bucket, Key: fmt.Sprintf("pad%d", i), Value: fill(i, 4096)}
				pads = append(pads, r)
				ops = append(ops, putBytes(r.Bucket, r.Key, r.Value))
			}
			in := []byte("original")
			ops = append(ops, putBytes(bucket, "k", in))
			apply(t, s, store.Batch{Index: next(), Ops: ops})
			in[0] = 'X'
			wantValue(t, s, bucket, "k", "original")

			v, err := s.Get(t.Context(), bucket, "k")
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			v[0] = 'X'
			wantValue(t, s, bucket, "k", "original")

			recs := list(t, s, bucket, "k")
			recs[0].Value[0] = 'X'
			wantList(t, s, bucket, "k", rec(bucket, "k", "original"))

			restoreIn := append([]store.Record{rec(bucket, "k", "restored"), rec(bucket, "k2", "second")}, pads...)
			idx := next()
			if err := s.Restore(t.Context(), idx, &store.SliceReader{Records: restoreIn}); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			restoreIn[0].Value[0] = 'X'
			wantValue(t, s, bucket, "k", "restored")

			// Records read from a snapshot stay valid after it is closed
			// and the store has moved on.
			snap, err := s.Snapshot(t.Context())
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			got, err := store.ReadAll(snap)
			if err != nil {
				t.Fatalf("reading snapshot: %v", err)
			}
			snap.Close()
			for i := range 10 {
				apply(t, s, store.Batch{Index: next(), Ops: []store.Op{
					put(bucket, "k", strings.Repeat("z", 100+i)),
					del(bucket, "k2"),
					putBytes(bucket, fmt.Sprintf("pad%d", i%4), fill(100+i, 4096)),
					putBytes(bucket, fmt.Sprintf("more%d", i), fill(200+i, 8192)),
				}})
			}
			sortRecords(got)
			want := append([]store.Record{rec(bucket, "k", "restored"), rec(bucket, "k2", "second")}, pads...)
			sortRecords(want)
			if d := diffRecords(got, want); d != "" {
				t.Fatalf("snapshot records changed after Close and later writes: %s", d)
			}
		})
	}
}
