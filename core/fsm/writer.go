package fsm

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/warrenorch/warren/sdk/store"
)

// minCommitInterval spaces store commits: what is queued meanwhile merges
// into the next batch. Each store commit is an fsync on the disk the Raft
// log fsyncs to as well; fewer of them leave the disk to Raft, which is
// where a write becomes durable.
const minCommitInterval = 10 * time.Millisecond

// maxPendingOps bounds the store writes queued behind the FSM. When the
// store falls this far behind (or is down), Apply blocks: Raft stops
// applying until the store catches up, instead of memory growing without end.
const maxPendingOps = 64 << 10

// writer moves applied batches into the store off Raft's apply path.
//
// Every entry the FSM sees is already durable in the Raft log (fsynced before
// it was committed), so the store may trail the FSM by a few batches: on
// restart the FSM resumes after the store's own applied index and Raft
// replays the rest from its log. Batches queued while a store write is in
// flight are merged into one store batch carrying the highest index, which
// is what keeps the store's fsyncs from capping the write rate. Snapshot and
// Restore flush the queue first, so Raft never compacts away an entry the
// store does not hold.
type writer struct {
	store  store.Store
	logger hclog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	ops     []store.Op
	index   uint64 // highest index queued
	flushed uint64 // highest index the store holds
	closing chan struct{}
	done    chan struct{}
}

func newWriter(st store.Store, flushed uint64, logger hclog.Logger) *writer {
	w := &writer{store: st, logger: logger, index: flushed, flushed: flushed, closing: make(chan struct{}), done: make(chan struct{})}
	w.cond = sync.NewCond(&w.mu)
	go w.run()
	return w
}

// enqueue queues ops to be stored as of index, blocking while the queue is full.
func (w *writer) enqueue(ops []store.Op, index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(w.ops) >= maxPendingOps && !w.isClosing() {
		w.cond.Wait()
	}
	w.ops = append(w.ops, ops...)
	w.index = index
	w.cond.Broadcast()
}

// flush waits until everything queued so far is in the store, or the writer
// is closing.
func (w *writer) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	target := w.index
	for w.flushed < target && !w.isClosing() {
		w.cond.Wait()
	}
}

// reset drops what is queued and sets the stored index (after a Restore
// replaced the store's content). Call it only after flush.
func (w *writer) reset(index uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ops = nil
	w.index, w.flushed = index, index
}

func (w *writer) isClosing() bool {
	select {
	case <-w.closing:
		return true
	default:
		return false
	}
}

// close stops the writer; what is still queued is left to the Raft log.
func (w *writer) close() {
	w.mu.Lock()
	select {
	case <-w.closing:
	default:
		close(w.closing)
	}
	w.cond.Broadcast()
	w.mu.Unlock()
	<-w.done
}

func (w *writer) run() {
	defer close(w.done)
	var last time.Time
	for {
		if wait := minCommitInterval - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-w.closing:
			}
		}
		last = time.Now()
		w.mu.Lock()
		for w.index == w.flushed && !w.isClosing() {
			w.cond.Wait()
		}
		if w.index == w.flushed {
			w.mu.Unlock()
			return
		}
		b := store.Batch{Index: w.index, Ops: w.ops}
		w.ops = nil
		w.cond.Broadcast() // room in the queue again
		w.mu.Unlock()

		ok := w.commit(b)

		w.mu.Lock()
		if ok {
			w.flushed = b.Index
		}
		w.cond.Broadcast()
		w.mu.Unlock()
		if !ok {
			return
		}
	}
}

// commit writes one batch, retrying while the plugin restarts. It gives up
// only when the writer closes; the batch is then replayed from the Raft log
// on the next start.
func (w *writer) commit(b store.Batch) bool {
	backoff := 10 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := w.store.Apply(ctx, b)
		cancel()
		if err == nil {
			return true
		}
		w.logger.Error("store apply failed; retrying", "index", b.Index, "ops", len(b.Ops), "attempt", attempt, "error", err)
		select {
		case <-w.closing:
			w.logger.Warn("stopping with unstored entries; they are replayed from the Raft log on restart", "index", b.Index)
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}
