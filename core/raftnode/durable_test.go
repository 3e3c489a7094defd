package raftnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store/boltcheck/boltchecktest"
)

func TestCheckStore(t *testing.T) {
	cases := []struct {
		name  string
		d     Durable
		store uint64
		want  string // "" for nil, else a part of the error
	}{
		{"new", Durable{}, 0, ""},
		{"store at the log's end", Durable{FirstIndex: 1, LastIndex: 100}, 100, ""},
		{"store behind the log", Durable{FirstIndex: 1, LastIndex: 100}, 40, ""},
		{"empty store, whole log", Durable{FirstIndex: 1, LastIndex: 100}, 0, ""},
		{"store behind the snapshot", Durable{FirstIndex: 90, LastIndex: 150, SnapshotIndex: 100}, 50, ""},
		{"empty store, snapshot and the log after it", Durable{FirstIndex: 101, LastIndex: 150, SnapshotIndex: 100}, 0, ""},
		{"empty store, snapshot, empty log", Durable{SnapshotIndex: 100}, 0, ""},
		{"compacted log, store covers the rest", Durable{FirstIndex: 50, LastIndex: 100}, 49, ""},
		{"empty log next to a snapshot, store ahead", Durable{SnapshotIndex: 100}, 150, "ahead of Raft"},
		{"store ahead of the log", Durable{FirstIndex: 1, LastIndex: 100}, 120, "ahead of Raft"},
		{"store ahead of an empty log", Durable{}, 5, "ahead of Raft"},
		{"compacted log, no snapshot, empty store", Durable{FirstIndex: 50, LastIndex: 100}, 0, "entries 1 to 49 are nowhere"},
		{"compacted log, no snapshot, store short of it", Durable{FirstIndex: 50, LastIndex: 100}, 48, "entries 49 to 49 are nowhere"},
		{"log starts after the snapshot", Durable{FirstIndex: 150, LastIndex: 200, SnapshotIndex: 100}, 0, "entries 101 to 149 are nowhere"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.d.Dir = "/data/raft"
			err := tc.d.CheckStore(tc.store)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckStore(%d) on %+v = %v, want nil", tc.store, tc.d, err)
			case tc.want != "" && (!errors.Is(err, sdk.ErrDataLoss) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "/data/raft/raft.db")):
				t.Fatalf("CheckStore(%d) on %+v = %v, want sdk.ErrDataLoss naming /data/raft/raft.db and saying %q", tc.store, tc.d, err, tc.want)
			}
		})
	}
}

// fillManager creates n services through Raft in a new manager in dir,
// snapshots after the first half when snapshot is set, and stops it. It
// returns the state store's applied index.
func fillManager(t *testing.T, dir string, n int, snapshot bool) uint64 {
	t.Helper()
	m, err := openAt(t, dir, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.stop()
	for i := range n {
		if _, err := m.node.Apply(t.Context(), create(fmt.Sprintf("svc-%03d-%s", i, strings.Repeat("x", 200)))); err != nil {
			t.Fatal(err)
		}
		if snapshot && i == n/2 {
			if err := m.node.Snapshot(); err != nil {
				t.Fatal(err)
			}
		}
	}
	m.fsm.Flush()
	idx, err := m.store.AppliedIndex(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return idx
}

// reopenForced opens dir with force-new-cluster and checks that the state
// came back whole (want services) and that a new write is applied at an
// index after the store's, then that a plain restart keeps all of it.
func reopenForced(t *testing.T, dir string, want int, storeIndex uint64) {
	t.Helper()
	m, err := openAt(t, dir, true)
	if err != nil {
		t.Fatalf("force-new-cluster: %v", err)
	}
	if got := len(m.view.Services()); got != want {
		m.stop()
		t.Fatalf("after force-new-cluster: %d services, want %d", got, want)
	}
	out, err := m.node.Apply(t.Context(), create("after"))
	m.stop()
	if err != nil {
		t.Fatalf("write after force-new-cluster: %v", err)
	}
	if s, ok := out.(*apiv1.Service); !ok || s.GetVersion() <= storeIndex {
		t.Fatalf("write after force-new-cluster returned %v; want a service applied at an index after the store's %d", out, storeIndex)
	}
	m, err = openAt(t, dir, false)
	if err != nil {
		t.Fatalf("restart after force-new-cluster: %v", err)
	}
	defer m.stop()
	if got := len(m.view.Services()); got != want+1 {
		t.Fatalf("restart after force-new-cluster: %d services, want %d", got, want+1)
	}
}

// TestOpenRefusesDamagedLog damages a real raft.db and checks that Open
// refuses it with an error naming the file (bbolt used to panic inside
// raft-boltdb's open), and that force-new-cluster rebuilds Raft from the
// state store.
func TestOpenRefusesDamagedLog(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"bytes flipped in 4 pages", func(t *testing.T, path string) { boltchecktest.FlipPages(t, path, 4, 4) }},
		{"truncated to half", func(t *testing.T, path string) { boltchecktest.Truncate(t, path, 0.5) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			storeIndex := fillManager(t, dir, 150, false)
			logPath := filepath.Join(dir, "raft", LogFile)
			tc.damage(t, logPath)

			m, err := openAt(t, dir, false)
			if err == nil {
				m.stop()
				t.Fatal("Open on a damaged raft.db succeeded")
			}
			if !errors.Is(err, sdk.ErrDataLoss) || !strings.Contains(err.Error(), logPath) || !strings.Contains(err.Error(), "-force-new-cluster") {
				t.Fatalf("Open on a damaged raft.db = %v; want sdk.ErrDataLoss naming %s and what to do", err, logPath)
			}
			t.Logf("refused: %v", err)

			reopenForced(t, dir, 150, storeIndex)
			if aside, _ := filepath.Glob(logPath + ".corrupt-*"); len(aside) != 1 {
				t.Fatalf("the damaged log kept aside as %v, want one %s.corrupt-<time>", aside, logPath)
			}
		})
	}
}

// TestOpenRefusesStoreAheadOfLog gives a manager an empty raft.db next to
// its snapshot and a store ahead of both: new entries would reuse indexes
// the store has applied and be skipped as applied (acknowledged writes
// dropped). Open must refuse; force-new-cluster must restart Raft after the
// store's index.
func TestOpenRefusesStoreAheadOfLog(t *testing.T) {
	dir := t.TempDir()
	storeIndex := fillManager(t, dir, 60, true)
	logPath := filepath.Join(dir, "raft", LogFile)
	if err := os.Remove(logPath); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(logPath) // an empty file where the log was
	if err != nil {
		t.Fatal(err)
	}
	f.Close()

	m, err := openAt(t, dir, false)
	if err == nil {
		out, aerr := m.node.Apply(context.Background(), create("lost"))
		m.stop()
		t.Fatalf("Open with the store (index %d) ahead of an empty raft.db succeeded; a write then returned %v, %v", storeIndex, out, aerr)
	}
	if !errors.Is(err, sdk.ErrDataLoss) || !strings.Contains(err.Error(), logPath) || !strings.Contains(err.Error(), "ahead of Raft") {
		t.Fatalf("Open with the store ahead of raft.db = %v; want sdk.ErrDataLoss naming %s", err, logPath)
	}
	t.Logf("refused: %v", err)
	reopenForced(t, dir, 60, storeIndex)
}
