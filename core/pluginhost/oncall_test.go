package pluginhost

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/sdk/store"
)

// TestOnCallSeesEveryCall: OnCall is told of each call made through a
// plugin's Client, with its method and error, also when the plugin is
// down (the call fails at once with Unavailable).
func TestOnCallSeesEveryCall(t *testing.T) {
	type call struct {
		plugin, method string
		code           codes.Code
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	opts := testOptions()
	opts.OnCall = func(plugin, method string, took time.Duration, err error) {
		if took <= 0 {
			t.Errorf("%s: took %v", method, took)
		}
		mu.Lock()
		calls = append(calls, call{plugin, method, status.Code(err)})
		mu.Unlock()
	}
	h, _ := newHost(t, opts)
	p := startPlugin(t, h, testSpec(t, "store-test", nil))
	st := store.NewClient(p.Client())
	ctx := context.Background()
	if _, err := st.AppliedIndex(ctx); err != nil {
		t.Fatalf("AppliedIndex: %v", err)
	}
	if err := h.StopPlugin(ctx, "store-test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppliedIndex(ctx); err == nil {
		t.Fatal("AppliedIndex on a stopped plugin succeeded")
	}
	mu.Lock()
	defer mu.Unlock()
	const method = "/warren.sdk.store.v1.Store/AppliedIndex"
	want := []call{{"store-test", method, codes.OK}, {"store-test", method, codes.Unavailable}}
	if len(calls) != len(want) || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("OnCall saw %v, want %v (the host's own calls not included)", calls, want)
	}
}
