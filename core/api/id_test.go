package api

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewIDSortsByCreationTime(t *testing.T) {
	const n = 2000
	ids := make([]string, 0, n)
	seen := map[string]bool{}
	short := map[string]bool{}
	for i := range n {
		if i == n/2 {
			// IDs a millisecond apart must sort by time whatever their
			// random part (those within one millisecond need not): the
			// clock has to move on, which is what this sleep is for.
			time.Sleep(2 * time.Millisecond)
		}
		id := NewID()
		if len(id) != 24 || strings.Trim(id, "0123456789abcdefghijklmnopqrstuv") != "" {
			t.Fatalf("ID %q: want 24 lowercase base32hex characters", id)
		}
		if seen[id] {
			t.Fatalf("ID %q made twice", id)
		}
		seen[id] = true
		short[id[:12]] = true
		ids = append(ids, id)
	}
	if a, b := slices.Max(ids[:n/2]), slices.Min(ids[n/2:]); a >= b {
		t.Fatalf("ID %s made 2ms before %s sorts after it", a, b)
	}
	// The CLI's 12-character short IDs stay distinct for objects made in
	// a burst (here mostly within the same few milliseconds).
	if len(short) < n-2 {
		t.Errorf("%d IDs gave only %d distinct 12-character prefixes", n, len(short))
	}
}
