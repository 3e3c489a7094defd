package cluster

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// remoteImage is imported through the manager only, never on a worker's
// own socket.
const remoteImage = "warren.test/remote:1"

// TestOperateRemoteNodes drives two workers' runtimes through a manager
// that runs no worker: an image imported on the manager reaches both (and
// image ls shows it on each) and a
// service using it runs on both; the service's logs come merged, each line
// prefixed by its task; a task on another node and a finished task have
// logs; exec runs in a task on another node; every node's plugins are
// listed; bad input gets clear errors; a worker cut off gives an error naming
// it within the API timeout.
func TestOperateRemoteNodes(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Form([]string{"m1"}, []string{"w1", "w2"})
	m1, w1, w2 := c.Node("m1"), c.Node("w1"), c.Node("w2")

	dir := t.TempDir()
	tarball := filepath.Join(dir, "remote.tar")
	if err := os.WriteFile(tarball, ctrtest.ImageArchive(t, remoteImage), 0o600); err != nil {
		t.Fatal(err)
	}
	out, progress, code := testutil.RunCLI(t, bin, m1.Socket, "image", "import", tarball)
	if code != 0 {
		t.Fatalf("image import through m1: exit %d:\n%s%s", code, out, progress)
	}
	for _, want := range []string{remoteImage, "w1: imported", "w2: imported"} {
		if !strings.Contains(out, want) {
			t.Fatalf("image import through m1 lacks %q:\n%s", want, out)
		}
	}
	// Each node's progress came on stderr as the archive went: bytes sent,
	// then done.
	for _, w := range []string{"w1", "w2"} {
		var steps []string
		for _, line := range strings.Split(progress, "\n") {
			if strings.HasPrefix(line, w+": ") {
				steps = append(steps, line)
			}
		}
		if len(steps) < 2 || !strings.HasSuffix(steps[0], " sent") || !strings.HasPrefix(steps[len(steps)-1], w+": done, ") {
			t.Fatalf("image import progress lacks %s's bytes sent, then done:\n%s", w, progress)
		}
	}
	t.Logf("import progress:\n%s", progress)

	out = m1.CLI(0, "image", "ls")
	for _, w := range []string{"w1", "w2"} {
		found := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == w && f[1] == remoteImage {
				found = true
			}
		}
		if !found {
			t.Fatalf("image ls on m1 lacks %s on %s:\n%s", remoteImage, w, out)
		}
	}
	if out := m1.CLI(0, "image", "ls", "--node", "w1"); strings.Contains(out, "w2") || !strings.Contains(out, remoteImage) {
		t.Fatalf("image ls --node w1:\n%s", out)
	}

	m1.CLI(0, "service", "create", "talk", "--image", remoteImage, "--replicas", "2", "--",
		"sh", "-c", "echo hello-from-$(hostname); sleep 3600")
	testutil.Eventually(t, 60*time.Second, "one talk container on each worker", func() bool {
		return len(w1.RunningOn()) == 1 && len(w2.RunningOn()) == 1
	})
	testutil.Eventually(t, 20*time.Second, "both tasks' lines in `service logs` on m1", func() bool {
		out = m1.CLI(0, "service", "logs", "talk")
		return strings.Count(out, "hello-from-") == 2
	})
	for _, want := range []string{"talk.1@w", "talk.2@w"} {
		if !strings.Contains(out, want) {
			t.Fatalf("service logs lack the %s prefix:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "@w1") || !strings.Contains(out, "@w2") {
		t.Fatalf("service logs do not come from both workers:\n%s", out)
	}

	onW2 := taskOn(t, m1, "talk", w2)
	out = m1.CLI(0, "task", "logs", onW2.GetId(), "--raw")
	if !strings.HasPrefix(out, "hello-from-") {
		t.Fatalf("task logs of w2's task %s through m1: %q", onW2.GetId(), out)
	}

	t.Run("logs since and timestamps", func(t *testing.T) {
		out := m1.CLI(0, "task", "logs", onW2.GetId(), "--raw", "--timestamps")
		ts, line, _ := strings.Cut(strings.TrimSuffix(out, "\n"), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || !strings.HasPrefix(line, "hello-from-") {
			t.Fatalf("task logs --timestamps of w2's task: %q; want an RFC 3339 time, then its line (%v)", out, err)
		}
		if out := m1.CLI(0, "task", "logs", onW2.GetId(), "--raw", "--since", ts); out != line+"\n" {
			t.Fatalf("task logs --since the line's own time: %q, want %q", out, line+"\n")
		}
		later := at.Add(time.Nanosecond).Format(time.RFC3339Nano)
		if out := m1.CLI(0, "task", "logs", onW2.GetId(), "--raw", "--since", later); out != "" {
			t.Fatalf("task logs --since just after the only line: %q, want nothing", out)
		}
		out = m1.CLI(0, "service", "logs", "talk", "--timestamps")
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			_, rest, _ := strings.Cut(l, "| ")
			ts, _, _ := strings.Cut(rest, " ")
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Fatalf("service logs --timestamps: line %q lacks a time after its prefix:\n%s", l, out)
			}
		}
	})

	t.Run("exec", func(t *testing.T) {
		out := m1.CLI(0, "task", "exec", onW2.GetId(), "--", "sh", "-c", "echo exec-on-$(hostname)")
		if !strings.HasPrefix(out, "exec-on-") {
			t.Fatalf("exec in w2's task through m1: %q", out)
		}
		stdout, stderr, code := testutil.RunCLI(t, bin, m1.Socket, "task", "exec", onW2.GetId(), "--", "sh", "-c", "echo to-stderr >&2; exit 7")
		if code != 7 || stderr != "to-stderr\n" || stdout != "" {
			t.Fatalf("exec exiting 7: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		// -it on a terminal: the task's terminal gets the size of the
		// user's, follows a resize, and the exit code comes back.
		term := testutil.StartOnTerminal(t, 30, 100, bin, "--socket", m1.Socket, "task", "exec", "-it", onW2.GetId(), "--",
			"sh", "-c", `stty size; while read x; do [ "$x" = q ] && exit 5; stty size; done`)
		// The runtime sizes the terminal just after the command starts, so
		// the first stty may run before: Enter asks again.
		term.WaitOutput(30*time.Second, "30 100", "\r")
		term.Resize(40, 120)
		term.WaitOutput(30*time.Second, "40 120", "\r")
		term.Type("q\r")
		if code := term.Wait(30 * time.Second); code != 5 {
			t.Fatalf("exec -it exiting 5: exit %d:\n%s", code, term.Output())
		}
		in := "piped input\n"
		stdout, stderr, code = testutil.RunCLIInput(t, bin, m1.Socket, in, "task", "exec", "-i", onW2.GetId(), "--", "cat")
		if code != 0 || stdout != in {
			t.Fatalf("exec -i cat: exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
	})

	t.Run("stats", func(t *testing.T) {
		m1.CLI(0, "service", "create", "burn", "--image", remoteImage, "--replicas", "2", "--", "sh", "-c", "while :; do :; done")
		defer m1.CLI(0, "service", "rm", "burn")
		var out string
		testutil.Eventually(t, 60*time.Second, "both burn tasks busy and using memory in `stats --no-stream`", func() bool {
			out = m1.CLI(0, "stats", "--no-stream", "--service", "burn")
			rows := statsOf(out, "burn.")
			if len(rows) != 2 || rows[0].node == rows[1].node {
				return false
			}
			for _, r := range rows {
				if r.cpu <= 0 || r.mem <= 0 {
					return false
				}
			}
			return true
		})
		t.Logf("stats:\n%s", out)
		_, errOut, code := testutil.RunCLI(t, bin, m1.Socket, "stats", "--no-stream", "zzzzzzzz")
		if code != 1 || !strings.Contains(errOut, `"zzzzzzzz"`) {
			t.Fatalf("stats of an unknown task: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("node ps", func(t *testing.T) {
		out := m1.CLI(0, "node", "ps", "w2")
		if !strings.Contains(out, "talk.") || !strings.Contains(out, shortID(onW2.GetId())) {
			t.Fatalf("node ps w2 lacks its talk task %s:\n%s", onW2.GetId(), out)
		}
		_, errOut, code := testutil.RunCLI(t, bin, m1.Socket, "node", "ps", "nosuchnode")
		if code != 1 || !strings.Contains(errOut, "nosuchnode") {
			t.Fatalf("node ps of an unknown node: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("plugins of every node", func(t *testing.T) {
		out := m1.CLI(0, "plugin", "ls")
		for _, want := range []string{"NODE", "m1 ", "store-bolt", "w1 ", "w2 "} {
			if !strings.Contains(out, want) {
				t.Fatalf("plugin ls on m1 lacks %q:\n%s", want, out)
			}
		}
		runtimes := 0
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && (f[0] == "w1" || f[0] == "w2") && f[1] == "runtime-containerd" {
				runtimes++
			}
		}
		if runtimes != 2 {
			t.Fatalf("plugin ls on m1 does not show both workers' runtimes:\n%s", out)
		}
		out = m1.CLI(0, "plugin", "ls", "--node", "w2")
		if !strings.Contains(out, "runtime-containerd") || strings.Contains(out, "store-bolt") {
			t.Fatalf("plugin ls --node w2:\n%s", out)
		}
		if out := w1.CLI(0, "plugin", "ls"); !strings.Contains(out, "runtime-containerd") {
			t.Fatalf("plugin ls on worker-only w1:\n%s", out)
		}
	})

	t.Run("finished task", func(t *testing.T) {
		m1.CLI(0, "service", "create", "once", "--image", remoteImage, "--restart-condition", "none", "--detach", "--",
			"sh", "-c", "echo goodbye; exit 3")
		var done *apiv1.Task
		testutil.Eventually(t, 60*time.Second, "the once task to end", func() bool {
			for _, tk := range tasksOf(t, m1, "once") {
				if tk.GetState() == apiv1.TaskState_TASK_STATE_FAILED || tk.GetState() == apiv1.TaskState_TASK_STATE_COMPLETE {
					done = tk
					return true
				}
			}
			return false
		})
		if out := m1.CLI(0, "task", "logs", done.GetId(), "--raw"); out != "goodbye\n" {
			t.Fatalf("logs of finished task %s: %q, want %q", done.GetId(), out, "goodbye\n")
		}
		if out := m1.CLI(0, "stats", "--no-stream", done.GetId()); !strings.Contains(out, "not running") {
			t.Fatalf("stats of finished task %s lacks a row saying it is not running:\n%s", done.GetId(), out)
		}
		_, errOut, code := testutil.RunCLI(t, bin, m1.Socket, "task", "exec", done.GetId(), "--", "true")
		if code != 1 || !strings.Contains(errOut, "not running") || !strings.Contains(errOut, done.GetId()) {
			t.Fatalf("exec into finished task %s: exit %d, stderr %q", done.GetId(), code, errOut)
		}
	})

	t.Run("follow ends with the task", func(t *testing.T) {
		m1.CLI(0, "service", "create", "brief", "--image", remoteImage, "--restart-condition", "none", "--", "sh", "-c", "echo start; sleep 1; echo stop")
		stdout, stderr, code := testutil.RunCLI(t, bin, m1.Socket, "service", "logs", "-f", "--raw", "brief")
		if code != 0 || stdout != "start\nstop\n" || !strings.Contains(stderr, "ended") {
			t.Fatalf("service logs -f of a task that ends: exit %d, stdout %q, stderr %q; want its lines and an end message", code, stdout, stderr)
		}
		t.Logf("end message: %s", strings.TrimSpace(stderr))
	})

	t.Run("bad input", func(t *testing.T) {
		_, errOut, code := testutil.RunCLI(t, bin, m1.Socket, "task", "logs", "zzzzzzzz")
		if code != 1 || !strings.Contains(errOut, `"zzzzzzzz"`) || !strings.Contains(errOut, "not found") {
			t.Fatalf("logs of an unknown task: exit %d, stderr %q", code, errOut)
		}
		junk := filepath.Join(dir, "junk.tar")
		if err := os.WriteFile(junk, []byte(strings.Repeat("not a tarball\n", 100)), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, code := testutil.RunCLI(t, bin, m1.Socket, "image", "import", junk)
		if code != 1 || !strings.Contains(errOut, "no node imported the archive") {
			t.Fatalf("import of a junk file: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		t.Logf("junk import: %s", strings.TrimSpace(errOut))
	})

	t.Run("worker cut off", func(t *testing.T) {
		w2.Host.Partition(t)
		defer w2.Host.Heal(t)
		start := time.Now()
		out, _, code := testutil.RunCLI(t, bin, m1.Socket, "stats", "--no-stream", "--service", "talk")
		took := time.Since(start)
		var w2Row string
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[2] == "w2" {
				w2Row = line
			}
		}
		if code != 0 || !strings.Contains(w2Row, "node w2") || took > 30*time.Second {
			t.Fatalf("stats with w2 cut off: exit %d after %s; want a row whose error names node w2 within 30s:\n%s", code, took, out)
		}
		t.Logf("stats after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(w2Row))

		start = time.Now()
		_, errOut, code := testutil.RunCLI(t, bin, m1.Socket, "task", "exec", onW2.GetId(), "--", "true")
		took = time.Since(start)
		if code != 1 || !strings.Contains(errOut, "w2") || took > 30*time.Second {
			t.Fatalf("exec in a task on a cut-off worker: exit %d after %s, stderr %q; want an error naming node w2 within 30s", code, took, errOut)
		}
		t.Logf("exec after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(errOut))

		start = time.Now()
		_, errOut, code = testutil.RunCLI(t, bin, m1.Socket, "task", "logs", onW2.GetId())
		took = time.Since(start)
		if code != 1 || !strings.Contains(errOut, "node w2") {
			t.Fatalf("logs of a task on a cut-off worker: exit %d, stderr %q; want an error naming node w2", code, errOut)
		}
		if took > 30*time.Second {
			t.Fatalf("the error took %s, more than the API timeout", took)
		}
		t.Logf("after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(errOut))

	})
}

// statsRow is one task's row of `warren stats`: its node, CPU in percent
// and memory use in bytes.
type statsRow struct {
	node     string
	cpu, mem float64
}

// statsOf parses the rows of `warren stats` output whose NAME starts with
// prefix; a row without figures has cpu and mem -1.
func statsOf(out, prefix string) []statsRow {
	var rows []statsRow
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !strings.HasPrefix(f[1], prefix) {
			continue
		}
		r := statsRow{node: f[2], cpu: -1, mem: -1}
		if v, err := strconv.ParseFloat(strings.TrimSuffix(f[3], "%"), 64); err == nil {
			r.cpu = v
		}
		r.mem = parseSize(f[4])
		rows = append(rows, r)
	}
	return rows
}

// parseSize reads a size as warren prints it ("1.5MiB", "512B"); -1 when
// it is not one.
func parseSize(s string) float64 {
	for i, unit := range []string{"EiB", "PiB", "TiB", "GiB", "MiB", "KiB", "B"} {
		if n, ok := strings.CutSuffix(s, unit); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return -1
			}
			return v * math.Pow(1024, float64(6-i))
		}
	}
	return -1
}

// tasksOf lists a service's tasks on n.
func tasksOf(t *testing.T, n *clustertest.Node, service string) []*apiv1.Task {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := n.Client().GetService(ctx, &apiv1.GetServiceRequest{NameOrId: service})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := n.Client().ListTasks(ctx, &apiv1.ListTasksRequest{Service: svc.GetService().GetId(), All: true, View: apiv1.TaskView_TASK_VIEW_FULL})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetTasks()
}

// taskOn returns the running task of service on node w.
func taskOn(t *testing.T, m *clustertest.Node, service string, w *clustertest.Node) *apiv1.Task {
	t.Helper()
	for _, tk := range tasksOf(t, m, service) {
		if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && nodeName(t, m, tk.GetNodeId()) == w.Name {
			return tk
		}
	}
	t.Fatalf("no running %s task on %s", service, w.Name)
	return nil
}

func nodeName(t *testing.T, m *clustertest.Node, id string) string {
	t.Helper()
	resp, err := m.Client().GetNode(context.Background(), &apiv1.GetNodeRequest{NameOrId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetNode().GetName()
}

// shortID is the first 12 characters of an ID, as tables show it.
func shortID(id string) string { return id[:min(len(id), 12)] }
