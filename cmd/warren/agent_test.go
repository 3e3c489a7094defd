package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/core/agent"
)

// runAgentCmd runs `warren args...` with the agent started by start instead
// of agent.Run.
func runAgentCmd(ctx context.Context, start func(context.Context, agent.Options) error, args ...string) result {
	root := newRootCmd()
	for _, c := range root.Commands() {
		if c.Name() == "agent" {
			root.RemoveCommand(c)
		}
	}
	root.AddCommand(newAgentCmdWith(start))
	var stdout, stderr bytes.Buffer
	code := execute(ctx, root, args, &stdout, &stderr)
	return result{stdout.String(), stderr.String(), code}
}

// recordStart is an agent start that records its options and whether the
// data directory existed while it ran.
type recordStart struct {
	called  bool
	opts    agent.Options
	dirSeen bool
}

func (r *recordStart) start(_ context.Context, opts agent.Options) error {
	r.called, r.opts = true, opts
	info, err := os.Stat(opts.Config.DataDir)
	r.dirSeen = err == nil && info.IsDir()
	return nil
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cluster.hcl")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAgentDev(t *testing.T) {
	var rec recordStart
	r := runAgentCmd(context.Background(), rec.start, "agent", "-dev", "-log-level", "debug")
	if r.code != 0 {
		t.Fatalf("status %d, stderr:\n%s", r.code, r.stderr)
	}
	cfg := rec.opts.Config
	if !rec.called || cfg.Manager == nil {
		t.Fatalf("the agent was started with %+v, want the default configuration", cfg)
	}
	if !rec.dirSeen || !strings.HasPrefix(filepath.Base(cfg.DataDir), "warren-dev-") {
		t.Errorf("data_dir %q: existed while running: %v", cfg.DataDir, rec.dirSeen)
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Errorf("data_dir %q still there after exit (%v)", cfg.DataDir, err)
		os.RemoveAll(cfg.DataDir)
	}
	if !rec.opts.Logger.IsDebug() {
		t.Error("-log-level debug did not set the logger's level")
	}
	if !strings.Contains(r.stderr, "data_dir="+cfg.DataDir) {
		t.Errorf("the data_dir was not logged:\n%s", r.stderr)
	}
}

func TestAgentDevNetwork(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"agent", "-dev"}, "network-wireguard"},
		{[]string{"agent", "-dev", "-dev-network", "network-wireguard"}, "network-wireguard"},
		{[]string{"agent", "-dev", "-dev-network", "none"}, ""},
	} {
		var rec recordStart
		if r := runAgentCmd(context.Background(), rec.start, tc.args...); r.code != 0 {
			t.Fatalf("%v: status %d, stderr:\n%s", tc.args, r.code, r.stderr)
		}
		if got := rec.opts.Config.Worker.Network; got != tc.want {
			t.Errorf("%v: worker.network = %q, want %q", tc.args, got, tc.want)
		}
	}
}

func TestAgentDevKeep(t *testing.T) {
	var rec recordStart
	r := runAgentCmd(context.Background(), rec.start, "agent", "--dev", "--keep")
	if r.code != 0 {
		t.Fatalf("status %d, stderr:\n%s", r.code, r.stderr)
	}
	dir := rec.opts.Config.DataDir
	defer os.RemoveAll(dir)
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("-keep: data_dir %q is gone: %v", dir, err)
	}
	if rec.opts.Logger.IsDebug() || !rec.opts.Logger.IsInfo() {
		t.Error("the logger is not at the default level info")
	}
}

func TestAgentConfig(t *testing.T) {
	path := writeConfig(t, "log_level = \"warn\"\nmanager {}\n")
	for _, args := range [][]string{
		{"agent", "-config", path},
		{"agent", "-config=" + path},
		{"agent", "--config", path},
	} {
		var rec recordStart
		r := runAgentCmd(context.Background(), rec.start, args...)
		if r.code != 0 {
			t.Fatalf("%q: status %d, stderr:\n%s", args, r.code, r.stderr)
		}
		if rec.opts.Config.Manager == nil || rec.opts.Config.Worker != nil {
			t.Errorf("%q: the agent got %+v", args, rec.opts.Config)
		}
		if l := rec.opts.Logger; l.IsInfo() || !l.IsWarn() {
			t.Errorf("%q: the logger is not at log_level warn", args)
		}
	}

	var rec recordStart
	r := runAgentCmd(context.Background(), rec.start, "agent", "-config", path, "-log-level=trace")
	if r.code != 0 || !rec.opts.Logger.IsTrace() {
		t.Errorf("-log-level=trace: status %d, trace %v, stderr:\n%s", r.code, rec.opts.Logger.IsTrace(), r.stderr)
	}
}

func TestAgentConfigErrors(t *testing.T) {
	path := writeConfig(t, "manager {\n  heartbeat_ttl = \"ten\"\n}\n")
	var rec recordStart
	r := runAgentCmd(context.Background(), rec.start, "agent", "-config", path)
	if r.code != 1 || rec.called {
		t.Fatalf("status %d, agent started %v; want 1 and not started", r.code, rec.called)
	}
	// The diagnostics are printed as they are, file:line:col first.
	if !strings.HasPrefix(r.stderr, path+":2:19: Error: ") || !strings.Contains(r.stderr, `heartbeat_ttl = "ten"`) {
		t.Errorf("stderr:\n%s", r.stderr)
	}

	r = runAgentCmd(context.Background(), rec.start, "agent", "-config", filepath.Join(t.TempDir(), "missing.hcl"))
	if r.code != 1 || rec.called || !strings.Contains(r.stderr, "no such file or directory") {
		t.Errorf("missing file: status %d, stderr:\n%s", r.code, r.stderr)
	}
}

func TestAgentUsage(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"agent"}, "Error: no configuration: give -config FILE|DIR, or -dev for a throwaway single-node cluster\n"},
		{[]string{"agent", "-dev", "-config", "x.hcl"}, "Error: -config and -dev cannot be used together\n"},
		{[]string{"agent", "-config", "x.hcl", "-keep"}, "Error: -keep only applies to -dev\n"},
		{[]string{"agent", "-config", "x.hcl", "-dev-network", "network-wireguard"}, "Error: -dev-network only applies to -dev: set worker { network = \"network-wireguard\" } in the configuration\n"},
		{[]string{"agent", "-dev", "extra"}, "Error: \"warren agent\" takes no arguments, but got \"extra\"\n"},
		{[]string{"agent", "-dev", "-socket", "/tmp/x.sock"}, "Error: --socket is for the commands that talk to an agent; the agent itself takes its settings from -config (api_socket, log_level...)\n"},
		{[]string{"agent", "-dev", "-log-level", "loud"}, "Error: invalid argument \"loud\" for \"--log-level\" flag: use trace, debug, info, warn or error\n"},
	}
	for _, tt := range tests {
		var rec recordStart
		r := runAgentCmd(context.Background(), rec.start, tt.args...)
		want := tt.want + "Run 'warren agent --help' for usage.\n"
		if r.code != 1 || rec.called || r.stderr != want {
			t.Errorf("%q: status %d, stderr %q, want %q", tt.args, r.code, r.stderr, want)
		}
	}
}

func TestAgentStopsOnSignal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	start := func(ctx context.Context, _ agent.Options) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}
	done := make(chan result, 1)
	go func() { done <- runAgentCmd(ctx, start, "agent", "-dev") }()
	<-started
	cancel()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Errorf("status %d after a signal, want 0; stderr:\n%s", r.code, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent command did not return")
	}
}

func TestAgentFailure(t *testing.T) {
	start := func(context.Context, agent.Options) error { return errors.New(`plugin "store-bolt": handshake failed`) }
	r := runAgentCmd(context.Background(), start, "agent", "-dev")
	if r.code != 1 || !strings.HasSuffix(r.stderr, "Error: plugin \"store-bolt\": handshake failed\n") {
		t.Errorf("status %d, stderr:\n%s", r.code, r.stderr)
	}
}

// TestAgentCheck: -check checks the configuration as the agent would
// before starting, plugin binaries included, prints the result and never
// starts the agent nor creates its data dir.
func TestAgentCheck(t *testing.T) {
	plugins := t.TempDir()
	for _, p := range []string{"store-bolt", "scheduler-roundrobin", "spare"} {
		if err := os.WriteFile(filepath.Join(plugins, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	head := "data_dir = \"" + data + "\"\nplugin_dir = \"" + plugins + "\"\n"
	tests := []struct {
		name   string
		hcl    string
		code   int
		stdout string
		stderr []string
	}{
		{name: "valid", hcl: "manager {}\n", stdout: "is valid\n"},
		{name: "unused block warned", hcl: "manager {}\nplugin \"spare\" {}\n", stdout: "is valid\n",
			stderr: []string{`Warning: plugin "spare" (block at `, "is not used by any role"}},
		{name: "missing runtime", hcl: "manager {}\nworker {}\n", code: 1,
			stderr: []string{`Error: plugin "runtime-containerd" (worker.runtime): binary ` + filepath.Join(plugins, "runtime-containerd") + " does not exist"}},
		{name: "two missing, one line each", hcl: "manager {\n  store = \"a\"\n  scheduler = \"b\"\n}\n", code: 1,
			stderr: []string{"Error: plugin \"a\" (manager.store)", "\nError: plugin \"b\" (manager.scheduler)"}},
		{name: "HCL error", hcl: "manager {\n  bogus = 1\n}\n", code: 1, stderr: []string{":4:3: Error: "}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeConfig(t, head+tt.hcl)
			var rec recordStart
			r := runAgentCmd(context.Background(), rec.start, "agent", "-config", path, "-check")
			if r.code != tt.code || rec.called {
				t.Fatalf("status %d (want %d), agent started %v; stderr:\n%s", r.code, tt.code, rec.called, r.stderr)
			}
			if tt.stdout != "" && r.stdout != "configuration "+path+" "+tt.stdout {
				t.Errorf("stdout %q", r.stdout)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			if len(tt.stderr) == 0 && r.stderr != "" {
				t.Errorf("stderr:\n%s", r.stderr)
			}
			if _, err := os.Stat(data); err == nil {
				t.Errorf("-check created %s", data)
			}
		})
	}

	for _, args := range [][]string{
		{"agent", "-dev", "-check"},
		{"agent", "-config", "x.hcl", "-check", "-force-new-cluster"},
	} {
		var rec recordStart
		if r := runAgentCmd(context.Background(), rec.start, args...); r.code != 1 || rec.called {
			t.Errorf("%q: status %d, agent started %v", args, r.code, rec.called)
		}
	}
}
