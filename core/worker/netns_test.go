package worker

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestRemoveNetns: the namespaces a worker left and their shared mount go,
// so the data dir can be removed; a data dir without any is fine.
func TestRemoveNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	data := t.TempDir()
	dir := netnsDir(data)
	if err := makeNetnsDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"t1", "t2"} {
		if err := createNetns(filepath.Join(dir, id)); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveNetns(data)
	if err != nil || !slices.Equal(removed, []string{"t1", "t2"}) {
		t.Fatalf("RemoveNetns = %v, %v; want [t1 t2], nil", removed, err)
	}
	if isNetns(filepath.Join(dir, "t1")) || isMountPoint(t, dir) {
		t.Fatal("a namespace or the directory's mount is left")
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatalf("the data dir cannot be removed: %v", err)
	}
	if removed, err := RemoveNetns(data); err != nil || len(removed) != 0 {
		t.Fatalf("RemoveNetns of a data dir without namespaces = %v, %v", removed, err)
	}
}

// isMountPoint reports whether path is a mount point in /proc/self/mountinfo.
func isMountPoint(t *testing.T, path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}
