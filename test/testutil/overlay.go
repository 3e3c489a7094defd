package testutil

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// overlayLockDir holds one lock file per overlay range a test holds, for
// every test process on the machine.
const overlayLockDir = "/run/warren-test-overlay"

// OverlayRange returns an overlay_range for one test cluster, a /20 in
// 10.128.0.0/9 (room for 16 nodes of /24) that no other test on the machine
// holds until this test ends: agents of clusters that share a network
// namespace (the host's, in the integration tests) then route and bridge
// apart. The range is held by a locked file in /run/warren-test-overlay, so
// a test process that dies frees its ranges.
func OverlayRange(t testing.TB) string {
	t.Helper()
	if err := os.MkdirAll(overlayLockDir, 0o755); err != nil {
		t.Fatalf("overlay range: %v", err)
	}
	for range 200 {
		idx := rand.Uint32N(1 << 11)
		second, third := 128+idx>>4, (idx&15)<<4
		if second == 199 || second == 252 { // the fixed ranges of other tests
			continue
		}
		rng := fmt.Sprintf("10.%d.%d.0/20", second, third)
		path := filepath.Join(overlayLockDir, fmt.Sprintf("%d-%d.lock", second, third))
		f, err := holdLock(path)
		if errors.Is(err, os.ErrExist) {
			dropStaleLock(path)
			continue
		}
		if err != nil {
			t.Fatalf("overlay range %s: %v", rng, err)
		}
		t.Cleanup(func() {
			_ = os.Remove(path)
			f.Close()
		})
		return rng
	}
	t.Fatal("overlay range: none free after 200 tries")
	return ""
}

// holdLock publishes a locked file at path: written under a temporary name,
// locked, then hard-linked, so a published lock file is always held by a
// live process, and link's EEXIST settles races.
func holdLock(path string) (*os.File, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// dropStaleLock removes the lock file at path when no live process holds
// it (its owner died without its clean-up).
func dropStaleLock(path string) {
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer f.Close()
	if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
		_ = os.Remove(path)
	}
}
