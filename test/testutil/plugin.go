package testutil

import (
	"os"
	"os/exec"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/warrenorch/warren/sdk"
)

// Process is a plugin process started for a test.
type Process struct {
	Client *plugin.Client
	Conn   *grpc.ClientConn
}

// PID returns the plugin's process ID.
func (p *Process) PID() int { return p.Client.ReattachConfig().Pid }

// StartPlugin launches the plugin binary at path over go-plugin with
// AutoMTLS and returns its connection. The process is killed when the test
// ends, also when it fails.
func StartPlugin(t testing.TB, path string, env ...string) *Process {
	t.Helper()
	cmd := exec.Command(path)
	cmd.Env = append(os.Environ(), env...)
	return StartPluginCmd(t, cmd)
}

// StartPluginCmd is StartPlugin for a command the caller prepared, such as
// a plugin started inside a network namespace (netns.Host.Command).
func StartPluginCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	path := cmd.Path
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: os.Stderr}),
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin %s: %v", path, err)
	}
	raw, err := rpc.Dispense(sdk.DispenseName)
	if err != nil {
		t.Fatalf("dispense plugin %s: %v", path, err)
	}
	return &Process{Client: client, Conn: raw.(*grpc.ClientConn)}
}
