package main

import (
	"os/exec"
	"path"
	"strings"
	"testing"
)

// sdkPath is the only part of Warren a third-party plugin may import.
const sdkPath = "github.com/warrenorch/warren/sdk"

// TestImportsOnlySDK keeps the example plugins honest: the packages of
// each (this one and its siblings under examples/plugins) and their tests
// import the standard library, Warren's sdk and their own plugin's
// packages, nothing else, so each directory could move to a module of its
// own.
func TestImportsOnlySDK(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("this test needs the go command: %v", err)
	}
	own, err := exec.Command(goBin, "list", "-f", "{{.ImportPath}}", ".").Output()
	if err != nil {
		t.Fatalf("go list .: %v", err)
	}
	// examples/plugins: each directory below it is one plugin.
	examples := path.Dir(strings.TrimSpace(string(own)))
	out, err := exec.Command(goBin, "list", "-f",
		`{{.ImportPath}}{{range .Imports}} {{.}}{{end}}{{range .TestImports}} {{.}}{{end}}{{range .XTestImports}} {{.}}{{end}}`,
		"../...").Output()
	if err != nil {
		t.Fatalf("go list ../...: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		plugin, _, _ := strings.Cut(strings.TrimPrefix(f[0], examples+"/"), "/")
		root := examples + "/" + plugin
		for _, imp := range f[1:] {
			first, _, _ := strings.Cut(imp, "/")
			switch {
			case !strings.Contains(first, "."): // the standard library
			case imp == root || strings.HasPrefix(imp, root+"/"):
			case imp == sdkPath || strings.HasPrefix(imp, sdkPath+"/"):
			default:
				t.Errorf("%s imports %s; a third-party plugin may import only the standard library and %s/...", f[0], imp, sdkPath)
			}
		}
	}
}
