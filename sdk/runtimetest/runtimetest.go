// Package runtimetest is the conformance suite for runtime plugins. A
// plugin author runs it against their implementation:
//
//	func TestConformance(t *testing.T) {
//		runtimetest.Run(t, func(t *testing.T) runtime.Runtime {
//			return myruntime.New(...) // configured, ready to use
//		}, runtimetest.Options{
//			Image:       "docker.io/library/busybox:1.36",
//			LongCommand: []string{"sleep", "3600"},
//			ExitCommand: func(code int) []string { return []string{"sh", "-c", fmt.Sprintf("exit %d", code)} },
//			EnvCommand:  []string{"env"},
//			EchoCommand: []string{"echo"},
//			Shell:       func(script string) []string { return []string{"sh", "-c", script} },
//		})
//	}
//
// To check recovery across a real plugin restart, run the suite with
// RunClient on clients of your plugin binary started with sdk/plugintest
// and give Options.Restart (plugins/runtime-containerd/process_test.go).
//
// Every case calls the factory for a fresh runtime and talks to it over a
// real gRPC connection, exactly as the warren agent does, so the case also
// checks that errors keep their identity across the wire. Cases start real
// tasks and destroy them when they end.
//
// The package also holds FakeRuntime, an in-memory runtime that exists only
// to test the sdk and this suite.
package runtimetest

import (
	"crypto/rand"
	"encoding/hex"
	"io"
	"sync/atomic"
	"testing"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Options tell the suite how to run tasks on the runtime under test.
type Options struct {
	// Image is the ref of the image every task runs; it must hold the
	// commands below. Required.
	Image string
	// ImageTarball, when set, returns an archive holding Image: the suite
	// imports it with ImportImage and checks that EnsureImage(Image, false)
	// then finds it. When nil, EnsureImage must be able to pull Image.
	ImageTarball func(t *testing.T) io.Reader
	// MissingImage is a ref that does not exist where the runtime looks (in
	// a registry the test can reach, say): EnsureImage must fail with
	// ErrNotFound. When empty, the suite uses a ref under the reserved
	// .invalid domain and only requires an error naming it, since a runtime
	// that pulls cannot tell "no such image" from "no such registry".
	MissingImage string
	// LongCommand runs until stopped, e.g. ["sleep", "3600"]. It need not
	// handle the stop signal: the suite uses short grace periods.
	LongCommand []string
	// ExitCommand returns a command that exits at once with code, e.g.
	// ["sh", "-c", "exit 3"].
	ExitCommand func(code int) []string
	// EnvCommand writes the process's environment to stdout, one
	// NAME=value line per variable, and exits 0, e.g. ["env"].
	EnvCommand []string
	// EchoCommand writes its arguments, separated by spaces, as one line to
	// stdout and exits 0, e.g. ["echo"]. The suite passes the arguments in
	// TaskSpec.Args.
	EchoCommand []string
	// Shell returns a command that runs script with a POSIX shell, e.g.
	// ["sh", "-c", script]; the script uses cat, id, pwd, dd, sleep and
	// the shell's trap and wait. The container cases (hostname, user,
	// working dir, memory limit, OOM, stop signal) are skipped without it,
	// and for a runtime that runs no images (see runsImages).
	Shell func(script string) []string
	// HealthCheckImage, when set, is an image whose config declares a
	// health check (Docker's HEALTHCHECK): EnsureImage must describe it in
	// Image.HealthCheck. The ImageHealthCheck case is skipped without it.
	HealthCheckImage *HealthCheckImage
	// Restart, when set, kills the plugin process behind the runtime the
	// factory returned for t with SIGKILL, as a crash would, and returns a
	// client of a new process of the same plugin, configured the same way
	// (sdk/plugintest: Kill9, then Restart). The RestartRecover case needs
	// it and is skipped without it.
	Restart func(t *testing.T) runtime.Runtime
}

// HealthCheckImage is an image with a health check of its own.
type HealthCheckImage struct {
	// Ref names the image; Tarball, when set, returns an archive holding
	// it (imported first), otherwise EnsureImage pulls it.
	Ref     string
	Tarball func(t *testing.T) io.Reader
	// Want is the health check EnsureImage must report.
	Want runtime.ImageHealthCheck
}

func (o Options) check(t *testing.T) {
	t.Helper()
	if o.Image == "" || len(o.LongCommand) == 0 || o.ExitCommand == nil || len(o.EnvCommand) == 0 || len(o.EchoCommand) == 0 {
		t.Fatal("runtimetest: Options needs Image, LongCommand, ExitCommand, EnvCommand and EchoCommand")
	}
}

// Run runs the suite against the runtimes factory returns, each served over
// a real go-plugin gRPC connection. factory is called once per case and
// must return a configured runtime; anything it starts should be stopped in
// t.Cleanup.
func Run(t *testing.T, factory func(t *testing.T) runtime.Runtime, opts Options) {
	RunClient(t, func(t *testing.T) runtime.Runtime {
		impl := factory(t)
		conn := sdk.TestConn(t, impl, runtime.Register(impl))
		// Close the connection before TestConn's cleanup runs (cleanups run
		// last first). Otherwise go-plugin's client close asks the server to
		// stop over the connection while TestConn stops it directly, and the
		// two GRPCServer.Stop calls race.
		t.Cleanup(func() { conn.Close() })
		return runtime.NewClient(conn)
	}, opts)
}

// RunClient runs the suite against runtimes that are remote already, such
// as clients of a plugin binary the test launched. newClient is called once
// per case.
func RunClient(t *testing.T, newClient func(t *testing.T) runtime.Runtime, opts Options) {
	opts.check(t)
	run := &suite{opts: opts, prefix: "wct-" + randomHex(4)}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.fn(t, &env{suite: run, t: t, rt: newClient(t)})
		})
	}
}

// suite is one run of the suite.
type suite struct {
	opts   Options
	prefix string
	seq    atomic.Int64
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
