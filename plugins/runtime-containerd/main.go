// Command runtime-containerd is Warren's default runtime plugin: tasks run
// as containerd containers (runc), on a given containerd or on one the
// plugin manages. The host starts it; it is not run by hand.
package main

import (
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
	"github.com/warrenorch/warren/sdk/runtime"
)

func main() {
	runtime.Serve(containerd.New())
}
