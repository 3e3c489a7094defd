package loadgen

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// Bench runs the scenarios against one manager through a fleet.
type Bench struct {
	API     apiv1.WarrenClient
	Cluster apiv1.ClusterClient
	Fleet   *Fleet
	// LeaderPID, when not 0, is the leader agent's process ID on this
	// machine, for its CPU and RSS (/proc).
	LeaderPID int
	// TTL is the managers' heartbeat_ttl, printed with the node-loss figure.
	TTL time.Duration
	// Clients is how many CreateService calls Create has in flight at
	// once; default DefaultClients.
	Clients int
	// Timeout bounds each wait; default 5 minutes.
	Timeout time.Duration
	Out     io.Writer

	mu sync.Mutex
	// assign collects the latencies of assignments from the scheduler's
	// decision (the task's updated_at, set before its commit, so an upper
	// bound of commit→arrival) to their arrival at the node.
	assign []time.Duration
	// arrived is when each task's assignment reached its node.
	arrived map[string]time.Time
}

// Attach makes b record the fleet's assignment latencies; call before
// the fleet starts.
func (b *Bench) Attach() {
	b.Fleet.OnAssigned = func(t *apiv1.Task, arrived time.Time) {
		if t.GetState() != apiv1.TaskState_TASK_STATE_ASSIGNED || t.GetUpdatedAt() == nil {
			return
		}
		d := arrived.Sub(t.GetUpdatedAt().AsTime())
		b.mu.Lock()
		b.assign = append(b.assign, d)
		if b.arrived == nil {
			b.arrived = map[string]time.Time{}
		}
		b.arrived[t.GetId()] = arrived
		b.mu.Unlock()
	}
}

func (b *Bench) printf(format string, args ...any) {
	fmt.Fprintf(b.Out, format, args...)
}

func (b *Bench) timeout() time.Duration {
	if b.Timeout > 0 {
		return b.Timeout
	}
	return 5 * time.Minute
}

// waitFor polls cond every 5 ms until it holds or the timeout passes.
func (b *Bench) waitFor(ctx context.Context, what string, cond func() bool) error {
	deadline := time.Now().Add(b.timeout())
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("loadgen: %s: not within %s", what, b.timeout())
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(5 * time.Millisecond) // polling the fleet's counters with a deadline
	}
	return nil
}

// Connect waits until every node of the fleet that is not killed holds a
// session.
func (b *Bench) Connect(ctx context.Context) error {
	start := time.Now()
	if err := b.waitFor(ctx, "every node connected", func() bool { return b.Fleet.Connected() == len(b.Fleet.Nodes) }); err != nil {
		return err
	}
	b.printf("fleet: %d nodes connected in %s\n", len(b.Fleet.Nodes), time.Since(start).Round(time.Millisecond))
	return nil
}

func spec(name string, replicas uint64) *apiv1.ServiceSpec {
	return &apiv1.ServiceSpec{Name: name, Image: "loadgen.invalid/simulated:1", Replicas: replicas, NetworkMode: apiv1.NetworkMode_NETWORK_MODE_NONE}
}

// DefaultClients is Bench.Clients' default. A create is bound by its
// latency, not the leader's throughput: each waits for its Raft entry to
// be applied (≈ 120 ms per call at 1,000 nodes on a loaded 2-core box),
// and group commit puts whatever is queued meanwhile in one entry, so the
// rate grows with the calls in flight (16: ≈ 110/s; 64: ≈ 200/s there).
const DefaultClients = 64

// Create creates services × replicas tasks (services created by
// b.Clients clients at once) and times them from the first create to all
// reported running, and each create call. It returns the services' names.
func (b *Bench) Create(ctx context.Context, prefix string, services, replicas int) ([]string, error) {
	base := b.Fleet.Running()
	want := base + services*replicas
	b.mu.Lock()
	b.assign, b.arrived = nil, nil
	b.mu.Unlock()
	commits, stopCommits := b.watchCommits(ctx)
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	clients := b.Clients
	if clients <= 0 {
		clients = DefaultClients
	}
	clients = min(clients, services)
	calls := make([][]time.Duration, clients)
	start := time.Now()
	work := make(chan string)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				s := time.Now()
				if _, err := b.API.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: spec(n, uint64(replicas))}); err != nil {
					errs <- fmt.Errorf("create service %s: %w", n, err)
					for range work {
					}
					return
				}
				calls[c] = append(calls[c], time.Since(s))
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	created := time.Since(start)
	select {
	case err := <-errs:
		return nil, err
	default:
	}
	if err := b.waitFor(ctx, fmt.Sprintf("%d tasks running", want), func() bool { return b.Fleet.Running() >= want }); err != nil {
		return nil, err
	}
	d := time.Since(start)
	b.printf("create %d×%d: %d tasks over %d nodes running in %s (creates took %s), %.0f placements/s; target < 10 s\n",
		services, replicas, services*replicas, len(b.Fleet.Nodes), d.Round(time.Millisecond), created.Round(time.Millisecond),
		float64(services*replicas)/d.Seconds())
	all := slices.Concat(calls...)
	b.printf("create calls: %d by %d clients at once, %.0f/s, each p50 %s p99 %s\n",
		len(all), clients, float64(len(all))/created.Seconds(), pct(all, 50), pct(all, 99))
	committed := stopCommits()
	b.mu.Lock()
	lat := slices.Clone(b.assign)
	var fromCommit []time.Duration
	for id, at := range b.arrived {
		if c, ok := committed[id]; ok {
			fromCommit = append(fromCommit, at.Sub(c))
		}
	}
	b.mu.Unlock()
	if len(lat) > 0 {
		b.printf("assignment placement (task updated_at, taken before the commit) → arrival over %d tasks: p50 %s p99 %s\n", len(lat), pct(lat, 50), pct(lat, 99))
	}
	if len(fromCommit) > 0 {
		b.printf("assignment commit (the ASSIGNED event's time, at the leader's apply) → arrival over %d tasks: p50 %s p99 %s; target p99 < 100 ms%s\n",
			len(fromCommit), pct(fromCommit, 50), pct(fromCommit, 99), commits.note())
	} else {
		b.printf("assignment commit → arrival: not measured%s\n", commits.note())
	}
	return names, nil
}

// commitWatch follows the task events for watchCommits.
type commitWatch struct {
	mu  sync.Mutex
	at  map[string]time.Time
	err error
	// lagged counts the resubscriptions after falling behind (the events
	// lost meanwhile are missing from the sample).
	lagged int
	done   chan struct{}
}

func (w *commitWatch) note() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.err != nil:
		return fmt.Sprintf(" (the event stream failed: %v)", w.err)
	case w.lagged > 0:
		return fmt.Sprintf(" (a sample: the event stream fell behind %d times, the events lost meanwhile are not counted)", w.lagged)
	}
	return ""
}

// watchCommits follows the API's task events until stop is called and
// records, by task, the time of its first event in state ASSIGNED: when
// the leader applied its placement. Falling behind, it subscribes again
// and goes on. stop returns those times. (With --join-addr the leader's
// clock is another machine's.)
func (b *Bench) watchCommits(ctx context.Context) (*commitWatch, func() map[string]time.Time) {
	w := &commitWatch{at: map[string]time.Time{}, done: make(chan struct{})}
	sctx, cancel := context.WithCancel(ctx)
	subscribe := func() (apiv1.Warren_EventsClient, error) {
		stream, err := b.API.Events(sctx, &apiv1.EventsRequest{Kinds: []string{"task"}})
		if err == nil {
			_, err = stream.Header() // subscribed
		}
		return stream, err
	}
	stream, err := subscribe() // before the creates
	if err != nil {
		w.err = err
		close(w.done)
		return w, func() map[string]time.Time { cancel(); return nil }
	}
	go func() {
		defer close(w.done)
		for {
			ev, err := stream.Recv()
			if err != nil && sctx.Err() == nil && status.Code(err) == codes.ResourceExhausted {
				w.mu.Lock()
				w.lagged++
				w.mu.Unlock()
				if stream, err = subscribe(); err == nil {
					continue
				}
			}
			if err != nil {
				if sctx.Err() == nil {
					w.mu.Lock()
					w.err = err
					w.mu.Unlock()
				}
				return
			}
			t := ev.GetTask()
			if t.GetState() != apiv1.TaskState_TASK_STATE_ASSIGNED {
				continue
			}
			w.mu.Lock()
			if _, seen := w.at[t.GetId()]; !seen {
				w.at[t.GetId()] = ev.GetTime().AsTime()
			}
			w.mu.Unlock()
		}
	}()
	return w, func() map[string]time.Time {
		cancel()
		<-w.done
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.at
	}
}

// Remove removes the services and waits until their tasks stopped.
func (b *Bench) Remove(ctx context.Context, names []string) error {
	for _, n := range names {
		if _, err := b.API.RemoveService(ctx, &apiv1.RemoveServiceRequest{NameOrId: n}); err != nil {
			return fmt.Errorf("remove service %s: %w", n, err)
		}
	}
	return b.waitFor(ctx, "the services' tasks stopped", func() bool { return b.Fleet.Running() == 0 })
}

// Loss kills fraction of the live nodes at once (silent: as a power loss;
// otherwise their sessions end, Fleet.Kill) and times until every task
// runs again (on the other nodes).
func (b *Bench) Loss(ctx context.Context, fraction float64, silent bool) ([]*Node, error) {
	want := b.Fleet.Running()
	var live []*Node
	for _, n := range b.Fleet.Nodes {
		if !n.killed.Load() {
			live = append(live, n)
		}
	}
	k := max(1, int(float64(len(live))*fraction))
	victims := live[:k]
	lost := 0
	for _, n := range victims {
		n.mu.Lock()
		lost += len(n.tasks)
		n.mu.Unlock()
	}
	start := time.Now()
	b.Fleet.Kill(silent, victims...)
	if err := b.waitFor(ctx, "every task running again", func() bool { return b.Fleet.Running() >= want }); err != nil {
		return nil, err
	}
	d := time.Since(start)
	how := "sessions ended"
	if silent {
		how = "silent"
	}
	b.printf("loss of %d nodes (%s, %d tasks): all %d tasks running again in %s (heartbeat TTL %s, so %s past it); target TTL + 3 s\n",
		k, how, lost, want, d.Round(time.Millisecond), b.TTL, (d - b.TTL).Round(time.Millisecond))
	return victims, nil
}

// Check waits until the manager reports running as many tasks as the
// live nodes run, then fails on a slot with more than one running task, a
// task running on two nodes, or a running task no live node runs.
func (b *Bench) Check(ctx context.Context) error {
	var last error
	err := b.waitFor(ctx, "the manager agrees with the fleet", func() bool {
		last = b.check(ctx)
		return last == nil
	})
	if err != nil {
		return fmt.Errorf("%w: %w", err, last)
	}
	return nil
}

func (b *Bench) check(ctx context.Context) error {
	tasks, err := b.allTasks(ctx, "")
	if err != nil {
		return err
	}
	slots := map[string]int{}
	runningOn := b.Fleet.RunningOn()
	running := 0
	for _, t := range tasks {
		if t.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING || t.GetState() != apiv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		running++
		key := t.GetServiceId() + "/" + strconv.FormatUint(t.GetSlot(), 10)
		slots[key]++
		if slots[key] > 1 {
			return fmt.Errorf("loadgen: slot %s has %d running tasks", key, slots[key])
		}
		if on := runningOn[t.GetId()]; len(on) != 1 {
			return fmt.Errorf("loadgen: task %s (slot %s) runs on %d live nodes", t.GetId(), key, len(on))
		}
	}
	for id, on := range runningOn {
		if len(on) > 1 {
			return fmt.Errorf("loadgen: task %s runs on nodes %v", id, on)
		}
	}
	if running != len(runningOn) {
		return fmt.Errorf("loadgen: the manager lists %d tasks running, the live nodes run %d", running, len(runningOn))
	}
	b.printf("check: %d tasks running, one per slot, each on one live node\n", running)
	return nil
}

func (b *Bench) allTasks(ctx context.Context, service string) ([]*apiv1.Task, error) {
	var out []*apiv1.Task
	tok := ""
	for {
		// The BASIC view, as `warren task ls` asks for its table (whose
		// NODE column comes from the pages' node_names).
		r, err := b.API.ListTasks(ctx, &apiv1.ListTasksRequest{Service: service, PageToken: tok, View: apiv1.TaskView_TASK_VIEW_BASIC})
		if err != nil {
			return nil, fmt.Errorf("list tasks: %w", err)
		}
		out = append(out, r.GetTasks()...)
		if tok = r.GetNextPageToken(); tok == "" {
			return out, nil
		}
	}
}

func (b *Bench) allServices(ctx context.Context) (int, error) {
	n := 0
	tok := ""
	for {
		r, err := b.API.ListServices(ctx, &apiv1.ListServicesRequest{PageToken: tok})
		if err != nil {
			return 0, fmt.Errorf("list services: %w", err)
		}
		n += len(r.GetServices())
		if tok = r.GetNextPageToken(); tok == "" {
			return n, nil
		}
	}
}

// Idle measures, over d with nothing changing, the leader's CPU and the
// Raft entries committed per second, and prints the leader's RSS.
func (b *Bench) Idle(ctx context.Context, d time.Duration) error {
	m0, err := b.Cluster.Members(ctx, &apiv1.MembersRequest{})
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	cpu0, _ := procCPU(b.LeaderPID)
	start := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
	}
	el := time.Since(start)
	m1, err := b.Cluster.Members(ctx, &apiv1.MembersRequest{})
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	writes := float64(m1.GetCommitIndex()-m0.GetCommitIndex()) / el.Seconds()
	b.printf("idle %s with %d nodes heartbeating: %.2f Raft entries/s (commit index %d → %d); target 0\n",
		el.Round(time.Millisecond), b.Fleet.Connected(), writes, m0.GetCommitIndex(), m1.GetCommitIndex())
	if b.LeaderPID == 0 {
		b.printf("idle leader CPU: not measured (the leader's PID is unknown)\n")
		return nil
	}
	cpu1, err := procCPU(b.LeaderPID)
	if err != nil {
		return err
	}
	b.printf("idle leader CPU: %.1f %% of one core; target < 10 %%\n", 100*(cpu1-cpu0).Seconds()/el.Seconds())
	return b.RSS()
}

// RSS prints the leader's resident memory.
func (b *Bench) RSS() error {
	if b.LeaderPID == 0 {
		return nil
	}
	rss, err := procRSS(b.LeaderPID)
	if err != nil {
		return err
	}
	b.printf("leader RSS: %d MiB; target < 256 MiB\n", rss>>20)
	return nil
}

// Reads times n `service ls` (every page) and n `task ls --service X`
// (X one of services, in turn: every page of its tasks in the BASIC view,
// whose node_names fill the command's NODE column) and prints their p50
// and p99.
func (b *Bench) Reads(ctx context.Context, n int, services []string) error {
	var ls, ts []time.Duration
	for i := range n {
		s := time.Now()
		if _, err := b.allServices(ctx); err != nil {
			return err
		}
		ls = append(ls, time.Since(s))
		s = time.Now()
		if _, err := b.allTasks(ctx, services[i%len(services)]); err != nil {
			return err
		}
		ts = append(ts, time.Since(s))
	}
	b.printf("service ls (all pages): p50 %s p99 %s; task ls --service X (its tasks and their nodes' names, BASIC view): p50 %s p99 %s (%d each); target p99 < 50 ms\n",
		pct(ls, 50), pct(ls, 99), pct(ts, 50), pct(ts, 99), n)
	return nil
}

// LoadAverage returns /proc/loadavg's first three fields.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	i = min(max(i-1, 0), len(s)-1)
	return s[i].Round(10 * time.Microsecond)
}

// procCPU is a process's user+system CPU time from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("leader CPU: %w", err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// Fields from state (3rd in the file): utime is the 14th, stime the 15th.
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("leader CPU: unreadable /proc/%d/stat", pid)
	}
	const ticks = 100 // USER_HZ
	return time.Duration(ut+st) * time.Second / ticks, nil
}

// procRSS is a process's resident set size from /proc/PID/status.
func procRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("leader RSS: %w", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("leader RSS: %q: %w", l, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("leader RSS: no VmRSS in /proc/%d/status", pid)
}
