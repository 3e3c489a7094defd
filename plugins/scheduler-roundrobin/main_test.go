package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/warrenorch/warren/plugins/scheduler-roundrobin/roundrobin"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
	"github.com/warrenorch/warren/sdk/schedulertest"
)

// buildPlugin builds this command into a temporary directory and returns
// the binary's path.
func buildPlugin(t testing.TB) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the process test needs the go command to build the plugin: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "scheduler-roundrobin")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// startPlugin starts bin as the host does, configures it with an empty
// config block and returns a client for it and go-plugin's handle on the
// process, which is killed when the test ends.
func startPlugin(t testing.TB, bin string) (scheduler.Scheduler, *plugin.Client) {
	t.Helper()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(),
		Cmd:              exec.Command(bin),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "host", Level: hclog.Warn, Output: os.Stderr}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin: %v", err)
	}
	raw, err := rpc.Dispense(sdk.DispenseName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	s := scheduler.NewClient(raw.(*grpc.ClientConn))
	if err := s.Configure(t.Context(), []byte("{}")); err != nil {
		t.Fatalf("Configure({}): %v", err)
	}
	return s, client
}

func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the plugin binary")
	}
	bin := buildPlugin(t)
	s, client := startPlugin(t, bin)

	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	if info.Kind != sdk.KindScheduler || info.Name != roundrobin.Name || info.Version != roundrobin.Version {
		t.Errorf("Info = %+v, want kind %s, name %s, version %s", info, sdk.KindScheduler, roundrobin.Name, roundrobin.Version)
	}
	if err := s.Configure(t.Context(), []byte(`{"strategy": "spread"}`)); !errors.Is(err, sdk.ErrInvalidArgument) {
		t.Errorf("Configure with an unknown attribute over the wire: err = %v, want sdk.ErrInvalidArgument", err)
	}

	t.Run("Conformance", func(t *testing.T) {
		schedulertest.RunClient(t, func(*testing.T) scheduler.Scheduler { return s })
	})

	t.Run("CrashedPluginIsUnavailable", func(t *testing.T) {
		// Kill the process behind go-plugin's back, as a crash would.
		proc, err := os.FindProcess(client.ReattachConfig().Pid)
		if err != nil {
			t.Fatal(err)
		}
		if err := proc.Kill(); err != nil {
			t.Fatalf("kill plugin: %v", err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !client.Exited() {
			if time.Now().After(deadline) {
				t.Fatal("plugin process still running 10s after SIGKILL")
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, err = s.Schedule(t.Context(), schedulertest.GenerateRequest(3, 3))
		if !errors.Is(err, sdk.ErrPluginUnavailable) {
			t.Fatalf("Schedule on a killed plugin: err = %v, want sdk.ErrPluginUnavailable", err)
		}
	})
}

// BenchmarkSchedule places 1,000 tasks on 100 nodes per operation: called
// directly, over the in-process gRPC test connection, and over a real
// plugin process.
func BenchmarkSchedule(b *testing.B) {
	req := schedulertest.GenerateRequest(100, 1000)
	bench := func(b *testing.B, s scheduler.Scheduler) {
		for b.Loop() {
			plan, err := s.Schedule(b.Context(), req)
			if err != nil {
				b.Fatal(err)
			}
			if len(plan) != len(req.Tasks) {
				b.Fatalf("%d placements for %d tasks", len(plan), len(req.Tasks))
			}
		}
		b.ReportMetric(float64(b.N*len(req.Tasks))/b.Elapsed().Seconds(), "tasks/s")
	}
	b.Run("in-process", func(b *testing.B) {
		bench(b, roundrobin.New())
	})
	b.Run("grpc-testconn", func(b *testing.B) {
		impl := roundrobin.New()
		conn := sdk.TestConn(b, impl, scheduler.Register(impl))
		b.Cleanup(func() { conn.Close() }) // before TestConn's cleanup; see schedulertest.Run
		bench(b, scheduler.NewClient(conn))
	})
	b.Run("process", func(b *testing.B) {
		s, _ := startPlugin(b, buildPlugin(b))
		bench(b, s)
	})
}
