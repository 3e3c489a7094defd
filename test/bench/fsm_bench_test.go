package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/raftnode"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/test/testutil"
)

// BenchmarkRaftFSM64: 64 goroutines proposing CreateService commands
// straight to Raft, with Warren's FSM and a real store-bolt process, but no
// API in front: the write path without gRPC, to set beside
// BenchmarkServiceCreate64 and BenchmarkRaftFloor64.
func BenchmarkRaftFSM64(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	p := testutil.StartPlugin(b, testutil.Build(b, "plugins/store-bolt"))
	st := store.NewClient(p.Conn)
	if err := st.Configure(ctx, []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "state.db")))); err != nil {
		b.Fatal(err)
	}
	f, err := fsm.New(ctx, st, state.New(), events.NewBroker(), hclog.NewNullLogger())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", testutil.FreePort(b))
	node, err := raftnode.Open(raftnode.Config{ID: "n1", Dir: filepath.Join(dir, "raft"), BindAddr: addr, Advertise: addr, FSM: f, Logger: hclog.NewNullLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Shutdown()
	if err := node.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				now := timestamppb.Now()
				svc := &apiv1.Service{Id: api.NewID(), CreatedAt: now, UpdatedAt: now, Spec: &apiv1.ServiceSpec{
					Name: fmt.Sprintf("s%d", i), Image: "registry.local/app:1.2.3",
					Env: map[string]string{"MODE": "bench", "LEVEL": "info"}, Labels: map[string]string{"team": "edge"},
				}}
				if _, err := node.Apply(ctx, &fsmpb.CreateService{Service: svc}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}
