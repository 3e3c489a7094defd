package worker

import (
	"os"
	"path/filepath"
	"testing"
)

func TestVolumeSize(t *testing.T) {
	dir := t.TempDir()
	write := func(p string, n int) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "one", "a"), 1<<20)
	write(filepath.Join(dir, "one", "sub", "b"), 1<<20)
	write(filepath.Join(dir, "linked", "a"), 1<<20)
	if err := os.Link(filepath.Join(dir, "linked", "a"), filepath.Join(dir, "linked", "b")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		min, max int64
	}{
		{"one", 2 << 20, 2<<20 + 64<<10},    // two files, and the directories
		{"linked", 1 << 20, 1<<20 + 32<<10}, // a hard link counts once
		{"never-used", 0, 0},                // no task made it yet
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VolumeSize(dir, tt.name)
			if err != nil || got < tt.min || got > tt.max {
				t.Fatalf("VolumeSize = %d, %v; want %d..%d", got, err, tt.min, tt.max)
			}
		})
	}
}
