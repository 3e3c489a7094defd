package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) {
	// Fixed, so that the goldens do not depend on the machine's host name.
	hostname = func() (string, error) { return "test-host", nil }
	os.Exit(m.Run())
}

// load loads path and fails the test on any diagnostic.
func load(t *testing.T, path string) *Agent {
	t.Helper()
	a, diags := Load(path)
	if len(diags) > 0 {
		t.Fatalf("Load(%s): unexpected diagnostics:\n%v", path, DiagnosticsError(a.Files(), diags))
	}
	return a
}

func TestValid(t *testing.T) {
	tests := map[string]func(t *testing.T, a *Agent){
		"manager-only.hcl": func(t *testing.T, a *Agent) {
			want := Default()
			want.NodeName = "test-host"
			want.Worker = nil
			want.files = a.files
			if !reflect.DeepEqual(a, want) {
				t.Errorf("got %+v\nwant %+v", a, want)
			}
			if !reflect.DeepEqual(a.Manager, defaultManager()) {
				t.Errorf("Manager = %+v, want the defaults %+v", a.Manager, defaultManager())
			}
		},
		"worker-only.hcl": func(t *testing.T, a *Agent) {
			if a.Manager != nil {
				t.Errorf("Manager = %+v, want nil", a.Manager)
			}
			if a.NodeName != "edge-7" {
				t.Errorf("NodeName = %q", a.NodeName)
			}
			wantLabels := map[string]string{"zone": "edge-1", "warren.io/arch": "arm64", "example.com/Tier_2": ""}
			if !reflect.DeepEqual(a.Worker.Labels, wantLabels) {
				t.Errorf("Labels = %v, want %v", a.Worker.Labels, wantLabels)
			}
			if a.Worker.Runtime != "runtime-containerd" || a.Worker.Network != "network-wireguard" || a.Worker.HeartbeatInterval != 2*time.Second {
				t.Errorf("Worker defaults not applied: %+v", a.Worker)
			}
		},
		"worker-no-network.hcl": func(t *testing.T, a *Agent) {
			if a.Worker.Network != "" {
				t.Errorf(`network = "none": Network = %q, want "" (no network plugin)`, a.Worker.Network)
			}
		},
		"full.hcl": func(t *testing.T, a *Agent) {
			got := *a
			got.Plugins, got.files = nil, nil
			want := Agent{
				DataDir:        "/srv/warren",
				BindAddr:       "0.0.0.0:7421",
				Advertise:      "10.0.0.5:7421",
				APISocket:      "/tmp/warren-test/api.sock",
				APISocketGroup: "warren",
				PluginDir:      "/opt/warren/plugins",
				LogLevel:       "debug",
				NodeName:       "node-01",
				MetricsAddr:    "127.0.0.1:9421",
				MemoryLimit:    128 << 20,
				Manager: &Manager{
					Store:                "store-etcd",
					Scheduler:            "scheduler-binpack",
					HeartbeatTTL:         15 * time.Second,
					SnapshotThreshold:    100,
					SnapshotInterval:     90 * time.Second,
					TrailingLogs:         0,
					NodeCertTTL:          720 * time.Hour,
					OverlayRange:         "172.30.0.0/16",
					OverlayNodePrefix:    26,
					ClusterDomain:        "edge",
					EventSubscriberBytes: 4 << 20,
				},
				Worker: &Worker{
					Runtime:           "runtime-fake",
					Network:           "network-host",
					Labels:            map[string]string{"zone": "eu-west-1a", "gpu": "true"},
					HeartbeatInterval: 500 * time.Millisecond,
					RuntimeTimeout:    10 * time.Second,
				},
				Join: &Join{
					Addresses: []string{"10.0.0.1:7420", "manager-2.example.com:7420"},
					Token:     "WRN-1-0bfw1op2mu3318pksl6p3xjaut1yi776wgewzcqqpsqcnjir3d-d2f0shafj2wq57sutyjtm12i7",
				},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}

			if len(a.Plugins) != 2 || a.Plugins[0].Name != "store-etcd" || a.Plugins[1].Name != "scheduler-binpack" {
				t.Fatalf("Plugins = %+v", a.Plugins)
			}
			etcd := a.Plugin("store-etcd")
			if etcd.Path != "/usr/local/bin/warren-store-etcd" {
				t.Errorf("Path = %q", etcd.Path)
			}
			if want := []string{"--verbose", "--cache", "64"}; !slices.Equal(etcd.Args, want) {
				t.Errorf("Args = %q, want %q", etcd.Args, want)
			}
			if want := map[string]string{"ETCD_ENDPOINTS": "http://10.0.0.9:2379", "EMPTY": ""}; !reflect.DeepEqual(etcd.Env, want) {
				t.Errorf("Env = %v, want %v", etcd.Env, want)
			}
			if etcd.DeclRange.Start.Line != 34 || etcd.ConfigRange.Start.Line != 40 {
				t.Errorf("DeclRange = %v, ConfigRange = %v; want lines 34 and 40", etcd.DeclRange, etcd.ConfigRange)
			}
			// The config body is passed through undecoded, nested block and all.
			content, diags := etcd.Config.Content(&hcl.BodySchema{
				Attributes: []hcl.AttributeSchema{{Name: "endpoints"}, {Name: "timeout"}},
				Blocks:     []hcl.BlockHeaderSchema{{Type: "tls"}},
			})
			if diags.HasErrors() {
				t.Fatalf("config body: %v", diags)
			}
			if v, _ := content.Attributes["timeout"].Expr.Value(nil); v.AsString() != "5s" {
				t.Errorf("config timeout = %#v", v)
			}
			if len(content.Blocks) != 1 {
				t.Errorf("config blocks = %d, want 1", len(content.Blocks))
			}

			bin := a.Plugin("scheduler-binpack")
			if bin.Path != "" || bin.Args != nil || bin.Env != nil {
				t.Errorf("empty plugin block = %+v", bin)
			}
			if attrs, diags := bin.Config.JustAttributes(); diags.HasErrors() || len(attrs) != 0 {
				t.Errorf("absent config block: attrs %v, diags %v", attrs, diags)
			}
			if bin.ConfigRange != bin.DeclRange {
				t.Errorf("absent config block: ConfigRange %v, want DeclRange %v", bin.ConfigRange, bin.DeclRange)
			}
		},
		"ipv6-and-nulls.hcl": func(t *testing.T, a *Agent) {
			if a.BindAddr != "[::1]:7420" || a.Advertise != "[::1]:7420" {
				t.Errorf("BindAddr, Advertise = %q, %q; want [::1]:7420 for both", a.BindAddr, a.Advertise)
			}
			if a.LogLevel != "info" || a.Manager.HeartbeatTTL != 10*time.Second || len(a.Worker.Labels) != 0 {
				t.Errorf("null did not mean the default: %+v %+v %+v", a, a.Manager, a.Worker)
			}
			p := a.Plugin("network-wireguard")
			if p.Path != "" || len(p.Args) != 0 || len(p.Env) != 0 {
				t.Errorf("plugin = %+v", p)
			}
		},
		"event-subscriber-bytes.hcl": func(t *testing.T, a *Agent) {
			if got := a.Manager.EventSubscriberBytes; got != 1<<20 {
				t.Errorf("EventSubscriberBytes = %d, want %d", got, 1<<20)
			}
		},
		"hostname-advertise.hcl": func(t *testing.T, a *Agent) {
			if a.Advertise != "node-3.cluster.internal:7420" {
				t.Errorf("Advertise = %q", a.Advertise)
			}
		},
	}

	files, err := filepath.Glob("testdata/valid/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(tests) {
		t.Errorf("%d files in testdata/valid, %d test cases: keep them in step", len(files), len(tests))
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			check := tests[name]
			if check == nil {
				t.Fatalf("no checks for %s", path)
			}
			check(t, load(t, path))
		})
	}
}

// TestInvalid loads each testdata/invalid/*.hcl and compares the
// DiagnosticsError text with the .golden file next to it.
func TestInvalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 15 {
		t.Errorf("only %d invalid cases", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			a, diags := Load(path)
			checkGolden(t, strings.TrimSuffix(path, ".hcl")+".golden", a, diags)
		})
	}
}

func checkGolden(t *testing.T, golden string, a *Agent, diags hcl.Diagnostics) {
	t.Helper()
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			t.Errorf("diagnostic %q has severity %v, want error", d.Summary, d.Severity)
		}
	}
	err := DiagnosticsError(a.Files(), diags)
	if err == nil {
		t.Fatalf("no errors")
	}
	got := err.Error() + "\n"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("diagnostics differ from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", golden, got, want)
	}
}

func TestLoadDirectory(t *testing.T) {
	a := load(t, "testdata/dir/merged")

	if a.DataDir != "/srv/warren" || a.NodeName != "merged-node" {
		t.Errorf("DataDir, NodeName = %q, %q", a.DataDir, a.NodeName)
	}
	if a.Manager == nil || a.Manager.HeartbeatTTL != 20*time.Second {
		t.Errorf("Manager = %+v", a.Manager)
	}
	if a.Worker == nil || a.Worker.Labels["zone"] != "edge-1" {
		t.Errorf("Worker = %+v", a.Worker)
	}
	var names []string
	for _, p := range a.Plugins {
		names = append(names, p.Name)
	}
	if want := []string{"store-bolt", "runtime-containerd"}; !slices.Equal(names, want) {
		t.Errorf("plugins = %q, want %q (file order)", names, want)
	}
	if got := a.PluginPath("runtime-containerd"); got != "/opt/containerd-plugin" {
		t.Errorf("PluginPath = %q", got)
	}
	var fileNames []string
	for name := range a.Files() {
		fileNames = append(fileNames, filepath.Base(name))
	}
	slices.Sort(fileNames)
	if want := []string{"10-agent.hcl", "20-roles.hcl", "30-plugins.hcl"}; !slices.Equal(fileNames, want) {
		t.Errorf("files = %q, want %q (no dot files, no .txt)", fileNames, want)
	}
}

func TestLoadDirectoryErrors(t *testing.T) {
	// Singletons set in two files are errors naming both places.
	for _, dir := range []string{"dup-manager", "dup-attr"} {
		t.Run(dir, func(t *testing.T) {
			a, diags := Load(filepath.Join("testdata/dir", dir))
			checkGolden(t, filepath.Join("testdata/dir", dir+".golden"), a, diags)
		})
	}

	t.Run("no-hcl-files", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "agent.hcl.bak"), []byte("manager {}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		a, diags := Load(dir)
		if a != nil || !diags.HasErrors() || !strings.Contains(diags[0].Detail, dir) {
			t.Fatalf("Load(%s) = %v, %v; want nil and an error naming the directory", dir, a, diags)
		}
	})

	t.Run("no-role", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "agent.hcl"), []byte("log_level = \"debug\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, diags := Load(dir)
		if len(diags) != 1 || !strings.Contains(diags[0].Detail, "agent has neither a manager { } nor a worker { } block") ||
			!strings.Contains(diags[0].Detail, dir) {
			t.Fatalf("diags = %v", diags)
		}
	})
}

func TestLoadMissing(t *testing.T) {
	path := filepath.Join("testdata", "does-not-exist.hcl")
	a, diags := Load(path)
	if a != nil {
		t.Errorf("Agent = %+v, want nil", a)
	}
	err := DiagnosticsError(a.Files(), diags)
	want := `Error: Cannot read configuration

Cannot read the configuration at "testdata/does-not-exist.hcl": no such file or directory.`
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant %s", err, want)
	}
}

func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("found %d examples, want at least 3", len(files))
	}
	for _, path := range files {
		t.Run(filepath.Base(path), func(t *testing.T) {
			a := load(t, path)
			if filepath.Base(path) == "single-node.hcl" {
				want := Default()
				want.NodeName = "test-host"
				want.files = a.files
				if !reflect.DeepEqual(a, want) {
					t.Errorf("single-node.hcl should spell out the defaults:\ngot  %+v\nwant %+v", a, want)
				}
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	// Everything is optional, but an agent needs a role.
	a, diags := Parse(nil, "empty.hcl")
	if len(diags) != 1 || diags[0].Detail != `agent has neither a manager { } nor a worker { } block in "empty.hcl". Add one of them, or both to run a single-node cluster.` {
		t.Fatalf("diags = %v", diags)
	}
	if s := diags[0].Subject; s == nil || s.Filename != "empty.hcl" || s.Start.Line != 1 {
		t.Errorf("Subject = %v, want the start of empty.hcl", s)
	}
	want := Default()
	want.NodeName = "test-host"
	want.Manager, want.Worker = nil, nil
	want.files = a.files
	if !reflect.DeepEqual(a, want) {
		t.Errorf("got %+v\nwant Default() without roles %+v", a, want)
	}
}

func TestParse(t *testing.T) {
	a, diags := Parse([]byte("worker {}\nmanager {\n  store = \"store-mem\"\n}\n"), "dev.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if a.Manager.Store != "store-mem" || a.Worker == nil {
		t.Errorf("got %+v", a)
	}
	if a.Files()["dev.hcl"] == nil {
		t.Errorf("Files() = %v, want dev.hcl", a.Files())
	}

	// A syntax error is reported with its position and snippet.
	a, diags = Parse([]byte("worker {\n  runtime = \n}\n"), "dev.hcl")
	err := DiagnosticsError(a.Files(), diags)
	if err == nil || !strings.HasPrefix(err.Error(), "dev.hcl:2:") || !strings.Contains(err.Error(), "   2:   runtime = ") {
		t.Errorf("error = %v", err)
	}
}

func TestDefault(t *testing.T) {
	a := Default()
	want := &Agent{
		DataDir:     "/var/lib/warren",
		BindAddr:    "127.0.0.1:7420",
		Advertise:   "127.0.0.1:7420",
		APISocket:   "/run/warren/warren.sock",
		PluginDir:   "",
		LogLevel:    "info",
		NodeName:    "test-host",
		MemoryLimit: 200 << 20,
		Manager: &Manager{
			Store:                "store-bolt",
			Scheduler:            "scheduler-roundrobin",
			HeartbeatTTL:         10 * time.Second,
			SnapshotThreshold:    8192,
			SnapshotInterval:     2 * time.Minute,
			TrailingLogs:         10240,
			NodeCertTTL:          90 * 24 * time.Hour,
			OverlayRange:         "10.88.0.0/16",
			OverlayNodePrefix:    24,
			ClusterDomain:        "warren",
			EventSubscriberBytes: 4 << 20,
		},
		Worker: &Worker{
			Runtime:           "runtime-containerd",
			Network:           "network-wireguard",
			Labels:            map[string]string{},
			HeartbeatInterval: 2 * time.Second,
			RuntimeTimeout:    30 * time.Second,
		},
	}
	if !reflect.DeepEqual(a, want) {
		t.Errorf("Default() = %+v\nwant %+v", a, want)
	}
	if a.Files() != nil {
		t.Errorf("Files() = %v, want nil", a.Files())
	}
}

func TestNodeNameFromHostname(t *testing.T) {
	defer func(orig func() (string, error)) { hostname = orig }(hostname)

	hostname = func() (string, error) { return "Web-1.Example.COM", nil }
	if got := Default().NodeName; got != "web-1" {
		t.Errorf("NodeName = %q, want web-1", got)
	}

	hostname = func() (string, error) { return "my_laptop", nil }
	if got := Default().NodeName; got != "localhost" {
		t.Errorf("Default().NodeName = %q, want the localhost fallback", got)
	}
	_, diags := Parse([]byte("worker {}\n"), "a.hcl")
	if len(diags) != 1 || diags[0].Summary != "Missing node_name" || !strings.Contains(diags[0].Detail, `"my_laptop"`) {
		t.Errorf("diags = %v, want one Missing node_name error", diags)
	}
	if _, diags := Parse([]byte("node_name = \"laptop\"\nworker {}\n"), "a.hcl"); len(diags) != 0 {
		t.Errorf("with node_name set: %v", diags)
	}
}

func TestPluginPath(t *testing.T) {
	a, diags := Parse([]byte(`
worker {}
plugin "runtime-containerd" {
  path = "/opt/rc"
}
plugin "network-wireguard" {}
`), "p.hcl")
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := a.PluginPath("runtime-containerd"); got != "/opt/rc" {
		t.Errorf("with path: %q", got)
	}
	if got, want := a.PluginPath("network-wireguard"), filepath.Join(DefaultPluginDir(), "network-wireguard"); got != want {
		t.Errorf("without path or plugin_dir: %q, want %q", got, want)
	}
	if got, want := a.PluginPath("store-bolt"), filepath.Join(DefaultPluginDir(), "store-bolt"); got != want {
		t.Errorf("without a block: %q, want %q", got, want)
	}
	a.PluginDir = "/usr/lib/warren"
	if got := a.PluginPath("network-wireguard"); got != "/usr/lib/warren/network-wireguard" {
		t.Errorf("with plugin_dir: %q", got)
	}
	if a.Plugin("store-bolt") != nil || a.Plugin("runtime-containerd") == nil {
		t.Errorf("Plugin lookup wrong")
	}
}

func TestDefaultPluginDir(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	exe, _ = filepath.EvalSymlinks(exe)
	if got, want := DefaultPluginDir(), filepath.Join(filepath.Dir(exe), "plugins"); got != want {
		t.Errorf("DefaultPluginDir() = %q, want %q", got, want)
	}
}

func TestDiagnosticsError(t *testing.T) {
	if err := DiagnosticsError(nil, nil); err != nil {
		t.Errorf("no diagnostics: %v", err)
	}
	warn := hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "just a warning"}}
	if err := DiagnosticsError(nil, warn); err != nil {
		t.Errorf("warnings only: %v", err)
	}

	a, diags := Parse([]byte("log_level = \"loud\"\nworker {}\n"), "x.hcl")
	err := DiagnosticsError(a.Files(), diags)
	want := `x.hcl:1:13: Error: Invalid log_level

  on x.hcl line 1:
   1: log_level = "loud"

log_level must be one of trace, debug, info, warn, error; got "loud".`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
	var got hcl.Diagnostics
	if !errors.As(err, &got) || len(got) != 1 {
		t.Errorf("errors.As(err, *hcl.Diagnostics) = %v", got)
	}
}

func TestCheckHostPort(t *testing.T) {
	for s, ok := range map[string]bool{
		"127.0.0.1:7420":                      true,
		"0.0.0.0:1":                           true,
		"[::1]:65535":                         true,
		"[fe80::1%eth0]:7420":                 true,
		"node-1.example.com:7420":             true,
		"Node-1:7420":                         true,
		"localhost":                           false,
		":7420":                               false,
		"127.0.0.1:0":                         false,
		"127.0.0.1:65536":                     false,
		"127.0.0.1:http":                      false,
		"::1:7420":                            false,
		"bad_host:7420":                       false,
		"-bad.example.com:7420":               false,
		"999.1.1.1:7420":                      false,
		"example..com:7420":                   false,
		"[::1]:7420:1":                        false,
		"a." + strings.Repeat("b", 64) + ":1": false,
	} {
		if got := checkHostPort(s) == ""; got != ok {
			t.Errorf("checkHostPort(%q) = %q, want ok=%v", s, checkHostPort(s), ok)
		}
	}
}
