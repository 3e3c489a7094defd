package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Docker's defaults for a health check's unset fields.
const (
	DefaultHealthCheckInterval = 30 * time.Second
	DefaultHealthCheckTimeout  = 30 * time.Second
	DefaultHealthCheckRetries  = 3
	// DefaultHealthHTTPPort is the port of an HTTP check that names none.
	DefaultHealthHTTPPort = 80
	// maxHealthOutput bounds the output kept of one check.
	maxHealthOutput = 256
)

// Health states, shorter.
const (
	healthStarting  = apiv1.HealthState_HEALTH_STATE_STARTING
	healthHealthy   = apiv1.HealthState_HEALTH_STATE_HEALTHY
	healthUnhealthy = apiv1.HealthState_HEALTH_STATE_UNHEALTHY
)

// healthParams are a check's settings with the defaults applied.
type healthParams struct {
	check       *apiv1.HealthCheck
	interval    time.Duration
	timeout     time.Duration
	retries     int
	startPeriod time.Duration
	// exec runs a command check's command in the task; nil for other checks.
	exec func(ctx context.Context, req runtime.ExecRequest) (int, error)
}

func healthParamsOf(c *apiv1.HealthCheck) healthParams {
	p := healthParams{check: c, interval: DefaultHealthCheckInterval, timeout: DefaultHealthCheckTimeout, retries: DefaultHealthCheckRetries}
	if d := c.GetInterval().AsDuration(); d > 0 {
		p.interval = d
	}
	if d := c.GetTimeout().AsDuration(); d > 0 {
		p.timeout = d
	}
	if n := c.GetRetries(); n > 0 {
		p.retries = int(n)
	}
	p.startPeriod = c.GetStartPeriod().AsDuration()
	return p
}

// taskHealthCheck is the health check a task runs with: its service's when
// it has one, none when the service disables checks (TYPE_NONE, as
// --no-healthcheck sets), and otherwise its image's own (img, nil when the
// image declares none), as a command check.
func taskHealthCheck(s *apiv1.ServiceSpec, img *runtime.ImageHealthCheck) *apiv1.HealthCheck {
	switch {
	case state.HasHealthCheck(s):
		return s.GetHealthCheck()
	case s.GetHealthCheck().GetType() == apiv1.HealthCheck_TYPE_NONE, img == nil, len(img.Command) == 0:
		return nil
	}
	c := &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_CMD, Command: img.Command}
	if img.Interval > 0 {
		c.Interval = durationpb.New(img.Interval)
	}
	if img.Timeout > 0 {
		c.Timeout = durationpb.New(img.Timeout)
	}
	if img.StartPeriod > 0 {
		c.StartPeriod = durationpb.New(img.StartPeriod)
	}
	if img.Retries > 0 {
		c.Retries = uint32(img.Retries)
	}
	return c
}

// healthNetns returns the network namespace a task's health check c is made
// from: its own on the overlay, "" (the worker's) for a task on the host's
// network. A task in a namespace of the runtime's making (network mode none,
// or no network plugin) cannot be reached: that is an error.
func (w *Worker) healthNetns(t *apiv1.Task, c *apiv1.HealthCheck) (string, error) {
	s := t.GetSpec()
	if c.GetType() == apiv1.HealthCheck_TYPE_CMD {
		return "", nil // run inside the task through the runtime's Exec
	}
	switch {
	case s.GetNetworkMode() == apiv1.NetworkMode_NETWORK_MODE_HOST:
		return "", nil
	case usesOverlay(s, w.net != nil):
		return filepath.Join(netnsDir(w.opts.DataDir), t.GetId()), nil
	}
	return "", fmt.Errorf("service %q: an HTTP or TCP health check needs the task on the overlay or on the host's network (this worker has no network plugin, or the network mode is none): %w", serviceName(t), sdk.ErrUnsupported)
}

// healthResult is what a task's checks found: its health and the last
// check's output.
type healthResult struct {
	state  apiv1.HealthState
	output string
}

// healthChecks runs one task's health checks in a goroutine of its own and
// hands each change of health to the task's runner.
type healthChecks struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the checks and waits for their goroutine.
func (h *healthChecks) stop() {
	if h == nil {
		return
	}
	h.cancel()
	<-h.done
}

// startChecks starts the health checks of the runner's task, running in
// netns ("": the worker's namespace).
func (r *taskRunner) startChecks(ctx context.Context, c *apiv1.HealthCheck, netns string) *healthChecks {
	cctx, cancel := context.WithCancel(ctx)
	h := &healthChecks{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		p := healthParamsOf(c)
		rt, id := r.w.rt, r.id
		p.exec = func(ctx context.Context, req runtime.ExecRequest) (int, error) {
			req.TaskID = id
			return rt.Exec(ctx, req)
		}
		runChecks(cctx, p, netns, time.Now(), func(res healthResult) {
			r.mu.Lock()
			r.healthRes = &res
			r.mu.Unlock()
			r.poke()
		})
	}()
	return h
}

// runChecks checks every interval until ctx ends or the task turns
// unhealthy, calling changed with each new health (first STARTING). A
// failure within the start period does not count while no check has
// passed; retries failures in a row make the task unhealthy.
func runChecks(ctx context.Context, p healthParams, netns string, started time.Time, changed func(healthResult)) {
	cur := healthResult{state: healthStarting}
	changed(cur)
	streak := 0
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		out, err := checkOnce(ctx, p, netns)
		if ctx.Err() != nil {
			return
		}
		next := cur
		switch {
		case err == nil:
			streak = 0
			next = healthResult{state: healthHealthy, output: out}
		case cur.state == healthStarting && time.Since(started) < p.startPeriod:
			next.output = err.Error() // not counted yet
		default:
			streak++
			next.output = err.Error()
			if streak >= p.retries {
				next.state = healthUnhealthy
			}
		}
		if next.state != cur.state {
			changed(next)
		}
		cur = next
		if cur.state == healthUnhealthy {
			return
		}
	}
}

// checkOnce makes one check within its timeout and returns its output.
func checkOnce(ctx context.Context, p healthParams, netns string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	c := p.check
	switch c.GetType() {
	case apiv1.HealthCheck_TYPE_CMD:
		return execCheck(ctx, p, c.GetCommand())
	case apiv1.HealthCheck_TYPE_TCP:
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(c.GetPort())))
		conn, err := dialIn(ctx, netns, addr)
		if err != nil {
			return "", fmt.Errorf("tcp %s: %w", addr, err)
		}
		conn.Close()
		return "tcp " + addr + ": connected", nil
	case apiv1.HealthCheck_TYPE_HTTP:
		port := c.GetPort()
		if port == 0 {
			port = DefaultHealthHTTPPort
		}
		url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))) + c.GetPath()
		client := &http.Client{Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return dialIn(ctx, netns, addr) },
			DisableKeepAlives: true,
		}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return "", fmt.Errorf("http %s: %w", url, err)
		}
		resp, err := client.Do(req)
		if err != nil {
			return "", fmt.Errorf("http %s: %w", url, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxHealthOutput))
		resp.Body.Close()
		out := fmt.Sprintf("GET %s: %s %s", url, resp.Status, truncate(string(body), maxHealthOutput))
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return "", errors.New(out)
		}
		return out, nil
	}
	return "", fmt.Errorf("health check type %v: %w", c.GetType(), sdk.ErrUnsupported)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// dialIn opens a TCP connection to addr from inside the network namespace
// at netns ("": the caller's). The socket is made on an OS thread moved into
// the namespace and keeps belonging to it; the thread moves back before it
// is used for anything else (or dies with its goroutine when it cannot).
func dialIn(ctx context.Context, netns, addr string) (net.Conn, error) {
	var d net.Dialer
	if netns == "" {
		return d.DialContext(ctx, "tcp", addr)
	}
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer self.Close()
		target, err := os.Open(netns)
		if err != nil {
			ch <- result{err: fmt.Errorf("network namespace: %w", err)}
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{err: fmt.Errorf("enter network namespace %s: %w", netns, err)}
			return
		}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			goruntime.UnlockOSThread()
		}
		ch <- result{conn, err}
	}()
	r := <-ch
	return r.conn, r.err
}

// checkHealthResult acts on the last health the task's checks found, if it
// changed: a healthy or starting task reports it; an unhealthy one is
// stopped and reported FAILED, for its service's restart policy to replace.
func (r *taskRunner) checkHealthResult(ctx context.Context) {
	r.mu.Lock()
	res := r.healthRes
	r.healthRes = nil
	r.mu.Unlock()
	if res == nil || r.state != stateRunning || !r.stillWanted() {
		return
	}
	if res.state != healthUnhealthy {
		r.report(&apiv1.TaskStatusUpdate{State: stateRunning, Message: r.last.GetMessage(), Health: res.state, HealthOutput: res.output})
		return
	}
	r.w.log.Warn("task unhealthy; stopping it", "task", r.id, "output", res.output)
	sctx, cancel := r.w.call(ctx, r.stopGrace())
	_, err := r.w.rt.StopTask(sctx, r.id, 0)
	cancel()
	if err != nil && !errors.Is(err, sdk.ErrNotFound) {
		r.w.log.Warn("stopping an unhealthy task", "task", r.id, "error", err)
	}
	u := &apiv1.TaskStatusUpdate{State: stateFailed, Error: "unhealthy: " + res.output, Health: healthUnhealthy, HealthOutput: res.output}
	r.report(u)
	if r.rec != nil {
		r.rec.State, r.rec.Error = u.State.String(), u.Error
		if err := r.w.handles.save(r.rec); err != nil {
			r.w.log.Error("recording the task's end", "task", r.id, "error", err)
		}
	}
}

// syncChecks starts the task's health checks once it runs here with a
// check (its service's or its image's, see taskHealthCheck), and stops them
// once it no longer runs.
func (r *taskRunner) syncChecks(ctx context.Context, want *apiv1.Task) {
	var check *apiv1.HealthCheck
	if r.rec != nil && want != nil {
		check = taskHealthCheck(want.GetSpec(), r.rec.ImageHealthCheck)
	}
	running := r.state == stateRunning && check != nil && r.stillWanted()
	switch {
	case running && r.checks == nil:
		netns, err := r.w.healthNetns(want, check)
		if err != nil {
			return // refused before the start (see start)
		}
		r.checks = r.startChecks(ctx, check, netns)
	case !running && r.checks != nil:
		r.stopChecks()
	}
}

// stopChecks ends the task's health checks, if they run.
func (r *taskRunner) stopChecks() {
	r.checks.stop()
	r.checks = nil
	r.mu.Lock()
	r.healthRes = nil
	r.mu.Unlock()
}

// execCheck runs a command check's command in the task and returns the end
// of its output (stdout and stderr); a non-zero exit fails the check.
func execCheck(ctx context.Context, p healthParams, cmd []string) (string, error) {
	if p.exec == nil {
		return "", fmt.Errorf("command health check: no runtime to exec in: %w", sdk.ErrUnsupported)
	}
	out := &tailBuffer{max: maxHealthCmdOutput}
	code, err := p.exec(ctx, runtime.ExecRequest{Cmd: cmd, Stdout: out, Stderr: out})
	switch {
	case err != nil && ctx.Err() != nil:
		return "", fmt.Errorf("command %q: timed out after %s: %w", cmd, p.timeout, err)
	case err != nil:
		return "", fmt.Errorf("command %q: %w", cmd, err)
	case code != 0:
		return "", fmt.Errorf("command %q exited with %d: %s", cmd, code, out.String())
	}
	return out.String(), nil
}

// maxHealthCmdOutput bounds the output kept of one command check.
const maxHealthCmdOutput = 4096

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string { return string(b.buf) }
