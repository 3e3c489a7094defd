// Command runtime-containerd is Warren's default runtime plugin: tasks run
// as containerd containers (runc), on a given containerd or on one the
// plugin manages. The host starts it; it is not run by hand.
package main

import (
	"os"
	"runtime/debug"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/sdk/runtime"
)

func main() {
	containerd.RunLogger() // when a shim runs it as a task's logger
	// A plugin runs beside every workload on the node: keep the heap tight
	// unless the operator says otherwise (GOMEMLIMIT in the plugin's env).
	// Not tighter than 24 MiB: the plugin's live heap is close to 8 MiB,
	// and a limit there made the collector run all through each start
	// (three parallel starts took 1.6 - 2x their containerd floor instead
	// of 1.2 - 1.3x; see docs/benchmarks.md).
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(24 << 20)
	}
	runtime.Serve(containerd.New())
}
