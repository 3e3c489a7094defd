package leaderloop

import (
	"context"
	"fmt"
	goruntime "runtime"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/warrenorch/warren/core/events"
)

// Backoff bounds: a failed round is retried after MinBackoff, doubling up
// to MaxBackoff while rounds keep failing.
const (
	MinBackoff = 100 * time.Millisecond
	MaxBackoff = 5 * time.Second
)

// Loop is one leader loop for Run: the watcher that drains its event
// subscription (in its own goroutine) and the round it runs.
type Loop struct {
	// Name prefixes Run's error ("orchestrator").
	Name string
	// Round names a round in logs ("reconcile round").
	Round  string
	Logger hclog.Logger
	// BatchWindow is how long after the end of the last round Run waits
	// before the next one, to gather more events: a wake-up after a
	// quiet spell (no round for BatchWindow) gets its round at once, those
	// that come while rounds follow one another wait out the window.
	BatchWindow time.Duration
	// Resync is the period of the full rounds.
	Resync time.Duration
	// Wake is signalled by the watcher when an event calls for a round.
	Wake <-chan struct{}
	// Ended is closed when the watcher's subscription ends.
	Ended <-chan struct{}
	// Full asks the next round to look at everything, and signals Wake:
	// at start, each Resync and after a failed round.
	Full func()
	// Run runs one round over what the watcher gathered (nothing to do
	// is no error). On an error it is run again after a backoff, with
	// Failed called first.
	Run func(ctx context.Context) error
	// Failed, if set, is told of a failed round before its retry (to
	// put back what the round took); nil means Full.
	Failed func()
}

// Run runs l's rounds until ctx ends (then it returns nil) or the watcher's
// subscription ends (an error wrapping events.ErrClosed): a first round
// over everything, then one after each wake-up and one over everything
// each Resync. A wake-up within BatchWindow of the last round's end waits
// until the window is over, so that under load the events of a window go
// into one round; after a quiet spell the round runs at once, as the
// event that woke the loop is all there is to wait for. Rounds run one at a time; a failed one is
// retried with backoff (MinBackoff doubling to MaxBackoff), and no other
// round runs before its retry.
func Run(ctx context.Context, l Loop) error {
	failed := l.Failed
	if failed == nil {
		failed = l.Full
	}
	resync := time.NewTicker(l.Resync)
	defer resync.Stop()
	var retry <-chan time.Time
	var delay time.Duration
	var lastEnd time.Time // of the last round; zero before the first
	l.Full()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.Ended:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("%s: %w", l.Name, events.ErrClosed)
		case <-resync.C:
			l.Full()
		case <-retry:
			retry = nil
		case <-l.Wake:
			if wait := l.BatchWindow - time.Since(lastEnd); wait > 0 {
				if !sleepCtx(ctx, wait) {
					return nil
				}
			} else {
				// The watcher delivers one applied entry's events one by
				// one: let it hand over the rest of them first.
				goruntime.Gosched()
			}
		}
		if retry != nil {
			continue // a failed round is retried when its backoff ends
		}
		err := l.Run(ctx)
		lastEnd = time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			delay = min(max(2*delay, MinBackoff), MaxBackoff)
			l.Logger.Error(l.Round+" failed; retrying", "error", err, "retry_in", delay)
			failed()
			retry = time.After(delay)
			continue
		}
		delay = 0
	}
}

// sleepCtx waits d or until ctx ends; it reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
