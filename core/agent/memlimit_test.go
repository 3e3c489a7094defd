package agent

import (
	"runtime/debug"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// TestSetMemoryLimit: memory_limit becomes the runtime's soft limit, and
// GOMEMLIMIT, when set, wins over it.
func TestSetMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	tests := []struct {
		name      string
		env       string // GOMEMLIMIT; "" unset
		preset    int64  // what the runtime has when the agent starts
		limit     uint64
		wantLimit int64
	}{
		{"from the configuration", "", orig, 200 << 20, 200 << 20},
		{"GOMEMLIMIT wins", "300MiB", 300 << 20, 200 << 20, 300 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("GOMEMLIMIT", tt.env)
			}
			debug.SetMemoryLimit(tt.preset) // as the runtime does from GOMEMLIMIT at start
			got := setMemoryLimit(tt.limit, hclog.NewNullLogger())
			if now := debug.SetMemoryLimit(-1); got != tt.wantLimit || now != tt.wantLimit {
				t.Fatalf("setMemoryLimit = %d, runtime limit %d; want %d", got, now, tt.wantLimit)
			}
		})
	}
}
