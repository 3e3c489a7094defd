package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/sdk"
)

// Defaults for the runtime's deadlines and health checks.
const (
	// DefaultRuntimeTimeout bounds one runtime call (Options.RuntimeTimeout).
	DefaultRuntimeTimeout = 30 * time.Second
	// DefaultImageTimeout bounds one EnsureImage: pulls are long, and the
	// runtime bounds them by their progress itself.
	DefaultImageTimeout = 30 * time.Minute
	// DefaultHealthInterval is the time between health checks of the
	// runtime when there is no HeartbeatPeriod either.
	DefaultHealthInterval = 2 * time.Second
	// maxHealthTimeout bounds one health check, whatever RuntimeTimeout is.
	maxHealthTimeout = 5 * time.Second
)

// runtimeHealth is what the worker knows about its runtime's health: the
// node condition it reports while the runtime does not answer.
type runtimeHealth struct {
	mu   sync.Mutex
	cond *apiv1.NodeCondition // nil while the runtime answers

	changed chan struct{} // the condition changed: send a heartbeat now
	probe   chan struct{} // a call ran out of time: check now
}

func newRuntimeHealth() *runtimeHealth {
	return &runtimeHealth{changed: make(chan struct{}, 1), probe: make(chan struct{}, 1)}
}

// poke signals ch without blocking.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// set makes msg the runtime condition ("": none) and reports whether that
// changed anything. The condition's since stays while it lasts.
func (h *runtimeHealth) set(msg string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case msg == "" && h.cond == nil, h.cond != nil && h.cond.GetMessage() == msg:
		return false
	case msg == "":
		h.cond = nil
	case h.cond == nil:
		h.cond = &apiv1.NodeCondition{Type: dispatcher.ConditionRuntime, Message: msg, Since: timestamppb.Now()}
	default:
		h.cond = &apiv1.NodeCondition{Type: dispatcher.ConditionRuntime, Message: msg, Since: h.cond.GetSince()}
	}
	poke(h.changed)
	return true
}

// conditions returns the node conditions to report now.
func (h *runtimeHealth) conditions() []*apiv1.NodeCondition {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cond == nil {
		return nil
	}
	return []*apiv1.NodeCondition{proto.CloneOf(h.cond)}
}

// Conditions returns the node conditions the worker reports now: a
// "runtime" condition while its runtime does not answer, a "ports"
// condition while it cannot publish a port.
func (w *Worker) Conditions() []*apiv1.NodeCondition {
	return append(w.health.conditions(), w.net.conditions()...)
}

// watchHealth checks the runtime's health every HealthInterval, and at once
// when a runtime call ran out of time, until ctx ends.
func (w *Worker) watchHealth(ctx context.Context) {
	defer w.wg.Done()
	t := time.NewTicker(w.opts.HealthInterval)
	defer t.Stop()
	for {
		w.checkHealth(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.health.probe:
		}
	}
}

// checkHealth asks the runtime whether it answers and records the result
// as the node's runtime condition. A runtime without Health (an older
// plugin) counts as healthy.
func (w *Worker) checkHealth(ctx context.Context) {
	limit := min(w.opts.RuntimeTimeout, maxHealthTimeout)
	hctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	err := w.rt.Health(hctx)
	if ctx.Err() != nil {
		return
	}
	msg := ""
	switch {
	case err == nil, errors.Is(err, sdk.ErrUnsupported):
	case errors.Is(hctx.Err(), context.DeadlineExceeded):
		msg = fmt.Sprintf("runtime %s did not answer a health check within %s", w.rtName, limit)
	default:
		msg = fmt.Sprintf("runtime %s is unhealthy: %v", w.rtName, err)
	}
	if !w.health.set(msg) {
		return
	}
	if msg != "" {
		w.log.Error("the runtime does not answer; reporting a node condition", "condition", msg)
	} else {
		w.log.Info("the runtime answers again; its node condition is cleared")
	}
}

// call bounds one runtime call by RuntimeTimeout plus extra (a stop's
// grace period).
func (w *Worker) call(ctx context.Context, extra time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, w.opts.RuntimeTimeout+extra)
}

// noAnswer reports whether err says a runtime call ran out of time (the
// worker's deadline or the runtime's own) while the worker's ctx is live.
// It then has the runtime's health checked at once.
func (w *Worker) noAnswer(ctx context.Context, err error) bool {
	if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	poke(w.health.probe)
	return true
}

// noAnswerError is the task error for a runtime call that ran out of time:
// callCtx is the call's context (not cancelled yet), limit its bound.
func (w *Worker) noAnswerError(call string, callCtx context.Context, limit time.Duration, err error) string {
	if errors.Is(callCtx.Err(), context.DeadlineExceeded) {
		return fmt.Sprintf("runtime %s did not answer %s within %s", w.rtName, call, limit)
	}
	return fmt.Sprintf("runtime %s did not answer %s: %v", w.rtName, call, err)
}
