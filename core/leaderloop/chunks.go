// Package leaderloop holds what the leader's loops share: the orchestrator,
// the scheduling loop and the dispatcher commit many small entries per
// Raft entry, cut to at most MaxEntryBytes each.
package leaderloop

import "google.golang.org/protobuf/proto"

// MaxEntryBytes bounds what one Raft entry of a loop carries; a round with
// more is committed in several entries.
const MaxEntryBytes = 4 << 20

// Chunks splits items into runs whose encoded size is at most max bytes
// (an item larger than max is a run of its own). It returns no run for no
// items.
func Chunks[T proto.Message](items []T, max int) [][]T {
	var out [][]T
	start, size := 0, 0
	for i, it := range items {
		n := proto.Size(it) + 8 // the repeated field's tag and length
		if i > start && size+n > max {
			out = append(out, items[start:i])
			start, size = i, 0
		}
		size += n
	}
	if start < len(items) {
		out = append(out, items[start:])
	}
	return out
}
