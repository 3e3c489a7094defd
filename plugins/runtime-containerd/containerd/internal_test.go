package containerd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestTailOffset(t *testing.T) {
	for _, tc := range []struct {
		name string
		data string
		n    int64
		want string
	}{
		{"all", "a\nb\nc\n", -1, "a\nb\nc\n"},
		{"none", "a\nb\nc\n", 0, ""},
		{"last one", "a\nb\nc\n", 1, "c\n"},
		{"last two", "a\nb\nc\n", 2, "b\nc\n"},
		{"exactly all", "a\nb\nc\n", 3, "a\nb\nc\n"},
		{"more than all", "a\nb\nc\n", 10, "a\nb\nc\n"},
		{"unterminated last line", "a\nb\nc", 1, "c"},
		{"unterminated, two", "a\nb\nc", 2, "b\nc"},
		{"empty lines count", "a\n\n\nb\n", 3, "\n\nb\n"},
		{"empty file", "", 2, ""},
		{"only a newline", "\n", 1, "\n"},
		{"long lines across blocks", strings.Repeat("x", 40<<10) + "\n" + strings.Repeat("y", 40<<10) + "\n", 1, strings.Repeat("y", 40<<10) + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			off, err := tailOffset(strings.NewReader(tc.data), int64(len(tc.data)), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			if got := tc.data[off:]; got != tc.want {
				t.Errorf("tail %d of %q = %q, want %q", tc.n, tc.data, got, tc.want)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/entry", "-x"}, Cmd: []string{"cmd", "arg"}}
	bare := ocispec.ImageConfig{Cmd: []string{"sh"}}
	for _, tc := range []struct {
		name          string
		img           ocispec.ImageConfig
		command, args []string
		want          []string
	}{
		{"image defaults", img, nil, nil, []string{"/entry", "-x", "cmd", "arg"}},
		{"args replace cmd", img, nil, []string{"a"}, []string{"/entry", "-x", "a"}},
		{"command replaces entrypoint and cmd", img, []string{"run"}, nil, []string{"run"}},
		{"command and args", img, []string{"run"}, []string{"a", "b"}, []string{"run", "a", "b"}},
		{"cmd only image", bare, nil, nil, []string{"sh"}},
		{"cmd only image, args", bare, nil, []string{"echo", "hi"}, []string{"echo", "hi"}},
		{"nothing at all", ocispec.ImageConfig{}, nil, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := commandLine(tc.img, tc.command, tc.args)
			if !slices.Equal(got, tc.want) {
				t.Errorf("commandLine = %q, want %q", got, tc.want)
			}
		})
	}
	// The image's slices are not modified.
	commandLine(img, nil, []string{"z"})
	if !slices.Equal(img.Entrypoint, []string{"/entry", "-x"}) {
		t.Errorf("commandLine modified the image's entrypoint: %q", img.Entrypoint)
	}
}

func TestResolveDefaults(t *testing.T) {
	dataDir := t.TempDir()
	t.Setenv(DataDirEnv, dataDir)
	s, err := Config{}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(dataDir, Name)
	if s.namespace != DefaultNamespace || s.managed == nil || s.managed.dir != base ||
		s.address != filepath.Join(base, "containerd.sock") || s.logDir != filepath.Join(base, "logs") || s.binary == "" {
		t.Errorf("defaults = %+v (managed %+v)", s, s.managed)
	}
	s, err = Config{Socket: "/run/containerd/containerd.sock", Namespace: "ns1"}.resolve()
	if err != nil {
		t.Fatal(err)
	}
	if s.managed != nil || s.address != "/run/containerd/containerd.sock" || s.namespace != "ns1" {
		t.Errorf("with a socket = %+v", s)
	}
}

func TestConfigTOML(t *testing.T) {
	p := newManagedPaths("/var/lib/warren/runtime-containerd")
	got := string(p.configTOML())
	for _, want := range []string{
		"version = 2\n",
		`root = "/var/lib/warren/runtime-containerd/root"`,
		`state = "/var/lib/warren/runtime-containerd/state"`,
		`"io.containerd.grpc.v1.cri"`,
		"[grpc]\n  address = \"/var/lib/warren/runtime-containerd/containerd.sock\"",
		"[ttrpc]\n  address = \"/var/lib/warren/runtime-containerd/containerd.sock.ttrpc\"",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("config.toml has no %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "/run/containerd") || strings.Contains(got, "/var/lib/containerd") {
		t.Errorf("config.toml refers to the system containerd's paths:\n%s", got)
	}
}

func TestAlive(t *testing.T) {
	if !alive(os.Getpid()) {
		t.Error("alive(own pid) = false")
	}
	if alive(1 << 30) {
		t.Error("alive(no such pid) = true")
	}
}
