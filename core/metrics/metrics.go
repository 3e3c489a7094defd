// Package metrics owns the agent's Prometheus registry and serves it over
// HTTP at /metrics (docs/metrics.md lists every metric).
//
// Most figures are read at scrape time from the state that already exists
// (tasks by state, Raft indexes, plugin statuses, worker sessions): the
// Sources a manager or the plugin host sets. The few that need a moment
// observed (latencies, restarts) are recorded through hooks the agent hands
// to the subsystems: OnRaftApply, OnSchedule, OnPluginCall, the API server
// interceptors and WatchTasks.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/status"
)

// namespace prefixes every Warren metric.
const namespace = "warren"

// latencyBuckets, in seconds, span a fast local call (100µs) to a slow
// Raft commit or plugin call (10s).
var latencyBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// delayBuckets, in seconds, span a warm container start (10ms) to an image
// pull over a slow link (10 minutes); Swarm's scheduling delay histogram.
var delayBuckets = []float64{0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 300, 600}

// Metrics is one agent's registry and the metrics it records. Its methods
// are safe for concurrent use; a nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry

	raftApply       *prometheus.HistogramVec
	leaderChanges   prometheus.Counter
	placement       *prometheus.HistogramVec
	schedulingDelay prometheus.Histogram
	taskRestarts    prometheus.Counter
	pluginCalls     *prometheus.CounterVec
	pluginLatency   *prometheus.HistogramVec
	apiRequests     *prometheus.CounterVec
	apiLatency      *prometheus.HistogramVec

	pull *pullCollector
}

// New returns a registry holding the Go runtime and process collectors,
// warren_build_info and every Warren metric.
func New(version string) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		raftApply: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "raft", Name: "apply_duration_seconds",
			Help:    "Time from proposing a command on the leader to its being applied, by result (ok or error).",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "raft", Name: "leader_changes_total",
			Help: "Times this manager saw the Raft leader change to a new leader.",
		}),
		placement: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "scheduler", Name: "placement_duration_seconds",
			Help:    "Time of one call to the scheduler plugin for a batch of tasks, by result (ok or error).",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		schedulingDelay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "task", Name: "scheduling_delay_seconds",
			Help:    "Time from a task's creation (NEW) to its first report as RUNNING, observed on the leader.",
			Buckets: delayBuckets,
		}),
		taskRestarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "task", Name: "restarts_total",
			Help: "Replacement tasks the leader's orchestrator committed for tasks that ended, by the services' restart policies.",
		}),
		pluginCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "plugin", Name: "calls_total",
			Help: "Calls from the core to a plugin, by plugin, gRPC method and gRPC status code.",
		}, []string{"plugin", "method", "code"}),
		pluginLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "plugin", Name: "call_duration_seconds",
			Help:    "Time of a call from the core to a plugin (for a stream: opening it), by plugin and gRPC method.",
			Buckets: latencyBuckets,
		}, []string{"plugin", "method"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "api", Name: "requests_total",
			Help: "gRPC requests served by this agent (API socket and cluster port), by method and status code.",
		}, []string{"method", "code"}),
		apiLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "api", Name: "request_duration_seconds",
			Help:    "Time to serve a gRPC request (for a stream: its whole life), by method.",
			Buckets: latencyBuckets,
		}, []string{"method"}),
		pull: newPullCollector(),
	}
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help:        "Always 1; the version label is the agent's version.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	buildInfo.Set(1)
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.raftApply, m.leaderChanges, m.placement, m.schedulingDelay, m.taskRestarts,
		m.pluginCalls, m.pluginLatency, m.apiRequests, m.apiLatency,
		m.pull,
	)
	return m
}

// Registry returns the registry, for tests and extra collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// result is the result label of an observation.
func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// OnRaftApply records one Raft apply (raftnode.Config.OnApply).
func (m *Metrics) OnRaftApply(took time.Duration, err error) {
	if m == nil {
		return
	}
	m.raftApply.WithLabelValues(result(err)).Observe(took.Seconds())
}

// OnSchedule records one call to the scheduler plugin
// (schedloop.Deps.OnSchedule).
func (m *Metrics) OnSchedule(took time.Duration, _ int, err error) {
	if m == nil {
		return
	}
	m.placement.WithLabelValues(result(err)).Observe(took.Seconds())
}

// OnPluginCall records one call to a plugin (pluginhost.Options.OnCall).
func (m *Metrics) OnPluginCall(plugin, method string, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.pluginCalls.WithLabelValues(plugin, method, status.Code(err).String()).Inc()
	m.pluginLatency.WithLabelValues(plugin, method).Observe(took.Seconds())
}

// Server is the running /metrics HTTP server.
type Server struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
	err  error // written before done is closed
}

// Listen binds addr (host:port) and serves m's registry at /metrics on
// it. It fails at once, naming addr, when addr cannot be bound (already in
// use, not a local address).
func (m *Metrics) Listen(addr string) (*Server, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics_addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	s := &Server{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		lis:  lis,
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s, nil
}

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.lis.Addr() }

// Close stops the server, waiting up to ctx for scrapes in flight.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	<-s.done
	if err == nil {
		err = s.err
	}
	return err
}
