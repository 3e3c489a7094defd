package worker

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/runtime"
)

// record is what the worker keeps on disk about a task it started, in
// <DataDir>/worker/tasks/<task-id>.json: the runtime's handle, to find the
// task again after a restart, and the last state reported, so a restarted
// worker does not report a finished task again.
type record struct {
	TaskID        string `json:"task_id"`
	HandleVersion uint32 `json:"handle_version"`
	Runtime       string `json:"runtime"`
	HandleState   []byte `json:"handle_state"`
	// State is the name of the last state reported (an apiv1.TaskState).
	State    string `json:"state"`
	ExitCode int32  `json:"exit_code,omitempty"`
	Error    string `json:"error,omitempty"`
	// Address is the task's overlay address, when it has one.
	Address string `json:"address,omitempty"`
	// ImageHealthCheck is its image's own health check, as the runtime
	// described the image when the task started: a restarted worker runs
	// it again without asking the runtime.
	ImageHealthCheck *runtime.ImageHealthCheck `json:"image_health_check,omitempty"`
}

func newRecord(h runtime.TaskHandle, st apiv1.TaskState) *record {
	return &record{TaskID: h.TaskID, HandleVersion: h.Version, Runtime: h.Runtime, HandleState: h.State, State: st.String()}
}

func (r *record) handle() runtime.TaskHandle {
	return runtime.TaskHandle{Version: r.HandleVersion, TaskID: r.TaskID, Runtime: r.Runtime, State: r.HandleState}
}

func (r *record) state() apiv1.TaskState {
	return apiv1.TaskState(apiv1.TaskState_value[r.State])
}

// handleStore keeps records, one file per task, written atomically.
type handleStore struct {
	dir string
}

func newHandleStore(dataDir string) (*handleStore, error) {
	dir := filepath.Join(dataDir, "worker", "tasks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("worker: create %s: %w", dir, err)
	}
	return &handleStore{dir: dir}, nil
}

func (s *handleStore) path(taskID string) string {
	return filepath.Join(s.dir, taskID+".json")
}

// save writes rec atomically: a crash leaves the old file or the new one.
func (s *handleStore) save(rec *record) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("task %q: encode handle: %w", rec.TaskID, err)
	}
	path := s.path(rec.TaskID)
	tmp, err := os.CreateTemp(s.dir, rec.TaskID+".*.tmp")
	if err != nil {
		return fmt.Errorf("task %q: store handle: %w", rec.TaskID, err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("task %q: store handle: %w", rec.TaskID, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("task %q: store handle: %w", rec.TaskID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("task %q: store handle: %w", rec.TaskID, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("task %q: store handle: %w", rec.TaskID, err)
	}
	return syncDir(s.dir)
}

// remove deletes a task's record; a missing one is fine.
func (s *handleStore) remove(taskID string) error {
	if err := os.Remove(s.path(taskID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("task %q: remove handle: %w", taskID, err)
	}
	return syncDir(s.dir)
}

// loadAll reads every record. Leftover temporary files are removed; files
// that cannot be read are returned as errors in bad and left in place for
// an operator to look at.
func (s *handleStore) loadAll() (recs []*record, bad []error, err error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, nil, fmt.Errorf("worker: read %s: %w", s.dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasSuffix(name, ".tmp"):
			_ = os.Remove(filepath.Join(s.dir, name))
			continue
		case !strings.HasSuffix(name, ".json") || e.IsDir():
			continue
		}
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		if err != nil {
			bad = append(bad, fmt.Errorf("handle %s: %w", name, err))
			continue
		}
		rec := &record{}
		if err := json.Unmarshal(data, rec); err != nil {
			bad = append(bad, fmt.Errorf("handle %s: %w", name, err))
			continue
		}
		if rec.TaskID+".json" != name || runtime.ValidateTaskID(rec.TaskID) != nil {
			bad = append(bad, fmt.Errorf("handle %s: holds task ID %q", name, rec.TaskID))
			continue
		}
		recs = append(recs, rec)
	}
	return recs, bad, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
