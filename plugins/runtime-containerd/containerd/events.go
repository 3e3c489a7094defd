package containerd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	cgroup1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	cgroup2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/events"
	"github.com/containerd/typeurl/v2"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

const (
	// eventBuffer is how many events a subscriber may fall behind before
	// its channel is closed.
	eventBuffer = 256
	// subscribeWait bounds how long TaskEvents waits for containerd's event
	// stream to be (re)established.
	subscribeWait = 10 * time.Second
	// syncTopic carries the marker event that proves a subscription to
	// containerd is in place.
	syncTopic = "/warren/runtime-sync"
	// syncEvery and syncWait pace and bound waiting for that marker.
	syncEvery = 100 * time.Millisecond
	syncWait  = 5 * time.Second
	// reconnectMin and reconnectMax bound the pause between attempts to
	// resubscribe after the stream broke.
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// TaskEvents subscribes to task events. The channel closes when ctx ends,
// when the subscriber falls eventBuffer events behind, and when the event
// stream from containerd breaks (containerd restarted): events may have
// been missed then, and the subscriber resyncs with ListTasks.
func (r *Runtime) TaskEvents(ctx context.Context) (<-chan runtime.TaskEvent, error) {
	if _, _, err := r.backend(ctx); err != nil {
		return nil, err
	}
	s, err := r.hub.subscribe(ctx, subscribeWait)
	if err != nil {
		return nil, err
	}
	go func() {
		select {
		case <-ctx.Done():
			r.hub.unsubscribe(s)
		case <-s.done:
		}
	}()
	return s.ch, nil
}

// hub fans task events out to subscribers. It is live while the plugin's
// subscription to containerd is in place; subscribing waits for that, so
// that no event after TaskEvents returns can be missed.
type hub struct {
	mu     sync.Mutex
	live   bool
	liveCh chan struct{} // closed when live becomes true
	subs   map[*subscriber]struct{}
}

type subscriber struct {
	ch   chan runtime.TaskEvent
	done chan struct{} // closed with ch
}

// waitCh returns the channel closed when the hub goes live. h.mu is held.
func (h *hub) waitCh() chan struct{} {
	if h.liveCh == nil {
		h.liveCh = make(chan struct{})
	}
	return h.liveCh
}

func (h *hub) setLive() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.live {
		h.live = true
		close(h.waitCh())
	}
}

// setDown marks the stream broken and closes every subscriber.
func (h *hub) setDown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.live {
		h.live = false
		h.liveCh = nil
	}
	for s := range h.subs {
		h.dropLocked(s)
	}
}

func (h *hub) isLive() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.live
}

func (h *hub) subscribe(ctx context.Context, wait time.Duration) (*subscriber, error) {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		h.mu.Lock()
		if h.live {
			s := &subscriber{ch: make(chan runtime.TaskEvent, eventBuffer), done: make(chan struct{})}
			if h.subs == nil {
				h.subs = make(map[*subscriber]struct{})
			}
			h.subs[s] = struct{}{}
			h.mu.Unlock()
			return s, nil
		}
		ch := h.waitCh()
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
			return nil, fmt.Errorf("%s: containerd's event stream is not available: %w", Name, sdk.ErrInternal)
		}
	}
}

func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(s)
}

func (h *hub) dropLocked(s *subscriber) {
	if _, ok := h.subs[s]; ok {
		delete(h.subs, s)
		close(s.ch)
		close(s.done)
	}
}

// publish hands ev to every subscriber without blocking; one whose buffer
// is full is dropped (its channel closes) rather than missing ev silently.
func (h *hub) publish(ev runtime.TaskEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		select {
		case s.ch <- ev:
		default:
			h.dropLocked(s)
		}
	}
}

// monitor keeps a subscription to containerd's task events until be ends,
// resubscribing (and restarting a managed containerd) when it breaks.
func (r *Runtime) monitor(be *backend) {
	ctx := be.ctx
	delay := reconnectMin
	for {
		synced, err := r.watch(ctx, be)
		r.hub.setDown()
		if ctx.Err() != nil {
			return
		}
		if synced {
			delay = reconnectMin
		}
		r.log.Warn("containerd event stream ended; resubscribing", "error", err, "in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, reconnectMax)
		if m := be.s.managed; m != nil && !answers(m.socket) {
			if err := ensureManaged(ctx, be.s.binary, *m, r.log); err != nil {
				r.log.Error("restarting the managed containerd", "error", err)
			}
		}
	}
}

// watch subscribes once and handles events until the stream breaks. It
// reports whether the subscription was confirmed.
func (r *Runtime) watch(ctx context.Context, be *backend) (synced bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var filters []string
	for _, topic := range []string{"/tasks/start", "/tasks/exit", "/tasks/oom", "/containers/delete", syncTopic} {
		filters = append(filters, fmt.Sprintf("namespace==%q,topic==%q", be.s.namespace, topic))
	}
	evs, errs := be.client.Subscribe(ctx, filters...)

	// containerd gives no sign that a subscription is in place, so publish
	// a marker until it comes back through it.
	token := randomHex(8)
	publishMarker := func() {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_ = be.client.EventService().Publish(pctx, syncTopic, &apievents.ContainerUpdate{ID: "sync-" + token})
	}
	publishMarker()
	tick := time.NewTicker(syncEvery)
	defer tick.Stop()
	deadline := time.NewTimer(syncWait)
	defer deadline.Stop()
	goLive := func() {
		synced = true
		tick.Stop()
		r.hub.setLive()
		go r.reapExited(be)
	}

	st := &monitorState{last: map[string]runtime.EventType{}, ours: map[string]bool{}}
	for {
		select {
		case env, ok := <-evs:
			if !ok {
				return synced, errors.New("event channel closed")
			}
			if env.Topic == syncTopic {
				if e, err := typeurl.UnmarshalAny(env.Event); err == nil && !synced {
					if u, ok := e.(*apievents.ContainerUpdate); ok && u.ID == "sync-"+token {
						goLive()
					}
				}
				continue
			}
			r.handle(ctx, be, st, env)
		case err, ok := <-errs:
			if !ok || err == nil {
				err = errors.New("event stream closed")
			}
			return synced, err
		case <-tick.C:
			if !synced {
				publishMarker()
			}
		case <-deadline.C:
			if !synced {
				r.log.Warn("containerd did not echo the subscription marker; assuming the subscription is in place")
				goLive()
			}
		case <-ctx.Done():
			return synced, ctx.Err()
		}
	}
}

// monitorState is what the monitor remembers per task; only its goroutine
// touches it.
type monitorState struct {
	last map[string]runtime.EventType // the last event sent per task
	ours map[string]bool              // whether a container is a Warren task
}

// handle turns one containerd event into task events, keeping each task's
// events in order: started, then OOM, then exited.
func (r *Runtime) handle(ctx context.Context, be *backend, st *monitorState, env *events.Envelope) {
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	v, err := typeurl.UnmarshalAny(env.Event)
	if err != nil {
		r.log.Warn("decoding a containerd event", "topic", env.Topic, "error", err)
		return
	}
	when := env.Timestamp
	switch e := v.(type) {
	case *apievents.TaskStart:
		if !r.ours(ctx, be, st, e.ContainerID) {
			return
		}
		st.last[e.ContainerID] = runtime.EventStarted
		r.hub.publish(runtime.TaskEvent{TaskID: e.ContainerID, Type: runtime.EventStarted, Time: when,
			Message: fmt.Sprintf("pid %d", e.Pid)})
	case *apievents.TaskOOM:
		id := e.ContainerID
		if !r.ours(ctx, be, st, id) || st.last[id] == runtime.EventExited || st.last[id] == runtime.EventOOM {
			// After the exit: reported with it already (see below).
			return
		}
		st.last[id] = runtime.EventOOM
		r.hub.publish(runtime.TaskEvent{TaskID: id, Type: runtime.EventOOM, Time: when, Message: "the OOM killer killed a process of the task"})
	case *apievents.TaskExit:
		id := e.ContainerID
		if (e.ID != "" && e.ID != id) || !r.ours(ctx, be, st, id) {
			return // an exec'd process, or not a Warren task
		}
		// The shim reports OOM and exit independently; when the exit comes
		// first, ask the cgroup so that the OOM event still precedes it.
		if e.ExitStatus == 137 && st.last[id] != runtime.EventOOM && be.oomKilled(ctx, id) {
			r.hub.publish(runtime.TaskEvent{TaskID: id, Type: runtime.EventOOM, Time: when, Message: "the OOM killer killed a process of the task"})
		}
		st.last[id] = runtime.EventExited
		at := when
		if e.ExitedAt != nil {
			at = e.ExitedAt.AsTime()
		}
		r.hub.publish(runtime.TaskEvent{TaskID: id, Type: runtime.EventExited, ExitCode: int32(e.ExitStatus), Time: at,
			Message: fmt.Sprintf("exit status %d", e.ExitStatus)})
		go r.reap(be, id)
	case *apievents.ContainerDelete:
		delete(st.last, e.ID)
		delete(st.ours, e.ID)
	}
}

// ours reports whether container id is a Warren task. A container that is
// gone already (destroyed right after its exit) counts as one: the
// namespace is the plugin's.
func (r *Runtime) ours(ctx context.Context, be *backend, st *monitorState, id string) bool {
	if v, ok := st.ours[id]; ok {
		return v
	}
	c, err := be.client.ContainerService().Get(ctx, id)
	if err != nil {
		return true
	}
	v := c.Labels[LabelTaskID] == id
	st.ours[id] = v
	return v
}

// reap records the exit of task id and deletes its process (see
// reapLocked), unless someone did already.
func (r *Runtime) reap(be *backend, id string) {
	ctx, cancel := be.call(be.ctx, 0)
	defer cancel()
	if _, err := r.inspect(ctx, be, id); err != nil && !errors.Is(err, sdk.ErrNotFound) && be.ctx.Err() == nil {
		r.log.Warn("recording a task's exit", "task", id, "error", err)
	}
}

// reapExited reaps every task that exited while nobody watched.
func (r *Runtime) reapExited(be *backend) {
	ctx, cancel := be.call(be.ctx, 0)
	defer cancel()
	if _, err := r.ListTasks(ctx); err != nil && be.ctx.Err() == nil {
		r.log.Warn("reaping exited tasks", "error", err)
	}
}

// oomKilled asks the task's cgroup whether the OOM killer killed one of
// its processes.
func (be *backend) oomKilled(ctx context.Context, id string) bool {
	m, err := be.cgroupMetrics(ctx, id)
	if err != nil {
		return false // no cgroup to ask (the task is gone): no OOM seen
	}
	switch s := m.(type) {
	case *cgroup1stats.Metrics:
		return s.GetMemoryOomControl().GetOomKill() > 0
	case *cgroup2stats.Metrics:
		return s.GetMemoryEvents().GetOomKill() > 0
	}
	return false
}

// cgroupMetrics returns the task's cgroup metrics: a *cgroup1stats.Metrics
// or a *cgroup2stats.Metrics.
func (be *backend) cgroupMetrics(ctx context.Context, id string) (any, error) {
	resp, err := be.client.TaskService().Metrics(ctx, &tasks.MetricsRequest{Filters: []string{"id==" + id}})
	if err != nil {
		return nil, fmt.Errorf("task %q: containerd metrics: %w", id, err)
	}
	for _, m := range resp.GetMetrics() {
		if m.GetData() == nil {
			continue
		}
		v, err := typeurl.UnmarshalAny(m.GetData())
		if err != nil {
			return nil, fmt.Errorf("task %q: decoding containerd metrics: %w", id, err)
		}
		switch v.(type) {
		case *cgroup1stats.Metrics, *cgroup2stats.Metrics:
			return v, nil
		}
	}
	return nil, fmt.Errorf("task %q: containerd reported no cgroup metrics: %w", id, sdk.ErrUnsupported)
}
