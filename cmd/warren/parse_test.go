package main

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"1024", 1024, ""},
		{"0", 0, ""},
		{"1b", 1, ""},
		{"512MiB", 512 << 20, ""},
		{"512mib", 512 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"100M", 100 << 20, ""},
		{"100MB", 100 << 20, ""},
		{"1g", 1 << 30, ""},
		{"2k", 2048, ""},
		{"1TiB", 1 << 40, ""},
		{"1.5GiB", 3 << 29, ""},
		{"0.5k", 512, ""},
		{"1.0001k", 1024, ""}, // a fraction of a byte is dropped
		{"8388607TiB", 8388607 << 40, ""},
		{"8388608TiB", 0, "too large"},
		{"9223372036854775807", 9223372036854775807, ""},
		{"9223372036854775808", 0, "too large"},
		{"99999999999999999999999999", 0, "too large"},
		{"-1", 0, "cannot be negative"},
		{"-512MiB", 0, "cannot be negative"},
		{"", 0, "not a size"},
		{"MiB", 0, "not a size"},
		{"abc", 0, "not a size"},
		{"1.5.5M", 0, "not a size"},
		{"1 MiB", 0, "not a size"},
		{"1e3", 0, "not a size"},
		{"12XB", 0, `unknown unit "XB"`},
		{"0x10", 0, "not a size"},
		{"10x", 0, `unknown unit "x"`},
		{"+5", 0, "not a size"},
		{".5G", 0, "not a size"},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if !errMatches(err, tt.wantErr) || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, error containing %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseCPUs(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"1", 1e9, ""},
		{"1.5", 1.5e9, ""},
		{"0.25", 0.25e9, ""},
		{".5", 0.5e9, ""},
		{"2.", 2e9, ""},
		{"0", 0, ""},
		{"0.000000001", 1, ""},
		{"1.2500000000000", 1.25e9, ""}, // trailing zeros are not precision
		{"0.0000000001", 0, "too precise"},
		{"9223372036", 9223372036e9, ""},
		{"9223372037", 0, "too many"},
		{"-1", 0, "cannot be negative"},
		{"-0.5", 0, "cannot be negative"},
		{"", 0, "not a number of CPUs"},
		{".", 0, "not a number of CPUs"},
		{"1,5", 0, "not a number of CPUs"},
		{"two", 0, "not a number of CPUs"},
		{"1e9", 0, "not a number of CPUs"},
	}
	for _, tt := range tests {
		got, err := parseCPUs(tt.in)
		if !errMatches(err, tt.wantErr) || got != tt.want {
			t.Errorf("parseCPUs(%q) = %d, %v; want %d, error containing %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseKV(t *testing.T) {
	tests := []struct {
		name    string
		in      []string
		want    map[string]string
		wantErr string
	}{
		{"none", nil, map[string]string{}, ""},
		{"pairs", []string{"A=1", "B=two words"}, map[string]string{"A": "1", "B": "two words"}, ""},
		{"empty value", []string{"A="}, map[string]string{"A": ""}, ""},
		{"equals in value", []string{"URL=a=b&c=d"}, map[string]string{"URL": "a=b&c=d"}, ""},
		{"comma kept", []string{"LIST=a,b"}, map[string]string{"LIST": "a,b"}, ""},
		{"missing equals", []string{"A"}, nil, `invalid --env "A": expected KEY=VALUE`},
		{"empty key", []string{"=1"}, nil, `invalid --env "=1": the key before '=' is empty`},
		{"given twice", []string{"A=1", "A=2"}, nil, `invalid --env: "A" is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKV("--env", tt.in)
			if !errMatches(err, tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if err == nil && !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCheckConstraint(t *testing.T) {
	for _, ok := range []string{"node.labels.zone==edge-1", "node.platform.arch!=arm64", "node.labels.a == b c", "node.attr.containerd.snapshotter==overlayfs"} {
		if err := checkConstraint(ok); err != nil {
			t.Errorf("checkConstraint(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "zone", "zone=edge", "==edge", "zone==", "zone=!edge", "node.role!=manager", "node.attr.bad key==1"} {
		if err := checkConstraint(bad); err == nil {
			t.Errorf("checkConstraint(%q) = nil, want an error", bad)
		}
	}
}

func TestParseSignal(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{"SIGTERM", "SIGTERM", ""},
		{"TERM", "SIGTERM", ""},
		{"sigquit", "SIGQUIT", ""},
		{"int", "SIGINT", ""},
		{"9", "SIGKILL", ""},
		{"6", "SIGABRT", ""},
		{"34", "34", ""},
		{"0", "", "from 1 to 64"},
		{"65", "", "from 1 to 64"},
		{"SIGFOO", "", "not a signal name"},
		{"", "", "not a signal name"},
	}
	for _, tt := range tests {
		got, err := parseSignal(tt.in)
		if !errMatches(err, tt.wantErr) || got != tt.want {
			t.Errorf("parseSignal(%q) = %q, %v; want %q, error containing %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{"", nil, ""},
		{"   ", nil, ""},
		{"sleep 10", []string{"sleep", "10"}, ""},
		{"  a \t b\n c ", []string{"a", "b", "c"}, ""},
		{`-g 'daemon off;'`, []string{"-g", "daemon off;"}, ""},
		{`"a b" c`, []string{"a b", "c"}, ""},
		{`''`, []string{""}, ""},
		{`a""b`, []string{"ab"}, ""},
		{`"say \"hi\"" \$HOME`, []string{`say "hi"`, "$HOME"}, ""},
		{`"a\nb"`, []string{`a\nb`}, ""},
		{`'a\b'`, []string{`a\b`}, ""},
		{`a\ b`, []string{"a b"}, ""},
		{`'unclosed`, nil, "' quote is not closed"},
		{`"unclosed`, nil, `" quote is not closed`},
		{`trailing\`, nil, "unfinished backslash"},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.in)
		if !errMatches(err, tt.wantErr) || !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q, error containing %q", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestUintValue(t *testing.T) {
	var n64 uint64
	var n32 uint32
	tests := []struct {
		v       interface{ Set(string) error }
		in      string
		wantErr string
	}{
		{newUintValue(&n64, 1), "3", ""},
		{newUintValue(&n64, 1), "0", ""},
		{newUintValue(&n64, 1), "-1", "cannot be negative"},
		{newUintValue(&n64, 1), "1.5", "not a whole number"},
		{newUintValue(&n64, 1), "x", "not a whole number"},
		{newUintValue(&n64, 1), "", "not a whole number"},
		{newUintValue(&n64, 1), "18446744073709551616", "the most is 18446744073709551615"},
		{newUintValue(&n32, 0), "4294967295", ""},
		{newUintValue(&n32, 0), "4294967296", "the most is 4294967295"},
	}
	for _, tt := range tests {
		if err := tt.v.Set(tt.in); !errMatches(err, tt.wantErr) {
			t.Errorf("Set(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func TestChoiceValue(t *testing.T) {
	var s string
	v := &choiceValue{p: &s, choices: []string{"table", "json"}}
	if err := v.Set("json"); err != nil || s != "json" {
		t.Fatalf("Set(json) = %v, value %q", err, s)
	}
	if err := v.Set("yaml"); err == nil || err.Error() != "use table or json" || s != "json" {
		t.Fatalf("Set(yaml) = %v, value %q; want \"use table or json\" and no change", err, s)
	}
	if got := v.Type(); got != "table|json" {
		t.Errorf("Type() = %q", got)
	}
}

// errMatches reports whether err is nil when want is empty, or contains want.
func errMatches(err error, want string) bool {
	if want == "" {
		return err == nil
	}
	return err != nil && strings.Contains(err.Error(), want)
}

func TestShellJoin(t *testing.T) {
	for _, words := range [][]string{
		{"nginx", "-g", "daemon off;"},
		{"sh", "-c", `echo "it's $HOME"`},
		{""},
		{"a=b", "/x/y.conf", "100%"},
	} {
		joined := shellJoin(words)
		back, err := splitWords(joined)
		if err != nil || !slices.Equal(back, words) {
			t.Errorf("splitWords(shellJoin(%q)) = %q (%v), via %s", words, back, err, joined)
		}
	}
	if got := shellJoin([]string{"nginx", "-g", "daemon off;"}); got != "nginx -g 'daemon off;'" {
		t.Errorf("shellJoin = %s", got)
	}
}

func TestParseMountAndFileRef(t *testing.T) {
	mounts := []struct {
		in      string
		want    *apiv1.Mount
		wantErr string
	}{
		{"type=volume,source=pgdata,target=/data", &apiv1.Mount{Type: "volume", Source: "pgdata", Target: "/data"}, ""},
		{"type=bind,src=/srv,dst=/srv,readonly", &apiv1.Mount{Type: "bind", Source: "/srv", Target: "/srv", ReadOnly: true}, ""},
		{"type=tmpfs,target=/s,tmpfs-size=1MiB,tmpfs-mode=700", &apiv1.Mount{Type: "tmpfs", Target: "/s", TmpfsSizeBytes: 1 << 20, TmpfsMode: 0o700}, ""},
		{"type=tmpfs,target=/s,tmpfs-size=lots", nil, `tmpfs-size "lots"`},
		{"type=tmpfs,target=/s,tmpfs-mode=9", nil, "octal mode"},
		{"type=nfs,target=/s", nil, `type "nfs"`},
		{"source=x,target=/s", nil, "type=bind, volume or tmpfs is required"},
		{"type=volume,source=x", nil, "target=PATH is required"},
		{"type=volume,source=x,target=/d,color=red", nil, `unknown option "color"`},
	}
	for _, tt := range mounts {
		got, err := parseMount("--mount", tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseMount(%q) error %v, want one with %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || !proto.Equal(got, tt.want)):
			t.Errorf("parseMount(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	refs := []struct {
		in      string
		want    *apiv1.FileReference
		wantErr string
	}{
		{"db-password", &apiv1.FileReference{Name: "db-password"}, ""},
		{"source=db,target=/etc/pw,uid=1000,gid=2000,mode=0400", &apiv1.FileReference{Name: "db", Target: "/etc/pw", Uid: 1000, Gid: 2000, Mode: 0o400}, ""},
		{"src=conf,target=/etc/x", &apiv1.FileReference{Name: "conf", Target: "/etc/x"}, ""},
		{"target=/etc/x", nil, "source=NAME is required"},
		{"source=db,mode=rw", nil, `mode="rw" is not a number`},
		{"source=db,owner=me", nil, `unknown option "owner"`},
	}
	for _, tt := range refs {
		got, err := parseFileRef("--secret", tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("parseFileRef(%q) error %v, want one with %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || !proto.Equal(got, tt.want)):
			t.Errorf("parseFileRef(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
