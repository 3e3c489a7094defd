package bolt_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/warrenorch/warren/plugins/store-bolt/bolt"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/sdk/storetest"
)

func configJSON(t testing.TB, c bolt.Config) []byte {
	t.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openStore opens a Store on path and closes it when the test ends.
func openStore(t testing.TB, path string) *bolt.Store {
	t.Helper()
	s := bolt.New()
	if err := s.Configure(context.Background(), configJSON(t, bolt.Config{Path: path})); err != nil {
		t.Fatalf("Configure(%q): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openStore(t, filepath.Join(t.TempDir(), "state.db"))
	})
}

func TestDurable(t *testing.T) {
	storetest.RunDurable(t, func(t *testing.T, dir string) store.Store {
		return openStore(t, filepath.Join(dir, "state.db"))
	})
}

// calls are every store method, for the tests of unusable stores.
var calls = []struct {
	name string
	call func(ctx context.Context, s store.Store) error
}{
	{"Apply", func(ctx context.Context, s store.Store) error {
		_, err := s.Apply(ctx, store.Batch{Index: 1, Ops: []store.Op{{Type: store.OpPut, Bucket: "b", Key: "k"}}})
		return err
	}},
	{"Get", func(ctx context.Context, s store.Store) error { _, err := s.Get(ctx, "b", "k"); return err }},
	{"List", func(ctx context.Context, s store.Store) error { _, err := s.List(ctx, "b", ""); return err }},
	{"AppliedIndex", func(ctx context.Context, s store.Store) error { _, err := s.AppliedIndex(ctx); return err }},
	{"Snapshot", func(ctx context.Context, s store.Store) error {
		snap, err := s.Snapshot(ctx)
		if err == nil {
			snap.Close()
		}
		return err
	}},
	{"Restore", func(ctx context.Context, s store.Store) error {
		return s.Restore(ctx, 1, &store.SliceReader{})
	}},
}

func TestUnusable(t *testing.T) {
	closed := func(t *testing.T) *bolt.Store {
		s := openStore(t, filepath.Join(t.TempDir(), "state.db"))
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		return s
	}
	states := []struct {
		name    string
		make    func(t *testing.T) *bolt.Store
		wantMsg string
	}{
		{"not configured", func(*testing.T) *bolt.Store { return bolt.New() }, "store-bolt: not configured"},
		{"closed", closed, "store-bolt: closed"},
	}
	for _, st := range states {
		for _, c := range calls {
			t.Run(st.name+"/"+c.name, func(t *testing.T) {
				impl := st.make(t)
				paths := map[string]store.Store{
					"direct":        impl,
					"over the wire": store.NewClient(sdk.TestConn(t, impl, store.Register(impl))),
				}
				for how, s := range paths {
					err := c.call(t.Context(), s)
					if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), st.wantMsg) {
						t.Errorf("%s %s = %v; want an error wrapping sdk.ErrFailedPrecondition saying %q", how, c.name, err, st.wantMsg)
					}
				}
			})
		}
	}
	t.Run("Info needs no Configure", func(t *testing.T) {
		info, err := bolt.New().Info(t.Context())
		if err != nil || info.Name != "store-bolt" || info.Version != "0.1.0" || info.Kind != sdk.KindStore {
			t.Fatalf("Info() = %+v, %v", info, err)
		}
	})
}

func TestConfigure(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name    string
		json    string
		dataDir string // WARREN_DATA_DIR
		wantErr string // "" for success
	}{
		{"bad JSON", `{"path": `, "", "decode config"},
		{"unknown attribute", `{"paht": "/tmp/x.db"}`, "", `unknown field "paht"`},
		{"wrong type", `{"path": "` + dir + `/a.db", "no_sync": "yes"}`, "", "decode config"},
		{"no path, no data dir", `{}`, "", "path is required when WARREN_DATA_DIR is not set"},
		{"relative path", `{"path": "state.db"}`, "", `path "state.db" must be absolute`},
		{"relative data dir", `{}`, "data", `must be absolute`},
		{"bad timeout", `{"path": "` + dir + `/b.db", "timeout": "soon"}`, "", `timeout "soon" is not a positive duration`},
		{"negative timeout", `{"path": "` + dir + `/c.db", "timeout": "-1s"}`, "", `timeout "-1s" is not a positive duration`},
		{"all set", `{"path": "` + dir + `/deep/er/d.db", "no_sync": true, "timeout": "1s"}`, "", ""},
		{"empty config uses the data dir", ``, dir + "/data", ""},
		{"null config uses the data dir", `null`, dir + "/data2", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv(bolt.DataDirEnv, c.dataDir)
			s := bolt.New()
			defer s.Close()
			err := s.Configure(t.Context(), []byte(c.json))
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("Configure(%s): %v", c.json, err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), c.wantErr) {
				t.Fatalf("Configure(%s) = %v; want an error wrapping sdk.ErrInvalidArgument saying %q", c.json, err, c.wantErr)
			}
			if _, err := s.AppliedIndex(t.Context()); !errors.Is(err, sdk.ErrFailedPrecondition) {
				t.Fatalf("AppliedIndex after a failed Configure = %v, want sdk.ErrFailedPrecondition", err)
			}
		})
	}
}

func TestConfigureCreatesPrivateFiles(t *testing.T) {
	data := t.TempDir()
	t.Setenv(bolt.DataDirEnv, data)
	s := bolt.New()
	defer s.Close()
	if err := s.Configure(t.Context(), nil); err != nil {
		t.Fatalf("Configure: %v", err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{filepath.Join(data, "store-bolt"), 0o700 | os.ModeDir},
		{filepath.Join(data, "store-bolt", "state.db"), 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, fi.Mode(), c.mode)
		}
	}
	err := s.Configure(t.Context(), nil)
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "already configured") {
		t.Fatalf("second Configure = %v, want sdk.ErrFailedPrecondition saying already configured", err)
	}
}

func TestConfigSchema(t *testing.T) {
	schema, err := bolt.New().ConfigSchema(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]sdk.AttributeType{"path": sdk.TypeString, "no_sync": sdk.TypeBool, "timeout": sdk.TypeString}
	if len(schema.Attributes) != len(want) {
		t.Fatalf("schema has %d attributes, want %d", len(schema.Attributes), len(want))
	}
	for _, a := range schema.Attributes {
		if want[a.Name] != a.Type || a.Required || a.Description == "" {
			t.Errorf("attribute %+v: want type %q, not required, with a description", a, want[a.Name])
		}
	}
}

func TestSecondOpenTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openStore(t, path)
	s := bolt.New()
	defer s.Close()
	start := time.Now()
	err := s.Configure(t.Context(), configJSON(t, bolt.Config{Path: path, Timeout: "200ms"}))
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "locked by another process (waited 200ms)") {
		t.Fatalf("Configure on a locked file = %v; want sdk.ErrFailedPrecondition saying it is locked", err)
	}
	// bbolt gives up one 50ms retry early.
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Fatalf("gave up after %v; it should have waited about 200ms for the lock", waited)
	}
}

func TestForeignFormatRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	db, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		return b.Put([]byte("format"), []byte("99"))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := bolt.New()
	defer s.Close()
	err = s.Configure(t.Context(), configJSON(t, bolt.Config{Path: path}))
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), `file format "99"`) {
		t.Fatalf("Configure on a foreign file = %v; want sdk.ErrFailedPrecondition naming the format", err)
	}
}

// waitFor runs fn and fails the test if it does not return within d.
func waitFor(t *testing.T, what string, d time.Duration, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
	}
}

func TestOpenSnapshotDoesNotBlockApply(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	if _, err := s.Apply(t.Context(), store.Batch{Index: 1, Ops: []store.Op{{Type: store.OpPut, Bucket: "b", Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Close()
	// 16 MiB grows the file far past bbolt's default first mapping, which
	// would have to be remapped, and a remap waits for open transactions.
	waitFor(t, "Apply with a snapshot open", 30*time.Second, func() {
		for i := range 16 {
			ops := make([]store.Op, 16)
			for j := range ops {
				ops[j] = store.Op{Type: store.OpPut, Bucket: "big", Key: fmt.Sprintf("%02d-%02d", i, j), Value: make([]byte, 64<<10)}
			}
			if _, err := s.Apply(context.Background(), store.Batch{Index: uint64(i + 2), Ops: ops}); err != nil {
				t.Errorf("Apply: %v", err)
				return
			}
		}
	})
	recs, err := store.ReadAll(snap)
	if err != nil || len(recs) != 1 {
		t.Fatalf("snapshot read %d records, %v; want the 1 from before", len(recs), err)
	}
}

func TestCloseWithOpenSnapshot(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "state.db"))
	if _, err := s.Apply(t.Context(), store.Batch{Index: 1, Ops: []store.Op{{Type: store.OpPut, Bucket: "b", Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Close with a snapshot open", 10*time.Second, func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if _, err := snap.Next(); err == nil || err == io.EOF {
		t.Fatalf("Next on a snapshot of a closed store = %v, want an error", err)
	}
	if err := snap.Close(); err != nil {
		t.Fatalf("snapshot Close after store Close: %v", err)
	}
}

func BenchmarkApply(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "state.db"))
	value := make([]byte, 300)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		op := store.Op{Type: store.OpPut, Bucket: "tasks", Key: fmt.Sprintf("task-%08d", i%10000), Value: value}
		if _, err := s.Apply(ctx, store.Batch{Index: uint64(i + 1), Ops: []store.Op{op}}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkApplyBatch64(b *testing.B) {
	s := openStore(b, filepath.Join(b.TempDir(), "state.db"))
	value := make([]byte, 300)
	ctx := context.Background()
	ops := make([]store.Op, 64)
	b.ResetTimer()
	for i := range b.N {
		for j := range ops {
			ops[j] = store.Op{Type: store.OpPut, Bucket: "tasks", Key: fmt.Sprintf("task-%08d", (i*64+j)%10000), Value: value}
		}
		if _, err := s.Apply(ctx, store.Batch{Index: uint64(i + 1), Ops: ops}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/put")
}
