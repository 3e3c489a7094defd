package pluginhost

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// healthPolicy says when failed health checks mean a plugin is hung and
// must be restarted, as opposed to a host too loaded to answer in time.
type healthPolicy struct {
	// Misses is how many checks in a row must fail, over at least Window
	// since the last answer, before a restart.
	Misses int
	Window time.Duration
	// SlowHost: a check that ran this much later than planned (the agent's
	// own scheduling delay) was made on an overloaded host.
	SlowHost time.Duration
	// StuckAfter: a plugin that has not answered for this long is
	// restarted even on an overloaded host.
	StuckAfter time.Duration
}

// policyFor derives the policy from the host's options: with the default
// 2 s interval and timeout, 3 misses over 8 s, or 60 s of silence on a
// loaded host.
func policyFor(o Options) healthPolicy {
	return healthPolicy{
		Misses:     3,
		Window:     3*o.HealthInterval + o.HealthTimeout,
		SlowHost:   o.HealthInterval / 2,
		StuckAfter: max(30*o.HealthInterval, 3*o.HealthInterval+o.HealthTimeout),
	}
}

// healthCheck is one health check and what was seen of the host around it.
type healthCheck struct {
	// At is when the check ended; Err its error, nil when the plugin
	// answered SERVING.
	At  time.Time
	Err error
	// Late is how much later than planned the check ran or ended.
	Late time.Duration
	// ProcState is the plugin process's state letter from /proc (R, S, D,
	// T...), 0 when unknown.
	ProcState byte
}

// healthVerdict is what to do after a check.
type healthVerdict struct {
	// Restart: the plugin is hung; Reason says why.
	Restart bool
	Reason  string
	// Excused: the check failed on an overloaded host and was not counted.
	Excused bool
	// Misses is the count of failed checks in a row that counted.
	Misses int
}

// healthTracker folds checks into verdicts. It is pure: the caller makes
// the checks and reads the clock.
type healthTracker struct {
	policy healthPolicy
	lastOK time.Time // last answer, or when watching began
	misses int
}

func newHealthTracker(p healthPolicy, start time.Time) *healthTracker {
	return &healthTracker{policy: p, lastOK: start}
}

// observe takes one check's outcome. A check that timed out while the
// host was overloaded (the check ran late, or the plugin was runnable or
// in uninterruptible sleep, as when swapping) does not count: the process
// is alive and slow. A refused connection, a NOT_SERVING answer, a stopped
// process, or a timeout on a host running on time does.
func (h *healthTracker) observe(c healthCheck) healthVerdict {
	if c.Err == nil {
		h.misses = 0
		h.lastOK = c.At
		return healthVerdict{}
	}
	silent := c.At.Sub(h.lastOK)
	if silent >= h.policy.StuckAfter {
		return healthVerdict{Restart: true, Misses: h.misses + 1,
			Reason: fmt.Sprintf("not answering health checks for %s: %v", silent.Round(time.Millisecond), c.Err)}
	}
	if h.slowHost(c) {
		return healthVerdict{Excused: true, Misses: h.misses}
	}
	h.misses++
	if h.misses >= h.policy.Misses && silent >= h.policy.Window {
		return healthVerdict{Restart: true, Misses: h.misses,
			Reason: fmt.Sprintf("not answering health checks (%d in a row over %s): %v", h.misses, silent.Round(time.Millisecond), c.Err)}
	}
	return healthVerdict{Misses: h.misses}
}

// slowHost reports whether a failed check is explained by host load.
func (h *healthTracker) slowHost(c healthCheck) bool {
	if status.Code(c.Err) != codes.DeadlineExceeded {
		return false // refused, closed, or answered NOT_SERVING
	}
	switch c.ProcState {
	case 'T', 't', 'Z', 'X':
		return false // stopped or dead: it cannot answer
	case 'R', 'D':
		return true // waiting for a CPU, or for the disk (swap)
	}
	return c.Late >= h.policy.SlowHost
}

// procState returns the state letter of process pid from /proc, 0 when it
// cannot be read. A process is its threads: when any of them waits for
// the disk (D) or for a CPU (R), that is its state, since a Go process's
// main thread mostly sleeps whatever the others do.
func procState(pid int) byte {
	leader := statState("/proc/" + strconv.Itoa(pid) + "/stat")
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/stat")
	busy := byte(0)
	for _, path := range tasks {
		switch statState(path) {
		case 'D':
			return 'D'
		case 'R':
			busy = 'R'
		}
	}
	if busy != 0 && leader != 'T' && leader != 't' {
		return busy
	}
	return leader
}

// statState reads the state letter of a /proc/.../stat file, 0 when it
// cannot.
func statState(path string) byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0
	}
	return b[i+2]
}
