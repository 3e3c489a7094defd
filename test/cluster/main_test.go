// Package cluster runs multi-node Warren clusters on one machine: every node
// is a real agent in its own network namespace, with its own plugins and,
// for workers, its own containerd. The tests form clusters from join tokens,
// attack them with missing and foreign certificates, kill and partition
// nodes, and check what runs against containerd itself.
package cluster

import (
	"os"
	"testing"

	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}
