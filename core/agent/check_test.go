package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warrenorch/warren/config"
)

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	plugins := filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{
		"store-bolt": 0o755, "scheduler-roundrobin": 0o755, "runtime-containerd": 0o755, "network-wireguard": 0o755,
		"spare": 0o755, "not-exec": 0o644,
	} {
		if err := os.WriteFile(filepath.Join(plugins, name), []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(plugins, "a-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nowhere", "store-bolt")

	cases := []struct {
		name string
		hcl  string
		// errs are substrings of the error, each expected; none: no error.
		errs     []string
		warnings []string
		is       error
	}{
		{name: "manager and worker, all present", hcl: "manager {}\nworker {}\n"},
		{
			name: "missing store binary (path in a block)",
			hcl:  fmt.Sprintf("manager {}\nplugin \"store-bolt\" {\n  path = %q\n}\n", missing),
			errs: []string{`plugin "store-bolt" (manager.store): binary ` + missing + ` does not exist`},
		},
		{
			name: "missing scheduler and runtime, both reported",
			hcl:  "manager {\n  scheduler = \"sched-x\"\n}\nworker {\n  runtime = \"rt-x\"\n}\n",
			errs: []string{
				`plugin "rt-x" (worker.runtime): binary ` + filepath.Join(plugins, "rt-x") + ` does not exist`,
				`plugin "sched-x" (manager.scheduler): binary ` + filepath.Join(plugins, "sched-x") + ` does not exist`,
			},
		},
		{
			name: "not executable",
			hcl:  "manager {\n  store = \"not-exec\"\n}\n",
			errs: []string{`plugin "not-exec" (manager.store): binary ` + filepath.Join(plugins, "not-exec") + ` is not executable (mode -rw-r--r--)`},
		},
		{
			name: "a directory",
			hcl:  "manager {\n  store = \"a-dir\"\n}\n",
			errs: []string{`plugin "a-dir" (manager.store): binary ` + filepath.Join(plugins, "a-dir") + ` is not a regular file`},
		},
		{
			name:     "unused block: a warning",
			hcl:      "manager {}\nplugin \"spare\" {}\n",
			warnings: []string{`plugin "spare" (block at check.hcl:3:1) is not used by any role`},
		},
		{
			name:     "unused block whose binary is missing: an error and a warning",
			hcl:      "manager {}\nplugin \"gone\" {}\n",
			errs:     []string{`plugin "gone" (block at check.hcl:3:1): binary ` + filepath.Join(plugins, "gone") + ` does not exist`},
			warnings: []string{`plugin "gone" (block at check.hcl:3:1) is not used by any role`},
		},
		{
			name:     "runtime block of a manager-only agent is unused",
			hcl:      "manager {}\nplugin \"runtime-containerd\" {}\n",
			warnings: []string{`plugin "runtime-containerd" (block at check.hcl:3:1) is not used by any role`},
		},
		{
			name: "network plugin without its binary",
			hcl:  "worker {\n  network = \"no-network\"\n}\n",
			errs: []string{`plugin "no-network" (worker.network): binary`, "does not exist"},
		},
		{
			name: "api_socket folder too long",
			hcl:  "manager {}\napi_socket = \"/" + strings.Repeat("d", 92) + "/w.sock\"\n",
			errs: []string{"api_socket /" + strings.Repeat("d", 92) + "/w.sock: the folder is too long", "use a folder of at most 92 bytes"},
		},
		{
			name: "api_socket folder of 92 bytes",
			hcl:  "manager {}\napi_socket = \"/" + strings.Repeat("d", 91) + "/w.sock\"\n",
		},
		{
			name: "unknown api_socket_group",
			hcl:  "manager {}\napi_socket_group = \"no-such-group-warren\"\n",
			errs: []string{`api_socket_group "no-such-group-warren"`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := fmt.Sprintf("plugin_dir = %q\n%s", plugins, c.hcl)
			cfg, diags := config.Parse([]byte(src), "check.hcl")
			if diags.HasErrors() {
				t.Fatalf("config: %v", diags)
			}
			warnings, err := CheckConfig(cfg)
			if len(c.errs) == 0 && err != nil {
				t.Fatalf("CheckConfig: %v", err)
			}
			if len(c.errs) > 0 && err == nil {
				t.Fatalf("CheckConfig passed, want errors %q", c.errs)
			}
			for _, want := range c.errs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error %v is not %v", err, c.is)
			}
			if len(warnings) != len(c.warnings) {
				t.Fatalf("warnings %q, want %q", warnings, c.warnings)
			}
			for i, want := range c.warnings {
				if !strings.Contains(warnings[i], want) {
					t.Errorf("warning %q does not say %q", warnings[i], want)
				}
			}
		})
	}
}
