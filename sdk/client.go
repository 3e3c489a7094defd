package sdk

import (
	"os/exec"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// EnvDataDir is the environment variable the host sets to the agent's data
// directory; a plugin keeps its state under it unless configured otherwise.
const EnvDataDir = "WARREN_DATA_DIR"

// ClientConfig is the go-plugin client configuration the Warren agent
// starts every plugin with: the shared handshake and plugin sets, gRPC only,
// AutoMTLS, the sdk's message size limit and logger for go-plugin's own
// lines and the plugin's forwarded log. The agent sets how the process is
// run and supervised on top of it; sdk/plugintest starts a plugin under test
// with the same configuration.
func ClientConfig(cmd *exec.Cmd, logger hclog.Logger) *plugin.ClientConfig {
	return &plugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: PluginSets(),
		Cmd:              cmd,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           logger,
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(MaxMessageSize),
			grpc.MaxCallSendMsgSize(MaxMessageSize),
		)},
	}
}
