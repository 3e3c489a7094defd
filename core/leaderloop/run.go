package leaderloop

import (
	"context"
	"fmt"
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
	// BatchWindow is how long Run waits after a wake-up before a round,
	// to gather more events.
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
// over everything, then one BatchWindow after each wake-up and one over
// everything each Resync. Rounds run one at a time; a failed one is
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
			if !sleepCtx(ctx, l.BatchWindow) {
				return nil
			}
		}
		if retry != nil {
			continue // a failed round is retried when its backoff ends
		}
		if err := l.Run(ctx); err != nil {
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
