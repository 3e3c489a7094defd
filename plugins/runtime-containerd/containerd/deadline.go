package containerd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/containerd/containerd/errdefs"

	"github.com/warrenorch/warren/sdk"
)

// DefaultCallTimeout is call_timeout when the config does not set it.
const DefaultCallTimeout = 30 * time.Second

// maxHealthProbe bounds Health's probe of containerd, whatever
// call_timeout says: the agent's health checks must come back quickly.
const maxHealthProbe = 2 * time.Second

// Every call into containerd runs under a deadline, so that a containerd
// that stops answering (SIGSTOPped, stuck on a disk) makes calls fail
// instead of hang:
//
//   - a runtime call's work with containerd is bounded by call_timeout
//     (call), plus the grace period for StopTask;
//   - undoing a failed start and reaping an exit get a call_timeout of
//     their own, even when the caller's ctx has ended;
//   - image pulls and imports are bounded by progress (stallGuard): they
//     fail once no bytes have moved for call_timeout, however long the
//     transfer takes as a whole; unpacking after the transfer counts as one
//     call per image.
//
// An error that comes from such a deadline is explained by noAnswer and
// still wraps context.DeadlineExceeded, which the agent reads as "the
// runtime did not answer".

// call bounds ctx by call_timeout plus extra.
func (be *backend) call(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, be.s.callTimeout+extra)
}

// cleanup is a context for undoing or recording something after ctx may
// have ended: it keeps ctx's values, not its end, and has a call_timeout.
func (be *backend) cleanup(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), be.s.callTimeout)
}

// noAnswer explains err when ctx's deadline ended the call made under it:
// containerd did not answer in time. The result wraps
// context.DeadlineExceeded (containerd's client reports a deadline as
// "unknown"). Other errors come back unchanged.
func (be *backend) noAnswer(ctx context.Context, err error) error {
	var st *errStalled
	switch {
	case err == nil, errors.As(err, &st): // a stall explains itself
		return err
	case errors.Is(ctx.Err(), context.DeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		// What was being done, without the deadline's own words (which
		// containerd's client follows with "unknown").
		what := err.Error()
		if i := strings.Index(what, ": "+context.DeadlineExceeded.Error()); i >= 0 {
			what = what[:i]
		}
		return fmt.Errorf("%s: containerd at %s did not answer in time (call_timeout %s): %s: %w",
			Name, be.s.address, be.s.callTimeout, what, context.DeadlineExceeded)
	}
	return err
}

// Health asks containerd for its version, within call_timeout but at most
// maxHealthProbe, and says what does not answer.
func (r *Runtime) Health(ctx context.Context) error {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return err
	}
	limit := min(be.s.callTimeout, maxHealthProbe)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if _, err := be.client.Version(ctx); err != nil {
		if errors.Is(classify(err), context.DeadlineExceeded) && ctx.Err() != nil {
			// A fixed text while the fault lasts: it becomes the node's
			// condition and must not change from one probe to the next.
			return fmt.Errorf("%s: containerd at %s did not answer within %s: %w", Name, be.s.address, limit, context.DeadlineExceeded)
		}
		return fmt.Errorf("%s: containerd at %s: %v: %w", Name, be.s.address, errdefs.FromGRPC(err), sdk.ErrFailedPrecondition)
	}
	return nil
}

// stallGuard cancels a transfer that has made no progress for a while.
type stallGuard struct {
	limit  time.Duration
	last   atomic.Int64 // unix nanoseconds of the last progress
	cancel context.CancelCauseFunc
	done   chan struct{}
}

// errStalled is the cause a stallGuard cancels with.
type errStalled struct {
	what    string
	limit   time.Duration
	address string // containerd's
}

func (e *errStalled) Error() string {
	return fmt.Sprintf("%s: %s: no progress for %s (call_timeout): containerd at %s or the source stopped answering", Name, e.what, e.limit, e.address)
}

func (e *errStalled) Unwrap() error { return context.DeadlineExceeded }

// guardStalls returns ctx that ends once mark has not been called for
// call_timeout; stop releases it. what names the transfer in the error.
func (be *backend) guardStalls(ctx context.Context, what string) (context.Context, *stallGuard, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	g := &stallGuard{limit: be.s.callTimeout, cancel: cancel, done: make(chan struct{})}
	g.mark()
	tick := time.NewTicker(max(g.limit/8, 5*time.Millisecond))
	go func() {
		defer tick.Stop()
		for {
			select {
			case <-g.done:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
				if time.Since(time.Unix(0, g.last.Load())) > g.limit {
					cancel(&errStalled{what: what, limit: g.limit, address: be.s.address})
					return
				}
			}
		}
	}()
	return ctx, g, func() {
		close(g.done)
		cancel(context.Canceled)
	}
}

// mark records progress.
func (g *stallGuard) mark() { g.last.Store(time.Now().UnixNano()) }

// stalled returns the stall that ended ctx, a context of guardStalls, or
// nil when it did not stall.
func stalled(ctx context.Context) error {
	var st *errStalled
	if errors.As(context.Cause(ctx), &st) {
		return st
	}
	return nil
}
