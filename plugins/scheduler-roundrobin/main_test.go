package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/warrenorch/warren/plugins/scheduler-roundrobin/roundrobin"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/plugintest"
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

// startPlugin starts bin as the agent does, configured with an empty config
// block; it is killed when the test ends.
func startPlugin(t testing.TB, bin string) (scheduler.Scheduler, *plugintest.Plugin) {
	t.Helper()
	p := plugintest.Start(t, bin)
	return scheduler.NewClient(p.Conn), p
}

func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the plugin binary")
	}
	bin := buildPlugin(t)
	s, p := startPlugin(t, bin)

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
		p.Kill9()
		_, err := s.Schedule(t.Context(), schedulertest.GenerateRequest(3, 3))
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
