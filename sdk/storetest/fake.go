package storetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
)

// FakeStore is an in-memory store.Store that follows the whole contract
// except durability: its content is gone with the process. It exists so the
// suite can be checked on its own and so code that needs some Store in a
// unit test has one; anything that must survive a restart needs a real
// store plugin.
type FakeStore struct {
	mu    sync.RWMutex
	index uint64
	data  map[string]map[string][]byte
}

var _ store.Store = (*FakeStore)(nil)

// NewFakeStore returns an empty FakeStore. It needs no Configure call.
func NewFakeStore() *FakeStore {
	return &FakeStore{data: map[string]map[string][]byte{}}
}

// Info reports the fake's identity.
func (f *FakeStore) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Kind: sdk.KindStore, Name: "store-fake", Version: "0.0.0", APIVersions: []uint32{sdk.APIVersion},
		Description: "in-memory store for tests; not durable"}, nil
}

// ConfigSchema reports that the fake takes no configuration.
func (f *FakeStore) ConfigSchema(context.Context) (sdk.Schema, error) { return sdk.Schema{}, nil }

// Configure accepts an empty configuration.
func (f *FakeStore) Configure(_ context.Context, configJSON []byte) error {
	return sdk.DecodeConfig(configJSON, &struct{}{})
}

// checkNames checks a bucket and key against the store's limits.
func checkNames(bucket, key string) error {
	switch {
	case bucket == "" || len(bucket) > store.MaxBucketLen:
		return fmt.Errorf("bucket %q: length %d not in 1..%d: %w", short([]byte(bucket)), len(bucket), store.MaxBucketLen, sdk.ErrInvalidArgument)
	case key == "" || len(key) > store.MaxKeyLen:
		return fmt.Errorf("bucket %q: key %q: length %d not in 1..%d: %w", bucket, short([]byte(key)), len(key), store.MaxKeyLen, sdk.ErrInvalidArgument)
	}
	return nil
}

func checkOp(op store.Op) error {
	if op.Type != store.OpPut && op.Type != store.OpDelete {
		return fmt.Errorf("op type %d: %w", op.Type, sdk.ErrInvalidArgument)
	}
	if err := checkNames(op.Bucket, op.Key); err != nil {
		return err
	}
	if len(op.Value) > store.MaxValueLen {
		return fmt.Errorf("%s/%s: value of %d bytes is over %d: %w", op.Bucket, op.Key, len(op.Value), store.MaxValueLen, sdk.ErrInvalidArgument)
	}
	return nil
}

// Apply applies b under the write lock.
func (f *FakeStore) Apply(_ context.Context, b store.Batch) (bool, error) {
	for i, op := range b.Ops {
		if err := checkOp(op); err != nil {
			return false, fmt.Errorf("fake store: batch %d, op %d: %w", b.Index, i, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if b.Index <= f.index {
		return false, nil
	}
	for _, op := range b.Ops {
		m := f.data[op.Bucket]
		switch op.Type {
		case store.OpPut:
			if m == nil {
				m = map[string][]byte{}
				f.data[op.Bucket] = m
			}
			m[op.Key] = bytes.Clone(op.Value)
		case store.OpDelete:
			delete(m, op.Key)
		}
	}
	f.index = b.Index
	return true, nil
}

// Get returns a copy of the value at bucket/key.
func (f *FakeStore) Get(_ context.Context, bucket, key string) ([]byte, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	v, ok := f.data[bucket][key]
	if !ok {
		return nil, fmt.Errorf("fake store: %s/%s: %w", bucket, key, sdk.ErrNotFound)
	}
	return append([]byte{}, v...), nil
}

// List returns copies of bucket's records under prefix, in key order.
func (f *FakeStore) List(_ context.Context, bucket, prefix string) ([]store.Record, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var out []store.Record
	for k, v := range f.data[bucket] {
		if strings.HasPrefix(k, prefix) {
			out = append(out, store.Record{Bucket: bucket, Key: k, Value: bytes.Clone(v)})
		}
	}
	sortRecords(out)
	return out, nil
}

// AppliedIndex returns the index of the last applied batch.
func (f *FakeStore) AppliedIndex(context.Context) (uint64, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.index, nil
}

// Snapshot copies the whole content.
func (f *FakeStore) Snapshot(context.Context) (store.Snapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var recs []store.Record
	for b, m := range f.data {
		for k, v := range m {
			recs = append(recs, store.Record{Bucket: b, Key: k, Value: bytes.Clone(v)})
		}
	}
	sortRecords(recs)
	return &fakeSnapshot{SliceReader: store.SliceReader{Records: recs}, index: f.index}, nil
}

// Restore reads src whole, then swaps it in.
func (f *FakeStore) Restore(ctx context.Context, index uint64, src store.RecordReader) error {
	data := map[string]map[string][]byte{}
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("fake store: restore: %w", err)
		}
		r, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("fake store: restore: record %d: %w", n, err)
		}
		if err := checkOp(store.Op{Type: store.OpPut, Bucket: r.Bucket, Key: r.Key, Value: r.Value}); err != nil {
			return fmt.Errorf("fake store: restore: record %d: %w", n, err)
		}
		if data[r.Bucket] == nil {
			data[r.Bucket] = map[string][]byte{}
		}
		data[r.Bucket][r.Key] = bytes.Clone(r.Value)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.data, f.index = data, index
	return nil
}

type fakeSnapshot struct {
	store.SliceReader
	index uint64
}

func (s *fakeSnapshot) Index() uint64 { return s.index }
func (s *fakeSnapshot) Close() error  { return nil }
