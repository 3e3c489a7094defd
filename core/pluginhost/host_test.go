package pluginhost

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
)

// get returns the value of a Get, failing the test on error.
func get(t testing.TB, st store.Store, bucket, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := st.Get(ctx, bucket, key)
	if err != nil {
		t.Fatalf("Get %s/%s: %v", bucket, key, err)
	}
	return string(v)
}

func TestStartConfiguresPlugin(t *testing.T) {
	opts := testOptions()
	opts.DataDir = t.TempDir()
	h, logs := newHost(t, opts)
	body, rng := pluginBlock(t, `plugin "store-test" {
  config {
    path    = "/var/lib/warren"
    sync    = true
    tags    = ["a", "b"]
    labels  = { zone = "eu" }
  }
}`)
	spec := Spec{
		Name: "store-test", Kind: sdk.KindStore, Use: "manager.store", Path: testPlugin,
		Env: map[string]string{"TEST_GREETING": "hello"}, Config: body, ConfigRange: rng,
	}
	p := startPlugin(t, h, spec)
	st := store.NewClient(p.Client())

	var got, want any
	if err := json.Unmarshal([]byte(get(t, st, "_test", "config")), &got); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal([]byte(`{"path":"/var/lib/warren","sync":true,"tags":["a","b"],"labels":{"zone":"eu"}}`), &want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plugin was configured with %v, want %v", got, want)
	}
	if v := get(t, st, "_test", "env/"+EnvDataDir); v != opts.DataDir {
		t.Errorf("plugin sees %s=%q, want %q", EnvDataDir, v, opts.DataDir)
	}
	if v := get(t, st, "_test", "env/TEST_GREETING"); v != "hello" {
		t.Errorf("plugin sees TEST_GREETING=%q, want hello", v)
	}

	ctx := context.Background()
	if _, err := st.Apply(ctx, store.Batch{Index: 1, Ops: []store.Op{{Type: store.OpPut, Bucket: "b", Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if v := get(t, st, "b", "k"); v != "v" {
		t.Errorf("Get b/k = %q, want v", v)
	}
	if _, err := st.Get(ctx, "b", "missing"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get of a missing key: %v, want ErrNotFound", err)
	}

	if info := p.Info(); info.Name != "testplugin-memstore" || info.Kind != sdk.KindStore {
		t.Errorf("Info() = %+v", info)
	}
	s := p.Status()
	pid, _ := strconv.Atoi(get(t, st, "_test", "pid"))
	wantStatus := Status{Name: "store-test", Kind: sdk.KindStore, Version: "0.0.1-test", Path: testPlugin, PID: pid, State: StateRunning}
	s.StartedAt = time.Time{}
	if s != wantStatus {
		t.Errorf("Status() = %+v, want %+v", s, wantStatus)
	}
	if l := h.List(); len(l) != 1 || l[0].Name != "store-test" {
		t.Errorf("List() = %+v", l)
	}
	if h.Get("store-test") != p || h.Get("nope") != nil {
		t.Error("Get returned the wrong plugin")
	}
	if _, err := h.Start(ctx, spec); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Errorf("second Start of the same name: %v", err)
	}
	// The plugin's own JSON log lines come out under its name.
	logLine := regexp.MustCompile(`\[INFO\] +warren\.store-test: configured: .*path=/var/lib/warren`)
	waitFor(t, 5*time.Second, "the plugin's log line", func() bool { return logLine.MatchString(logs.String()) })
}

func TestStartRefusesPlugin(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		config string
		want   []string
	}{
		{
			name: "wrong kind",
			env:  map[string]string{"TESTPLUGIN_KIND": "scheduler"},
			want: []string{`plugin "store-x" at ` + testPlugin + ` is a scheduler plugin, but manager.store needs a store plugin`},
		},
		{
			name: "unsupported API version",
			env:  map[string]string{"TESTPLUGIN_API_VERSIONS": "2,3"},
			want: []string{`plugin "store-x" at ` + testPlugin + ` supports plugin API versions [2 3], but this agent speaks version 1`},
		},
		{
			name: "invalid schema",
			env:  map[string]string{"TESTPLUGIN_SCHEMA": "invalid"},
			want: []string{`reports an invalid config schema`, `attribute "path": unknown type "int"`, `attribute "path": declared twice`},
		},
		{
			name:   "configure refuses",
			config: `path = "/refuse"`,
			want:   []string{`plugin "store-x": invalid config: cluster.hcl:2,3-4,4: Plugin refused its configuration; path "/refuse" does not exist`},
		},
		{
			name: "exits before the handshake",
			env:  map[string]string{"TESTPLUGIN_FAIL_FILE": testPlugin},
			want: []string{`plugin "store-x": starting ` + testPlugin + `: exited before the handshake (exit status 1)`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newHost(t, testOptions())
			pidFile := filepath.Join(t.TempDir(), "pid")
			env := map[string]string{"TESTPLUGIN_PID_FILE": pidFile}
			for k, v := range tt.env {
				env[k] = v
			}
			config := tt.config
			if config == "" {
				config = `path = "/x"`
			}
			body, rng := pluginBlock(t, "plugin \"store-x\" {\n  config {\n    "+config+"\n  }\n}")
			spec := Spec{Name: "store-x", Kind: sdk.KindStore, Use: "manager.store", Path: testPlugin, Env: env, Config: body, ConfigRange: rng}

			p, err := h.Start(context.Background(), spec)
			if err == nil {
				track(t, h, p.Status().PID)
				t.Fatal("Start accepted the plugin")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
			raw, rerr := os.ReadFile(pidFile)
			if rerr != nil {
				t.Fatalf("the plugin wrote no pid file: %v", rerr)
			}
			pid, _ := strconv.Atoi(string(raw))
			if !processGone(pid) {
				track(t, h, pid)
				t.Errorf("plugin process %d still runs after Start failed", pid)
			}
			if h.Get("store-x") != nil || len(h.List()) != 0 {
				t.Errorf("a refused plugin is still listed: %+v", h.List())
			}
		})
	}
}

func TestStartConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		summary string
		line    int
	}{
		{
			name:    "unknown attribute",
			src:     "plugin \"store-test\" {\n  config {\n    path = \"/x\"\n    colour = \"blue\"\n  }\n}",
			summary: "Unsupported argument", line: 4,
		},
		{
			name:    "wrong type",
			src:     "plugin \"store-test\" {\n  config {\n    path = \"/x\"\n    sync = \"maybe\"\n  }\n}",
			summary: "Incorrect attribute value type", line: 4,
		},
		{
			name:    "missing required attribute",
			src:     "plugin \"store-test\" {\n  path = \"/bin/x\"\n\n  config {\n    tags = [\"a\"]\n  }\n}",
			summary: "Missing required argument", line: 4,
		},
	}
	h, _ := newHost(t, testOptions())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, rng := pluginBlock(t, tt.src)
			_, err := h.Start(context.Background(), Spec{Name: "store-test", Kind: sdk.KindStore, Path: testPlugin, Config: body, ConfigRange: rng})
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("Start: %v, want a *ConfigError", err)
			}
			if ce.Plugin != "store-test" || len(ce.Diags) == 0 {
				t.Fatalf("ConfigError = %+v", ce)
			}
			d := ce.Diags[0]
			if d.Summary != tt.summary {
				t.Errorf("summary %q, want %q", d.Summary, tt.summary)
			}
			if d.Subject == nil || d.Subject.Filename != "cluster.hcl" || d.Subject.Start.Line != tt.line {
				t.Errorf("subject %v, want cluster.hcl line %d", d.Subject, tt.line)
			}
		})
	}
}

func TestStartMissingExecutable(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "store-noexec")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		want   string
		target error
	}{
		{name: "missing", path: filepath.Join(dir, "store-missing"), want: `plugin "store-test": executable ` + filepath.Join(dir, "store-missing") + `: file does not exist (check path in the plugin "store-test" block)`, target: fs.ErrNotExist},
		{name: "not executable", path: notExec, want: `plugin "store-test": ` + notExec + ` is not executable (mode -rw-r--r--; check path in the plugin "store-test" block)`},
		{name: "directory", path: dir, want: `plugin "store-test": executable ` + dir + ` is a directory (check path in the plugin "store-test" block)`},
		{name: "relative", path: "store-bolt", want: `plugin "store-test": executable path "store-bolt" is not absolute (check path in the plugin "store-test" block)`},
	}
	h, _ := newHost(t, testOptions())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := testSpec(t, "store-test", nil)
			spec.Path = tt.path
			_, err := h.Start(context.Background(), spec)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Start: %v\nwant: %s", err, tt.want)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("errors.Is(err, %v) = false", tt.target)
			}
		})
	}
}

func TestRestartAfterKill(t *testing.T) {
	opts := testOptions()
	// Long enough a wait before the restart to watch calls fail meanwhile.
	opts.MinBackoff = 500 * time.Millisecond
	restarted := make(chan *Plugin, 4)
	opts.OnRestart = func(p *Plugin) {
		// The hook may already talk to the new process.
		if _, err := store.NewClient(p.Client()).AppliedIndex(context.Background()); err != nil {
			t.Errorf("OnRestart: AppliedIndex: %v", err)
		}
		restarted <- p
	}
	h, _ := newHost(t, opts)
	p := startPlugin(t, h, testSpec(t, "store-test", nil))
	st := store.NewClient(p.Client())
	ctx := context.Background()
	if _, err := st.Apply(ctx, store.Batch{Index: 1, Ops: []store.Op{{Type: store.OpPut, Bucket: "b", Key: "k", Value: []byte("v")}}}); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	oldPID := p.Status().PID
	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Calls fail at once while the plugin is down; none waits for its
	// deadline.
	var lastErr error
	waitFor(t, 5*time.Second, "a call to fail with `restarting (attempt 1)`", func() bool {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := st.Get(cctx, "b", "k")
		if err == nil {
			return false // not dead yet
		}
		if !errors.Is(err, sdk.ErrPluginUnavailable) || cctx.Err() != nil {
			t.Fatalf("call to a dead plugin: %v (context: %v), want ErrPluginUnavailable at once", err, cctx.Err())
		}
		lastErr = err
		return strings.Contains(err.Error(), "restarting (attempt 1)")
	})
	if want := `store plugin "store-test" unavailable: restarting (attempt 1)`; lastErr.Error() != want {
		t.Errorf("error while restarting = %q, want %q", lastErr, want)
	}
	if s := p.Status(); s.State != StateRestarting || s.PID != 0 {
		t.Errorf("Status while restarting = %+v", s)
	}

	select {
	case rp := <-restarted:
		if rp != p {
			t.Errorf("OnRestart got %p, want %p", rp, p)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the plugin was not restarted")
	}
	s := p.Status()
	track(t, h, s.PID)
	if s.State != StateRunning || s.Restarts != 1 || s.PID == 0 || s.PID == oldPID {
		t.Fatalf("Status after restart = %+v (old PID %d)", s, oldPID)
	}
	if !strings.Contains(s.LastError, "signal: killed") {
		t.Errorf("LastError = %q, want the exit", s.LastError)
	}
	if !processGone(oldPID) {
		t.Errorf("old process %d still there", oldPID)
	}
	// The same client now reaches the new process, whose memory is empty.
	if v := get(t, st, "_test", "pid"); v != strconv.Itoa(s.PID) {
		t.Errorf("client reached PID %s, want %d", v, s.PID)
	}
	if _, err := st.Get(ctx, "b", "k"); !errors.Is(err, sdk.ErrNotFound) {
		t.Errorf("Get on the new process: %v, want ErrNotFound", err)
	}
}

func TestHungPluginIsRestarted(t *testing.T) {
	opts := testOptions()
	opts.HealthInterval = 50 * time.Millisecond
	opts.HealthTimeout = 250 * time.Millisecond
	h, _ := newHost(t, opts)
	p := startPlugin(t, h, testSpec(t, "store-test", nil))
	st := store.NewClient(p.Client())
	oldPID := p.Status().PID

	// The call stops the whole process: it never answers, and neither do
	// health checks. The call must end when the host kills the process,
	// long before its own deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := st.Get(ctx, "_test", "hang")
	if !errors.Is(err, sdk.ErrPluginUnavailable) || ctx.Err() != nil {
		t.Fatalf("call into a hung plugin: %v (context: %v), want ErrPluginUnavailable", err, ctx.Err())
	}
	waitFor(t, 20*time.Second, "the restart", func() bool {
		s := p.Status()
		return s.State == StateRunning && s.Restarts == 1
	})
	s := p.Status()
	track(t, h, s.PID)
	if s.PID == oldPID || !processGone(oldPID) {
		t.Errorf("PID %d after restart, old %d gone: %v", s.PID, oldPID, processGone(oldPID))
	}
	if !strings.Contains(s.LastError, "not answering health checks") {
		t.Errorf("LastError = %q", s.LastError)
	}
	if v := get(t, st, "_test", "pid"); v != strconv.Itoa(s.PID) {
		t.Errorf("client reached PID %s, want %d", v, s.PID)
	}
}

func TestFailedStartsThenRecovery(t *testing.T) {
	opts := testOptions()
	opts.MinBackoff = 5 * time.Millisecond
	opts.MaxBackoff = 50 * time.Millisecond
	opts.MaxFailedStarts = 3
	h, _ := newHost(t, opts)
	failFile := filepath.Join(t.TempDir(), "fail")
	p := startPlugin(t, h, testSpec(t, "store-test", map[string]string{"TESTPLUGIN_FAIL_FILE": failFile}))
	st := store.NewClient(p.Client())

	// From now on every new process exits before the handshake.
	if err := os.WriteFile(failFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(p.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "state failed", func() bool { return p.Status().State == StateFailed })
	s := p.Status()
	if !strings.Contains(s.LastError, "exited before the handshake (exit status 1)") || s.PID != 0 {
		t.Errorf("Status when failed = %+v", s)
	}
	_, err := st.Get(context.Background(), "b", "k")
	if !errors.Is(err, sdk.ErrPluginUnavailable) || !strings.Contains(err.Error(), `store plugin "store-test" unavailable: failed to start 3 times in a row, retrying (attempt`) {
		t.Errorf("call while failed: %v", err)
	}

	// It keeps trying, and comes back once it can.
	if err := os.Remove(failFile); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "recovery", func() bool { return p.Status().State == StateRunning })
	s = p.Status()
	track(t, h, s.PID)
	if s.Restarts != 1 {
		t.Errorf("Restarts = %d, want 1", s.Restarts)
	}
	if v := get(t, st, "_test", "pid"); v != strconv.Itoa(s.PID) {
		t.Errorf("client reached PID %s, want %d", v, s.PID)
	}
}

// A plugin's child that inherited its stdout and stderr (containerd started
// by a runtime plugin) must neither keep the host from restarting the plugin
// nor be killed by a closed pipe.
func TestPluginWithOrphanedChild(t *testing.T) {
	orphans := filepath.Join(t.TempDir(), "orphans")
	orphanPIDs := func() []int {
		raw, _ := os.ReadFile(orphans)
		var pids []int
		for _, f := range strings.Fields(string(raw)) {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
		return pids
	}
	ticks := func(pid int) int {
		raw, _ := os.ReadFile(orphans + "." + strconv.Itoa(pid))
		n, _ := strconv.Atoi(string(raw))
		return n
	}
	t.Cleanup(func() {
		for _, pid := range orphanPIDs() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	h, _ := newHost(t, testOptions())
	p := startPlugin(t, h, testSpec(t, "store-test", map[string]string{"TESTPLUGIN_ORPHAN_FILE": orphans}))
	waitFor(t, 10*time.Second, "the child to start", func() bool { return len(orphanPIDs()) == 1 })
	orphan := orphanPIDs()[0]

	if err := syscall.Kill(p.Status().PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the restart", func() bool {
		s := p.Status()
		return s.State == StateRunning && s.Restarts == 1
	})
	track(t, h, p.Status().PID)
	// The child lives on and keeps writing to the pipe the host no longer
	// forwards.
	after := ticks(orphan)
	waitFor(t, 10*time.Second, "the child to write more", func() bool { return ticks(orphan) >= after+5 })
	if processGone(orphan) {
		t.Errorf("the plugin's child %d died", orphan)
	}
	if v := get(t, store.NewClient(p.Client()), "_test", "pid"); v != strconv.Itoa(p.Status().PID) {
		t.Errorf("client reached PID %s, want %d", v, p.Status().PID)
	}
}

func TestStopLeavesNoProcess(t *testing.T) {
	opts := testOptions()
	opts.HealthInterval = time.Hour // let store-b stay hung
	opts.KillTimeout = 500 * time.Millisecond
	h, _ := newHost(t, opts)
	a := startPlugin(t, h, testSpec(t, "store-a", nil))
	b := startPlugin(t, h, testSpec(t, "store-b", nil))
	pids := []int{a.Status().PID, b.Status().PID}

	// store-b hangs: Stop must kill it rather than wait for it forever.
	hung := make(chan error, 1)
	go func() {
		_, err := store.NewClient(b.Client()).Get(context.Background(), "_test", "hang")
		hung <- err
	}()
	waitFor(t, 10*time.Second, "store-b to stop", func() bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pids[1]) + "/stat")
		return err == nil && strings.Contains(string(stat), ") T ")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := h.Stop(ctx)
	if err == nil || !strings.Contains(err.Error(), `plugin "store-b" did not exit when asked; killed it`) || strings.Contains(err.Error(), "store-a") {
		t.Errorf("Stop: %v, want store-b reported as killed", err)
	}
	for _, pid := range pids {
		if !processGone(pid) {
			t.Errorf("process %d still runs after Stop", pid)
		}
	}
	if err := <-hung; !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Errorf("call in flight during Stop: %v", err)
	}
	for _, s := range h.List() {
		if s.State != StateStopped || s.PID != 0 {
			t.Errorf("after Stop: %+v", s)
		}
	}
	_, err = store.NewClient(a.Client()).Get(context.Background(), "b", "k")
	if want := `store plugin "store-a" unavailable: stopped`; err == nil || err.Error() != want || !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Errorf("call after Stop: %v, want %s", err, want)
	}
	if _, err := h.Start(context.Background(), testSpec(t, "store-c", nil)); err == nil || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Start after Stop: %v", err)
	}
}

func TestStopDuringStart(t *testing.T) {
	h, _ := newHost(t, testOptions())
	pidFile := filepath.Join(t.TempDir(), "pid")
	started := make(chan error, 1)
	go func() {
		_, err := h.Start(context.Background(), testSpec(t, "store-test", map[string]string{"TESTPLUGIN_PID_FILE": pidFile}))
		started <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Stop as soon as the plugin is known, started or not.
	waitFor(t, 10*time.Second, "the plugin to be listed", func() bool { return h.Get("store-test") != nil })
	if err := h.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	<-started
	if raw, err := os.ReadFile(pidFile); err == nil {
		pid, _ := strconv.Atoi(string(raw))
		if !processGone(pid) {
			track(t, h, pid)
			t.Errorf("process %d still runs after Stop", pid)
		}
	}
}

func TestPluginSurvivesStartingThreadExit(t *testing.T) {
	h, _ := newHost(t, testOptions())
	var (
		p   *Plugin
		err error
	)
	tid := onThrowawayThread(func() {
		p, err = h.Start(context.Background(), testSpec(t, "store-test", nil))
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	pid := p.Status().PID
	track(t, h, pid)
	waitFor(t, 10*time.Second, "the starting thread to exit", func() bool {
		_, err := os.Stat("/proc/self/task/" + strconv.Itoa(tid))
		return errors.Is(err, fs.ErrNotExist)
	})
	if v := get(t, store.NewClient(p.Client()), "_test", "pid"); v != strconv.Itoa(pid) {
		t.Errorf("reached PID %s, want %d", v, pid)
	}
	if s := p.Status(); processGone(pid) || s.Restarts != 0 || s.State != StateRunning {
		t.Errorf("after the starting thread exited: %+v", s)
	}
}

// onThrowawayThread runs f on a goroutine locked to an OS thread that ends
// when f returns, and returns that thread's ID.
func onThrowawayThread(f func()) int {
	tid := make(chan int, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if syscall.Gettid() == os.Getpid() {
			// Go parks the main thread instead of ending it. Holding it
			// here keeps the next goroutine off it.
			defer runtime.UnlockOSThread()
			tid <- onThrowawayThread(f)
			return
		}
		f()
		tid <- syscall.Gettid()
	}()
	return <-tid
}

func TestPluginDiesWithAgent(t *testing.T) {
	// go-plugin's socket folder, which a kill -9'd agent leaves behind,
	// goes in the test's temporary folder.
	_, pid, kill9 := startTestAgent(t, t.TempDir(), "")
	track(t, nil, pid)
	if processGone(pid) {
		t.Fatalf("plugin %d not running", pid)
	}
	kill9()
	waitFor(t, 10*time.Second, "the plugin to die with the agent", func() bool { return processGone(pid) })
}

// startTestAgent starts the test binary as an agent (runTestAgent) with
// TMPDIR tmp and data dir dataDir, and returns the agent's and its plugin's
// process IDs and a function that kills the agent with SIGKILL and waits
// for it (run at cleanup too).
func startTestAgent(t *testing.T, tmp, dataDir string) (agentPID, pluginPID int, kill9 func()) {
	t.Helper()
	agent := exec.Command(os.Args[0])
	agent.Env = append(os.Environ(), agentEnv+"="+testPlugin, agentDataDirEnv+"="+dataDir, "TMPDIR="+tmp)
	stdin, err := agent.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	agent.Stderr = os.Stderr
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	reap := func() {
		once.Do(func() {
			_ = agent.Process.Kill()
			stdin.Close()
			_ = agent.Wait()
		})
	}
	t.Cleanup(reap)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the plugin PID from the agent: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatalf("agent printed %q", line)
	}
	return agent.Process.Pid, pid, reap
}

// TestSocketDirsOfGoneAgentsAreReaped: an agent killed with SIGKILL (or by
// a panic) cannot remove its plugin socket directory; the next agent to
// start on the machine, whatever its data dir, removes it, and leaves the
// directory of an agent that still runs.
func TestSocketDirsOfGoneAgentsAreReaped(t *testing.T) {
	// A short TMPDIR: the plugins' socket paths must fit in 108 bytes.
	tmp, err := os.MkdirTemp("", "wps")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	agentPID, pluginPID, kill9 := startTestAgent(t, tmp, t.TempDir())
	track(t, nil, pluginPID)
	left, err := filepath.Glob(filepath.Join(tmp, socketPrefix+"*"))
	if err != nil || len(left) != 1 {
		t.Fatalf("socket directories of the agent (pid %d): %v, %v", agentPID, left, err)
	}
	kill9()
	waitFor(t, 10*time.Second, "the plugin to die with the agent", func() bool { return processGone(pluginPID) })
	if _, err := os.Stat(left[0]); err != nil {
		t.Fatalf("the killed agent's socket directory is gone already: %v", err)
	}
	// Another agent's that still runs (this test's process stands in).
	running := filepath.Join(tmp, fmt.Sprintf("%s0123456789-%d", socketPrefix, os.Getpid()))
	if err := os.MkdirAll(filepath.Join(running, "plugin123"), 0o700); err != nil {
		t.Fatal(err)
	}

	t.Setenv("TMPDIR", tmp)
	h := New(nil, Options{DataDir: t.TempDir()})
	if _, err := os.Stat(left[0]); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the killed agent's socket directory %s is still there (%v)", left[0], err)
	}
	if _, err := os.Stat(running); err != nil {
		t.Errorf("a running agent's socket directory was removed: %v", err)
	}
	own := h.socketDir
	if _, err := os.Stat(own); err != nil || filepath.Dir(own) != tmp {
		t.Fatalf("the new host's socket directory %q: %v", own, err)
	}
	if err := h.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(own); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Stop left the socket directory %s (%v)", own, err)
	}
}

// A plugin that takes longer than go-plugin's own 2 s to release what it
// holds on a clean stop gets its whole KillTimeout: it finishes and is not
// killed.
func TestStopWaitsForSlowClose(t *testing.T) {
	opts := testOptions()
	opts.KillTimeout = 10 * time.Second
	h, _ := newHost(t, opts)
	closed := filepath.Join(t.TempDir(), "closed")
	p := startPlugin(t, h, testSpec(t, "store-slow", map[string]string{
		"TESTPLUGIN_CLOSE_FILE": closed, "TESTPLUGIN_CLOSE_DELAY": "3s",
	}))
	pid := p.Status().PID
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if b, err := os.ReadFile(closed); err != nil || string(b) != "closed\n" {
		t.Fatalf("the plugin did not finish its Close: %q, %v", b, err)
	}
	if !processGone(pid) {
		t.Fatalf("process %d still runs after Stop", pid)
	}
}

// TestCleanStopLogsNoWarning: plugins that exit as soon as they are asked
// stop without a warning in the host's log (go-plugin's "error closing
// client during Kill" and "plugin failed to exit gracefully" were logged
// for every one of them).
func TestCleanStopLogsNoWarning(t *testing.T) {
	h, buf := newHost(t, testOptions())
	startPlugin(t, h, testSpec(t, "store-a", nil))
	startPlugin(t, h, testSpec(t, "store-b", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := h.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.Contains(line, "[WARN]") || strings.Contains(line, "[ERROR]") {
			t.Errorf("a clean stop logged: %s", line)
		}
	}
}

// TestCrashLoopingPluginIsShown: a plugin whose process dies on the same
// call, every time it is made again, is shown as crash-looping with its
// restarts and last error, and calls made meanwhile say why it is down.
func TestCrashLoopingPluginIsShown(t *testing.T) {
	opts := testOptions()
	opts.StableAfter = time.Minute
	h, _ := newHost(t, opts)
	p := startPlugin(t, h, testSpec(t, "store-crashy", nil))
	st := store.NewClient(p.Client())
	var downErr error
	waitFor(t, 30*time.Second, "the plugin to be shown crash-looping", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := st.Get(ctx, "_test", "exit") // the call that kills it, again and again
		if err != nil && strings.Contains(err.Error(), "crash-looping") {
			downErr = err
		}
		s := p.Status()
		return s.State == StateCrashLooping && downErr != nil
	})
	s := p.Status()
	if s.Restarts < CrashLoopAfter-1 || !strings.Contains(s.LastError, "exit status 3") {
		t.Errorf("status %+v: want the restarts counted and the exit as last error", s)
	}
	if !errors.Is(downErr, sdk.ErrPluginUnavailable) || !strings.Contains(downErr.Error(), "lost 3 times in a row") || !strings.Contains(downErr.Error(), "exit status 3") {
		t.Errorf("a call while it is down: %v; want ErrPluginUnavailable saying it crash-loops and why", downErr)
	}
	// A process that is not made to crash again is served, still marked
	// crash-looping until it has run StableAfter.
	waitFor(t, 20*time.Second, "the plugin to serve again", func() bool {
		return p.Status().PID != 0 && get(t, st, "_test", "pid") == strconv.Itoa(p.Status().PID)
	})
	if s := p.Status(); s.State != StateCrashLooping {
		t.Errorf("right after the loop, state %q, want %q", s.State, StateCrashLooping)
	}
	track(t, h, p.Status().PID)
}
