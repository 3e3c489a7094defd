// Package store is the contract for Warren's store plugins: the durable home
// of the cluster state that Raft's FSM writes.
//
// A store is a set of buckets holding key/value records. Warren's core
// decides what goes in them (protobuf-encoded nodes, services, tasks...); a
// store never interprets values. Every write arrives as a Batch stamped with
// the Raft index it came from, and the store applies the batch and records
// the index in one atomic, durable step. On restart the core asks for
// AppliedIndex and skips Raft entries at or below it, so nothing is applied
// twice and nothing acknowledged is lost.
package store

import (
	"context"
	"io"

	"github.com/warrenorch/warren/sdk"
)

// OpType is what an Op does.
type OpType int

// The operations a batch can hold.
const (
	// OpPut creates or replaces the record at Bucket/Key with Value.
	OpPut OpType = iota + 1
	// OpDelete removes the record at Bucket/Key; deleting a missing record is
	// not an error.
	OpDelete
)

// Op is one write in a Batch.
type Op struct {
	Type   OpType
	Bucket string
	Key    string
	Value  []byte
}

// Batch is a set of writes that must be applied all together or not at all.
type Batch struct {
	// Index is the Raft index the batch came from. Indexes only grow.
	Index uint64
	// Ops are applied in order; an empty Ops still advances the index.
	Ops []Op
}

// Record is one stored key/value pair.
type Record struct {
	Bucket string
	Key    string
	Value  []byte
}

// Limits on names and values. Stores must accept anything within them and
// reject anything beyond with ErrInvalidArgument.
const (
	MaxBucketLen = 64
	MaxKeyLen    = 512
	MaxValueLen  = 4 << 20
)

// EnvDiscardDamaged is the environment variable through which the host
// tells a store plugin that it may discard damaged data (value "1"): the
// host has checked that Raft holds everything needed to fill the store
// again (a snapshot and the log after it, or the whole log).
const EnvDiscardDamaged = "WARREN_STORE_DISCARD_DAMAGED"

// Store is implemented by store plugins.
//
// Damage: Configure verifies the data it opens (store-bolt runs bbolt's
// full consistency check on its file) and refuses damaged data with an
// error wrapping sdk.ErrDataLoss that names where it is (the file path) and
// what is wrong; it never serves what it cannot read back intact as if it
// were the state, in particular not as an empty store. With
// EnvDiscardDamaged set to "1" it instead keeps the damaged data aside
// where an operator can find it (store-bolt renames the file
// <path>.corrupt-<time>), logs where, and starts empty at applied index 0.
// A store that finds damage later, in a call, returns sdk.ErrDataLoss from
// that call.
//
// Threading: the core calls Apply from one goroutine at a time (Raft's FSM),
// but Get, List, AppliedIndex and Snapshot may run concurrently with Apply
// and with each other, and must see either all or none of a batch.
//
// Durability: when Apply returns nil the batch and its index must survive a
// crash of the plugin process (kill -9) and of the machine (fsync).
type Store interface {
	sdk.Plugin

	// Apply applies b atomically and records b.Index as the applied index.
	// It is repeat-safe: a batch whose Index is at or below the applied index
	// changes nothing and returns (false, nil). An op with an empty or
	// oversized bucket, key or value returns ErrInvalidArgument and applies
	// nothing of the batch.
	Apply(ctx context.Context, b Batch) (applied bool, err error)

	// Get returns the value at bucket/key, or an error wrapping ErrNotFound.
	// The returned slice belongs to the caller.
	Get(ctx context.Context, bucket, key string) ([]byte, error)

	// List returns the records of bucket whose key starts with prefix, in
	// key order (byte-wise). A bucket never written to lists as empty.
	List(ctx context.Context, bucket, prefix string) ([]Record, error)

	// AppliedIndex returns the index of the last applied batch, 0 for a new
	// store.
	AppliedIndex(ctx context.Context) (uint64, error)

	// Snapshot captures the whole store as of the moment it returns:
	// batches applied later must not show in it. The caller reads it
	// through the returned Snapshot, possibly while Apply keeps running, and
	// closes it.
	Snapshot(ctx context.Context) (Snapshot, error)

	// Restore replaces the whole content of the store with the records read
	// from src (until io.EOF) and sets the applied index to index, atomically:
	// if it fails, the store is as it was.
	Restore(ctx context.Context, index uint64, src RecordReader) error
}

// RecordReader yields records one at a time; Next returns io.EOF after the
// last one.
type RecordReader interface {
	Next() (Record, error)
}

// Snapshot is a point-in-time copy of a store being read.
type Snapshot interface {
	RecordReader
	// Index is the applied index the snapshot was taken at.
	Index() uint64
	// Close releases the snapshot; it is safe to call more than once.
	io.Closer
}

// SliceReader is a RecordReader over a slice, handy for Restore in tests.
type SliceReader struct {
	Records []Record
	pos     int
}

// Next returns the next record or io.EOF.
func (r *SliceReader) Next() (Record, error) {
	if r.pos >= len(r.Records) {
		return Record{}, io.EOF
	}
	rec := r.Records[r.pos]
	r.pos++
	return rec, nil
}

// ReadAll drains r into a slice.
func ReadAll(r RecordReader) ([]Record, error) {
	var out []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}
