package pluginhost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/sdk/store"
)

func TestHealthDecision(t *testing.T) {
	var (
		timeout  = status.Error(codes.DeadlineExceeded, "context deadline exceeded")
		refused  = status.Error(codes.Unavailable, "connection refused")
		notServe = status.Error(codes.Unknown, "NOT_SERVING")
	)
	policy := policyFor(Options{HealthInterval: 2 * time.Second, HealthTimeout: 2 * time.Second})
	// check: one check ending every 4 s (2 s interval + 2 s timeout).
	type check struct {
		err   error
		late  time.Duration
		state byte
	}
	repeat := func(n int, c check) []check {
		out := make([]check, n)
		for i := range out {
			out[i] = c
		}
		return out
	}
	tests := []struct {
		name   string
		checks []check
		// restartAt is the 1-based check that restarts the plugin, 0: none.
		restartAt int
	}{
		{"always answers", repeat(20, check{}), 0},
		{"stopped process (SIGSTOP) is restarted after 3 misses", repeat(5, check{err: timeout, state: 'T'}), 3},
		{"timeouts on a host running on time count", repeat(5, check{err: timeout, state: 'S'}), 3},
		{"two timeouts then an answer: kept (the old rule killed at two)", append(repeat(2, check{err: timeout, state: 'S'}), repeat(5, check{})...), 0},
		{"overloaded host, checks run late: excused", repeat(10, check{err: timeout, late: 3 * time.Second, state: 'S'}), 0},
		{"plugin waiting for the disk (swap): excused", repeat(10, check{err: timeout, state: 'D'}), 0},
		{"plugin waiting for a CPU: excused", repeat(10, check{err: timeout, state: 'R'}), 0},
		{"silent for 60 s on a loaded host: restarted all the same", repeat(20, check{err: timeout, state: 'D'}), 15},
		{"refused connection counts even on a loaded host", repeat(5, check{err: refused, late: 3 * time.Second}), 3},
		{"NOT_SERVING answer counts", repeat(5, check{err: notServe}), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Unix(1000, 0)
			h := newHealthTracker(policy, start)
			got := 0
			for i, c := range tt.checks {
				v := h.observe(healthCheck{At: start.Add(time.Duration(i+1) * 4 * time.Second), Err: c.err, Late: c.late, ProcState: c.state})
				if v.Restart {
					if v.Reason == "" {
						t.Fatalf("check %d: restart without a reason", i+1)
					}
					got = i + 1
					break
				}
			}
			if got != tt.restartAt {
				t.Fatalf("restarted at check %d, want %d (0: never)", got, tt.restartAt)
			}
		})
	}
}

func TestHealthWindowOutlastsQuickFailures(t *testing.T) {
	// Refusals 10 ms apart reach 3 misses long before the window: the
	// restart waits for the window.
	p := healthPolicy{Misses: 3, Window: time.Second, SlowHost: time.Second, StuckAfter: time.Minute}
	start := time.Unix(1000, 0)
	h := newHealthTracker(p, start)
	refused := status.Error(codes.Unavailable, "connection refused")
	for i := 1; i <= 50; i++ {
		if v := h.observe(healthCheck{At: start.Add(time.Duration(i) * 10 * time.Millisecond), Err: refused}); v.Restart {
			t.Fatalf("restart after %d refusals within %s", i, time.Duration(i)*10*time.Millisecond)
		}
	}
	if v := h.observe(healthCheck{At: start.Add(time.Second), Err: refused}); !v.Restart {
		t.Fatalf("no restart once the window passed: %+v", v)
	}
}

func TestProcStateOfAStoppedProcess(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the process to stop", func() bool { return procState(cmd.Process.Pid) == 'T' })
}

func TestProcStateOfThisProcess(t *testing.T) {
	if s := procState(os.Getpid()); s != 'R' && s != 'S' {
		t.Fatalf("procState(self) = %q, want R or S", s)
	}
	if s := procState(1 << 30); s != 0 {
		t.Fatalf("procState of no process = %q, want 0", s)
	}
}

// throttle puts process pid in a new cgroup (v1 cpu controller) allowed
// quota of CPU time per second: a host too loaded to give the plugin time
// to answer. The returned function (also a cleanup) lifts it.
func throttle(t *testing.T, pid int, quota time.Duration) (lift func()) {
	t.Helper()
	root := "/sys/fs/cgroup/cpu"
	if _, err := os.Stat(filepath.Join(root, "cpu.cfs_quota_us")); err != nil {
		t.Skipf("no cgroup v1 cpu controller at %s: %v", root, err)
	}
	dir := filepath.Join(root, fmt.Sprintf("warren-test-%d", pid))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(file, v string) error { return os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644) }
	var once sync.Once
	lift = func() {
		once.Do(func() {
			_ = os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove cgroup %s: %v", dir, err)
			}
		})
	}
	t.Cleanup(lift)
	for _, kv := range [][2]string{{"cpu.cfs_period_us", "1000000"}, {"cpu.cfs_quota_us", strconv.Itoa(int(quota.Microseconds()))}, {"cgroup.procs", strconv.Itoa(pid)}} {
		if err := write(kv[0], kv[1]); err != nil {
			t.Fatalf("cgroup %s: write %s: %v", dir, kv[0], err)
		}
	}
	return lift
}

// TestSlowPluginOnLoadedHostIsKept starves a healthy plugin of CPU (1 ms a
// second) so that its health checks time out while it waits for a CPU:
// the host must count none of them and keep the process; the old rule
// killed it after two.
func TestSlowPluginOnLoadedHostIsKept(t *testing.T) {
	opts := testOptions()
	// 9 s of silence (30 intervals) would restart it anyway: the test
	// waits well within that.
	opts.HealthInterval = 300 * time.Millisecond
	opts.HealthTimeout = 200 * time.Millisecond
	h, log := newHost(t, opts)
	p := startPlugin(t, h, testSpec(t, "store-test", nil))
	pid := p.Status().PID

	lift := throttle(t, pid, time.Millisecond)
	const excused = 5 // the old rule restarted at 2
	waitFor(t, 7*time.Second, fmt.Sprintf("%d health checks excused on a loaded host", excused), func() bool {
		return strings.Count(log.String(), "overloaded host; not counted") >= excused
	})
	lift()
	t.Logf("health checks while starved: %d excused, %d counted as missed", strings.Count(log.String(), "overloaded host; not counted"), strings.Count(log.String(), "did not answer a health check"))
	s := p.Status()
	if s.PID != pid || s.Restarts != 0 || s.State != StateRunning {
		t.Fatalf("after a starved spell: PID %d (was %d), %d restarts, state %v; want the same process running", s.PID, pid, s.Restarts, s.State)
	}
	if v := get(t, store.NewClient(p.Client()), "_test", "pid"); v != strconv.Itoa(pid) {
		t.Fatalf("client reached PID %s, want %d", v, pid)
	}
}
