package overlay

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk/network"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestAllocate(t *testing.T) {
	plan, err := network.ParsePlan("10.88.0.0/16", 24)
	if err != nil {
		t.Fatal(err)
	}
	var all []netip.Prefix
	for i := range 256 {
		all = append(all, netip.MustParsePrefix(fmt.Sprintf("10.88.%d.0/24", i)))
	}
	for _, tc := range []struct {
		name    string
		taken   []netip.Prefix
		want    string
		wantErr string
	}{
		{name: "empty", want: "10.88.0.0/24"},
		{name: "first taken", taken: prefixes("10.88.0.0/24"), want: "10.88.1.0/24"},
		{name: "a hole is reused", taken: prefixes("10.88.0.0/24", "10.88.2.0/24", "10.88.1.0/24", "10.88.4.0/24"), want: "10.88.3.0/24"},
		{name: "unsorted", taken: prefixes("10.88.1.0/24", "10.88.0.0/24"), want: "10.88.2.0/24"},
		{name: "a wider prefix in the way", taken: prefixes("10.88.0.0/22"), want: "10.88.4.0/24"},
		{name: "overlapping taken prefixes", taken: prefixes("10.88.0.0/23", "10.88.1.0/24", "10.88.0.0/22", "10.88.2.0/24"), want: "10.88.4.0/24"},
		{name: "a narrower prefix blocks its whole subnet", taken: prefixes("10.88.0.128/25"), want: "10.88.1.0/24"},
		{name: "prefixes outside the range are ignored", taken: prefixes("10.87.0.0/24", "192.168.0.0/16"), want: "10.88.0.0/24"},
		{name: "duplicates", taken: prefixes("10.88.0.0/24", "10.88.0.0/24"), want: "10.88.1.0/24"},
		{name: "only the last left", taken: all[:255], want: "10.88.255.0/24"},
		{name: "full", taken: all, wantErr: "overlay 10.88.0.0/16 (/24 per node) is full: all 256 node subnets are taken"},
		{name: "full by a covering prefix", taken: prefixes("10.0.0.0/8"), wantErr: "is full"},
		{name: "full by a tail", taken: append(all[:255:255], netip.MustParsePrefix("10.88.255.128/25")), wantErr: "is full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Allocate(plan, tc.taken)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Allocate = %v, %v; want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got.String() != tc.want {
				t.Fatalf("Allocate = %v, %v; want %s", got, err, tc.want)
			}
			if !plan.Holds(got) {
				t.Fatalf("Allocate gave %s, which the plan does not hold", got)
			}
			for _, tk := range tc.taken {
				if tk.Overlaps(got) {
					t.Fatalf("Allocate gave %s, which overlaps taken %s", got, tk)
				}
			}
		})
	}
}

func TestAllocateIPv6(t *testing.T) {
	plan, err := network.ParsePlan("fd00:88::/48", 64)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Allocate(plan, prefixes("fd00:88::/64", "fd00:88:0:1::/64"))
	if err != nil || got.String() != "fd00:88:0:2::/64" {
		t.Fatalf("Allocate = %v, %v", got, err)
	}
	if plan.Nodes() != 1<<16 {
		t.Fatalf("Nodes = %d", plan.Nodes())
	}
}

// TestAllocateFillsTheRange allocates every subnet of a small range one by
// one: each is new, and the next allocation fails.
func TestAllocateFillsTheRange(t *testing.T) {
	plan, err := network.ParsePlan("10.90.0.0/24", 28)
	if err != nil {
		t.Fatal(err)
	}
	var taken []netip.Prefix
	for range plan.Nodes() {
		s, err := Allocate(plan, taken)
		if err != nil {
			t.Fatalf("after %d: %v", len(taken), err)
		}
		taken = append(taken, s)
	}
	if s, err := Allocate(plan, taken); err == nil {
		t.Fatalf("a %d-th subnet %s out of %d", len(taken)+1, s, plan.Nodes())
	}
	if got := network.Gateway(taken[3]); got.String() != "10.90.0.49" {
		t.Fatalf("Gateway(%s) = %s", taken[3], got)
	}
}
