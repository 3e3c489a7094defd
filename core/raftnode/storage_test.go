package raftnode

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/warrenorch/warren/test/testutil"
)

// TestTrackedStoreRecordsAFullDisk appends to a real raft-boltdb file on a
// small tmpfs until the disk is full: the fault names the file, the error
// and the mount; a stable-store write that still fits does not end it; an
// append after space is freed does.
func TestTrackedStoreRecordsAFullDisk(t *testing.T) {
	dir := t.TempDir()
	testutil.MountTmpfs(t, dir, 4<<20)
	path := filepath.Join(dir, "raft.db")
	logs, err := OpenLogStore(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logs.Close() }) // before the unmount
	s := newTrackedStore(logs, path, nil)
	testutil.FillDisk(t, filepath.Join(dir, "filler"))

	data := make([]byte, 64<<10)
	var appendErr error
	for i := uint64(1); i <= 200 && appendErr == nil; i++ {
		appendErr = s.StoreLogs([]*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: data}})
	}
	if appendErr == nil {
		t.Fatal("200 appends of 64 KiB fit on a full 4 MiB disk")
	}
	fault := s.Fault()
	if fault == nil {
		t.Fatalf("append failed (%v) and no fault is recorded", appendErr)
	}
	if !fault.DiskFull() || !errors.Is(fault, syscall.ENOSPC) || fault.Path != path || fault.Mount != dir {
		t.Fatalf("fault = %#v, want a full disk at %s on %s", fault, path, dir)
	}
	msg := fault.Error()
	for _, want := range []string{"disk full: writing " + path + ": no space left on device (", " bytes free on " + dir + ")"} {
		if !strings.Contains(msg, want) {
			t.Errorf("fault %q does not say %q", msg, want)
		}
	}
	if err := s.SetUint64([]byte("CurrentTerm"), 2); err == nil && s.Fault() == nil {
		t.Fatal("a stable-store write that fit ended the fault")
	}

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	last, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs([]*raft.Log{{Index: last + 1, Term: 1, Type: raft.LogCommand, Data: data}}); err != nil {
		t.Fatalf("append after freeing space: %v", err)
	}
	if f := s.Fault(); f != nil {
		t.Fatalf("fault after a successful append: %v", f)
	}
}
