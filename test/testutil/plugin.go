package testutil

import (
	"os/exec"
	"testing"

	"github.com/warrenorch/warren/sdk/plugintest"
)

// Process is a plugin process started for a test (sdk/plugintest).
type Process = plugintest.Plugin

// StartPlugin launches the plugin binary at path as the agent does
// (plugintest.Start), unconfigured: the caller configures it. env is added
// to the test's environment. The process is killed when the test ends,
// also when it fails.
func StartPlugin(t testing.TB, path string, env ...string) *Process {
	t.Helper()
	return plugintest.Start(t, path, plugintest.WithoutConfigure(), plugintest.WithEnv(env...))
}

// StartPluginCmd is StartPlugin for a command the caller prepared, such as
// a plugin started inside a network namespace (netns.Host.Command). cmd
// runs once: the Process cannot Restart.
func StartPluginCmd(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	return plugintest.Start(t, cmd.Path, plugintest.WithoutConfigure(),
		plugintest.WithCommand(func(string) *exec.Cmd { return cmd }))
}
