package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCompletionScripts: `warren completion SHELL` writes each shell's
// script; where the shell is installed, the script must parse in it.
func TestCompletionScripts(t *testing.T) {
	tests := []struct {
		shell  string
		marker string   // a line the script holds
		check  []string // the shell's syntax check, the script's path appended
	}{
		{"bash", "complete -o default -F __start_warren warren", []string{"bash", "-n"}},
		{"zsh", "#compdef warren", []string{"zsh", "-n"}},
		{"fish", "complete -c warren ", []string{"fish", "--no-execute"}},
	}
	for _, tt := range tests {
		t.Run(tt.shell, func(t *testing.T) {
			r := runWarren(t, "completion", tt.shell)
			if r.code != 0 || !strings.Contains(r.stdout, tt.marker) {
				t.Fatalf("status %d, stderr %q; script lacks %q:\n%.300s", r.code, r.stderr, tt.marker, r.stdout)
			}
			sh, err := exec.LookPath(tt.check[0])
			if err != nil {
				t.Logf("%s is not installed: the script's syntax is not checked", tt.check[0])
				return
			}
			path := filepath.Join(t.TempDir(), "warren."+tt.shell)
			if err := os.WriteFile(path, []byte(r.stdout), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(sh, append(tt.check[1:], path)...).CombinedOutput(); err != nil {
				t.Errorf("%s rejects the script: %v\n%s", tt.shell, err, out)
			}
		})
	}
}

// TestCompletionOfCommands: the scripts ask warren itself (__complete)
// for candidates: subcommands and flags, the agent's included.
func TestCompletionOfCommands(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "serv"}, []string{"service\t"}},
		{[]string{"__complete", "agent", "--ch"}, []string{"--check\t"}},
		{[]string{"__complete", "completion", ""}, []string{"bash\t", "zsh\t", "fish\t"}},
	}
	for _, tt := range tests {
		r := runWarren(t, tt.args...)
		for _, w := range tt.want {
			if r.code != 0 || !strings.Contains(r.stdout, w) {
				t.Errorf("%q: status %d, no %q in:\n%s", tt.args, r.code, w, r.stdout)
			}
		}
	}
}

// runWarren runs the whole command tree on args.
func runWarren(t *testing.T, args ...string) result {
	t.Helper()
	var stdout, stderr strings.Builder
	code := run(context.Background(), args, &stdout, &stderr)
	return result{stdout.String(), stderr.String(), code}
}
