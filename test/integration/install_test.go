package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/testutil"
)

// TestConfigCheckedBeforeAnythingIsCreated starts a real agent on
// configurations whose plugin binaries are missing, with its cluster port
// already taken: it must fail naming the plugin and the path, not the port
// (it never tried to bind), and leave no data dir and no API socket.
func TestConfigCheckedBeforeAnythingIsCreated(t *testing.T) {
	bin := testutil.Install(t, managerPlugins...)
	tests := []struct {
		name  string
		extra func(dir string) string // more HCL
		want  func(dir string) []string
	}{
		{
			name: "plugin block path missing",
			extra: func(dir string) string {
				return fmt.Sprintf("plugin \"scheduler-roundrobin\" {\n  path = %q\n}\n", filepath.Join(dir, "gone"))
			},
			want: func(dir string) []string {
				return []string{`plugin "scheduler-roundrobin" (manager.scheduler): binary ` + filepath.Join(dir, "gone") + " does not exist"}
			},
		},
		{
			name:  "plugin_dir without the plugins",
			extra: func(dir string) string { return fmt.Sprintf("plugin_dir = %q\n", dir) },
			want: func(dir string) []string {
				return []string{
					`plugin "store-bolt" (manager.store): binary ` + filepath.Join(dir, "store-bolt") + " does not exist",
					`plugin "scheduler-roundrobin" (manager.scheduler): binary ` + filepath.Join(dir, "scheduler-roundrobin") + " does not exist",
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			data, socket := filepath.Join(dir, "data"), filepath.Join(dir, "warren.sock")
			hcl := fmt.Sprintf("data_dir = %q\napi_socket = %q\nbind_addr = %q\nmanager {}\n%s",
				data, socket, taken.Addr().String(), tt.extra(dir))
			cfg := filepath.Join(dir, "agent.hcl")
			if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, errOut, code := runWithContext(ctx, t, bin, "agent", "-config", cfg)
			if code == 0 {
				t.Fatalf("the agent ran with missing plugins:\n%s%s", out, errOut)
			}
			for _, w := range tt.want(dir) {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
			if strings.Contains(errOut, "bind_addr") {
				t.Errorf("the agent tried the cluster port before checking its plugins:\n%s", errOut)
			}
			for _, p := range []string{data, socket} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was created by an agent whose configuration is wrong", p)
				}
			}
		})
	}
	if pids := testutil.PluginPIDs(bin); len(pids) != 0 {
		t.Fatalf("plugin processes left behind: %v", pids)
	}
}

// TestSIGHUPIsRefusedLoudly: the agent reloads nothing, so SIGHUP (which
// ends a Go program that does not handle it) is logged as unsupported and
// the agent keeps serving. Its log, written to a pipe as under systemd, has
// no colour codes.
func TestSIGHUPIsRefusedLoudly(t *testing.T) {
	a, _ := startAgent(t, "")
	pid := a.PID()
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the agent to log that reload is not supported", func() bool {
		return strings.Contains(a.Output(), "reload is not supported") || !testutil.Alive(pid)
	})
	if !testutil.Alive(pid) {
		t.Fatalf("SIGHUP ended the agent:\n%s", a.Output())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := a.Client().ClusterInfo(ctx, &apiv1.ClusterInfoRequest{}); err != nil {
		t.Fatalf("the API stopped answering after SIGHUP: %v", err)
	}
	a.Stop()
	if out := a.Output(); strings.Contains(out, "\x1b[") {
		t.Errorf("the agent's log on a pipe holds ANSI escape codes:\n%q", out)
	}
}

// TestMakeInstall runs `make install DESTDIR=...` over the binaries the
// tests built and checks the layout, that the paths in the unit and the
// sample config are where things went, that a second install keeps an
// edited agent.hcl, that the sample config passes `warren agent -check`
// (creating nothing), and, where systemd-analyze exists, that it verifies
// the unit.
func TestMakeInstall(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	root := testutil.RepoRoot(t)
	entries, err := os.ReadDir(filepath.Join(root, "plugins"))
	if err != nil {
		t.Fatal(err)
	}
	var plugins []string
	for _, e := range entries {
		if e.IsDir() {
			plugins = append(plugins, e.Name())
		}
	}
	buildDir := filepath.Dir(testutil.Install(t, plugins...))

	tests := []struct {
		name      string
		args      []string
		bin       string // where warren goes, without DESTDIR
		pluginDir string
	}{
		{"defaults", nil, "/usr/local/bin/warren", "/usr/local/lib/warren/plugins"},
		{"PREFIX", []string{"PREFIX=/opt/warren"}, "/opt/warren/bin/warren", "/opt/warren/lib/warren/plugins"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := t.TempDir()
			install := func() {
				t.Helper()
				args := append([]string{"-C", root, "install", "DESTDIR=" + dest, "BIN=" + buildDir}, tt.args...)
				if out, err := exec.Command("make", args...).CombinedOutput(); err != nil {
					t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
				}
			}
			install()

			unit := filepath.Join(dest, "etc/systemd/system/warren.service")
			sample := filepath.Join(dest, "etc/warren/agent.hcl")
			want := map[string]os.FileMode{
				filepath.Join(dest, tt.bin): 0o755,
				unit:                        0o644,
				sample:                      0o600,
			}
			for _, p := range plugins {
				want[filepath.Join(dest, tt.pluginDir, p)] = 0o755
			}
			for path, mode := range want {
				info, err := os.Stat(path)
				if err != nil {
					t.Errorf("not installed: %v", err)
					continue
				}
				if info.Mode().Perm() != mode {
					t.Errorf("%s: mode %s, want %s", path, info.Mode().Perm(), mode)
				}
			}
			unitText := readFile(t, unit)
			for _, line := range []string{
				"ExecStart=" + tt.bin + " agent -config /etc/warren/agent.hcl",
				"KillMode=process", "Restart=on-failure", "TimeoutStopSec=60",
			} {
				if !strings.Contains(unitText, "\n"+line+"\n") {
					t.Errorf("the unit lacks %q:\n%s", line, unitText)
				}
			}
			if strings.Contains(unitText, "\nExecReload=") {
				t.Errorf("the unit has an ExecReload, but the agent reloads nothing:\n%s", unitText)
			}
			sampleText := readFile(t, sample)
			if !strings.Contains(sampleText, fmt.Sprintf("plugin_dir = %q", tt.pluginDir)) {
				t.Errorf("the sample agent.hcl does not point plugin_dir at %s:\n%s", tt.pluginDir, sampleText)
			}
			if strings.Contains(unitText+sampleText, "@") {
				t.Errorf("a placeholder was left unfilled:\n%s\n%s", unitText, sampleText)
			}

			// An operator's agent.hcl survives the next install.
			edited := sampleText + "\n# edited by the operator\n"
			if err := os.WriteFile(sample, []byte(edited), 0o600); err != nil {
				t.Fatal(err)
			}
			install()
			if got := readFile(t, sample); got != edited {
				t.Errorf("make install overwrote the existing agent.hcl:\n%s", got)
			}

			// The sample as installed passes -check, once its absolute
			// paths carry the DESTDIR they were installed under.
			data := filepath.Join(dest, "var/lib/warren")
			socket := filepath.Join(dest, "run/warren/warren.sock")
			checked := strings.NewReplacer(
				`"`+tt.pluginDir+`"`, fmt.Sprintf("%q", filepath.Join(dest, tt.pluginDir)),
				`"/var/lib/warren"`, fmt.Sprintf("%q", data),
				`"/run/warren/warren.sock"`, fmt.Sprintf("%q", socket),
			).Replace(sampleText)
			if checked == sampleText {
				t.Fatalf("the sample's paths were not found to rewrite:\n%s", sampleText)
			}
			cfg := filepath.Join(t.TempDir(), "agent.hcl")
			if err := os.WriteFile(cfg, []byte(checked), 0o600); err != nil {
				t.Fatal(err)
			}
			out, errOut, code := testutil.Run(t, filepath.Join(dest, tt.bin), "agent", "-config", cfg, "-check")
			if code != 0 || !strings.Contains(out, "is valid") || errOut != "" {
				t.Fatalf("warren agent -check on the sample: status %d\n%s%s", code, out, errOut)
			}
			for _, p := range []string{data, filepath.Dir(socket)} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("-check created %s", p)
				}
			}

			analyze, err := exec.LookPath("systemd-analyze")
			if err != nil {
				t.Log("systemd-analyze is not installed: the unit is not verified")
				return
			}
			// ExecStart must name an existing binary: the one under DESTDIR.
			vdir := t.TempDir()
			vunit := filepath.Join(vdir, "warren.service")
			text := strings.ReplaceAll(unitText, "ExecStart="+tt.bin, "ExecStart="+filepath.Join(dest, tt.bin))
			if err := os.WriteFile(vunit, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			vout, err := exec.Command(analyze, "verify", vunit).CombinedOutput()
			if err != nil || len(vout) > 0 {
				t.Errorf("systemd-analyze verify: %v\n%s", err, vout)
			}
		})
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
