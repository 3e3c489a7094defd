package agent

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/warrenorch/warren/core/raftnode"
)

// runWhileLeader runs loops while this manager is the Raft leader: they start
// when it gains leadership and their context ends when it loses it. It
// returns once ctx ends and every loop has returned.
//
// onReady, if set, is told when this leader's state is current (after the
// barrier) and when it no longer leads.
func runWhileLeader(ctx context.Context, node *raftnode.Node, logger hclog.Logger, onReady func(bool), loops ...func(context.Context)) {
	var (
		cancel context.CancelFunc
		wg     sync.WaitGroup
	)
	start := func() {
		if cancel != nil {
			return
		}
		var loopCtx context.Context
		loopCtx, cancel = context.WithCancel(ctx)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Let the state view catch up with everything committed before
			// the loops act on it.
			for {
				err := node.Raft.Barrier(30 * time.Second).Error()
				if err == nil {
					break
				}
				logger.Warn("leadership gained but the Raft barrier failed; retrying", "error", err)
				select {
				case <-loopCtx.Done():
					return
				case <-time.After(time.Second):
				}
			}
			if onReady != nil {
				onReady(true)
			}
			logger.Info("leadership gained: starting control loops")
			for _, loop := range loops {
				wg.Add(1)
				go func() {
					defer wg.Done()
					loop(loopCtx)
				}()
			}
		}()
	}
	stop := func() {
		if cancel == nil {
			return
		}
		if onReady != nil {
			onReady(false)
		}
		cancel()
		wg.Wait()
		cancel = nil
	}
	if node.IsLeader() {
		start()
	}
	for {
		select {
		case <-ctx.Done():
			stop()
			return
		case leader := <-node.LeaderCh():
			if leader {
				start()
			} else {
				logger.Warn("leadership lost: stopping control loops")
				stop()
			}
		}
	}
}
