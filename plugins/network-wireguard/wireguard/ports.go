package wireguard

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
)

// PortsTable is the plugin's nftables table for published ports (family
// ip). It holds nothing but what SetPublished builds, so replacing or
// removing every published port is one table operation that never touches
// another table's rules.
const PortsTable = "warren-ports"

// SNATMark is the packet mark bit the ports table sets on the first packet
// of a connection to be source-NATed to the node's gateway address: an
// Ingress connection, or one the node makes to itself.
const SNATMark = 0x01000000

// Chains of PortsTable. PortsChain holds one rule per published port for
// connections from elsewhere (prerouting), LocalChain the same rules for
// connections the node makes (output), all of which are marked.
const (
	PortsChain = "ports"
	LocalChain = "ports-local"
)

// SetPublished makes the ports table forward exactly ports (see
// network.Network). The table's rules carry a tag of the set and the
// gateway, so an unchanged set is recognised and left alone.
func (p *Plugin) SetPublished(_ context.Context, ports []network.PublishedPort) error {
	checked, err := network.CheckPublished(ports)
	if err != nil {
		return err
	}
	for _, pp := range checked {
		for _, b := range pp.Backends {
			if !b.Is4() {
				return fmt.Errorf("published port %s: backend %s: only IPv4 is supported: %w", pp, b, sdk.ErrUnsupported)
			}
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		return fmt.Errorf("set published ports: node not set up (SetupNode first): %w", sdk.ErrFailedPrecondition)
	}
	subnet := p.st.Node.Subnet
	gw := gatewayOf(subnet)
	if len(checked) > 0 {
		// A connection the node makes to 127.0.0.1:PORT keeps its loopback
		// source until postrouting; routing it out of the bridge or the
		// WireGuard interface needs route_localnet on those two only.
		for _, dev := range []string{p.cfg.Bridge, p.cfg.Interface} {
			path := filepath.Join("/proc/sys/net/ipv4/conf", dev, "route_localnet")
			if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
				return fmt.Errorf("published ports: enable route_localnet on %s: %w", dev, err)
			}
		}
	}
	return applyPorts(checked, gw.AsSlice(), subnet)
}

// portsTag identifies one set of ports behind one gateway.
func portsTag(ports []network.PublishedPort, gw []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "gateway %x\n", gw)
	for _, p := range ports {
		fmt.Fprintf(h, "%s %d %d %s %v\n", p.Protocol, p.Port, p.TargetPort, p.Mode, p.Backends)
	}
	return fmt.Appendf(nil, "warren ports %x", h.Sum(nil)[:16])
}

var portsTableRef = &nftables.Table{Name: PortsTable, Family: nftables.TableFamilyIPv4}

// applyPorts replaces the ports table with one that forwards ports (in
// one netlink transaction: connections see either the old or the new
// table), unless it holds them already; no ports deletes the table.
func applyPorts(ports []network.PublishedPort, gw []byte, subnet netip.Prefix) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	tag := portsTag(ports, append(slices.Clone(gw), []byte(subnet.String())...))
	exists := false
	if t, err := c.ListTableOfFamily(PortsTable, nftables.TableFamilyIPv4); err == nil && t != nil {
		exists = true
		if len(ports) > 0 {
			rules, err := c.GetRules(portsTableRef, &nftables.Chain{Name: "postrouting", Table: portsTableRef})
			if err == nil && len(rules) == 1 && bytes.Equal(rules[0].UserData, tag) {
				return nil
			}
		}
		c.DelTable(portsTableRef)
	}
	if len(ports) == 0 {
		if !exists {
			return nil
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: delete table %s: %w", PortsTable, err)
		}
		return nil
	}
	t := c.AddTable(portsTableRef)
	natChain := func(name string, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: name, Table: t, Type: nftables.ChainTypeNAT, Hooknum: hook, Priority: prio})
	}
	pre := natChain("prerouting", nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
	out := natChain("output", nftables.ChainHookOutput, nftables.ChainPriorityNATDest)
	post := natChain("postrouting", nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
	ports4 := c.AddChain(&nftables.Chain{Name: PortsChain, Table: t})
	local := c.AddChain(&nftables.Chain{Name: LocalChain, Table: t})
	c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: jumpIfLocal(PortsChain)})
	c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: jumpIfLocal(LocalChain)})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, UserData: tag, Exprs: snatMarked(gw)})
	for _, p := range ports {
		for _, ch := range []*nftables.Chain{ports4, local} {
			set := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true, KeyType: nftables.TypeInteger, DataType: nftables.TypeIPAddr}
			elems := make([]nftables.SetElement, len(p.Backends))
			for i, b := range p.Backends {
				elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), Val: b.AsSlice()}
			}
			if err := c.AddSet(set, elems); err != nil {
				return fmt.Errorf("nftables: backends of %s: %w", p, err)
			}
			mark := ch == local || p.Mode == network.Ingress
			if !mark {
				// A host-mode connection from one of the node's tasks is
				// source-NATed too: its task may be on the same bridge,
				// which would answer it directly, past the DNAT.
				c.AddRule(&nftables.Rule{Table: t, Chain: ch, UserData: []byte(p.String() + " from the node's tasks"), Exprs: markFromSubnet(p, subnet)})
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, UserData: []byte(p.String()), Exprs: forwardExprs(p, set, mark)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: publish %d ports: %w", PortsTable, len(ports), err)
	}
	return nil
}

// jumpIfLocal is `fib daddr type local jump chain`: only connections to
// one of the node's own addresses are published ports.
func jumpIfLocal(chain string) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chain},
	}
}

// snatMarked is `meta mark & SNATMark != 0 snat to gw`.
func snatMarked(gw []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(SNATMark), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Immediate{Register: 1, Data: gw},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
}

// matchPort is `meta l4proto P th dport PORT`.
func matchPort(p network.PublishedPort) []expr.Any {
	proto := byte(unix.IPPROTO_TCP)
	if p.Protocol == network.UDP {
		proto = unix.IPPROTO_UDP
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Port)},
	}
}

// setMark is `meta mark set mark | SNATMark`.
func setMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(SNATMark)),
			Xor:  binaryutil.NativeEndian.PutUint32(SNATMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// markFromSubnet is `ip saddr subnet meta l4proto P th dport PORT meta
// mark set mark | SNATMark`.
func markFromSubnet(p network.PublishedPort, subnet netip.Prefix) []expr.Any {
	e := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(subnet.Bits(), 32), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: subnet.Addr().AsSlice()},
	}
	return append(append(e, matchPort(p)...), setMark()...)
}

// forwardExprs is `meta l4proto P th dport PORT [meta mark set mark |
// SNATMark] dnat to numgen inc mod N map { i: backend_i } : TARGET`.
func forwardExprs(p network.PublishedPort, backends *nftables.Set, mark bool) []expr.Any {
	e := matchPort(p)
	if mark {
		e = append(e, setMark()...)
	}
	return append(e,
		&expr.Numgen{Register: 1, Modulus: uint32(len(p.Backends)), Type: unix.NFT_NG_INCREMENTAL},
		&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetID: backends.ID, SetName: backends.Name},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(p.TargetPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	)
}

// deletePorts deletes the ports table, if present.
func deletePorts() error { return applyPorts(nil, nil, netip.Prefix{}) }
