package containerdtest

import (
	"sync"
	"syscall"
	"testing"
)

// Freeze stops the process pid (a containerd) with SIGSTOP, so that it
// hangs the way a stuck daemon does: its socket still accepts connections
// but nothing answers. thaw sends SIGCONT; it also runs when the test ends,
// failed or not, and may be called more than once.
func Freeze(tb testing.TB, pid int) (thaw func()) {
	tb.Helper()
	if pid <= 0 {
		tb.Fatalf("containerdtest.Freeze: no containerd pid (%d)", pid)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		tb.Fatalf("containerdtest.Freeze: SIGSTOP %d: %v", pid, err)
	}
	var once sync.Once
	thaw = func() {
		once.Do(func() {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				tb.Errorf("containerdtest.Freeze: SIGCONT %d: %v", pid, err)
			}
		})
	}
	tb.Cleanup(thaw)
	return thaw
}
