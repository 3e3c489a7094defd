package cluster

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Health follows the leader's heartbeats to its followers through Raft
// observations: a follower is failing from its first failed heartbeat
// until one succeeds again. Only the leader observes these; on a follower
// every peer looks healthy.
type Health struct {
	mu      sync.Mutex
	failing map[string]time.Time // peer ID → last contact
}

// WatchHealth registers a Health on r. Stop it with the returned function.
func WatchHealth(r *raft.Raft) (*Health, func()) {
	h := &Health{failing: map[string]time.Time{}}
	ch := make(chan raft.Observation, 64)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.FailedHeartbeatObservation, raft.ResumedHeartbeatObservation, raft.LeaderObservation:
			return true
		}
		return false
	})
	r.RegisterObserver(obs)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case o := <-ch:
				h.observe(o)
			}
		}
	}()
	return h, func() {
		r.DeregisterObserver(obs)
		close(done)
	}
}

func (h *Health) observe(o raft.Observation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch d := o.Data.(type) {
	case raft.FailedHeartbeatObservation:
		h.failing[string(d.PeerID)] = d.LastContact
	case raft.ResumedHeartbeatObservation:
		delete(h.failing, string(d.PeerID))
	case raft.LeaderObservation:
		// A new term: what the old leader saw no longer holds.
		clear(h.failing)
	}
}

// Failing reports whether the leader's heartbeats to peer are failing.
func (h *Health) Failing(peer string) bool {
	failing, _ := h.Peer(peer)
	return failing
}

// Peer returns whether heartbeats to peer fail and when it was last heard.
func (h *Health) Peer(peer string) (failing bool, lastContact time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	last, failing := h.failing[peer]
	return failing, last
}
