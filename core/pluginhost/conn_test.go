package pluginhost

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/warrenorch/warren/sdk"
)

// TestUnavailableErrorsHideSocketPaths: a call to a plugin whose socket no
// longer answers fails with an error that names the plugin and wraps
// sdk.ErrPluginUnavailable, but does not carry gRPC's dial error with the
// socket path (it travels on to API users); the agent's log has it.
func TestUnavailableErrorsHideSocketPaths(t *testing.T) {
	dir, err := os.MkdirTemp("", "wpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "plugin-socket")
	// A real socket, closed: what a dead plugin leaves.
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	lis.Close()
	cc, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })

	log := &syncBuffer{}
	c := newSwitchConn("runtime-containerd", sdk.KindRuntime, hclog.New(&hclog.LoggerOptions{Output: log, Level: hclog.Info}))
	c.set(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = c.Invoke(ctx, "/warren.runtime.v1.Runtime/Fingerprint", &emptypb.Empty{}, &emptypb.Empty{})
	if !errors.Is(err, sdk.ErrPluginUnavailable) {
		t.Fatalf("call to a dead socket: %v, want ErrPluginUnavailable", err)
	}
	want := `runtime plugin "runtime-containerd" unavailable: its connection failed (the agent's log has the details)`
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if !strings.Contains(log.String(), sock) {
		t.Errorf("the agent's log does not have the transport's error with the socket path %s:\n%s", sock, log)
	}
}
