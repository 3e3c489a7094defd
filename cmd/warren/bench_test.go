package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBenchBadFlags: a bad flag of warren bench is refused before anything
// starts, with an error naming it.
func TestBenchBadFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "create-one,nope"}, `unknown scenario "nope"`},
		{[]string{"--nodes", "0"}, "must be positive"},
		{[]string{"--clients", "0"}, "must be positive"},
		{[]string{"--tasks", "105", "--per-service", "10"}, "must be a multiple of --per-service"},
		{[]string{"--loss", "1"}, "--loss must be between 0 and 1"},
		{[]string{"--loss-mode", "boom"}, `--loss-mode must be silent or ended, not "boom"`},
		{[]string{"--exit-fraction", "-0.5"}, "--exit-fraction must be between 0 and 1"},
		{[]string{"--token", "x"}, "only apply with --join-addr"},
		{[]string{"extra"}, "unknown command"},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"bench"}, c.args...), &out, &errb)
			if code != 1 || !strings.Contains(errb.String(), c.want) {
				t.Fatalf("exit %d, stderr %q; want 1 and %q", code, errb.String(), c.want)
			}
			if strings.Contains(out.String(), "manager:") {
				t.Fatalf("a manager was started: %q", out.String())
			}
		})
	}
}
