// Package bolt is Warren's default store: the cluster state in one local
// BoltDB (go.etcd.io/bbolt) file.
//
// Layout: a top-level bucket "data" holds one nested bbolt bucket per store
// bucket, created on the first put to it; a top-level bucket "meta" holds
// the applied index (8 bytes, big-endian) and the layout's format version.
// Nesting keeps store bucket names from ever colliding with "meta".
//
// Durability: every Apply and Restore is one bbolt read-write transaction,
// and bbolt fsyncs (fdatasync on Linux) the file before Commit returns, so a
// batch whose Apply returned nil survives kill -9 of the plugin and a crash
// of the machine, with its index. The no_sync option turns that fsync off:
// a machine crash can then lose acknowledged batches or corrupt the file.
//
// Reads run in read-only transactions and copy what they return, since
// bbolt's slices point into its memory map and are only valid inside the
// transaction. Readers never block the writer or each other, and see whole
// transactions only.
//
// Damage: Configure runs bbolt's own consistency check on an existing file
// (in a child process, see sdk/store/boltcheck) before opening it, and
// refuses a damaged one with an error wrapping sdk.ErrDataLoss that names
// the file. When the host sets store.EnvDiscardDamaged, it moves a damaged
// file aside instead (renamed <path>.corrupt-<UTC time>, logged) and starts
// from an empty file, for the host to fill again from Raft.
//
// Snapshots hold a read-only transaction open until they are closed (or read
// to the end). While one is open bbolt cannot reuse the pages that later
// batches free, so the file grows, and it cannot remap the file: the map is
// reserved at 1 GiB up front so that only a database grown beyond that makes
// an Apply wait for open snapshots to close. Close snapshots promptly.
package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"google.golang.org/grpc/codes"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/sdk/store/boltcheck"
)

// Name and Version identify the plugin.
const (
	Name    = "store-bolt"
	Version = "0.1.0"
)

// DataDirEnv names the environment variable holding Warren's data
// directory. When it is set, path defaults to $WARREN_DATA_DIR/store-bolt/state.db.
const DataDirEnv = "WARREN_DATA_DIR"

// DefaultTimeout is how long Configure waits for the file lock by default.
const DefaultTimeout = 5 * time.Second

// formatVersion is the layout of the file (see the package comment). A file
// written with another layout is refused.
const formatVersion = "1"

// initialMmapSize reserves the address space bbolt maps the file into, so
// that long-open snapshots rarely make a writer wait (see the package
// comment). It costs address space, not memory.
const initialMmapSize = 1 << 30

var (
	dataBucket  = []byte("data")
	metaBucket  = []byte("meta")
	indexKey    = []byte("applied_index")
	formatKey   = []byte("format")
	errNotReady = fmt.Errorf("%s: not configured: %w", Name, sdk.ErrFailedPrecondition)
	errClosed   = fmt.Errorf("%s: closed: %w", Name, sdk.ErrFailedPrecondition)
)

// Config is the plugin's `config { }` block.
type Config struct {
	// Path is the database file.
	Path string `json:"path"`
	// NoSync turns off fsync on commit. Unsafe: see the package comment.
	NoSync bool `json:"no_sync"`
	// Timeout is how long to wait for the file lock, as a Go duration.
	Timeout string `json:"timeout"`
}

// Store is a store.Store kept in a bbolt file. Make one with New; it is
// usable once Configure has succeeded. It is safe for concurrent use.
type Store struct {
	logger sdk.Logger

	mu     sync.Mutex
	db     *bbolt.DB
	closed bool
	snaps  map[*snapshot]struct{}
}

var (
	_ store.Store = (*Store)(nil)
	_ io.Closer   = (*Store)(nil)
)

// New returns an unconfigured Store.
func New() *Store {
	return &Store{logger: sdk.NewLogger(Name)}
}

// Info reports the plugin's identity.
func (s *Store) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{
		Kind:        sdk.KindStore,
		Name:        Name,
		Version:     Version,
		APIVersions: []uint32{sdk.APIVersion},
		Description: "cluster state in one local BoltDB file, fsynced on every batch unless no_sync is set",
	}, nil
}

// ConfigSchema reports the attributes of the config block.
func (s *Store) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{
		{Name: "path", Type: sdk.TypeString, Description: "absolute path of the database file; " +
			"defaults to $" + DataDirEnv + "/store-bolt/state.db, and is required when " + DataDirEnv + " is not set. " +
			"Missing directories are created with mode 0700, the file with 0600."},
		{Name: "no_sync", Type: sdk.TypeBool, Description: "UNSAFE: skip the fsync on each commit. " +
			"Faster, but a machine crash can lose acknowledged writes or corrupt the file. Default false."},
		{Name: "timeout", Type: sdk.TypeString, Description: "how long to wait for the file lock held by " +
			"another process, as a duration such as \"5s\". Default \"5s\"."},
	}}, nil
}

// resolve applies defaults to c and checks it.
func (c *Config) resolve() (time.Duration, error) {
	if c.Path == "" {
		dir := os.Getenv(DataDirEnv)
		if dir == "" {
			return 0, fmt.Errorf("%s: config: path is required when %s is not set: %w", Name, DataDirEnv, sdk.ErrInvalidArgument)
		}
		c.Path = filepath.Join(dir, Name, "state.db")
	}
	if !filepath.IsAbs(c.Path) {
		return 0, fmt.Errorf("%s: config: path %q must be absolute: %w", Name, c.Path, sdk.ErrInvalidArgument)
	}
	if c.Timeout == "" {
		return DefaultTimeout, nil
	}
	d, err := time.ParseDuration(c.Timeout)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s: config: timeout %q is not a positive duration such as \"5s\": %w", Name, c.Timeout, sdk.ErrInvalidArgument)
	}
	return d, nil
}

// Configure opens (creating if needed) the database file named by the
// configuration. It may be called once.
func (s *Store) Configure(ctx context.Context, configJSON []byte) error {
	var c Config
	if err := sdk.DecodeConfig(configJSON, &c); err != nil {
		return fmt.Errorf("%s: %w", Name, err)
	}
	timeout, err := c.resolve()
	if err != nil {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return errClosed
	case s.db != nil:
		return fmt.Errorf("%s: already configured: %w", Name, sdk.ErrFailedPrecondition)
	}
	if err := s.verify(ctx, c.Path, timeout, os.Getenv(store.EnvDiscardDamaged) == "1"); err != nil {
		return err
	}
	db, err := open(c.Path, timeout, c.NoSync)
	if err != nil {
		return err
	}
	s.db = db
	return nil
}

// verify checks an existing, non-empty file at path with bbolt's check. A
// damaged one is refused, or moved aside when discard is set.
func (s *Store) verify(ctx context.Context, path string, timeout time.Duration, discard bool) error {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		// Missing or empty: a new store (a zero-length file is what a
		// crash right after creating it leaves). Open creates it.
		return nil
	}
	start := time.Now()
	err := boltcheck.Check(ctx, path, timeout)
	switch {
	case err == nil:
		s.logger.Debug("state file checked", "path", path, "took", time.Since(start))
		return nil
	case !errors.Is(err, sdk.ErrDataLoss) || !discard:
		return fmt.Errorf("%s: open: %w", Name, err)
	}
	aside := path + ".corrupt-" + time.Now().UTC().Format("20060102T150405.000Z")
	if rerr := os.Rename(path, aside); rerr != nil {
		return fmt.Errorf("%s: open: moving the damaged file aside to %s: %w (the damage: %w)", Name, aside, rerr, err)
	}
	if rerr := syncDir(filepath.Dir(path)); rerr != nil {
		return fmt.Errorf("%s: open: moving the damaged file aside to %s: %w", Name, aside, rerr)
	}
	s.logger.Warn("the state file is damaged: moved it aside and starting from an empty one, which the host fills again",
		"path", path, "moved_to", aside, "damage", err.Error())
	return nil
}

func open(path string, timeout time.Duration, noSync bool) (*bbolt.DB, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("%s: creating directory %q: %w", Name, dir, err)
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout:         timeout,
		NoSync:          noSync,
		InitialMmapSize: initialMmapSize,
		FreelistType:    bbolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("%s: open %q: the file is locked by another process (waited %s): %w",
			Name, path, timeout, sdk.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: open %q: %w", Name, path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(dataBucket); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(metaBucket)
		if err != nil {
			return err
		}
		switch f := meta.Get(formatKey); {
		case f == nil:
			return meta.Put(formatKey, []byte(formatVersion))
		case string(f) != formatVersion:
			return fmt.Errorf("file format %q, this plugin reads %q: %w", f, formatVersion, sdk.ErrFailedPrecondition)
		}
		return nil
	})
	if err == nil && !noSync {
		err = syncDir(dir)
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: open %q: %w", Name, path, err)
	}
	return db, nil
}

// syncDir makes a newly created file's directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Close closes open snapshots and the database file. Later calls of any
// method return an error wrapping sdk.ErrFailedPrecondition. It is safe to
// call more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	db, snaps := s.db, s.snaps
	s.db, s.snaps, s.closed = nil, nil, true
	s.mu.Unlock()
	for snap := range snaps {
		snap.Close()
	}
	if db == nil {
		return nil
	}
	if err := db.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", Name, err)
	}
	return nil
}

// handle returns the open database.
func (s *Store) handle() (*bbolt.DB, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, errClosed
	case s.db == nil:
		return nil, errNotReady
	}
	return s.db, nil
}

// wrapErr turns a bbolt error into one of the sdk's.
func wrapErr(what string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return errClosed
	case sdk.Code(err) != codes.Unknown:
		// Already carries an sdk sentinel or a context error.
		return err
	}
	return fmt.Errorf("%s: %s: %w: %w", Name, what, sdk.ErrInternal, err)
}

// checkNames checks a bucket and key against the store's limits.
func checkNames(bucket, key string) error {
	switch {
	case bucket == "" || len(bucket) > store.MaxBucketLen:
		return fmt.Errorf("bucket %q: length %d not in 1..%d: %w", trunc(bucket), len(bucket), store.MaxBucketLen, sdk.ErrInvalidArgument)
	case key == "" || len(key) > store.MaxKeyLen:
		return fmt.Errorf("bucket %q: key %q: length %d not in 1..%d: %w", bucket, trunc(key), len(key), store.MaxKeyLen, sdk.ErrInvalidArgument)
	}
	return nil
}

func checkRecord(bucket, key string, value []byte) error {
	if err := checkNames(bucket, key); err != nil {
		return err
	}
	if len(value) > store.MaxValueLen {
		return fmt.Errorf("bucket %q: key %q: value of %d bytes is over %d: %w", bucket, key, len(value), store.MaxValueLen, sdk.ErrInvalidArgument)
	}
	return nil
}

func checkOp(op store.Op) error {
	if op.Type != store.OpPut && op.Type != store.OpDelete {
		return fmt.Errorf("bucket %q: key %q: unknown op type %d: %w", trunc(op.Bucket), trunc(op.Key), op.Type, sdk.ErrInvalidArgument)
	}
	return checkRecord(op.Bucket, op.Key, op.Value)
}

func trunc(s string) string {
	if len(s) <= 40 {
		return s
	}
	return s[:32] + "..."
}

func readIndex(tx *bbolt.Tx) uint64 {
	v := tx.Bucket(metaBucket).Get(indexKey)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func writeIndex(tx *bbolt.Tx, index uint64) error {
	return tx.Bucket(metaBucket).Put(indexKey, binary.BigEndian.AppendUint64(nil, index))
}

// Apply validates every op, then applies them and records b.Index in one
// read-write transaction, fsynced before it returns (unless no_sync).
func (s *Store) Apply(ctx context.Context, b store.Batch) (bool, error) {
	db, err := s.handle()
	if err != nil {
		return false, err
	}
	for i, op := range b.Ops {
		if err := checkOp(op); err != nil {
			return false, fmt.Errorf("%s: batch %d: op %d: %w", Name, b.Index, i, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("%s: batch %d: %w", Name, b.Index, err)
	}

	tx, err := db.Begin(true)
	if err != nil {
		return false, wrapErr(fmt.Sprintf("batch %d", b.Index), err)
	}
	defer tx.Rollback()
	if b.Index <= readIndex(tx) {
		return false, nil
	}
	if err := applyOps(tx, b.Ops); err != nil {
		return false, wrapErr(fmt.Sprintf("batch %d", b.Index), err)
	}
	if err := writeIndex(tx, b.Index); err != nil {
		return false, wrapErr(fmt.Sprintf("batch %d", b.Index), err)
	}
	if err := tx.Commit(); err != nil {
		return false, wrapErr(fmt.Sprintf("batch %d: commit", b.Index), err)
	}
	return true, nil
}

func applyOps(tx *bbolt.Tx, ops []store.Op) error {
	data := tx.Bucket(dataBucket)
	buckets := map[string]*bbolt.Bucket{}
	for _, op := range ops {
		bk, ok := buckets[op.Bucket]
		if !ok {
			bk = data.Bucket([]byte(op.Bucket))
		}
		switch op.Type {
		case store.OpPut:
			if bk == nil {
				var err error
				if bk, err = data.CreateBucket([]byte(op.Bucket)); err != nil {
					return fmt.Errorf("creating bucket %q: %w", op.Bucket, err)
				}
			}
			// bbolt keeps value until the commit: it is the caller's for
			// the whole call, and the key is a fresh copy.
			if err := bk.Put([]byte(op.Key), op.Value); err != nil {
				return fmt.Errorf("put %s/%s: %w", op.Bucket, op.Key, err)
			}
		case store.OpDelete:
			if bk != nil {
				if err := bk.Delete([]byte(op.Key)); err != nil {
					return fmt.Errorf("delete %s/%s: %w", op.Bucket, op.Key, err)
				}
			}
		}
		buckets[op.Bucket] = bk
	}
	return nil
}

// Get returns a copy of the value at bucket/key.
func (s *Store) Get(_ context.Context, bucket, key string) ([]byte, error) {
	db, err := s.handle()
	if err != nil {
		return nil, err
	}
	var out []byte
	err = db.View(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(dataBucket).Bucket([]byte(bucket))
		if bk == nil || key == "" {
			return nil
		}
		k, v := bk.Cursor().Seek([]byte(key))
		if k != nil && string(k) == key {
			out = append([]byte{}, v...)
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("get %s/%s", bucket, key), err)
	}
	if out == nil {
		return nil, fmt.Errorf("%s: %s/%s: %w", Name, bucket, key, sdk.ErrNotFound)
	}
	return out, nil
}

// List returns copies of the records of bucket under prefix, in byte-wise
// key order (bbolt's own order).
func (s *Store) List(ctx context.Context, bucket, prefix string) ([]store.Record, error) {
	db, err := s.handle()
	if err != nil {
		return nil, err
	}
	var out []store.Record
	err = db.View(func(tx *bbolt.Tx) error {
		bk := tx.Bucket(dataBucket).Bucket([]byte(bucket))
		if bk == nil {
			return nil
		}
		c := bk.Cursor()
		p := []byte(prefix)
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			if len(out)%1024 == 1023 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			out = append(out, store.Record{Bucket: bucket, Key: string(k), Value: append([]byte{}, v...)})
		}
		return nil
	})
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("list %s/%s*", bucket, prefix), err)
	}
	return out, nil
}

// AppliedIndex returns the index of the last applied batch.
func (s *Store) AppliedIndex(context.Context) (uint64, error) {
	db, err := s.handle()
	if err != nil {
		return 0, err
	}
	var idx uint64
	err = db.View(func(tx *bbolt.Tx) error {
		idx = readIndex(tx)
		return nil
	})
	return idx, wrapErr("applied index", err)
}

// Snapshot opens a read-only transaction and reads the store through it.
// The transaction stays open until the snapshot is closed or read to its
// end; see the package comment for what that costs.
func (s *Store) Snapshot(context.Context) (store.Snapshot, error) {
	db, err := s.handle()
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(false)
	if err != nil {
		return nil, wrapErr("snapshot", err)
	}
	snap := &snapshot{owner: s, tx: tx, index: readIndex(tx), buckets: tx.Bucket(dataBucket).Cursor()}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		// Close ran while the transaction began; it did not see this one.
		tx.Rollback()
		return nil, errClosed
	}
	if s.snaps == nil {
		s.snaps = map[*snapshot]struct{}{}
	}
	s.snaps[snap] = struct{}{}
	return snap, nil
}

// snapshot walks the data buckets of a read-only transaction, copying each
// record out of it.
type snapshot struct {
	owner *Store
	index uint64

	mu      sync.Mutex
	tx      *bbolt.Tx // nil once released
	buckets *bbolt.Cursor
	bucket  string        // the bucket recs walks
	recs    *bbolt.Cursor // nil between buckets
	started bool          // buckets has been positioned
	err     error         // what Next returns once tx is released
}

func (sn *snapshot) Index() uint64 { return sn.index }

func (sn *snapshot) Next() (store.Record, error) {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.tx == nil {
		return store.Record{}, sn.err
	}
	for {
		if sn.recs != nil {
			if k, v := sn.recs.Next(); k != nil {
				return store.Record{Bucket: sn.bucket, Key: string(k), Value: append([]byte{}, v...)}, nil
			}
			sn.recs = nil
		}
		var name []byte
		if sn.started {
			name, _ = sn.buckets.Next()
		} else {
			name, _ = sn.buckets.First()
			sn.started = true
		}
		if name == nil {
			// Read to the end: give the pages back now.
			sn.release(io.EOF)
			return store.Record{}, io.EOF
		}
		bk := sn.tx.Bucket(dataBucket).Bucket(name)
		if bk == nil {
			continue
		}
		sn.bucket, sn.recs = string(name), bk.Cursor()
		if k, v := sn.recs.First(); k != nil {
			return store.Record{Bucket: sn.bucket, Key: string(k), Value: append([]byte{}, v...)}, nil
		}
		sn.recs = nil
	}
}

// release ends the transaction; later Next calls return err. sn.mu is held.
func (sn *snapshot) release(err error) {
	if sn.tx == nil {
		return
	}
	sn.tx.Rollback()
	sn.tx, sn.buckets, sn.recs, sn.err = nil, nil, nil, err
	sn.owner.mu.Lock()
	delete(sn.owner.snaps, sn)
	sn.owner.mu.Unlock()
}

func (sn *snapshot) Close() error {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.release(fmt.Errorf("%s: snapshot at index %d: closed: %w", Name, sn.index, sdk.ErrFailedPrecondition))
	return nil
}

// Restore replaces everything with the records of src and sets the index,
// in one read-write transaction: on any error nothing changes.
func (s *Store) Restore(ctx context.Context, index uint64, src store.RecordReader) error {
	db, err := s.handle()
	if err != nil {
		return err
	}
	tx, err := db.Begin(true)
	if err != nil {
		return wrapErr("restore", err)
	}
	defer tx.Rollback()
	if err := tx.DeleteBucket(dataBucket); err != nil {
		return wrapErr("restore: dropping data", err)
	}
	data, err := tx.CreateBucket(dataBucket)
	if err != nil {
		return wrapErr("restore", err)
	}
	var (
		bk     *bbolt.Bucket
		bkName string
	)
	for n := 0; ; n++ {
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%s: restore at index %d: %w", Name, index, err)
			}
		}
		r, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: restore at index %d: reading record %d: %w", Name, index, n, err)
		}
		if err := checkRecord(r.Bucket, r.Key, r.Value); err != nil {
			return fmt.Errorf("%s: restore at index %d: record %d: %w", Name, index, n, err)
		}
		if bk == nil || r.Bucket != bkName {
			if bk, err = data.CreateBucketIfNotExists([]byte(r.Bucket)); err != nil {
				return wrapErr(fmt.Sprintf("restore: creating bucket %q", r.Bucket), err)
			}
			bkName = r.Bucket
		}
		// bbolt keeps the slices it is given until the commit; the reader
		// may reuse its buffers, so hand it copies.
		if err := bk.Put([]byte(r.Key), bytes.Clone(r.Value)); err != nil {
			return wrapErr(fmt.Sprintf("restore: put %s/%s", r.Bucket, r.Key), err)
		}
	}
	if err := writeIndex(tx, index); err != nil {
		return wrapErr("restore", err)
	}
	if err := tx.Commit(); err != nil {
		return wrapErr(fmt.Sprintf("restore at index %d: commit", index), err)
	}
	return nil
}
