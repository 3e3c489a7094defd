package sdk_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/warrenorch/warren"

// TestImportWalls keeps the layering of STYLE.md standing: the sdk builds on
// its own, core reaches plugins only through the sdk, and plugins use
// nothing a third-party plugin could not.
func TestImportWalls(t *testing.T) {
	tests := []struct {
		pkgs      string
		forbidden []string
	}{
		{"./sdk/...", []string{module + "/core", module + "/config", module + "/plugins", module + "/cmd", "github.com/hashicorp/raft"}},
		{"./core/...", []string{module + "/plugins", module + "/cmd"}},
		{"./config/...", []string{module + "/core", module + "/plugins", module + "/cmd"}},
		{"./plugins/...", []string{module + "/core", module + "/config", module + "/cmd", "github.com/hashicorp/raft"}},
	}
	for _, tt := range tests {
		t.Run(tt.pkgs, func(t *testing.T) {
			cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", tt.pkgs)
			cmd.Dir = ".."
			out, err := cmd.Output()
			if err != nil {
				if ee, ok := err.(*exec.ExitError); ok && strings.Contains(string(ee.Stderr), "matched no packages") {
					t.Skipf("%s matches no packages yet", tt.pkgs)
				}
				t.Fatalf("go list %s: %v", tt.pkgs, err)
			}
			for _, dep := range strings.Fields(string(out)) {
				for _, f := range tt.forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s depends on %s, which it must not", tt.pkgs, dep)
					}
				}
			}
		})
	}
	// Each plugin is on its own: no plugin imports another.
	out, err := exec.Command("sh", "-c", "cd .. && go list -f '{{.ImportPath}} {{join .Imports \" \"}}' ./plugins/...").Output()
	if err != nil {
		t.Fatalf("go list plugins: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		own := pluginRoot(f[0])
		for _, imp := range f[1:] {
			if r := pluginRoot(imp); r != "" && r != own {
				t.Errorf("%s imports another plugin: %s", f[0], imp)
			}
		}
	}
}

func pluginRoot(pkg string) string {
	rest, ok := strings.CutPrefix(pkg, module+"/plugins/")
	if !ok {
		return ""
	}
	name, _, _ := strings.Cut(rest, "/")
	return name
}

// sdkModules are the modules a plugin author gets by importing the sdk:
// go-plugin and gRPC with what they need. A new one is a decision to make
// on purpose (every third-party plugin inherits it), not by accident.
var sdkModules = []string{
	"github.com/fatih/color", // go-hclog's, which go-plugin needs
	"github.com/golang/protobuf",
	"github.com/hashicorp/go-hclog",
	"github.com/hashicorp/go-plugin",
	"github.com/hashicorp/yamux",
	"github.com/mattn/go-colorable",
	"github.com/mattn/go-isatty",
	"github.com/oklog/run",
	"golang.org/x/net",
	"golang.org/x/sys",
	"golang.org/x/text",
	"google.golang.org/genproto/googleapis/rpc",
	"google.golang.org/grpc",
	"google.golang.org/protobuf",
	// Only sdk/store/boltcheck brings it, for stores kept in bbolt files
	// (store-bolt; the agent checks its Raft log with it too). A plugin
	// that does not import that package does not get it.
	"go.etcd.io/bbolt",
}

// TestSDKDependenciesStayShort fails when the sdk (its tests included)
// reaches a module outside sdkModules.
func TestSDKDependenciesStayShort(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-test", "-f", "{{if .Module}}{{.Module.Path}}{{end}}", "./sdk/...")
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := map[string]bool{}
	for _, m := range strings.Fields(string(out)) {
		if m == module || seen[m] {
			continue
		}
		seen[m] = true
		if !slices.Contains(sdkModules, m) {
			t.Errorf("the sdk depends on module %s: keep it out, or add it to sdkModules on purpose", m)
		}
	}
}
