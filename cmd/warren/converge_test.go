package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

const (
	running  = apiv1.TaskState_TASK_STATE_RUNNING
	shutdown = apiv1.TaskState_TASK_STATE_SHUTDOWN
)

// task is a task of the service web for the tests, as ListTasks lists it
// in the BASIC view the wait asks for: without its spec, with the spec's
// image and digest.
func task(id string, slot, version uint64, desired, st apiv1.TaskState) *apiv1.Task {
	spec := &apiv1.ServiceSpec{Name: "web", Image: fmt.Sprintf("nginx:%d", version)}
	return &apiv1.Task{
		Id: id, ServiceId: fakeID("service", "web"), ServiceName: "web", Slot: slot, ServiceVersion: version,
		DesiredState: desired, State: st, CreatedAt: timestamppb.New(testNow),
		Image: spec.GetImage(), SpecDigest: state.SpecDigest(spec),
	}
}

func webService(version, replicas uint64, image string) *apiv1.Service {
	return &apiv1.Service{
		Id: fakeID("service", "web"), Version: version,
		Spec: &apiv1.ServiceSpec{Name: "web", Image: image, Replicas: replicas},
	}
}

func TestAssess(t *testing.T) {
	tests := []struct {
		name                 string
		svc                  *apiv1.Service
		tasks                []*apiv1.Task
		wantRunning          uint64
		wantStale            int
		wantDone             bool
		wantSummary, wantIDs string // the slots' tasks, by slot
	}{
		{
			name: "no tasks yet", svc: webService(5, 2, "nginx:5"),
			wantSummary: "0/2 running", wantIDs: "-,-",
		},
		{
			name: "all running", svc: webService(5, 2, "nginx:5"),
			tasks:       []*apiv1.Task{task("a", 1, 5, running, running), task("b", 2, 5, running, running)},
			wantRunning: 2, wantDone: true, wantSummary: "2/2 running", wantIDs: "a,b",
		},
		{
			name: "one starting, one failed and its replacement new", svc: webService(5, 2, "nginx:5"),
			tasks: []*apiv1.Task{
				task("a", 1, 5, running, apiv1.TaskState_TASK_STATE_STARTING),
				task("b-old", 2, 5, shutdown, apiv1.TaskState_TASK_STATE_FAILED),
				task("b", 2, 5, running, apiv1.TaskState_TASK_STATE_NEW),
			},
			wantSummary: "0/2 running", wantIDs: "a,b",
		},
		{
			name: "update: new tasks run, an old one still stops", svc: webService(9, 2, "nginx:9"),
			tasks: []*apiv1.Task{
				task("a-old", 1, 5, shutdown, shutdown),
				task("a", 1, 9, running, running),
				task("b-old", 2, 5, shutdown, running),
				task("b", 2, 9, running, running),
			},
			wantRunning: 2, wantStale: 1, wantSummary: "2/2 running, 1 task to stop still running", wantIDs: "a,b",
		},
		{
			name: "update: an old task still wanted is not the slot's", svc: webService(9, 2, "nginx:9"),
			tasks: []*apiv1.Task{
				task("a", 1, 9, running, running),
				task("b-old", 2, 5, running, running),
			},
			wantRunning: 1, wantStale: 1, wantSummary: "1/2 running, 1 task to stop still running", wantIDs: "a,-",
		},
		{
			// A scale changes the version but not the tasks' spec: the
			// older tasks are as good.
			name: "scale up keeps the tasks of the same spec", svc: webService(7, 3, "nginx:5"),
			tasks: []*apiv1.Task{
				task("a", 1, 5, running, running),
				task("b", 2, 5, running, running),
				task("c", 3, 7, running, apiv1.TaskState_TASK_STATE_PREPARING),
			},
			wantRunning: 2, wantSummary: "2/3 running", wantIDs: "a,b,c",
		},
		{
			name: "scale down: the slots beyond stop", svc: webService(7, 1, "nginx:5"),
			tasks: []*apiv1.Task{
				task("a", 1, 5, running, running),
				task("b", 2, 5, shutdown, running),
				task("c", 3, 5, shutdown, shutdown),
			},
			wantRunning: 1, wantStale: 1, wantSummary: "1/1 running, 1 task to stop still running", wantIDs: "a",
		},
		{
			name: "zero replicas, all stopped", svc: webService(7, 0, "nginx:5"),
			tasks:       []*apiv1.Task{task("a", 1, 5, shutdown, shutdown), task("b", 2, 5, shutdown, apiv1.TaskState_TASK_STATE_COMPLETE)},
			wantDone:    true,
			wantSummary: "0/0 running", wantIDs: "",
		},
		{
			name: "zero replicas, one still running", svc: webService(7, 0, "nginx:5"),
			tasks:     []*apiv1.Task{task("a", 1, 5, shutdown, running)},
			wantStale: 1, wantSummary: "0/0 running, 1 task to stop still running", wantIDs: "",
		},
		{
			// A health-checked task counts once healthy (the image's
			// check: the worker reports the health with RUNNING).
			name: "running but not healthy yet", svc: webService(5, 2, "nginx:5"),
			tasks: func() []*apiv1.Task {
				a, b := task("a", 1, 5, running, running), task("b", 2, 5, running, running)
				a.Health, b.Health = apiv1.HealthState_HEALTH_STATE_HEALTHY, apiv1.HealthState_HEALTH_STATE_STARTING
				return []*apiv1.Task{a, b}
			}(),
			wantRunning: 1, wantSummary: "1/2 running", wantIDs: "a,b",
		},
		{
			name: "the newest task of a slot stands for it", svc: webService(5, 1, "nginx:5"),
			tasks: func() []*apiv1.Task {
				old := task("old", 1, 5, running, running)
				old.CreatedAt = timestamppb.New(testNow.Add(-time.Minute))
				return []*apiv1.Task{task("new", 1, 5, running, apiv1.TaskState_TASK_STATE_ASSIGNED), old}
			}(),
			wantStale: 1, wantSummary: "0/1 running, 1 task to stop still running", wantIDs: "new",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := assess(tt.svc, tt.tasks)
			var ids []string
			for s := uint64(1); s <= c.replicas; s++ {
				if task := c.slots[s]; task != nil {
					ids = append(ids, task.GetId())
				} else {
					ids = append(ids, "-")
				}
			}
			if c.running != tt.wantRunning || c.stale != tt.wantStale || c.done != tt.wantDone ||
				c.summary() != tt.wantSummary || strings.Join(ids, ",") != tt.wantIDs {
				t.Errorf("assess: running %d, stale %d, done %v, summary %q, slots %q; want %d, %d, %v, %q, %q",
					c.running, c.stale, c.done, c.summary(), strings.Join(ids, ","),
					tt.wantRunning, tt.wantStale, tt.wantDone, tt.wantSummary, tt.wantIDs)
			}
		})
	}
}

func TestProgressPlain(t *testing.T) {
	svc := webService(5, 3, "nginx:5")
	var buf bytes.Buffer
	p := newProgressPrinter(&buf, false)
	// A failure kept as history from before the change is not news.
	history := task("h", 1, 4, shutdown, apiv1.TaskState_TASK_STATE_FAILED)
	history.Error = "old failure"
	steps := [][]*apiv1.Task{
		{history},
		{history, task("a", 1, 5, running, apiv1.TaskState_TASK_STATE_NEW)}, // no change: nothing printed
		{history, func() *apiv1.Task {
			t := task("a", 1, 5, running, apiv1.TaskState_TASK_STATE_REJECTED)
			t.Error = "image busybox:nope not found"
			return t
		}(), func() *apiv1.Task {
			t := task("b", 2, 5, running, apiv1.TaskState_TASK_STATE_PENDING)
			t.Message = "no node has 4 CPUs free"
			return t
		}(), task("c", 3, 5, running, running)},
		{task("a2", 1, 5, running, running), task("b", 2, 5, running, running), task("c", 3, 5, running, running),
			task("old", 3, 4, shutdown, running)},
		{task("a2", 1, 5, running, running), task("b", 2, 5, running, running), task("c", 3, 5, running, running)},
	}
	for _, tasks := range steps {
		p.update(svc, assess(svc, tasks), tasks)
	}
	p.converged()
	want := "" +
		"overall progress: 0 out of 3 tasks\n" +
		"1/3: rejected \"image busybox:nope not found\"\n" +
		"2/3: pending \"no node has 4 CPUs free\"\n" +
		"overall progress: 1 out of 3 tasks\n" +
		"overall progress: 3 out of 3 tasks\n" +
		"verify: waiting for 1 task to stop\n" +
		"verify: Service converged\n"
	checkGolden(t, buf.String(), want)
}

func TestProgressTerminal(t *testing.T) {
	svc := webService(5, 2, "nginx:5")
	var buf bytes.Buffer
	p := newProgressPrinter(&buf, true)
	p.update(svc, assess(svc, nil), nil)
	failed := task("a", 1, 5, running, apiv1.TaskState_TASK_STATE_FAILED)
	failed.ExitCode = 2
	tasks := []*apiv1.Task{failed, task("b", 2, 5, running, apiv1.TaskState_TASK_STATE_PREPARING)}
	p.update(svc, assess(svc, tasks), tasks)
	p.update(svc, assess(svc, tasks), tasks) // nothing new: nothing drawn
	p.converged()

	const (
		clear = "\x1b[2K"
		up3   = "\x1b[3A"
		rest  = "\x1b[J"
	)
	want := "" +
		clear + "overall progress: 0 out of 2 tasks\n" +
		clear + "1/2: waiting   [>                                                  ]\n" +
		clear + "2/2: waiting   [>                                                  ]\n" +
		rest +
		up3 +
		clear + "1/2: failed \"exit code 2\"\n" +
		clear + "overall progress: 0 out of 2 tasks\n" +
		clear + "1/2: failed    [>                                                  ]\n" +
		clear + "2/2: preparing [=================================>                 ]\n" +
		rest +
		"verify: Service converged\n"
	checkGolden(t, buf.String(), want)
}

func TestSlotLine(t *testing.T) {
	tests := []struct {
		state apiv1.TaskState
		want  string
	}{
		{apiv1.TaskState_TASK_STATE_NEW, "1/3: new       [========>" + strings.Repeat(" ", 42) + "]"},
		{apiv1.TaskState_TASK_STATE_STARTING, "1/3: starting  [" + strings.Repeat("=", 41) + ">" + strings.Repeat(" ", 9) + "]"},
		{running, "1/3: running   [" + strings.Repeat("=", 50) + ">]"},
	}
	for _, tt := range tests {
		if got := slotLine(1, 3, task("a", 1, 5, running, tt.state)); got != tt.want {
			t.Errorf("slotLine(%v) = %q\nwant            %q", tt.state, got, tt.want)
		}
	}
}

// background runs a command line against the agent at sock with ctx; its
// result comes on the channel when it ends.
func background(ctx context.Context, sock string, args ...string) (stdout, stderr *syncBuffer, done chan result) {
	stdout, stderr, done = newSyncBuffer(), newSyncBuffer(), make(chan result, 1)
	go func() {
		code := run(ctx, append([]string{"--socket", sock}, args...), stdout, stderr)
		done <- result{stdout.String(), stderr.String(), code}
	}()
	return stdout, stderr, done
}

func waitResult(t *testing.T, done chan result) result {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not end")
		return result{}
	}
}

// eventsOnly makes the waits list tasks again only on events, for the
// length of the test.
func eventsOnly(t *testing.T) {
	old := convergeResync
	convergeResync = time.Hour
	t.Cleanup(func() { convergeResync = old })
}

func TestCreateWaitsForTasks(t *testing.T) {
	eventsOnly(t)
	f, sock := startFake(t)
	out, _, done := background(context.Background(), sock, "service", "create", "web", "--image", "nginx:5", "--replicas", "3")
	out.waitFor(t, "overall progress: 0 out of 3 tasks\n")

	f.mu.Lock()
	version := f.services[fakeID("service", "web")].Version
	f.mu.Unlock()
	// The fake plays the cluster's loops: each batch is one change, with
	// its events.
	f.upsert(task("a", 1, version, running, apiv1.TaskState_TASK_STATE_NEW),
		task("b", 2, version, running, apiv1.TaskState_TASK_STATE_NEW),
		task("c", 3, version, running, apiv1.TaskState_TASK_STATE_NEW))
	f.upsert(task("a", 1, version, running, running), task("b", 2, version, running, running))
	out.waitFor(t, "overall progress: 2 out of 3 tasks\n")
	f.upsert(task("c", 3, version, running, running))

	r := waitResult(t, done)
	want := fakeID("service", "web") + "\n" +
		"overall progress: 0 out of 3 tasks\n" +
		"overall progress: 2 out of 3 tasks\n" +
		"overall progress: 3 out of 3 tasks\n" +
		"verify: Service converged\n"
	if r.code != 0 || r.stdout != want || r.stderr != "" {
		t.Errorf("status %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}
}

func TestCreateReportsFailureAndTimesOut(t *testing.T) {
	f, sock := startFake(t)
	f.mu.Lock()
	f.onCreate = func(s *apiv1.Service) []*apiv1.Task {
		t := task("a", 1, s.Version, running, apiv1.TaskState_TASK_STATE_REJECTED)
		t.Error = "image busybox:nope not found"
		return []*apiv1.Task{t}
	}
	f.mu.Unlock()
	start := time.Now()
	r := warren(t, sock, "service", "create", "web", "--image", "busybox:nope", "--timeout-converge", "200ms")
	if took := time.Since(start); took < 200*time.Millisecond {
		t.Errorf("gave up after %s, before --timeout-converge", took)
	}
	wantOut := fakeID("service", "web") + "\n" +
		"1/1: rejected \"image busybox:nope not found\"\n" +
		"overall progress: 0 out of 1 tasks\n"
	wantErr := "Error: service created but not converged after 200ms: 0/1 running; see 'warren service ps web'\n"
	if r.code != 1 || r.stdout != wantOut || r.stderr != wantErr {
		t.Errorf("status %d\nstdout:\n%s\nwant:\n%s\nstderr %q\nwant   %q", r.code, r.stdout, wantOut, r.stderr, wantErr)
	}
}

func TestCreateDetachAndQuiet(t *testing.T) {
	f, sock := startFake(t)
	id := fakeID("service", "web")
	r := warren(t, sock, "service", "create", "web", "--image", "nginx", "--replicas", "2", "--detach").mustSucceed(t)
	if r.stdout != id+"\n" {
		t.Errorf("create --detach printed %q, want the ID alone", r.stdout)
	}
	select {
	case <-f.subscribed:
		t.Error("create --detach watched events")
	default:
	}

	// --quiet waits, but prints the ID alone.
	f.mu.Lock()
	f.onCreate = func(s *apiv1.Service) []*apiv1.Task {
		t := task("q1", 1, s.Version, running, running)
		t.ServiceId, t.ServiceName = s.Id, s.Spec.Name
		return []*apiv1.Task{t}
	}
	f.mu.Unlock()
	r = warren(t, sock, "service", "create", "quiet", "--image", "nginx", "-q").mustSucceed(t)
	if r.stdout != fakeID("service", "quiet")+"\n" {
		t.Errorf("create -q printed %q, want the ID alone", r.stdout)
	}
}

func TestScaleAndUpdateWait(t *testing.T) {
	eventsOnly(t)
	f, sock := startFake(t)
	warren(t, sock, "service", "create", "web", "--image", "nginx:5", "-d").mustSucceed(t)
	f.mu.Lock()
	v1 := f.services[fakeID("service", "web")].Version
	f.mu.Unlock()
	f.upsert(task("a", 1, v1, running, running))

	// Scaling to 0: converged once the task stops.
	out, _, done := background(context.Background(), sock, "service", "scale", "web=0")
	out.waitFor(t, "overall progress: 0 out of 0 tasks\nverify: waiting for 1 task to stop\n")
	f.upsert(task("a", 1, v1, shutdown, running))
	f.upsert(task("a", 1, v1, shutdown, shutdown))
	r := waitResult(t, done)
	want := "web scaled to 0\noverall progress: 0 out of 0 tasks\nverify: waiting for 1 task to stop\nverify: Service converged\n"
	if r.code != 0 || r.stdout != want {
		t.Errorf("scale: status %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}

	// Nothing to wait for: converged at once.
	r = warren(t, sock, "service", "scale", "web=0").mustSucceed(t)
	if want := "web scaled to 0\noverall progress: 0 out of 0 tasks\nverify: Service converged\n"; r.stdout != want {
		t.Errorf("second scale printed:\n%s\nwant:\n%s", r.stdout, want)
	}

	// An update waits for a task of the new version.
	out, _, done = background(context.Background(), sock, "service", "update", "web", "--image", "nginx:6", "--replicas", "1")
	out.waitFor(t, "overall progress: 0 out of 1 tasks\n")
	f.mu.Lock()
	v2 := f.services[fakeID("service", "web")].Version
	f.mu.Unlock()
	f.upsert(task("b", 1, v2, running, running))
	r = waitResult(t, done)
	if want := "web\noverall progress: 0 out of 1 tasks\noverall progress: 1 out of 1 tasks\nverify: Service converged\n"; r.code != 0 || r.stdout != want {
		t.Errorf("update: status %d, stderr %q, stdout:\n%s\nwant:\n%s", r.code, r.stderr, r.stdout, want)
	}
}

func TestInterruptedWaitKeepsTheService(t *testing.T) {
	f, sock := startFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, _, done := background(ctx, sock, "service", "create", "web", "--image", "nginx")
	out.waitFor(t, "overall progress: 0 out of 1 tasks\n")
	cancel()
	r := waitResult(t, done)
	want := "Error: interrupted while waiting: service web was created and stays so; its tasks keep converging (see 'warren service ps web')\n"
	if r.code != 130 || r.stderr != want {
		t.Errorf("status %d, stderr %q\nwant %q", r.code, r.stderr, want)
	}
	f.mu.Lock()
	_, ok := f.services[fakeID("service", "web")]
	f.mu.Unlock()
	if !ok {
		t.Error("the service is gone after an interrupted wait")
	}
}

func TestServiceRemovedWhileWaiting(t *testing.T) {
	_, sock := startFake(t)
	out, _, done := background(context.Background(), sock, "service", "create", "web", "--image", "nginx")
	out.waitFor(t, "overall progress: 0 out of 1 tasks\n")
	warren(t, sock, "service", "rm", "web").mustSucceed(t)
	r := waitResult(t, done)
	if r.code != 1 || r.stderr != "Error: service web was removed while waiting for it to converge\n" {
		t.Errorf("status %d, stderr %q", r.code, r.stderr)
	}
}

func TestBadConvergeTimeout(t *testing.T) {
	_, sock := startFake(t)
	r := warren(t, sock, "service", "create", "web", "--image", "nginx", "--timeout-converge", "-1s")
	if r.code != 1 || !strings.HasPrefix(r.stderr, "Error: invalid --timeout-converge -1s: cannot be negative") {
		t.Errorf("status %d, stderr %q", r.code, r.stderr)
	}
}

func TestAssessStuck(t *testing.T) {
	const refused = `rejected: image "nginx:1.27" not found`
	retry := func(id string, slot uint64, attempt uint32, previous string) *apiv1.Task {
		tk := task(id, slot, 5, running, apiv1.TaskState_TASK_STATE_ASSIGNED)
		tk.Attempt, tk.PreviousError = attempt, previous
		return tk
	}
	for _, tc := range []struct {
		name  string
		tasks []*apiv1.Task
		want  string
	}{
		{"every slot failed 3 times the same way", []*apiv1.Task{retry("a", 1, 4, refused), retry("b", 2, 5, refused)}, refused},
		{"one slot has failed only twice", []*apiv1.Task{retry("a", 1, 4, refused), retry("b", 2, 3, refused)}, ""},
		{"the slots fail differently", []*apiv1.Task{retry("a", 1, 4, refused), retry("b", 2, 4, "failed: exit code 1")}, ""},
		{"one slot runs", []*apiv1.Task{retry("a", 1, 4, refused), task("b", 2, 5, running, running)}, ""},
		{"a slot has no task", []*apiv1.Task{retry("a", 1, 4, refused)}, ""},
		{"a first attempt", []*apiv1.Task{retry("a", 1, 1, ""), retry("b", 2, 1, "")}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := assess(webService(5, 2, "nginx:5"), tc.tasks).stuck; got != tc.want {
				t.Fatalf("stuck = %q, want %q", got, tc.want)
			}
		})
	}
}
