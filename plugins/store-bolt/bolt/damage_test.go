package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/store-bolt/bolt"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/sdk/store/boltcheck/boltchecktest"
	"github.com/warrenorch/warren/sdk/storetest"
)

// fill writes n records of about 600 bytes into a new store file at path,
// in one batch at index 7, and closes it.
func fill(t testing.TB, path string, n int) {
	t.Helper()
	s := bolt.New()
	if err := s.Configure(context.Background(), configJSON(t, bolt.Config{Path: path})); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := store.Batch{Index: 7}
	for i := range n {
		b.Ops = append(b.Ops, store.Op{Type: store.OpPut, Bucket: "services", Key: fmt.Sprintf("svc-%05d", i), Value: []byte(strings.Repeat(fmt.Sprintf("%05d", i), 120))})
	}
	if _, err := s.Apply(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedFileIsRefused damages a real state file the ways disks do and
// checks that Configure refuses it with sdk.ErrDataLoss naming the file,
// instead of serving what it can still read (in the issue: 0 of 81
// services) as the state. With store.EnvDiscardDamaged the file is kept
// aside and the store starts empty.
func TestDamagedFileIsRefused(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
	}{
		{"16 bytes flipped in 4 pages", func(t *testing.T, path string) { boltchecktest.FlipPages(t, path, 4, 4) }},
		{"truncated to 60%", func(t *testing.T, path string) { boltchecktest.Truncate(t, path, 0.6) }},
		{"truncated to its 2 meta pages", func(t *testing.T, path string) { boltchecktest.Truncate(t, path, 0) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "state.db")
			fill(t, path, 81)
			tc.damage(t, path)

			s := bolt.New()
			defer s.Close()
			err := s.Configure(context.Background(), configJSON(t, bolt.Config{Path: path, Timeout: "1s"}))
			if !errors.Is(err, sdk.ErrDataLoss) || !strings.Contains(err.Error(), path) {
				recs, lerr := s.List(context.Background(), "services", "")
				t.Fatalf("Configure on a damaged file = %v (and it lists %d of 81 services, %v); want an error wrapping sdk.ErrDataLoss naming %s", err, len(recs), lerr, path)
			}
			t.Logf("refused: %v", err)
			if _, err := os.Stat(path); err != nil {
				t.Fatalf("the refused file is gone: %v", err)
			}

			t.Setenv(store.EnvDiscardDamaged, "1")
			s2 := openStore(t, path)
			if idx, err := s2.AppliedIndex(context.Background()); idx != 0 || err != nil {
				t.Fatalf("after discarding the damaged file: applied index %d, %v; want 0", idx, err)
			}
			aside, _ := filepath.Glob(path + ".corrupt-*")
			if len(aside) != 1 {
				t.Fatalf("damaged file kept aside as %v, want one %s.corrupt-<time>", aside, path)
			}
		})
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestCheckTimeAtOpen measures what the check costs at every open, for a
// state of 10,000 records (about 6 MB).
func TestCheckTimeAtOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 10,000-record file")
	}
	path := filepath.Join(t.TempDir(), "state.db")
	fill(t, path, 10000)
	start := time.Now()
	openStore(t, path)
	took := time.Since(start)
	t.Logf("Configure with the check of a %d-byte file of 10,000 records: %v", fileSize(t, path), took)
	if took > 5*time.Second {
		t.Fatalf("Configure took %v", took)
	}
}

func TestRunDamaged(t *testing.T) {
	storetest.RunDamaged(t, storetest.Damaged{
		New:    func() store.Store { return bolt.New() },
		Config: func(dir string) []byte { return configJSON(t, bolt.Config{Path: filepath.Join(dir, "state.db")}) },
		Damage: func(t *testing.T, dir string) { boltchecktest.FlipPages(t, filepath.Join(dir, "state.db"), 4, 4) },
		Where:  func(dir string) string { return filepath.Join(dir, "state.db") },
	})
}
