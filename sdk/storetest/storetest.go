// Package storetest is the conformance suite for Warren store plugins. A
// store author runs it on their own implementation in a few lines:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s := mystore.New()
//			if err := s.Configure(t.Context(), configFor(t.TempDir())); err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Run serves the store over a real go-plugin gRPC connection and checks
// everything on the client side, so typed errors (errors.Is(err,
// sdk.ErrNotFound)) are checked as the host will see them. RunClient runs
// the same cases on a store that is already remote, such as a client of a
// real plugin process. RunDurable checks that the index and the data survive
// closing and reopening a store on the same directory. RunDamaged checks
// that damaged data is refused with sdk.ErrDataLoss (never served as an
// empty or partial store) and discarded only when the host sets
// store.EnvDiscardDamaged.
//
// The cases follow the contract documented in package store: atomic,
// repeat-safe batches stamped with an index; byte-wise key order; limits on
// names and values; point-in-time snapshots; all-or-nothing restores; and
// readers that never see half a batch. Run the suite with -race.
package storetest

import (
	"io"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
)

// harness is one store under test.
type harness struct {
	// s is the store the cases talk to: a client over the wire in Run, the
	// factory's store itself in RunClient.
	s store.Store
	// direct is the same store without the test connection in between. The
	// cases use it only for what the in-process test connection cannot
	// carry (a message over gRPC's default 4 MiB, as a value of
	// store.MaxValueLen is) and for ownership checks that the wire would
	// make trivially true. In RunClient it is s.
	direct store.Store
}

// wired reports whether s and direct are different paths to the store.
func (h harness) wired() bool { return h.s != h.direct }

type newHarness func(t *testing.T) harness

// Run runs the conformance suite on the stores that factory makes, each
// served over a real gRPC connection.
//
// factory is called once or more per subtest and must return a fresh, empty
// store on which Configure has already succeeded. It owns the store's
// lifetime: register a t.Cleanup that closes it. The suite closes the gRPC
// connection it wraps the store in before the factory's cleanups run.
//
// The in-process test connection keeps gRPC's default 4 MiB message limit,
// so the two cases that need a bigger message (a value of exactly
// store.MaxValueLen is accepted; one byte more is rejected) call the
// factory's store directly instead; RunClient sends them over the wire.
func Run(t *testing.T, factory func(t *testing.T) store.Store) {
	t.Helper()
	run(t, func(t *testing.T) harness {
		t.Helper()
		impl := factory(t)
		return harness{s: wire(t, impl), direct: impl}
	})
}

// RunClient runs the conformance suite on stores that are already remote
// (a store.NewClient over a real plugin process, say) without wrapping them
// again. factory has the same duties as in Run.
//
// The suite sends batches holding a value of store.MaxValueLen and one byte
// more, so the connection must carry messages of a little over 4 MiB in
// both directions, as one to a plugin started by sdk.Serve does.
func RunClient(t *testing.T, factory func(t *testing.T) store.Store) {
	t.Helper()
	run(t, func(t *testing.T) harness {
		t.Helper()
		s := factory(t)
		return harness{s: s, direct: s}
	})
}

// RunDurable checks that a store keeps its applied index and its records
// across a close and a reopen on the same directory.
//
// open must return a store configured to keep its state under dir (which
// exists and is empty the first time). When the store implements io.Closer
// the suite closes it before it opens dir again, as the host does when it
// stops a plugin; a store holding an exclusive lock on dir must implement
// io.Closer for the reopen to work. The suite serves each opened store over
// a real gRPC connection, as Run does.
func RunDurable(t *testing.T, open func(t *testing.T, dir string) store.Store) {
	t.Helper()
	for _, c := range durableCases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open) })
	}
}

// wire serves impl over a real go-plugin gRPC connection, closed when the
// test ends, and returns the client side.
func wire(t *testing.T, impl store.Store) store.Store {
	t.Helper()
	return store.NewClient(sdk.TestConn(t, impl, store.Register(impl)))
}

// closeStore closes s if it implements io.Closer.
func closeStore(t *testing.T, s store.Store) {
	t.Helper()
	c, ok := s.(io.Closer)
	if !ok {
		return
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

type suiteCase struct {
	name string
	fn   func(t *testing.T, newStore newHarness)
}

var suiteCases = []suiteCase{
	{"Info", testInfo},
	{"EmptyStore", testEmptyStore},
	{"ApplyGetList", testApplyGetList},
	{"OpsInOrder", testOpsInOrder},
	{"ListPrefixAndOrder", testListPrefixAndOrder},
	{"ManyKeys", testManyKeys},
	{"DeleteMissing", testDeleteMissing},
	{"LimitsAccepted", testLimitsAccepted},
	{"InvalidBatchAppliesNothing", testInvalidBatch},
	{"RepeatSafe", testRepeatSafe},
	{"EmptyBatchAdvancesIndex", testEmptyBatch},
	{"SnapshotPointInTime", testSnapshotPointInTime},
	{"SnapshotRestoreRoundTrip", testSnapshotRestoreRoundTrip},
	{"RestoreReplacesEverything", testRestoreReplaces},
	{"FailedRestoreChangesNothing", testFailedRestore},
	{"ConcurrentReadsSeeWholeBatches", testConcurrentReads},
	{"CallerOwnsValues", testCallerOwnsValues},
}

func run(t *testing.T, newStore newHarness) {
	t.Helper()
	for _, c := range suiteCases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newStore) })
	}
}
