// Command scheduler-roundrobin is Warren's default scheduler plugin: each
// task goes to the eligible node with the fewest tasks, ties rotating in
// node ID order. The warren agent starts it; it is not run by hand.
package main

import (
	"github.com/warrenorch/warren/plugins/scheduler-roundrobin/roundrobin"
	"github.com/warrenorch/warren/sdk/scheduler"
)

func main() {
	scheduler.Serve(roundrobin.New())
}
