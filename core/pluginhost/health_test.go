package pluginhost

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
