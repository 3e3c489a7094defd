package worker

import (
	"sync"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// reporter holds status reports until a session sends them. Only the latest
// report of a task is kept: states only move forward, so it says all the
// manager needs. Reports survive a lost session and go up on the next.
type reporter struct {
	mu      sync.Mutex
	pending map[string]*apiv1.TaskStatusUpdate
	order   []string
	// ready has a value when reports are pending.
	ready chan struct{}
}

func newReporter() *reporter {
	return &reporter{pending: map[string]*apiv1.TaskStatusUpdate{}, ready: make(chan struct{}, 1)}
}

func (r *reporter) add(u *apiv1.TaskStatusUpdate) {
	r.mu.Lock()
	if _, ok := r.pending[u.GetTaskId()]; !ok {
		r.order = append(r.order, u.GetTaskId())
	}
	r.pending[u.GetTaskId()] = u
	r.mu.Unlock()
	r.signal()
}

func (r *reporter) signal() {
	select {
	case r.ready <- struct{}{}:
	default:
	}
}

// take removes and returns every pending report, oldest task first.
func (r *reporter) take() []*apiv1.TaskStatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*apiv1.TaskStatusUpdate, 0, len(r.order))
	for _, id := range r.order {
		out = append(out, r.pending[id])
	}
	r.pending = map[string]*apiv1.TaskStatusUpdate{}
	r.order = nil
	return out
}

// putBack returns reports that could not be sent, unless a newer report of
// the same task is pending already.
func (r *reporter) putBack(us []*apiv1.TaskStatusUpdate) {
	r.mu.Lock()
	for _, u := range us {
		if _, ok := r.pending[u.GetTaskId()]; ok {
			continue
		}
		r.order = append(r.order, u.GetTaskId())
		r.pending[u.GetTaskId()] = proto.CloneOf(u)
	}
	n := len(r.order)
	r.mu.Unlock()
	if n > 0 {
		r.signal()
	}
}

func (r *reporter) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.order)
}
