// Command scheduler-binpack is an example third-party scheduler plugin for
// Warren: it packs tasks onto as few nodes as it can, the opposite of the
// built-in round-robin scheduler. The warren agent starts it; it is not run
// by hand. See agent.hcl next to this file for how to configure it, and
// docs/plugin-guide.md for how it is built.
package main

import (
	"github.com/warrenorch/warren/examples/plugins/scheduler-binpack/binpack"
	"github.com/warrenorch/warren/sdk/scheduler"
)

func main() {
	scheduler.Serve(binpack.New())
}
