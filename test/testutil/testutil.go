// Package testutil builds Warren's real binaries for tests, once per test
// process, so core tests run against real plugin processes.
package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var (
	buildMu  sync.Mutex
	buildDir string
	built    = map[string]string{}
)

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		t.Fatal("not inside the warren module")
	}
	return filepath.Dir(mod)
}

// Build compiles the main package at pkg (relative to the repo root, e.g.
// "plugins/store-bolt") into a directory shared by the test process and
// returns the binary's path. The binary is named after the last path element.
func Build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	if buildDir == "" {
		d, err := os.MkdirTemp("", "warren-test-bin-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = d
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, "./"+pkg)
	cmd.Dir = RepoRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
	built[pkg] = out
	return out
}

// Cleanup removes the shared build directory; call it from TestMain after
// m.Run.
func Cleanup() {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir != "" {
		os.RemoveAll(buildDir)
		buildDir = ""
		built = map[string]string{}
	}
}

// PluginDir builds every built-in plugin that exists in the tree into one
// directory, as `make build` lays them out in bin/plugins, and returns it.
func PluginDir(t testing.TB, names ...string) string {
	t.Helper()
	var dir string
	for _, n := range names {
		p := Build(t, "plugins/"+n)
		if dir == "" {
			dir = filepath.Dir(p)
		} else if filepath.Dir(p) != dir {
			panic(fmt.Sprintf("plugins built into different dirs: %s and %s", dir, filepath.Dir(p)))
		}
	}
	return dir
}
