// Package overlay allocates the cluster's node subnets: the leader gives
// each worker node one subnet of the overlay plan (network.Plan) through
// Raft, never one that another node or a removed node's remaining tasks
// still use. Allocate is the pure decision.
package overlay

import (
	"fmt"
	"math/big"
	"net/netip"
	"slices"

	"github.com/warrenorch/warren/sdk/network"
)

// Allocate returns the lowest node subnet of plan p that overlaps none of taken
// (the subnets of the cluster's nodes, and those still in use by tasks of
// removed nodes), and an error naming the range when every one is taken.
func Allocate(p network.Plan, taken []netip.Prefix) (netip.Prefix, error) {
	if err := p.Check(); err != nil {
		return netip.Prefix{}, err
	}
	used := make([]netip.Prefix, 0, len(taken))
	for _, t := range taken {
		if t.IsValid() && t.Overlaps(p.Range) {
			used = append(used, t.Masked())
		}
	}
	slices.SortFunc(used, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	// Walk the candidates in address order, jumping past each used prefix
	// that overlaps the current one.
	cand := netip.PrefixFrom(p.Range.Addr(), p.NodePrefix)
	for _, u := range used {
		if lastAddr(u).Less(cand.Addr()) {
			continue // wholly before the candidate
		}
		if lastAddr(cand).Less(u.Addr()) {
			break // the candidate is free: later prefixes start later still
		}
		next, ok := after(lastAddr(u), p.NodePrefix)
		if !ok || !p.Range.Contains(next.Addr()) {
			return netip.Prefix{}, full(p, len(taken))
		}
		cand = next
	}
	return cand, nil
}

func full(p network.Plan, taken int) error {
	return fmt.Errorf("overlay %s is full: all %d node subnets are taken (%d nodes or their tasks hold one); remove nodes or recreate the cluster with a larger range", p, p.Nodes(), taken)
}

// lastAddr is the highest address of prefix pf.
func lastAddr(pf netip.Prefix) netip.Addr {
	a := pf.Masked().Addr()
	b := a.AsSlice()
	bits := pf.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	out, _ := netip.AddrFromSlice(b)
	return out
}

// after returns the first subnet of prefix length bits that starts after
// address a, and false when a is the last address there is.
func after(a netip.Addr, bits int) (netip.Prefix, bool) {
	n := new(big.Int).SetBytes(a.AsSlice())
	n.Add(n, big.NewInt(1))
	size := a.BitLen() / 8
	if n.BitLen() > a.BitLen() {
		return netip.Prefix{}, false
	}
	buf := make([]byte, size)
	n.FillBytes(buf)
	next, _ := netip.AddrFromSlice(buf)
	pf, err := next.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	if pf.Addr() != next {
		// a's successor is inside a subnet: start at the following one.
		return after(lastAddr(pf), bits)
	}
	return pf, true
}
