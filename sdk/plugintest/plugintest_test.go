package plugintest_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/plugintest"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// greeterBin is the test plugin (testdata/greeter), built once by TestMain.
var greeterBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "plugintest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	greeterBin = filepath.Join(dir, "greeter")
	if out, err := exec.Command("go", "build", "-o", greeterBin, "./testdata/greeter").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./testdata/greeter: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// scheduleErr is the greeter's Schedule error, which says what it was
// configured with and given.
func scheduleErr(t *testing.T, p *plugintest.Plugin) error {
	t.Helper()
	_, err := scheduler.NewClient(p.Conn).Schedule(t.Context(), scheduler.Request{})
	return err
}

func TestStart(t *testing.T) {
	dataDir := t.TempDir()
	tests := []struct {
		name string
		opts []plugintest.Option
		want string
	}{
		{"defaults", nil, `greeting "", data dir "", GREETER_ENV ""`},
		{"config map", []plugintest.Option{plugintest.WithConfig(map[string]any{"greeting": "hello"})}, `greeting "hello"`},
		{"config JSON", []plugintest.Option{plugintest.WithConfig([]byte(`{"greeting":"hi"}`))}, `greeting "hi"`},
		{"env and data dir", []plugintest.Option{plugintest.WithEnv("GREETER_ENV=set"), plugintest.WithDataDir(dataDir)},
			fmt.Sprintf(`data dir %q, GREETER_ENV "set"`, dataDir)},
		{"command", []plugintest.Option{plugintest.WithCommand(func(path string) *exec.Cmd {
			cmd := exec.Command(path)
			cmd.Env = append(os.Environ(), "GREETER_ENV=from-command")
			return cmd
		})}, `GREETER_ENV "from-command"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := plugintest.Start(t, greeterBin, tt.opts...)
			if p.Info.Kind != sdk.KindScheduler || p.Info.Name != "greeter" {
				t.Errorf("Info = %+v, want the greeter scheduler", p.Info)
			}
			err := scheduleErr(t, p)
			if !errors.Is(err, sdk.ErrUnsupported) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Schedule = %v, want sdk.ErrUnsupported saying %s", err, tt.want)
			}
		})
	}
}

func TestWithoutConfigure(t *testing.T) {
	p := plugintest.Start(t, greeterBin, plugintest.WithoutConfigure())
	if err := sdk.NewBaseClient(p.Conn).Configure(t.Context(), []byte(`{"greeting":"late"}`)); err != nil {
		t.Fatalf("Configure by the test: %v", err)
	}
	if err := scheduleErr(t, p); !strings.Contains(err.Error(), `greeting "late"`) {
		t.Errorf("Schedule = %v, want the test's own configuration", err)
	}
}

// TestKill9Restart kills the plugin as a crash would and starts it again,
// configured as before.
func TestKill9Restart(t *testing.T) {
	p := plugintest.Start(t, greeterBin, plugintest.WithConfig(map[string]any{"greeting": "again"}))
	first := p.PID()
	p.Kill9()
	if !p.Exited() {
		t.Fatal("Exited() = false after Kill9")
	}
	if err := scheduleErr(t, p); !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Fatalf("Schedule on a killed plugin = %v, want sdk.ErrPluginUnavailable", err)
	}
	p.Restart()
	if p.PID() == first || p.Exited() {
		t.Fatalf("after Restart: pid %d (was %d), exited %v; want a new running process", p.PID(), first, p.Exited())
	}
	if err := scheduleErr(t, p); !strings.Contains(err.Error(), `greeting "again"`) {
		t.Errorf("Schedule after Restart = %v, want the same configuration", err)
	}
}

// envChild makes TestLogsChild run: it is the test run by TestLogs in a
// child process, failing when envChild is "fail".
const envChild = "PLUGINTEST_CHILD"

func TestLogsChild(t *testing.T) {
	mode := os.Getenv(envChild)
	if mode == "" {
		t.Skip("run by TestLogs in a child process")
	}
	p := plugintest.Start(t, greeterBin, plugintest.WithConfig(map[string]any{"greeting": "logged"}))
	p.Kill9()
	p.Restart()
	if mode == "fail" {
		t.Error("failing on purpose")
	}
}

// TestLogs runs TestLogsChild with go test -v and checks that the plugin's
// log and go-plugin's lines show only when the test fails or
// WARREN_PLUGIN_LOGS asks for them.
func TestLogs(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const (
		pluginLine = "greeter configured"
		debugLine  = "greeter debug line"
		goPlugin   = "plugin process exited" // go-plugin's own line, for each process
	)
	tests := []struct {
		name, mode, logs string
		want, notWant    []string
	}{
		{"quiet by default", "pass", "", nil, []string{pluginLine, debugLine, goPlugin, "[DEBUG]", "[INFO]"}},
		{"shown on failure", "fail", "", []string{pluginLine, goPlugin, "process 1", "process 2"}, []string{debugLine, "[DEBUG]"}},
		{"shown when asked", "pass", "1", []string{pluginLine, goPlugin}, []string{debugLine}},
		{"debug when asked", "pass", "debug", []string{pluginLine, debugLine, "[DEBUG]"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(self, "-test.run=^TestLogsChild$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), envChild+"="+tt.mode, plugintest.EnvLogs+"="+tt.logs)
			out, err := cmd.CombinedOutput()
			if failed := err != nil; failed != (tt.mode == "fail") {
				t.Fatalf("child test: %v, want failed = %v\n%s", err, tt.mode == "fail", out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("child output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(string(out), w) {
					t.Errorf("child output has %q:\n%s", w, out)
				}
			}
		})
	}
}
