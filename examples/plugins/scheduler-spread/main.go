// Command scheduler-spread is an example third-party scheduler plugin for
// Warren: it spreads each service's tasks evenly over the values of a node
// label, such as zones, so that a service scaled from 4 tasks in zone a to 8
// over zones a and b ends 4/4. The warren agent starts it; it is not run by
// hand. See agent.hcl next to this file for how to configure it, and
// docs/plugin-guide.md for how a scheduler plugin is built.
package main

import (
	"github.com/warrenorch/warren/examples/plugins/scheduler-spread/spread"
	"github.com/warrenorch/warren/sdk/scheduler"
)

func main() {
	scheduler.Serve(spread.New())
}
