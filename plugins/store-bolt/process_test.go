package main_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenorch/warren/plugins/store-bolt/bolt"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/plugintest"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/sdk/storetest"
)

// The plugin binary is built once per test run, in a directory removed by
// TestMain.
var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// pluginBinary builds the plugin (once) and returns its path.
func pluginBinary(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds and starts the plugin binary; skipped in -short mode")
	}
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "store-bolt-test-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "store-bolt")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binPath
}

// proc is one running plugin process.
type proc struct {
	*plugintest.Plugin
	store store.Store
}

// start launches the plugin as the agent does and returns it unconfigured.
// The process is killed when the test ends.
func start(tb testing.TB) *proc {
	tb.Helper()
	p := plugintest.Start(tb, pluginBinary(tb), plugintest.WithoutConfigure())
	return &proc{Plugin: p, store: store.NewClient(p.Conn)}
}

// startOn launches the plugin and configures it on the database file path.
func startOn(tb testing.TB, path string) *proc {
	tb.Helper()
	p := plugintest.Start(tb, pluginBinary(tb), plugintest.WithConfig(bolt.Config{Path: path}))
	return &proc{Plugin: p, store: store.NewClient(p.Conn)}
}

func config(tb testing.TB, c bolt.Config) []byte {
	tb.Helper()
	b, err := json.Marshal(c)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// TestConformance runs the suite on a real plugin process, a fresh one on a
// fresh file per subtest.
func TestConformance(t *testing.T) {
	pluginBinary(t)
	storetest.RunClient(t, func(t *testing.T) store.Store {
		return startOn(t, filepath.Join(t.TempDir(), "state.db")).store
	})
}

func TestInfo(t *testing.T) {
	p := start(t)
	info, err := p.store.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.Kind != sdk.KindStore || info.Name != "store-bolt" || info.Version != "0.1.0" || len(info.APIVersions) != 1 || info.APIVersions[0] != 1 {
		t.Fatalf("Info() = %+v", info)
	}
	_, err = p.store.AppliedIndex(t.Context())
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "store-bolt: not configured") {
		t.Fatalf("AppliedIndex before Configure = %v, want sdk.ErrFailedPrecondition saying not configured", err)
	}
}

func TestSecondProcessOnSameFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	startOn(t, path)
	second := start(t)
	err := second.store.Configure(t.Context(), config(t, bolt.Config{Path: path, Timeout: "200ms"}))
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("Configure on a file another process holds = %v; want sdk.ErrFailedPrecondition saying it is locked", err)
	}
}

func entry(i uint64) store.Batch {
	return store.Batch{Index: i, Ops: []store.Op{
		{Type: store.OpPut, Bucket: "entries", Key: fmt.Sprintf("%06d", i), Value: fmt.Appendf(nil, "value %d", i)},
		{Type: store.OpPut, Bucket: "meta", Key: "last", Value: fmt.Appendf(nil, "%d", i)},
	}}
}

// TestKill9KeepsAcknowledgedBatches kills the plugin with SIGKILL while a
// writer is applying batches, starts a new process on the same file and
// checks that every acknowledged batch, and nothing partial, is there.
func TestKill9KeepsAcknowledgedBatches(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	p := startOn(t, path)
	ctx := t.Context()

	const before = 50 // applied and acknowledged before the writer starts
	for i := uint64(1); i <= before; i++ {
		if _, err := p.store.Apply(ctx, entry(i)); err != nil {
			t.Fatalf("Apply(%d): %v", i, err)
		}
	}

	var acked atomic.Uint64
	acked.Store(before)
	running := make(chan struct{})
	writerErr := make(chan error, 1)
	go func() {
		for i := uint64(before + 1); i < before+1_000_000; i++ {
			if _, err := p.store.Apply(ctx, entry(i)); err != nil {
				writerErr <- err
				return
			}
			acked.Store(i)
			if i == before+20 {
				close(running)
			}
		}
		writerErr <- errors.New("writer ran out of batches before the kill")
	}()
	select {
	case <-running:
	case err := <-writerErr:
		t.Fatalf("writer stopped before the kill: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("writer did not get 20 batches in within 30s")
	}
	p.Kill9()
	err := <-writerErr
	if !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Errorf("Apply to a killed plugin = %v, want an error wrapping sdk.ErrPluginUnavailable", err)
	}
	last := acked.Load()

	p2 := startOn(t, path)
	got, err := p2.store.AppliedIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The batch in flight at the kill may or may not have committed.
	if got != last && got != last+1 {
		t.Fatalf("AppliedIndex after kill -9 = %d; last acknowledged was %d", got, last)
	}
	t.Logf("last acknowledged %d, applied index after restart %d", last, got)
	recs, err := p2.store.List(ctx, "entries", "")
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(recs)) != got {
		t.Fatalf("%d entries after restart, want %d", len(recs), got)
	}
	for i, r := range recs {
		want := entry(uint64(i + 1)).Ops[0]
		if r.Key != want.Key || string(r.Value) != string(want.Value) {
			t.Fatalf("entry %d = %s=%q, want %s=%q", i+1, r.Key, r.Value, want.Key, want.Value)
		}
	}
	v, err := p2.store.Get(ctx, "meta", "last")
	if err != nil || string(v) != fmt.Sprint(got) {
		t.Fatalf("meta/last = %q, %v; want %d", v, err, got)
	}
	applied, err := p2.store.Apply(ctx, entry(got))
	if err != nil || applied {
		t.Fatalf("replaying batch %d after restart = %v, %v; want false, nil", got, applied, err)
	}
}

// BenchmarkPluginApply measures one Apply (one put of 300 bytes, fsynced)
// through go-plugin's gRPC connection to a real plugin process.
func BenchmarkPluginApply(b *testing.B) {
	p := startOn(b, filepath.Join(b.TempDir(), "state.db"))
	value := make([]byte, 300)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		op := store.Op{Type: store.OpPut, Bucket: "tasks", Key: fmt.Sprintf("task-%08d", i%10000), Value: value}
		if _, err := p.store.Apply(ctx, store.Batch{Index: uint64(i + 1), Ops: []store.Op{op}}); err != nil {
			b.Fatal(err)
		}
	}
}
