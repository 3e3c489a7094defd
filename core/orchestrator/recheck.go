package orchestrator

import (
	"sync"
	"time"
)

// rechecker turns Recheck actions into wake-ups: each asked-for service is
// queued for a round again at its time, one timer per service (the
// earliest asked for).
type rechecker struct {
	w     *watcher
	clock func() time.Time

	mu  sync.Mutex
	due map[string]time.Time
}

func newRechecker(w *watcher, clock func() time.Time) *rechecker {
	return &rechecker{w: w, clock: clock, due: map[string]time.Time{}}
}

// ask schedules the Recheck actions of actions.
func (rc *rechecker) ask(actions []Action) {
	for _, a := range actions {
		if a, ok := a.(Recheck); ok {
			rc.at(a.ServiceID, a.At)
		}
	}
}

func (rc *rechecker) at(id string, at time.Time) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if d, ok := rc.due[id]; ok && !d.After(at) {
		return // an earlier wake-up is set: its round asks again if need be
	}
	rc.due[id] = at
	time.AfterFunc(at.Sub(rc.clock()), func() {
		rc.mu.Lock()
		if rc.due[id].Equal(at) {
			delete(rc.due, id)
		}
		rc.mu.Unlock()
		rc.w.requeue(map[string]struct{}{id: {}}, nil, false)
		rc.w.signal()
	})
}
