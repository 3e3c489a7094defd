package dispatcher

import (
	"context"
	"testing"
	"time"

	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/state"
)

// TestAwaitRunning: a session that reaches a leader before its Run has
// started is held until Run starts (not refused, which would send every
// worker of a fresh leader elsewhere and back), and let go when its own
// context ends first.
func TestAwaitRunning(t *testing.T) {
	tests := []struct {
		name string
		// runAfter starts Run that long after the session arrives; < 0:
		// never.
		runAfter time.Duration
		// sessionFor is how long the session waits before giving up.
		sessionFor time.Duration
		wantRun    bool
	}{
		{"run already started", 0, time.Minute, true},
		{"run starts while the session waits", 100 * time.Millisecond, time.Minute, true},
		{"the session ends first", -1, 100 * time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bus := events.NewBroker()
			defer bus.Close()
			d := New(Deps{State: state.New(), Events: bus})
			runCtx, stopRun := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			startRun := func() { go func() { ran <- d.Run(runCtx) }() }
			defer func() {
				stopRun()
				if tt.runAfter >= 0 {
					if err := <-ran; err != nil {
						t.Errorf("Run: %v", err)
					}
				}
			}()
			if tt.runAfter == 0 {
				startRun()
				<-d.readyChan()
			} else if tt.runAfter > 0 {
				timer := time.AfterFunc(tt.runAfter, startRun)
				defer timer.Stop()
			}
			ctx, cancel := context.WithTimeout(context.Background(), tt.sessionFor)
			defer cancel()
			got, fan := d.awaitRunning(ctx)
			if (got != nil) != tt.wantRun || (got != nil) != (fan != nil) {
				t.Fatalf("awaitRunning = %v, %v; want the running context: %t", got, fan, tt.wantRun)
			}
			if got != nil && got != runCtx {
				t.Fatalf("awaitRunning returned a context that is not Run's")
			}
		})
	}
}

// readyChan is the channel closed while Run runs.
func (d *Dispatcher) readyChan() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.runReady
}
