// Package integration runs real warren agents (the built binaries, with real
// plugin processes, real Raft and real BoltDB) and drives them through the
// CLI and the API.
package integration

import (
	"os"
	"testing"

	"github.com/warrenorch/warren/test/testutil"
)

// managerPlugins are the plugins a manager-only agent starts.
var managerPlugins = []string{"store-bolt", "scheduler-roundrobin"}

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}
