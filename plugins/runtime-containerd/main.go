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
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(8 << 20)
	}
	runtime.Serve(containerd.New())
}
