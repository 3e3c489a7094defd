package storetest

import (
	"fmt"
	"testing"

	"github.com/warrenorch/warren/sdk/store"
)

type opener func(t *testing.T, dir string) store.Store

type durableCase struct {
	name string
	fn   func(t *testing.T, open opener)
}

var durableCases = []durableCase{
	{"ReopenKeepsIndexAndData", testReopenKeeps},
	{"ReopenTwice", testReopenTwice},
	{"ReopenAfterRestore", testReopenAfterRestore},
	{"ReopenEmpty", testReopenEmpty},
}

// session opens dir, serves the store over the wire, runs fn on the client
// and closes the store.
func session(t *testing.T, open opener, dir string, fn func(s store.Store)) {
	t.Helper()
	impl := open(t, dir)
	fn(wire(t, impl))
	closeStore(t, impl)
}

func testReopenKeeps(t *testing.T, open opener) {
	dir := t.TempDir()
	var last uint64
	var all []store.Record
	session(t, open, dir, func(s store.Store) {
		last, all = fixture(t, s)
	})
	session(t, open, dir, func(s store.Store) {
		wantIndex(t, s, last)
		_, got := readSnapshot(t, s)
		if d := diffRecords(got, all); d != "" {
			t.Fatalf("content after reopen: %s", d)
		}
		wantList(t, s, "nodes", "", rec("nodes", "n1", "node one"), rec("nodes", "n2", "node two"))
		applied, err := s.Apply(t.Context(), store.Batch{Index: last, Ops: []store.Op{put("nodes", "n1", "replayed")}})
		if err != nil || applied {
			t.Fatalf("replaying index %d after reopen = %v, %v; want false, nil", last, applied, err)
		}
		wantValue(t, s, "nodes", "n1", "node one")
	})
}

func testReopenTwice(t *testing.T, open opener) {
	dir := t.TempDir()
	for round := range 3 {
		session(t, open, dir, func(s store.Store) {
			wantIndex(t, s, uint64(round))
			for r := range round {
				wantValue(t, s, "rounds", fmt.Sprint(r), fmt.Sprintf("round %d", r))
			}
			ops := []store.Op{put("rounds", fmt.Sprint(round), fmt.Sprintf("round %d", round))}
			if round > 0 {
				ops = append(ops, del("scratch", fmt.Sprint(round-1)))
			}
			ops = append(ops, put("scratch", fmt.Sprint(round), "tmp"))
			apply(t, s, store.Batch{Index: uint64(round + 1), Ops: ops})
		})
	}
	session(t, open, dir, func(s store.Store) {
		wantIndex(t, s, 3)
		wantList(t, s, "scratch", "", rec("scratch", "2", "tmp"))
	})
}

func testReopenAfterRestore(t *testing.T, open opener) {
	dir := t.TempDir()
	restored := []store.Record{rec("a", "1", "restored"), rec("b", "2", "two")}
	session(t, open, dir, func(s store.Store) {
		apply(t, s, store.Batch{Index: 30, Ops: []store.Op{put("a", "1", "old"), put("old", "k", "v")}})
		if err := s.Restore(t.Context(), 12, &store.SliceReader{Records: restored}); err != nil {
			t.Fatalf("Restore: %v", err)
		}
	})
	session(t, open, dir, func(s store.Store) {
		wantIndex(t, s, 12)
		_, got := readSnapshot(t, s)
		if d := diffRecords(got, restored); d != "" {
			t.Fatalf("content after Restore and reopen: %s", d)
		}
	})
}

func testReopenEmpty(t *testing.T, open opener) {
	dir := t.TempDir()
	session(t, open, dir, func(s store.Store) { wantIndex(t, s, 0) })
	session(t, open, dir, func(s store.Store) {
		wantIndex(t, s, 0)
		wantList(t, s, "any", "")
	})
}
