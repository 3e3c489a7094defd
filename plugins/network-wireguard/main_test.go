//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warrenorch/warren/plugins/network-wireguard/wireguard"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/sdk/networktest"
	"github.com/warrenorch/warren/test/netns"
	"github.com/warrenorch/warren/test/testutil"
)

// overlay is the overlay range of the tests; node n gets 10.199.n.0/24.
var overlay = netip.MustParsePrefix("10.199.0.0/16")

func subnet(n int) netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("10.199.%d.0/24", n)) }

// node is one test host running the plugin process in its namespace.
type node struct {
	t      testing.TB
	host   *netns.Host
	bin    string
	dir    string // the plugin's state_dir
	iface  string // WireGuard interface, unique machine-wide (/var/run/wireguard is shared)
	bridge string
	proc   *testutil.Process
	nw     network.Network
}

// newNode starts the plugin in host h. The device process it may leave is
// killed when the test ends, after the plugin process.
func newNode(t testing.TB, h *netns.Host, extra map[string]any) *node {
	t.Helper()
	suffix := fmt.Sprintf("%06x", rand.Uint32N(1<<24))
	n := &node{t: t, host: h, bin: testutil.Build(t, "plugins/network-wireguard"), dir: t.TempDir(), iface: "wg" + suffix, bridge: "br" + suffix}
	t.Cleanup(n.killDevice)
	n.start(extra)
	return n
}

// start starts a plugin process and configures it.
func (n *node) start(extra map[string]any) {
	n.t.Helper()
	cmd := n.host.Command(n.bin)
	cmd.Env = os.Environ()
	n.proc = testutil.StartPluginCmd(n.t, cmd)
	n.nw = network.NewClient(n.proc.Conn)
	cfg := map[string]any{"state_dir": n.dir, "interface": n.iface, "bridge": n.bridge}
	for k, v := range extra {
		cfg[k] = v
	}
	b, _ := json.Marshal(cfg)
	if err := n.nw.Configure(n.t.Context(), b); err != nil {
		n.t.Fatalf("Configure(%s): %v", b, err)
	}
}

// kill9 kills the plugin process as a crash would and waits for it to go.
func (n *node) kill9() {
	n.t.Helper()
	if err := syscall.Kill(n.proc.PID(), syscall.SIGKILL); err != nil {
		n.t.Fatalf("kill plugin: %v", err)
	}
	testutil.Eventually(n.t, 5*time.Second, "plugin process exits after SIGKILL", n.proc.Client.Exited)
}

// killDevice kills the userspace device process left behind, if any.
func (n *node) killDevice() {
	if pid := wireguard.DevicePID(n.iface); pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		testutil.Eventually(n.t, 5*time.Second, "device process exits", func() bool { return wireguard.DevicePID(n.iface) == 0 })
	}
	_ = os.Remove(wireguard.SocketPath(n.iface))
}

// setup sets the node up as node number i.
func (n *node) setup(i int) network.Peer {
	n.t.Helper()
	cfg := network.NodeConfig{NodeID: n.host.Name, Subnet: subnet(i), OverlayCIDR: overlay, AdvertiseAddr: n.host.Addr(51820)}
	self, err := n.nw.SetupNode(n.t.Context(), cfg)
	if err != nil {
		n.t.Fatalf("SetupNode(%+v): %v", cfg, err)
	}
	return self
}

func (n *node) attach(taskID string, ns *netns.Host) network.Attachment {
	n.t.Helper()
	a, err := n.nw.Attach(n.t.Context(), taskID, ns.Path())
	if err != nil {
		n.t.Fatalf("Attach(%q, %s): %v", taskID, ns.Path(), err)
	}
	return a
}

// device returns the node's WireGuard device as wgctrl sees it.
func (n *node) device() *wgtypes.Device {
	n.t.Helper()
	wg, err := wgctrl.New()
	if err != nil {
		n.t.Fatal(err)
	}
	defer wg.Close()
	d, err := wg.Device(n.iface)
	if err != nil {
		n.t.Fatalf("wgctrl device %s: %v", n.iface, err)
	}
	return d
}

// census is what the plugin has built in a namespace, with the kernel's
// indexes and handles, so that something rebuilt shows as changed.
type census struct {
	Links, Addrs, Routes, Rules []string
}

func takeCensus(t testing.TB, h *netns.Host) census {
	t.Helper()
	var c census
	err := h.Do(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			c.Links = append(c.Links, fmt.Sprintf("%s#%d", l.Attrs().Name, l.Attrs().Index))
		}
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			c.Addrs = append(c.Addrs, fmt.Sprintf("%d:%s", a.LinkIndex, a.IPNet))
		}
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, r := range routes {
			c.Routes = append(c.Routes, r.String())
		}
		nft, err := nftables.New()
		if err != nil {
			return err
		}
		tables, err := nft.ListTables()
		if err != nil {
			return err
		}
		chains, err := nft.ListChains()
		if err != nil {
			return err
		}
		for _, tb := range tables {
			for _, ch := range chains {
				if ch.Table.Name != tb.Name || ch.Table.Family != tb.Family {
					continue
				}
				rules, err := nft.GetRules(tb, ch)
				if err != nil {
					return err
				}
				for _, r := range rules {
					c.Rules = append(c.Rules, fmt.Sprintf("%s/%s#%d", tb.Name, ch.Name, r.Handle))
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("census of %s: %v", h.Name, err)
	}
	for _, s := range [][]string{c.Links, c.Addrs, c.Routes, c.Rules} {
		sort.Strings(s)
	}
	return c
}

func (c census) equal(o census) bool {
	return slices.Equal(c.Links, o.Links) && slices.Equal(c.Addrs, o.Addrs) && slices.Equal(c.Routes, o.Routes) && slices.Equal(c.Rules, o.Rules)
}

func peerKey(t *testing.T, _ int) string {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().String()
}

func TestConformance(t *testing.T) {
	tn := netns.New(t)
	n := newNode(t, tn.AddHost(t, "node"), nil)
	spaces := 0
	networktest.RunClient(t, func(*testing.T) network.Network { return n.nw }, networktest.Options{
		NewNetns: func(t *testing.T) string {
			spaces++
			ns := tn.AddNamespace(t, fmt.Sprintf("task%d", spaces))
			t.Cleanup(func() { tn.DelNamespace(t, ns) })
			return ns.Path()
		},
		PeerKey: peerKey,
	})
}
