package worker

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"

	"golang.org/x/sys/unix"
)

// netnsDir is where the worker keeps its tasks' network namespaces, each a
// file bind-mounted from the namespace (as `ip netns add` does under
// /run/netns): <DataDir>/netns/<task-id>.
func netnsDir(dataDir string) string { return filepath.Join(dataDir, "netns") }

// makeNetnsDir makes dir a shared mount point, as `ip netns` does with
// /run/netns: a namespace mounted there and unmounted later is unmounted in
// the mount namespaces of the containers started meanwhile too, so none of
// them keeps it alive.
func makeNetnsDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("network namespaces: create %s: %w", dir, err)
	}
	err := unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself first.
		if err := unix.Mount(dir, dir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("network namespaces: bind %s: %w", dir, err)
		}
		err = unix.Mount("", dir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("network namespaces: make %s shared: %w", dir, err)
	}
	return nil
}

// isNetns reports whether path is a mounted network namespace.
func isNetns(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// createNetns creates a new network namespace bound at path, or keeps the
// one bound there already (repeat-safe: a restarted worker adopts it).
func createNetns(path string) error {
	if isNetns(path) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in the worker's
		// namespace; otherwise it dies with this goroutine.
		goruntime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			errc <- err
			return
		}
		defer self.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		merr := unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "none", unix.MS_BIND, "")
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
			goruntime.UnlockOSThread()
		}
		errc <- merr
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	return nil
}

// deleteNetns unmounts and removes the namespace bound at path; a missing
// one is fine.
func deleteNetns(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("network namespace %s: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	return nil
}

// RemoveNetns removes every task network namespace a worker with that data
// dir left bound under it, and the shared mount of their directory, so the
// data dir can be deleted: what `warren agent -dev` does on exit (unless
// -keep) once the agent has stopped. It returns the namespaces it removed.
func RemoveNetns(dataDir string) ([]string, error) {
	dir := netnsDir(dataDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("network namespaces: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if err := deleteNetns(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("network namespaces: unmount %s: %w", dir, err))
	}
	return removed, errors.Join(errs...)
}
