// Command network-wireguard is Warren's default network plugin: a WireGuard
// mesh between the nodes, routed at L3, and a bridge for each node's tasks.
// The warren agent starts it; it is not run by hand. Started with
// WARREN_WG_DEVICE set, the binary runs a userspace WireGuard device instead
// (the plugin does that itself when the kernel has no WireGuard).
package main

import (
	"github.com/warrenorch/warren/plugins/network-wireguard/wireguard"
	"github.com/warrenorch/warren/sdk/network"
)

func main() {
	wireguard.RunDeviceIfAsked()
	network.Serve(wireguard.New())
}
