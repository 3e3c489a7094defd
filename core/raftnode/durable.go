package raftnode

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store/boltcheck"
)

// LogFile is the name of the Raft log and stable store in a Raft directory.
const LogFile = "raft.db"

// logLockTimeout bounds the wait for raft.db's lock: another agent on the
// same data directory holds it.
const logLockTimeout = 5 * time.Second

// Durable is what a manager's Raft directory holds, read without starting
// Raft: the range of the log and the newest snapshot.
type Durable struct {
	// Dir is the Raft directory.
	Dir string
	// FirstIndex and LastIndex bound the log; both are 0 when it is empty.
	FirstIndex, LastIndex uint64
	// SnapshotIndex and SnapshotTerm are those of the newest snapshot, 0
	// when there is none.
	SnapshotIndex, SnapshotTerm uint64
}

// Empty reports whether the directory holds no log entry and no snapshot.
func (d Durable) Empty() bool { return d.LastIndex == 0 && d.SnapshotIndex == 0 }

// errStoreAhead marks CheckStore's error for a store ahead of Raft.
var errStoreAhead = errors.New("the state store is ahead of Raft")

// CheckStore checks that a state store at applied index storeIndex can
// continue from this Raft state: Raft restores its snapshot when the store
// is behind it, then replays the log entries after the snapshot and the
// store, so those entries must all be in the log. It is an error wrapping
// sdk.ErrDataLoss when
//   - the store is ahead of the log's last index and of the snapshot:
//     Raft lost entries the store holds (raft.db emptied, replaced or
//     truncated), and new entries would reuse indexes the store has applied;
//   - the log starts after the entry that follows both the snapshot and the
//     store: entries in between are nowhere (the log was compacted and the
//     snapshot that covered it is gone).
//
// CheckStore(0) tells whether Raft alone can rebuild a lost store.
func (d Durable) CheckStore(storeIndex uint64) error {
	top := max(d.LastIndex, d.SnapshotIndex)
	if storeIndex > top {
		return fmt.Errorf("%w: the store has applied index %d, but %s ends at index %d (log: %s; newest snapshot: %d): "+
			"Raft lost entries the store holds, and new entries would reuse their indexes: %w",
			errStoreAhead, storeIndex, filepath.Join(d.Dir, LogFile), top, d.logRange(), d.SnapshotIndex, sdk.ErrDataLoss)
	}
	from := max(d.SnapshotIndex, storeIndex) + 1
	if d.LastIndex >= from && d.FirstIndex > from {
		what := fmt.Sprintf("the store (applied index %d)", storeIndex)
		if storeIndex == 0 {
			what = "an empty store"
		}
		snap := "there is no snapshot"
		if d.SnapshotIndex > 0 {
			snap = fmt.Sprintf("the newest snapshot ends at %d", d.SnapshotIndex)
		}
		return fmt.Errorf("cannot rebuild %s from Raft: the log %s holds %s and %s, so entries %d to %d are nowhere "+
			"(the log was compacted and the snapshot that covered it is gone): %w",
			what, filepath.Join(d.Dir, LogFile), d.logRange(), snap, from, d.FirstIndex-1, sdk.ErrDataLoss)
	}
	return nil
}

func (d Durable) logRange() string {
	if d.LastIndex == 0 {
		return "no entries"
	}
	return fmt.Sprintf("entries %d to %d", d.FirstIndex, d.LastIndex)
}

// Inspect checks the Raft log of dir (see CheckLog) and reads what dir
// holds. A directory without Raft state is Empty.
func Inspect(ctx context.Context, dir string) (Durable, error) {
	d := Durable{Dir: dir}
	path := filepath.Join(dir, LogFile)
	if _, err := os.Stat(path); err == nil {
		if err := CheckLog(ctx, path); err != nil {
			return d, err
		}
		logs, err := OpenLogStore(path)
		if err != nil {
			return d, fmt.Errorf("raft: open log store %s: %w", path, err)
		}
		err = d.readLog(logs)
		logs.Close()
		if err != nil {
			return d, err
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); err == nil {
		snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, hclog.NewNullLogger())
		if err != nil {
			return d, fmt.Errorf("raft: open snapshot store in %s: %w", dir, err)
		}
		if err := d.readSnapshots(snaps); err != nil {
			return d, err
		}
	}
	return d, nil
}

func (d *Durable) readLog(logs raft.LogStore) error {
	var err error
	if d.FirstIndex, err = logs.FirstIndex(); err != nil {
		return fmt.Errorf("raft: read the first index of %s: %w", filepath.Join(d.Dir, LogFile), err)
	}
	if d.LastIndex, err = logs.LastIndex(); err != nil {
		return fmt.Errorf("raft: read the last index of %s: %w", filepath.Join(d.Dir, LogFile), err)
	}
	return nil
}

func (d *Durable) readSnapshots(snaps raft.SnapshotStore) error {
	metas, err := snaps.List()
	if err != nil {
		return fmt.Errorf("raft: list the snapshots in %s: %w", d.Dir, err)
	}
	if len(metas) > 0 {
		d.SnapshotIndex, d.SnapshotTerm = metas[0].Index, metas[0].Term
	}
	return nil
}

// CheckLog runs bbolt's consistency check on the Raft log file at path
// (see sdk/store/boltcheck: in a child process, since bbolt panics on a
// damaged file, and raft-boltdb's open walks the whole file). A damaged log
// is an error wrapping sdk.ErrDataLoss that names the file and says what
// the operator can do.
func CheckLog(ctx context.Context, path string) error {
	err := boltcheck.Check(ctx, path, logLockTimeout)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sdk.ErrDataLoss):
		return fmt.Errorf("raft: the Raft log %w\n%s", err, logAdvice(path))
	}
	return fmt.Errorf("raft: %w", err)
}

// logAdvice says what to do about a Raft log that cannot be used.
func logAdvice(path string) string {
	return fmt.Sprintf("This manager cannot start on it. If the cluster has other managers, restore this one from them: "+
		"remove it from the cluster, move its data directory aside and join it again with a manager join token. "+
		"If it was the only manager, start it once with -force-new-cluster: the damaged log is moved aside (%s.corrupt-<time>) "+
		"and Raft starts again from the state store (what the store had not yet written is lost).", path)
}

// moveAside renames a damaged file to path.corrupt-<UTC time> and returns
// the new name.
func moveAside(path string) (string, error) {
	aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("raft: move the damaged %s aside: %w", path, err)
	}
	return aside, nil
}

// rebuildFromStore starts Raft's state again from the FSM's store, for
// force-new-cluster when the log is damaged or behind the store: the log is
// moved aside and replaced by an empty one, and a snapshot of the store at
// its applied index, with this node alone in the configuration, becomes
// Raft's starting point, so that new entries follow the store's index.
func rebuildFromStore(cfg Config, rc *raft.Config, logs **raftboltdb.BoltStore, snaps raft.SnapshotStore, trans raft.Transport, d Durable, logger hclog.Logger) error {
	path := filepath.Join(cfg.Dir, LogFile)
	index := cfg.FSM.AppliedIndex()
	if index == 0 && d.SnapshotIndex == 0 {
		return fmt.Errorf("raft: force-new-cluster: the Raft log %s is unusable and neither the state store nor a snapshot holds any state to start again from: "+
			"restore the data directory from a backup: %w", path, sdk.ErrDataLoss)
	}
	term := max(d.SnapshotTerm, 1)
	if *logs != nil {
		if d.LastIndex > 0 {
			var last raft.Log
			if err := (*logs).GetLog(d.LastIndex, &last); err == nil {
				term = max(term, last.Term)
			}
		}
		if t, err := (*logs).GetUint64(keyCurrentTerm); err == nil {
			term = max(term, t)
		}
		_ = (*logs).Close()
		*logs = nil
	}
	if _, err := os.Stat(path); err == nil {
		aside, err := moveAside(path)
		if err != nil {
			return err
		}
		logger.Warn("force-new-cluster: moved the Raft log aside; rebuilding Raft from the state store", "log", path, "moved_to", aside, "store_index", index)
	}
	fresh, err := OpenLogStore(path)
	if err != nil {
		return fmt.Errorf("raft: create a new log store %s: %w", path, err)
	}
	*logs = fresh
	if err := fresh.SetUint64(keyCurrentTerm, term); err != nil {
		return fmt.Errorf("raft: set the term in %s: %w", path, err)
	}
	if index < d.SnapshotIndex {
		// The newest snapshot is ahead of the store: Raft restores it
		// into the store, as on any start.
		logger.Warn("force-new-cluster: Raft starts again from its newest snapshot", "index", d.SnapshotIndex, "term", d.SnapshotTerm)
		return nil
	}
	only := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(cfg.Advertise)}}}
	snap, err := cfg.FSM.Snapshot()
	if err != nil {
		return fmt.Errorf("raft: snapshot the state store: %w", err)
	}
	defer snap.Release()
	sink, err := snaps.Create(raft.SnapshotVersionMax, index, term, only, index, trans)
	if err != nil {
		return fmt.Errorf("raft: create a snapshot at index %d: %w", index, err)
	}
	if err := snap.Persist(sink); err != nil {
		return fmt.Errorf("raft: write the snapshot at index %d: %w", index, err)
	}
	logger.Warn("force-new-cluster: Raft starts again from a snapshot of the state store", "index", index, "term", term)
	return nil
}

// keyCurrentTerm is where hashicorp/raft keeps its current term in the
// stable store.
var keyCurrentTerm = []byte("CurrentTerm")

// storeAdvice says what to do about a state store that Raft cannot continue
// from (err is CheckStore's).
func storeAdvice(logPath string, err error) string {
	if errors.Is(err, errStoreAhead) {
		return fmt.Sprintf("This manager cannot start on it. If the cluster has other managers, restore this one from them: "+
			"remove it from the cluster, move its data directory aside and join it again with a manager join token. "+
			"If it was the only manager, start it once with -force-new-cluster: %s is moved aside and Raft starts again from the state store.", logPath)
	}
	return "This manager cannot start on it. If the cluster has other managers, restore this one from them: " +
		"remove it from the cluster, move its data directory aside and join it again with a manager join token. " +
		"Otherwise restore the data directory from a backup."
}
