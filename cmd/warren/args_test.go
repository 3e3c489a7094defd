package main

import (
	"slices"
	"strings"
	"testing"
)

func TestNormalizeArgs(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"go-style config", "agent -config c.hcl", "agent --config c.hcl"},
		{"go-style with equals", "agent -config=c.hcl -dev", "agent --config=c.hcl --dev"},
		{"hyphenated name", "agent -log-level debug", "agent --log-level debug"},
		{"already double dash", "agent --config c.hcl", "agent --config c.hcl"},
		{"flag before command name", "-socket /tmp/w.sock service ls", "--socket /tmp/w.sock service ls"},
		{"persistent flag after command", "service ls -timeout=5s", "service ls --timeout=5s"},
		{"shorthand left alone", "service ls -o json", "service ls -o json"},
		{"shorthand with value attached", "service ls -ojson", "service ls -ojson"},
		{"help shorthand", "agent -h", "agent -h"},
		{"help long", "agent -help", "agent --help"},
		{"unknown name left for pflag", "agent -bogus", "agent -bogus"},
		{"flag of another command", "service ls -dev", "service ls -dev"},
		{"create flags", "service create web -image nginx -replicas=2 -e A=1", "service create web --image nginx --replicas=2 -e A=1"},
		{"value that looks like a flag", "service update web --args -image", "service update web --args -image"},
		{"value after normalized flag", "service update web -args -image", "service update web --args -image"},
		{"value after shorthand", "service ls -o -timeout", "service ls -o -timeout"},
		{"after double dash", "service create web --image x -- sh -config -dev", "service create web --image x -- sh -config -dev"},
		{"alias", "task ps -service web", "task ps --service web"},
		{"trailing flag without value", "agent -config", "agent --config"},
		{"single dash", "agent -", "agent -"},
		{"negative number", "service scale web=-1", "service scale web=-1"},
		{"events kinds", "events -kind service -kind=task", "events --kind service --kind=task"},
		{"cobra's completion command", "completion bash -no-descriptions", "completion bash --no-descriptions"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Fields(tt.in)
			orig := slices.Clone(in)
			root := newRootCmd()
			root.InitDefaultCompletionCmd()
			got := strings.Join(normalizeArgs(root, in), " ")
			if got != tt.want {
				t.Errorf("normalizeArgs(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if !slices.Equal(in, orig) {
				t.Errorf("normalizeArgs changed its input to %q", in)
			}
		})
	}
}

func TestFindCommand(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", "warren"},
		{"agent -config x", "warren agent"},
		{"-o json service ls", "warren service ls"},
		{"--socket service service ls", "warren service ls"}, // "service" is --socket's value
		{"service nope ls", "warren service"},
		{"task ps", "warren task ls"},
		{"service create web -- ls", "warren service create"},
	}
	for _, tt := range tests {
		if got := findCommand(newRootCmd(), strings.Fields(tt.in)).CommandPath(); got != tt.want {
			t.Errorf("findCommand(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
