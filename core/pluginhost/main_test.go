package pluginhost

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2/hclparse"

	"github.com/warrenorch/warren/sdk"
)

// testPlugin is the path of testplugin-memstore, built by TestMain.
var testPlugin string

// agentEnv makes the test binary act as a small agent (see runTestAgent);
// agentDataDirEnv is that agent's Options.DataDir.
const (
	agentEnv        = "PLUGINHOST_TEST_AGENT_PLUGIN"
	agentDataDirEnv = "PLUGINHOST_TEST_AGENT_DATA_DIR"
)

func TestMain(m *testing.M) {
	if path := os.Getenv(agentEnv); path != "" {
		runTestAgent(path)
		return
	}
	dir, err := os.MkdirTemp("", "pluginhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testPlugin = filepath.Join(dir, "testplugin-memstore")
	build := exec.Command("go", "build", "-o", testPlugin, "./testdata/storeplugin")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the test plugin: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runTestAgent starts the plugin at path through a Host, prints its process
// ID and waits for stdin to close. TestPluginDiesWithAgent kill -9's it.
func runTestAgent(path string) {
	f, diags := hclparse.NewParser().ParseHCL([]byte(`path = "/agent"`), "agent.hcl")
	if diags.HasErrors() {
		fmt.Fprintln(os.Stderr, diags)
		os.Exit(1)
	}
	h := New(nil, Options{DataDir: os.Getenv(agentDataDirEnv)})
	p, err := h.Start(context.Background(), Spec{Name: "store-test", Kind: sdk.KindStore, Path: path, Config: f.Body})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(p.Status().PID)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	_ = h.Stop(context.Background())
}

// syncBuffer is a bytes.Buffer safe for the host's concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testOptions are fast but forgiving enough for a loaded 2-core machine
// running with -race.
func testOptions() Options {
	return Options{
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		HealthInterval: 200 * time.Millisecond,
		HealthTimeout:  time.Second,
		StartTimeout:   20 * time.Second,
		CallTimeout:    10 * time.Second,
		KillTimeout:    5 * time.Second,
	}
}

// newHost returns a Host logging into a buffer, stopped when the test ends;
// the log is printed if the test failed.
func newHost(t testing.TB, opts Options) (*Host, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	logger := hclog.New(&hclog.LoggerOptions{Name: "warren", Level: hclog.Debug, Output: buf})
	h := New(logger, opts)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := h.Stop(ctx); err != nil {
			t.Logf("host.Stop: %v", err)
		}
		if t.Failed() {
			t.Logf("host log:\n%s", buf)
		}
	})
	return h, buf
}

// testSpec describes the test plugin with config `path = "/var/lib/test"`
// and the given extra environment.
func testSpec(t testing.TB, name string, env map[string]string) Spec {
	t.Helper()
	body, rng := pluginBlock(t, `plugin "`+name+`" {
  config {
    path = "/var/lib/test"
  }
}`)
	return Spec{
		Name: name, Kind: sdk.KindStore, Use: "manager.store", Path: testPlugin,
		Env: env, Config: body, ConfigRange: rng,
	}
}

// startPlugin starts spec on h and fails the test if that fails.
func startPlugin(t testing.TB, h *Host, spec Spec) *Plugin {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := h.Start(ctx, spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	track(t, h, p.Status().PID)
	return p
}

// track makes sure process pid is gone when the test ends, whatever
// happened: it stops h (if not nil; stopping twice is harmless), then
// reports and kills the process if it is still there.
func track(t testing.TB, h *Host, pid int) {
	if pid <= 0 {
		return
	}
	t.Cleanup(func() {
		if h != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_ = h.Stop(ctx)
		}
		if !processGone(pid) {
			t.Errorf("process %d outlived the test; killing it", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

// processGone reports whether pid no longer runs: no such process, or a
// zombie.
func processGone(pid int) bool { return !processRuns(pid) }

// waitFor polls cond until it holds, failing the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
