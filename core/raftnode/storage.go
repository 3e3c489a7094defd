package raftnode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StorageError is a failed write to this manager's own Raft storage (its
// log and stable store): while it stands, this manager cannot append to
// its log, so it cannot lead or confirm that it leads. It is not a lost
// quorum, and force-new-cluster does not mend it: freeing space does, and
// Raft resumes on its own with the next write that succeeds.
type StorageError struct {
	// Path is the file the write went to.
	Path string
	// Err is the write's error (syscall.ENOSPC for a full disk).
	Err error
	// Mount is the mount point holding Path and Free the bytes left on it
	// for unprivileged writers, read with statfs when the write failed.
	Mount string
	Free  uint64
}

// Error says what failed, on which file and disk.
func (e *StorageError) Error() string {
	what := "storage error"
	if e.DiskFull() {
		what = "disk full"
	}
	return fmt.Sprintf("%s: writing %s: %v (%d bytes free on %s); this manager cannot append to its Raft log until the write succeeds: free space on %s, and it recovers by itself",
		what, e.Path, errnoOf(e.Err), e.Free, e.Mount, e.Mount)
}

// Unwrap returns the write's error, so errors.Is(err, syscall.ENOSPC) works.
func (e *StorageError) Unwrap() error { return e.Err }

// DiskFull reports whether the write failed for lack of space (or quota).
func (e *StorageError) DiskFull() bool {
	if errors.Is(e.Err, syscall.ENOSPC) || errors.Is(e.Err, syscall.EDQUOT) {
		return true
	}
	// bbolt formats some errors (a file resize) with %s, losing the errno.
	return strings.Contains(e.Err.Error(), syscall.ENOSPC.Error())
}

// GRPCStatus makes the error a ResourceExhausted status with its message,
// for API callers: gRPC's code for "the file system is out of space".
func (e *StorageError) GRPCStatus() *status.Status {
	code := codes.Unavailable
	if e.DiskFull() {
		code = codes.ResourceExhausted
	}
	return status.New(code, e.Error())
}

// errnoOf returns the errno inside err when it has one, for a short
// message ("no space left on device") instead of bbolt's nested wording.
func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}

// newStorageError describes a failed write to path, with the free space
// of the file system holding it.
func newStorageError(path string, err error) *StorageError {
	e := &StorageError{Path: path, Err: err, Mount: mountPoint(filepath.Dir(path))}
	var fs unix.Statfs_t
	if unix.Statfs(filepath.Dir(path), &fs) == nil {
		e.Free = fs.Bavail * uint64(fs.Bsize)
	}
	return e
}

// mountPoint returns the mount point holding dir: the last directory on
// the way up whose device is dir's. It returns dir when it cannot tell.
func mountPoint(dir string) string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return dir
	}
	dev := func(p string) (uint64, bool) {
		fi, err := os.Stat(p)
		if err != nil {
			return 0, false
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		return uint64(st.Dev), ok
	}
	want, ok := dev(dir)
	if !ok {
		return dir
	}
	for dir != "/" {
		up := filepath.Dir(dir)
		if d, ok := dev(up); !ok || d != want {
			return dir
		}
		dir = up
	}
	return dir
}

// trackedStore is the Raft log and stable store with its write errors
// recorded: the last failed write stands until a log append succeeds.
// Reads pass through untouched. Its methods are raft.LogStore's and
// raft.StableStore's.
type trackedStore struct {
	logs   raft.LogStore
	stable raft.StableStore
	path   string
	logger hclog.Logger // nil: no logging

	mu    sync.Mutex
	fault *StorageError
}

// newTrackedStore wraps a store that is both Raft's log and stable store,
// kept in the file at path. It logs when a fault begins and ends.
func newTrackedStore(s interface {
	raft.LogStore
	raft.StableStore
}, path string, logger hclog.Logger) *trackedStore {
	return &trackedStore{logs: s, stable: s, path: path, logger: logger}
}

// record notes a write's outcome and returns err unchanged, so Raft logs
// and answers with bbolt's own error. Only an appended log entry ends a
// fault: the small writes of the stable store (a vote, a term) can still
// fit in the file's free pages on a full disk.
func (t *trackedStore) record(err error, appended bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case err != nil:
		first := t.fault == nil
		t.fault = newStorageError(t.path, err)
		if first && t.logger != nil {
			t.logger.Error("Raft storage write failed; this manager cannot lead until a log write succeeds", "error", t.fault)
		}
	case appended && t.fault != nil:
		t.fault = nil
		if t.logger != nil {
			t.logger.Info("Raft storage writes succeed again", "path", t.path)
		}
	}
	return err
}

// Fault returns the last failed write, nil when the last write succeeded.
func (t *trackedStore) Fault() *StorageError {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fault
}

func (t *trackedStore) FirstIndex() (uint64, error)          { return t.logs.FirstIndex() }
func (t *trackedStore) LastIndex() (uint64, error)           { return t.logs.LastIndex() }
func (t *trackedStore) GetLog(idx uint64, l *raft.Log) error { return t.logs.GetLog(idx, l) }
func (t *trackedStore) StoreLog(l *raft.Log) error           { return t.record(t.logs.StoreLog(l), true) }
func (t *trackedStore) StoreLogs(ls []*raft.Log) error       { return t.record(t.logs.StoreLogs(ls), true) }
func (t *trackedStore) DeleteRange(lo, hi uint64) error {
	return t.record(t.logs.DeleteRange(lo, hi), false)
}
func (t *trackedStore) Set(k, v []byte) error        { return t.record(t.stable.Set(k, v), false) }
func (t *trackedStore) Get(k []byte) ([]byte, error) { return t.stable.Get(k) }
func (t *trackedStore) SetUint64(k []byte, v uint64) error {
	return t.record(t.stable.SetUint64(k, v), false)
}
func (t *trackedStore) GetUint64(k []byte) (uint64, error) { return t.stable.GetUint64(k) }

// StorageFault returns a *StorageError while this node's last write to its
// Raft log or stable store failed (a full disk), nil otherwise.
func (n *Node) StorageFault() error {
	if f := n.store.Fault(); f != nil {
		return f
	}
	return nil
}

// OnlyVoter reports whether this node is the only voter in the latest Raft
// configuration: a single-manager cluster, whose lack of a leader can only
// come from this node itself.
func (n *Node) OnlyVoter() bool {
	conf, err := n.Configuration()
	if err != nil {
		return false
	}
	voters := 0
	for _, srv := range conf.Servers {
		if srv.Suffrage == raft.Voter {
			if srv.ID != n.id {
				return false
			}
			voters++
		}
	}
	return voters == 1
}
