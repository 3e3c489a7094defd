package containerd_test

import (
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/sdk/runtime"
)

// logsOf reads a task's logs with req, stdout and stderr apart.
func logsOf(t *testing.T, rt runtime.Runtime, req runtime.LogsRequest) (stdout, stderr string) {
	t.Helper()
	var o, e strings.Builder
	err := rt.TaskLogs(testCtx(t), req, func(c runtime.LogChunk) error {
		if c.Stream == runtime.StreamStderr {
			e.Write(c.Data)
		} else {
			o.Write(c.Data)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("TaskLogs(%+v): %v", req, err)
	}
	return o.String(), e.String()
}

// TestLogsSinceAndTimestamps: the logger records when each line was
// written, so Timestamps puts RFC 3339 times in front of the lines, in
// order, and Since leaves out the lines before it; stderr stays apart.
func TestLogsSinceAndTimestamps(t *testing.T) {
	rt := newRuntime(t)
	importImage(t, rt, testImage)
	id := newID()
	start(t, rt, runtime.TaskSpec{TaskID: id, Image: testImage.Ref, Command: []string{"sh", "-c", "echo before; sleep 0.2; echo after; sleep 0.2; echo oops >&2"}})
	// stdout and stderr are two streams: oops may come in between.
	if out := output(t, rt, id); strings.Replace(out, "oops\n", "", 1) != "before\nafter\n" {
		t.Fatalf("followed output %q", out)
	}

	stdout, stderr := logsOf(t, rt, runtime.LogsRequest{TaskID: id, Tail: runtime.TailAll, Timestamps: true})
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stdout with timestamps: %q", stdout)
	}
	var times []time.Time
	for i, want := range []string{"before", "after"} {
		ts, text, _ := strings.Cut(lines[i], " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || text != want {
			t.Fatalf("line %q: want an RFC 3339 time then %q (%v)", lines[i], want, err)
		}
		if time.Since(at) > time.Minute || time.Until(at) > time.Minute {
			t.Fatalf("line %q: the time is not the time it was written", lines[i])
		}
		times = append(times, at)
	}
	if !times[0].Before(times[1]) {
		t.Fatalf("times out of order: %v", times)
	}
	if _, text, _ := strings.Cut(strings.TrimSuffix(stderr, "\n"), " "); text != "oops" {
		t.Fatalf("stderr with timestamps: %q", stderr)
	}

	stdout, stderr = logsOf(t, rt, runtime.LogsRequest{TaskID: id, Tail: runtime.TailAll, Since: times[1]})
	if stdout != "after\n" || stderr != "oops\n" {
		t.Fatalf("since the second line: stdout %q, stderr %q; want %q and %q", stdout, stderr, "after\n", "oops\n")
	}
	// The last two lines are after (stdout) and oops (stderr).
	stdout, stderr = logsOf(t, rt, runtime.LogsRequest{TaskID: id, Tail: 2, Since: times[0]})
	if stdout != "after\n" || stderr != "oops\n" {
		t.Fatalf("tail 2 since the first line: stdout %q, stderr %q", stdout, stderr)
	}
}

// TestLogsWithoutTimes: a task whose log the shim wrote itself (started
// before loggers existed) still has its output read back, whole and
// without times.
func TestLogsWithoutTimes(t *testing.T) {
	rt := newRuntime(t)
	containerd.WithoutLogger(rt)
	importImage(t, rt, testImage)
	id := newID()
	start(t, rt, runtime.TaskSpec{TaskID: id, Image: testImage.Ref, Command: []string{"echo", "plain"}})
	if out := output(t, rt, id); out != "plain\n" {
		t.Fatalf("followed output %q", out)
	}
	stdout, _ := logsOf(t, rt, runtime.LogsRequest{TaskID: id, Tail: runtime.TailAll, Timestamps: true, Since: time.Now().Add(time.Hour)})
	if stdout != "plain\n" {
		t.Fatalf("logs with since and timestamps of a plain log: %q", stdout)
	}
}
