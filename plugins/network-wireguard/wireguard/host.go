package wireguard

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/warrenorch/warren/sdk"
)

// nftTable is the prefix of the plugin's own nftables table, one per
// WireGuard interface (nftTableOf): all its rules live there, so removing
// them is one table delete, and two agents on one host keep apart.
const nftTable = "warren"

// nftTableOf is the nftables table of the plugin that runs interface iface.
func nftTableOf(iface string) string { return nftTable + "-" + iface }

// taskIfName is the task's interface inside its namespace.
const taskIfName = "eth0"

// ipForwardPath enables IPv4 forwarding in the namespace of the process
// that writes it.
const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// ipNet converts a prefix to the net package's form.
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// linkUp returns the link name, after setting its MTU (if not 0) and
// bringing it up, unless both are so already.
func linkUp(name string, mtu int) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find link %s: %w", name, err)
	}
	if mtu != 0 && l.Attrs().MTU != mtu {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", mtu, name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return l, nil
}

// ensureBridge creates the task bridge, if missing, and makes gw/bits its
// only address.
//
// The bridge gets a fixed MAC address (bridgeMAC): a bridge without one
// takes the lowest MAC of its ports, so attaching a task whose veth has a
// lower one would change the gateway's MAC under the tasks' ARP caches and
// cut them off the gateway (and the node's DNS) until their entries expire.
func ensureBridge(name string, mtu int, gw netip.Prefix) error {
	mac := bridgeMAC(name, gw)
	if _, err := netlink.LinkByName(name); err != nil {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu, HardwareAddr: mac}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", name, err)
		}
	}
	l, err := linkUp(name, mtu)
	if err != nil {
		return err
	}
	if !bytes.Equal(l.Attrs().HardwareAddr, mac) {
		if err := netlink.LinkSetHardwareAddr(l, mac); err != nil {
			return fmt.Errorf("set the MAC address of %s to %s: %w", name, mac, err)
		}
	}
	return setOnlyAddr(l, gw)
}

// bridgeMAC is the bridge's fixed MAC address: locally administered,
// unicast, derived from its name and gateway so a restarted plugin finds
// the same.
func bridgeMAC(name string, gw netip.Prefix) net.HardwareAddr {
	sum := sha256.Sum256([]byte(name + " " + gw.String()))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&^0x01 | 0x02
	return mac
}

// setOnlyAddr makes want the only IPv4 address of l.
func setOnlyAddr(l netlink.Link, want netip.Prefix) error {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", l.Attrs().Name, err)
	}
	have := false
	for _, a := range addrs {
		p, ok := netipPrefix(a.IPNet)
		if ok && p == want {
			have = true
			continue
		}
		if err := netlink.AddrDel(l, &a); err != nil {
			return fmt.Errorf("remove address %s from %s: %w", a.IPNet, l.Attrs().Name, err)
		}
	}
	if have {
		return nil
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
		return fmt.Errorf("add address %s to %s: %w", want, l.Attrs().Name, err)
	}
	return nil
}

func netipPrefix(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}

// ensureOverlayRoute makes overlay, with source src, the only route through
// the WireGuard link wg.
func ensureOverlayRoute(wg netlink.Link, overlay netip.Prefix, src netip.Addr) error {
	routes, err := netlink.RouteList(wg, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes of %s: %w", wg.Attrs().Name, err)
	}
	want := &netlink.Route{LinkIndex: wg.Attrs().Index, Dst: ipNet(overlay), Src: src.AsSlice(), Scope: netlink.SCOPE_LINK}
	ok := false
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == want.Dst.String() && r.Src.Equal(want.Src) {
			ok = true
			continue
		}
		if r.Dst == nil {
			continue
		}
		if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove route %s from %s: %w", r.Dst, wg.Attrs().Name, err)
		}
	}
	if ok {
		return nil
	}
	if err := netlink.RouteReplace(want); err != nil {
		return fmt.Errorf("route %s via %s: %w", overlay, wg.Attrs().Name, err)
	}
	return nil
}

// enableForwarding turns IPv4 forwarding on in the plugin's namespace, as
// Docker does: the node forwards between its bridge, WireGuard and its
// other networks. It is left on by Teardown.
func enableForwarding() error {
	b, err := os.ReadFile(ipForwardPath)
	if err == nil && bytes.Equal(bytes.TrimSpace(b), []byte("1")) {
		return nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding (%s): %w", ipForwardPath, err)
	}
	return nil
}

// underlayMTU returns the MTU of the link holding addr, or 1500 when no
// link (or only loopback) holds it.
func underlayMTU(addr netip.Addr) int {
	const fallback = 1500
	if !addr.IsValid() || addr.IsLoopback() || addr.IsUnspecified() {
		return fallback
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return fallback
	}
	for _, a := range addrs {
		if p, ok := netipPrefix(a.IPNet); ok && p.Addr() == addr {
			l, err := netlink.LinkByIndex(a.LinkIndex)
			if err == nil && l.Attrs().Flags&net.FlagLoopback == 0 {
				return l.Attrs().MTU
			}
		}
	}
	return fallback
}

// overlayMTU is the MTU of the overlay: the configured one, else the
// underlay's minus WireGuard's overhead.
func overlayMTU(configured, underlay int) int {
	if configured > 0 {
		return configured
	}
	return underlay - wireguardOverhead
}

// masqueradeTag identifies the masquerade rule for one node config, so an
// unchanged rule is recognised and left alone.
func masqueradeTag(subnet, overlay netip.Prefix) []byte {
	return fmt.Appendf(nil, "warren masquerade %s to !%s", subnet, overlay)
}

// ensureMasquerade makes the plugin's nftables table hold exactly one rule:
// masquerade what the node's tasks (subnet) send outside the overlay, so
// they reach the node's networks with the node's address.
func ensureMasquerade(tableName string, subnet, overlay netip.Prefix) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tag := masqueradeTag(subnet, overlay)
	table := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	chain := &nftables.Chain{
		Name:     "postrouting",
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
	}
	if t, err := c.ListTableOfFamily(tableName, nftables.TableFamilyIPv4); err == nil && t != nil {
		rules, err := c.GetRules(table, chain)
		if err == nil && len(rules) == 1 && bytes.Equal(rules[0].UserData, tag) {
			return nil
		}
		c.DelTable(table)
	}
	c.AddTable(table)
	c.AddChain(chain)
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, UserData: tag, Exprs: masqueradeExprs(subnet, overlay)})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: add masquerade of %s: %w", tableName, subnet, err)
	}
	return nil
}

// masqueradeExprs is `ip saddr subnet ip daddr != overlay masquerade`.
func masqueradeExprs(subnet, overlay netip.Prefix) []expr.Any {
	match := func(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
		mask := net.CIDRMask(p.Bits(), 32)
		return []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: op, Register: 1, Data: p.Addr().AsSlice()},
		}
	}
	e := match(12, subnet, expr.CmpOpEq)                // source address
	e = append(e, match(16, overlay, expr.CmpOpNeq)...) // destination address
	return append(e, &expr.Masq{})
}

// deleteMasquerade deletes the plugin's nftables table, if present.
func deleteMasquerade(tableName string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if t, err := c.ListTableOfFamily(tableName, nftables.TableFamilyIPv4); err != nil || t == nil {
		return nil
	}
	c.DelTable(&nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: delete table %s: %w", tableName, err)
	}
	return nil
}

// openNetns opens the task namespace at path; a missing one wraps
// sdk.ErrNotFound.
func openNetns(path string) (netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("network namespace %s: %w", path, sdk.ErrNotFound)
		}
		return 0, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return ns, nil
}

// taskLink is the veth pair of a task on the host: hostName on the bridge,
// its peer taskIfName in the task's namespace.
type taskLink struct {
	hostName string
	netns    string
	addr     netip.Prefix
	gateway  netip.Addr
	mtu      int
	bridge   string
}

// ready reports whether the task's link exists on the bridge and is up:
// an earlier Attach finished building it.
func (tl taskLink) ready() bool {
	l, err := netlink.LinkByName(tl.hostName)
	if err != nil || l.Attrs().Flags&net.FlagUp == 0 {
		return false
	}
	br, err := netlink.LinkByName(tl.bridge)
	return err == nil && l.Attrs().MasterIndex == br.Attrs().Index
}

// build creates the task's veth pair from scratch, replacing what a
// half-finished earlier attempt left: the host end on the bridge, the task
// end with its address, MTU and default route.
func (tl taskLink) build() (err error) {
	ns, err := openNetns(tl.netns)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", tl.netns, err)
	}
	defer h.Close()
	if err := deleteLink(tl.hostName); err != nil {
		return err
	}
	if l, err := h.LinkByName(taskIfName); err == nil {
		if l.Type() != "veth" {
			return fmt.Errorf("network namespace %s already has a %s link %s: %w", tl.netns, l.Type(), taskIfName, sdk.ErrConflict)
		}
		_ = h.LinkDel(l) // a stale end of ours whose host end is gone
	}
	br, err := netlink.LinkByName(tl.bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", tl.bridge, err)
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: tl.hostName, MTU: tl.mtu, MasterIndex: br.Attrs().Index},
		PeerName:      taskIfName,
		PeerMTU:       uint32(tl.mtu),
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s for %s: %w", tl.hostName, tl.netns, err)
	}
	defer func() {
		if err != nil {
			_ = deleteLink(tl.hostName)
		}
	}()
	peer, err := h.LinkByName(taskIfName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", taskIfName, tl.netns, err)
	}
	if err := h.AddrAdd(peer, &netlink.Addr{IPNet: ipNet(tl.addr)}); err != nil {
		return fmt.Errorf("add address %s in %s: %w", tl.addr, tl.netns, err)
	}
	if err := h.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up in %s: %w", taskIfName, tl.netns, err)
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		_ = h.LinkSetUp(lo)
	}
	if err := h.RouteReplace(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: tl.gateway.AsSlice()}); err != nil {
		return fmt.Errorf("default route via %s in %s: %w", tl.gateway, tl.netns, err)
	}
	if err := netlink.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set %s up: %w", tl.hostName, err)
	}
	return nil
}

// linkType returns the type of the link name ("wireguard", "tuntap",
// "bridge"...) or "" when there is none.
func linkType(name string) string {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return ""
	}
	return l.Type()
}

// linkMTU returns the MTU of the link name.
func linkMTU(name string) (int, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("find link %s: %w", name, err)
	}
	return l.Attrs().MTU, nil
}
