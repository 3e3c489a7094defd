package ctrtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/plugins/network-wireguard/wireguard"
	"github.com/warrenorch/warren/test/testutil"
)

// NetworkPluginBlock returns the plugin "network-wireguard" block of a
// test agent: its default names (unique to the data dir), a listen_port
// free on this machine now (agents in one namespace cannot all have
// 51820), and teardown_on_exit, so that a clean stop removes its devices.
// Sweep what a killed agent left with SweepNetwork.
func NetworkPluginBlock(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	pc.Close()
	return fmt.Sprintf("\nplugin \"network-wireguard\" {\n  config {\n    listen_port      = %d\n    teardown_on_exit = true\n  }\n}\n", port)
}

// SweepNetwork removes what network-wireguard left for the agent with that
// data_dir, in this network namespace, and its device process wherever it
// runs: the plugin's Teardown, run in the test process. Run it once the
// agent has stopped.
func SweepNetwork(t testing.TB, dataDir string) {
	stateDir := filepath.Join(dataDir, wireguard.Name)
	if _, err := os.Stat(stateDir); err != nil {
		return // the plugin never ran
	}
	p := wireguard.New()
	cfg := fmt.Sprintf(`{"state_dir": %q}`, stateDir)
	if err := p.Configure(context.Background(), []byte(cfg)); err != nil {
		t.Logf("cleanup: network-wireguard of %s: %v", stateDir, err)
		return
	}
	if err := p.Teardown(context.Background()); err != nil {
		t.Logf("cleanup: network-wireguard of %s: %v", stateDir, err)
	}
}

// OverlayPluginBlock returns the plugin "network-wireguard" block of an
// agent on the overlay, with interface names unique to this test process
// and node (the userspace device's UAPI socket is in the machine's
// /var/run/wireguard), and makes sure the device process the plugin leaves
// is killed when the test ends. Run such agents in network namespaces of
// their own (test/netns).
func OverlayPluginBlock(t testing.TB, node string) string {
	t.Helper()
	iface := OverlayInterface(node)
	bridge := "br" + iface[2:]
	t.Cleanup(func() { KillWireGuardDevice(t, iface) })
	return fmt.Sprintf("\nplugin \"network-wireguard\" {\n  config {\n    interface = %q\n    bridge    = %q\n  }\n}\n", iface, bridge)
}

// OverlayInterface is the WireGuard interface OverlayPluginBlock gives node.
func OverlayInterface(node string) string {
	suffix := fmt.Sprintf("%d%s", os.Getpid()%100000, node)
	if len(suffix) > 12 {
		suffix = suffix[:12]
	}
	return "wg" + suffix
}

// KillWireGuardDevice kills the userspace WireGuard device process of
// iface, if one runs, and waits for it to go.
func KillWireGuardDevice(t testing.TB, iface string) {
	pid := wireguard.DevicePID(iface)
	if pid == 0 {
		return
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Kill()
	}
	testutil.Eventually(t, 10*time.Second, "the WireGuard device process of "+iface+" to exit", func() bool { return wireguard.DevicePID(iface) == 0 })
}

// SweepNetns unmounts what a worker mounted under data_dir/netns: the task
// namespaces a failed test left, and the directory's own bind mount. Run it
// once the agent has stopped.
func SweepNetns(t testing.TB, dataDir string) {
	removed, err := worker.RemoveNetns(dataDir)
	for _, id := range removed {
		t.Logf("cleanup: unmounted the task namespace %s left behind", id)
	}
	if err != nil {
		t.Logf("cleanup: %v", err)
	}
}

// Namespaces counts the task network namespaces under an agent's data dir.
func Namespaces(t testing.TB, dataDir string) int {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(dataDir, "netns"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return len(entries)
}
