package worker

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/runtime"
)

func TestHandleStore(t *testing.T) {
	dir := t.TempDir()
	s, err := newHandleStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := newRecord(runtime.TaskHandle{Version: 2, TaskID: "task-a", Runtime: "fake", State: []byte{0, 1, 2}}, apiv1.TaskState_TASK_STATE_RUNNING)
	b := newRecord(runtime.TaskHandle{Version: 1, TaskID: "task-b", Runtime: "fake", State: []byte("b")}, apiv1.TaskState_TASK_STATE_RUNNING)
	// The image's health check is kept for a restarted worker to run.
	a.ImageHealthCheck = &runtime.ImageHealthCheck{Command: []string{"/bin/sh", "-c", "test -f /tmp/ok"}, Interval: 200 * time.Millisecond, Retries: 2}
	for _, r := range []*record{a, b} {
		if err := s.save(r); err != nil {
			t.Fatal(err)
		}
	}
	// Overwrite: the exit is recorded with the handle.
	b.State, b.ExitCode, b.Error = apiv1.TaskState_TASK_STATE_FAILED.String(), 3, "exited with code 3"
	if err := s.save(b); err != nil {
		t.Fatal(err)
	}
	// Debris a crash may leave: a temporary file, a corrupt record, a
	// record under the wrong name.
	tasks := filepath.Join(dir, "worker", "tasks")
	for name, data := range map[string]string{
		"task-c.123.tmp": "partial",
		"task-d.json":    "{not json",
		"task-e.json":    `{"task_id": "task-f"}`,
	} {
		if err := os.WriteFile(filepath.Join(tasks, name), []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	recs, bad, err := s.loadAll()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*record{}
	for _, r := range recs {
		got[r.TaskID] = r
	}
	if len(got) != 2 || !reflect.DeepEqual(got["task-a"], a) || !reflect.DeepEqual(got["task-b"], b) {
		t.Fatalf("loaded %+v, want a and b", got)
	}
	if got["task-a"].handle().Version != 2 || got["task-b"].state() != apiv1.TaskState_TASK_STATE_FAILED {
		t.Fatalf("decoded handle %+v, state %v", got["task-a"].handle(), got["task-b"].state())
	}
	if len(bad) != 2 {
		t.Fatalf("bad = %v, want the corrupt and the misnamed record", bad)
	}
	if _, err := os.Stat(filepath.Join(tasks, "task-c.123.tmp")); !os.IsNotExist(err) {
		t.Fatalf("temporary file left behind: %v", err)
	}

	if err := s.remove("task-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.remove("task-a"); err != nil {
		t.Fatalf("removing twice: %v", err)
	}
	recs, _, _ = s.loadAll()
	if len(recs) != 1 || recs[0].TaskID != "task-b" {
		t.Fatalf("after remove: %+v", recs)
	}
}
