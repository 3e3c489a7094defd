package containerdtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Freeze stops the process pid (a containerd) with SIGSTOP, so that it
// hangs the way a stuck daemon does: its socket still accepts connections
// but nothing answers. It returns once every thread of the process is
// stopped: SIGSTOP is delivered asynchronously, and a thread still running
// could answer one more call. thaw sends SIGCONT; it also runs when the
// test ends, failed or not, and may be called more than once.
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		running, err := runningThreads(pid)
		if err != nil {
			tb.Fatalf("containerdtest.Freeze: %v", err)
		}
		if running == "" {
			return thaw
		}
		if time.Now().After(deadline) {
			tb.Fatalf("containerdtest.Freeze: thread %s of %d still not stopped 10s after SIGSTOP", running, pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// runningThreads returns the id of one thread of pid that is not in the
// stopped state, or "" when all are.
func runningThreads(pid int) (string, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("threads of %d: %w", pid, err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			if os.IsNotExist(err) {
				continue // the thread exited
			}
			return "", fmt.Errorf("thread %s of %d: %w", task.Name(), pid, err)
		}
		// The state follows the command name, which is in parentheses
		// and may itself hold spaces or parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return "", fmt.Errorf("thread %s of %d: unreadable stat %q", task.Name(), pid, s)
		}
		if state := s[i+2]; state != 'T' && state != 't' {
			return task.Name(), nil
		}
	}
	return "", nil
}
