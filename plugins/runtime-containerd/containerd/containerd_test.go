package containerd_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
	"github.com/warrenorch/warren/sdk/runtimetest"
)

// The test binary runs one managed containerd (in a temp dir, in a
// namespace of its own) and one real registry (Debian's docker-registry,
// pulled from over plain HTTP; tests push the images they pull), both
// started by TestMain and torn down with every task when the tests end.
var (
	daemon     *containerdtest.Daemon
	registry   *containerdtest.Registry
	skipReason string
)

// testImage is imported from an OCI archive; registryImage is pulled.
var (
	testImage = containerdtest.Image{
		Ref: "warren.test/busybox:1",
		Cmd: []string{"sh"},
		Env: []string{"PATH=/bin", "FROM_IMAGE=yes"},
	}
	// An entrypoint image: Args become its arguments.
	echoImage = containerdtest.Image{
		Ref:        "warren.test/echo:1",
		Entrypoint: []string{"echo", "entry"},
		Cmd:        []string{"default", "args"},
		Env:        []string{"PATH=/bin"},
		WorkingDir: "/tmp",
	}
	// No entrypoint, no CMD.
	bareImage = containerdtest.Image{Ref: "warren.test/bare:1", Env: []string{"PATH=/bin"}}
	// A HEALTHCHECK of its own.
	healthImage = containerdtest.Image{
		Ref: "warren.test/health:1",
		Cmd: []string{"sleep", "3600"},
		Env: []string{"PATH=/bin"},
		Healthcheck: &containerdtest.Healthcheck{
			Test:     []string{"CMD-SHELL", "test -f /tmp/ok"},
			Interval: 200 * time.Millisecond,
			Retries:  2,
		},
	}
)

func TestMain(m *testing.M) {
	containerd.RunLogger() // the shims run this test binary as the tasks' logger
	os.Exit(run(m))
}

func run(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		skipReason = "starts containerd and runs containers; skipped in -short mode"
		return m.Run()
	}
	if skipReason = containerdtest.Unavailable(); skipReason != "" {
		return m.Run()
	}
	if skipReason = containerdtest.RegistryUnavailable(); skipReason != "" {
		return m.Run()
	}
	var err error
	registry, err = containerdtest.StartRegistry(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "test registry:", err)
		return 1
	}
	defer func() {
		if err := registry.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test registry:", err)
		}
	}()
	daemon, err = containerdtest.NewDaemon(registry.Host)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test daemon:", err)
		return 1
	}
	daemon.StopOnSignal()
	defer func() {
		if err := daemon.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the test containerd:", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), containerdStartTimeout)
	defer cancel()
	if err := daemon.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "starting the test containerd:", err)
		return 1
	}
	return m.Run()
}

const containerdStartTimeout = time.Minute

// needDaemon skips tests that need containerd when the machine lacks it.
func needDaemon(tb testing.TB) {
	tb.Helper()
	if daemon == nil {
		tb.Skip(skipReason)
	}
}

// newRuntime returns a runtime configured on the test daemon, closed when
// the test ends.
func newRuntime(tb testing.TB) *containerd.Runtime {
	tb.Helper()
	needDaemon(tb)
	rt := containerd.New()
	if err := rt.Configure(context.Background(), daemon.Config()); err != nil {
		tb.Fatalf("Configure: %v", err)
	}
	tb.Cleanup(func() { rt.Close() })
	return rt
}

// archives caches built image archives by ref and kind.
var archives sync.Map

func archive(tb testing.TB, img containerdtest.Image, docker bool) []byte {
	tb.Helper()
	key := fmt.Sprint(img.Ref, docker)
	if a, ok := archives.Load(key); ok {
		return a.([]byte)
	}
	b, err := img.Build()
	if err != nil {
		tb.Fatal(err)
	}
	var a []byte
	if docker {
		a, err = b.DockerArchive()
	} else {
		a, err = b.OCIArchive()
	}
	if err != nil {
		tb.Fatal(err)
	}
	archives.Store(key, a)
	return a
}

// importImage imports img into rt.
func importImage(tb testing.TB, rt runtime.Runtime, img containerdtest.Image) runtime.Image {
	tb.Helper()
	imgs, err := rt.ImportImage(context.Background(), bytes.NewReader(archive(tb, img, false)))
	if err != nil {
		tb.Fatalf("ImportImage(%s): %v", img.Ref, err)
	}
	return imgs[0]
}

// TestConformance runs the sdk's suite over a real gRPC connection.
func TestConformance(t *testing.T) {
	needDaemon(t)
	runtimetest.Run(t, func(t *testing.T) runtime.Runtime { return newRuntime(t) }, runtimetest.Options{
		Image: testImage.Ref,
		ImageTarball: func(t *testing.T) io.Reader {
			return bytes.NewReader(archive(t, testImage, false))
		},
		MissingImage: registry.Host + "/warren/missing:1",
		LongCommand:  []string{"sleep", "3600"},
		ExitCommand:  func(code int) []string { return []string{"sh", "-c", fmt.Sprintf("exit %d", code)} },
		EnvCommand:   []string{"env"},
		EchoCommand:  []string{"echo"},
		Shell:        func(script string) []string { return []string{"sh", "-c", script} },
		HealthCheckImage: &runtimetest.HealthCheckImage{
			Ref:     healthImage.Ref,
			Tarball: func(t *testing.T) io.Reader { return bytes.NewReader(archive(t, healthImage, false)) },
			Want:    runtime.ImageHealthCheck{Command: []string{"/bin/sh", "-c", "test -f /tmp/ok"}, Interval: 200 * time.Millisecond, Retries: 2},
		},
	})
}

// remote serves rt over go-plugin's gRPC test connection, as the host sees
// it.
func remote(t *testing.T, rt runtime.Runtime) runtime.Runtime {
	conn := sdk.TestConn(t, rt, runtime.Register(rt))
	t.Cleanup(func() { conn.Close() })
	return runtime.NewClient(conn)
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
