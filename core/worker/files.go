package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/runtime"
)

// DefaultFilesRoot is where a worker's tmpfs for secrets and configs is
// mounted when Options.FilesDir is empty: <DefaultFilesRoot>/<node ID>.
const DefaultFilesRoot = "/run/warren/files"

// filesTmpfsSize bounds the worker's tmpfs of task files.
const filesTmpfsSize = "64m"

// fileID names one revision of a secret or config.
type fileID struct {
	kind, name string
	revision   uint64
}

// taskFiles holds, in memory only, the secrets and configs the dispatcher
// sent for the tasks assigned here, and writes each task's files on a tmpfs
// the worker owns: <dir>/<task ID>/<kind>/<name>, bind-mounted read-only
// into the task. Nothing of it reaches the disk; a task's directory goes
// when the task is destroyed.
type taskFiles struct {
	dir string

	mu      sync.Mutex
	data    map[fileID][]byte
	mounted bool
}

func newTaskFiles(dir string) *taskFiles {
	return &taskFiles{dir: dir, data: map[fileID][]byte{}}
}

// apply takes a TaskFiles message.
func (f *taskFiles) apply(m *apiv1.TaskFiles) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m.GetFull() {
		clear(f.data)
	}
	for _, p := range m.GetPut() {
		k := p.GetKey()
		f.data[fileID{k.GetKind(), k.GetName(), k.GetRevision()}] = p.GetData()
	}
	for _, k := range m.GetForget() {
		delete(f.data, fileID{k.GetKind(), k.GetName(), k.GetRevision()})
	}
}

// errFileMissing: the dispatcher has not sent a file the task needs yet.
var errFileMissing = errors.New("the manager has not sent it yet")

// fileRefs returns t's secret and config references with their kinds.
func fileRefs(t *apiv1.Task) (kinds []string, refs []*apiv1.FileReference) {
	for _, r := range t.GetSpec().GetSecrets() {
		kinds, refs = append(kinds, "secret"), append(refs, r)
	}
	for _, r := range t.GetSpec().GetConfigs() {
		kinds, refs = append(kinds, "config"), append(refs, r)
	}
	return kinds, refs
}

// fileMounts returns the read-only bind mounts that put t's secrets and
// configs at their targets, from files under dir.
func fileMounts(dir string, t *apiv1.Task) []runtime.Mount {
	kinds, refs := fileRefs(t)
	out := make([]runtime.Mount, len(refs))
	for i, r := range refs {
		out[i] = runtime.Mount{Type: runtime.MountBind, Source: filepath.Join(dir, t.GetId(), kinds[i], r.GetName()), Target: r.GetTarget(), ReadOnly: true}
	}
	return out
}

// prepare writes t's files on the tmpfs with their owners and modes, and
// returns their mounts. An error wrapping errFileMissing means the data has
// not arrived yet.
func (f *taskFiles) prepare(t *apiv1.Task) ([]runtime.Mount, error) {
	kinds, refs := fileRefs(t)
	if len(refs) == 0 {
		return nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.mountLocked(); err != nil {
		return nil, err
	}
	for i, r := range refs {
		data, ok := f.data[fileID{kinds[i], r.GetName(), r.GetRevision()}]
		if !ok {
			return nil, fmt.Errorf("%s %q revision %d: %w", kinds[i], r.GetName(), r.GetRevision(), errFileMissing)
		}
		dir := filepath.Join(f.dir, t.GetId(), kinds[i])
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return nil, fmt.Errorf("task files: %w", err)
		}
		p := filepath.Join(dir, r.GetName())
		if err := writeFile(p, data, os.FileMode(r.GetMode()), int(r.GetUid()), int(r.GetGid())); err != nil {
			return nil, fmt.Errorf("task files: %s %q: %w", kinds[i], r.GetName(), err)
		}
	}
	return fileMounts(f.dir, t), nil
}

// writeFile writes data at p, owned by uid:gid with mode, replacing any
// file there.
func writeFile(p string, data []byte, mode os.FileMode, uid, gid int) error {
	tmp := p + ".tmp"
	_ = os.Remove(tmp)
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = fh.Write(data)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chown(tmp, uid, gid)
	}
	if err == nil {
		err = os.Chmod(tmp, mode) // after chown, which may clear set-id bits
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// drop removes a task's files. Repeat-safe.
func (f *taskFiles) drop(taskID string) error {
	if err := os.RemoveAll(filepath.Join(f.dir, taskID)); err != nil {
		return fmt.Errorf("task files of %s: %w", taskID, err)
	}
	return nil
}

// taskIDs returns the IDs of the tasks that have a directory of files.
func (f *taskFiles) taskIDs() ([]string, error) {
	ents, err := os.ReadDir(f.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("task files: %w", err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// mountLocked mounts the tmpfs at f.dir unless one is there already (from
// an earlier run of the agent: the files of running tasks stay).
func (f *taskFiles) mountLocked() error {
	if f.mounted {
		return nil
	}
	if err := os.MkdirAll(f.dir, 0o700); err != nil {
		return fmt.Errorf("task files: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(f.dir, &st); err != nil {
		return fmt.Errorf("task files: statfs %s: %w", f.dir, err)
	}
	var a, b unix.Stat_t
	isMount := unix.Stat(f.dir, &a) == nil && unix.Stat(filepath.Dir(f.dir), &b) == nil && a.Dev != b.Dev
	if !isMount || st.Type != unix.TMPFS_MAGIC {
		if err := unix.Mount("tmpfs", f.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size="+filesTmpfsSize); err != nil {
			return fmt.Errorf("task files: mount a tmpfs at %s: %w", f.dir, err)
		}
	}
	f.mounted = true
	return nil
}
