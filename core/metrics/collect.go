package metrics

import (
	"strings"
	"sync"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/pluginhost"
	"github.com/warrenorch/warren/core/schedloop"
)

// ManagerSources are where a manager's figures are read at scrape time.
// A nil field is not reported.
type ManagerSources struct {
	// Raft is the manager's Raft node: indexes, term, state, leader changes.
	Raft *raft.Raft
	// Tasks returns every task in the manager's state.
	Tasks func() []*apiv1.Task
	// Sessions returns the open worker sessions and the heartbeats received
	// by the dispatcher (dispatcher.Dispatcher.Stats).
	Sessions func() (sessions int, heartbeats uint64)
}

// SetManager reports a manager's figures from now on, until the returned
// function is called (the manager's parts stop: the node changes role or
// the agent stops). One manager at a time: a later call replaces it.
func (m *Metrics) SetManager(src ManagerSources) (clear func()) {
	if m == nil {
		return func() {}
	}
	var stopObserve func()
	if src.Raft != nil {
		stopObserve = m.observeLeader(src.Raft)
	}
	m.pull.mu.Lock()
	m.pull.mgr = &src
	m.pull.mu.Unlock()
	return func() {
		if stopObserve != nil {
			stopObserve()
		}
		m.pull.mu.Lock()
		if m.pull.mgr == &src {
			m.pull.mgr = nil
		}
		m.pull.mu.Unlock()
	}
}

// SetPlugins reports the plugin host's plugins (pluginhost.Host.List).
func (m *Metrics) SetPlugins(list func() []pluginhost.Status) {
	if m == nil {
		return
	}
	m.pull.mu.Lock()
	m.pull.plugins = list
	m.pull.mu.Unlock()
}

// observeLeader counts leader changes seen by r until the returned function
// is called.
func (m *Metrics) observeLeader(r *raft.Raft) (stop func()) {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	r.RegisterObserver(obs)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		_, last := r.LeaderWithID()
		for {
			select {
			case <-done:
				return
			case o := <-ch:
				lo := o.Data.(raft.LeaderObservation)
				if lo.LeaderID != "" && lo.LeaderID != last {
					m.leaderChanges.Inc()
				}
				if lo.LeaderID != "" {
					last = lo.LeaderID
				}
			}
		}
	}()
	return func() {
		r.DeregisterObserver(obs)
		close(done)
		<-finished
	}
}

// pullCollector reads the sources at scrape time.
type pullCollector struct {
	mu      sync.Mutex
	mgr     *ManagerSources
	plugins func() []pluginhost.Status

	commitIndex, appliedIndex, lastIndex, term, raftState *prometheus.Desc
	tasks, pending                                        *prometheus.Desc
	sessions, heartbeats                                  *prometheus.Desc
	pluginRestarts, pluginState                           *prometheus.Desc
}

func newPullCollector() *pullCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_"+name, help, labels, nil)
	}
	return &pullCollector{
		commitIndex:    d("raft_commit_index", "Index of the last Raft log entry this manager knows is committed."),
		appliedIndex:   d("raft_applied_index", "Index of the last Raft log entry applied to this manager's state."),
		lastIndex:      d("raft_last_index", "Index of the last entry in this manager's Raft log (or snapshot)."),
		term:           d("raft_term", "This manager's current Raft term."),
		raftState:      d("raft_state", "1 for this manager's Raft state (Follower, Candidate, Leader, Shutdown), 0 for the others.", "state"),
		tasks:          d("tasks", "Tasks in the cluster state by their current state (new, pending, ..., orphaned).", "state"),
		pending:        d("scheduler_pending_tasks", "Tasks waiting for the scheduler to place them (desired running, on no node, NEW or PENDING)."),
		sessions:       d("worker_sessions", "Workers with an open session to this manager's dispatcher (the leader's)."),
		heartbeats:     d("worker_heartbeats_total", "Heartbeats received from workers by this manager's dispatcher since it last started."),
		pluginRestarts: d("plugin_restarts_total", "Plugin processes started after the first one, by plugin and kind.", "plugin", "kind"),
		pluginState:    d("plugin_state", "1 for the plugin's current state (starting, running, restarting, failed, stopped), by plugin and kind.", "plugin", "kind", "state"),
	}
}

// Describe implements prometheus.Collector.
func (c *pullCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.commitIndex, c.appliedIndex, c.lastIndex, c.term, c.raftState,
		c.tasks, c.pending, c.sessions, c.heartbeats, c.pluginRestarts, c.pluginState} {
		ch <- d
	}
}

// raftStates are the values of the state label of warren_raft_state.
var raftStates = []raft.RaftState{raft.Follower, raft.Candidate, raft.Leader, raft.Shutdown}

// pluginStates are the values of the state label of warren_plugin_state.
var pluginStates = []pluginhost.State{pluginhost.StateStarting, pluginhost.StateRunning,
	pluginhost.StateRestarting, pluginhost.StateFailed, pluginhost.StateStopped}

// TaskStateLabel is the state label of warren_tasks for s: "running" for
// TASK_STATE_RUNNING.
func TaskStateLabel(s apiv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

// Collect implements prometheus.Collector.
func (c *pullCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	mgr, plugins := c.mgr, c.plugins
	c.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	if mgr != nil && mgr.Raft != nil {
		r := mgr.Raft
		gauge(c.commitIndex, float64(r.CommitIndex()))
		gauge(c.appliedIndex, float64(r.AppliedIndex()))
		gauge(c.lastIndex, float64(r.LastIndex()))
		gauge(c.term, float64(r.CurrentTerm()))
		cur := r.State()
		for _, s := range raftStates {
			v := 0.0
			if s == cur {
				v = 1
			}
			gauge(c.raftState, v, s.String())
		}
	}
	if mgr != nil && mgr.Tasks != nil {
		byState := make(map[apiv1.TaskState]int)
		pending := 0
		for _, t := range mgr.Tasks() {
			byState[t.GetState()]++
			if schedloop.NeedsPlacement(t) {
				pending++
			}
		}
		for v := range apiv1.TaskState_name {
			s := apiv1.TaskState(v)
			if s == apiv1.TaskState_TASK_STATE_UNSPECIFIED {
				continue
			}
			gauge(c.tasks, float64(byState[s]), TaskStateLabel(s))
		}
		gauge(c.pending, float64(pending))
	}
	if mgr != nil && mgr.Sessions != nil {
		n, beats := mgr.Sessions()
		gauge(c.sessions, float64(n))
		counter(c.heartbeats, float64(beats))
	}
	if plugins != nil {
		for _, p := range plugins() {
			counter(c.pluginRestarts, float64(p.Restarts), p.Name, string(p.Kind))
			for _, s := range pluginStates {
				v := 0.0
				if s == p.State {
					v = 1
				}
				gauge(c.pluginState, v, p.Name, string(p.Kind), string(s))
			}
		}
	}
}
