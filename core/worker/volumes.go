package worker

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// VolumesDir is the directory of a worker's named volumes: configured, or
// <dataDir>/volumes.
func VolumesDir(dataDir, configured string) string {
	if configured != "" {
		return configured
	}
	return filepath.Join(dataDir, "volumes")
}

// VolumeSize returns the disk space the files under the named volume's
// directory use, counted as du counts it (allocated blocks, each hard
// link once); 0 when no task made the directory yet.
func VolumeSize(volumesDir, name string) (int64, error) {
	var total int64
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err := filepath.WalkDir(VolumePath(volumesDir, name), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // made by no task yet, or removed meanwhile
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			total += info.Size()
			return nil
		}
		if k := (inode{uint64(st.Dev), st.Ino}); st.Nlink > 1 && !d.IsDir() {
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		total += st.Blocks * 512
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("volume %q: measure its size: %w", name, err)
	}
	return total, nil
}
