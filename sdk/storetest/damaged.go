package storetest

import (
	"errors"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
)

// Damaged tells RunDamaged how to make, configure and damage a store.
type Damaged struct {
	// New returns an unconfigured store.
	New func() store.Store
	// Config is the configuration JSON of a store keeping its data in dir.
	Config func(dir string) []byte
	// Damage damages the data a closed store left in dir, the way a disk or
	// a crash would (flipped bytes, a truncation).
	Damage func(t *testing.T, dir string)
	// Where is what the refusal must name (the damaged file's path) for the
	// data in dir.
	Where func(dir string) string
}

// RunDamaged checks the store contract on damaged data: Configure refuses
// it with an error wrapping sdk.ErrDataLoss, across the wire, naming where
// it is; with store.EnvDiscardDamaged set, Configure keeps it aside and the
// store starts empty at index 0. It sets the environment, so it must not
// run in parallel with other tests.
func RunDamaged(t *testing.T, d Damaged) {
	configure := func(t *testing.T, dir string) (store.Store, store.Store, error) {
		impl := d.New()
		t.Cleanup(func() { closeStore(t, impl) })
		c := wire(t, impl)
		return impl, c, c.Configure(t.Context(), d.Config(dir))
	}
	dir := t.TempDir()
	impl, s, err := configure(t, dir)
	if err != nil {
		t.Fatalf("Configure on a new directory: %v", err)
	}
	last, _ := fixture(t, s)
	closeStore(t, impl)
	d.Damage(t, dir)

	t.Run("Refused", func(t *testing.T) {
		_, _, err := configure(t, dir)
		if !errors.Is(err, sdk.ErrDataLoss) || !strings.Contains(err.Error(), d.Where(dir)) {
			t.Fatalf("Configure on damaged data (a store at index %d) = %v; want an error wrapping sdk.ErrDataLoss naming %s", last, err, d.Where(dir))
		}
	})
	t.Run("DiscardedWithEnv", func(t *testing.T) {
		t.Setenv(store.EnvDiscardDamaged, "1")
		_, s, err := configure(t, dir)
		if err != nil {
			t.Fatalf("Configure on damaged data with %s=1: %v", store.EnvDiscardDamaged, err)
		}
		wantIndex(t, s, 0)
		wantList(t, s, "nodes", "")
	})
}
