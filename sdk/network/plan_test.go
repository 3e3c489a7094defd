package network

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestParsePlan(t *testing.T) {
	for _, tc := range []struct {
		cidr    string
		bits    int
		wantErr string
	}{
		{DefaultRange, DefaultNodePrefix, ""},
		{"10.0.0.0/8", 24, ""},
		{"172.20.0.0/20", 28, ""},
		{"fd00:88::/48", 64, ""},
		{"10.88.0.0/16", 29, ""},
		{"10.88.0.0/16", 30, "at least 8 addresses"},
		{"10.88.0.0/16", 16, "must be longer than the range's /16"},
		{"10.88.0.0/24", 16, "must be longer"},
		{"10.88.0.0/16", 33, "longer than an address"},
		{"10.88.1.0/16", 24, "has host bits set (the network is 10.88.0.0/16)"},
		{"10.88.0.0", 24, "not a CIDR prefix"},
		{"", 24, "not a CIDR prefix"},
		{"::ffff:10.88.0.0/112", 120, "dotted form"},
	} {
		t.Run(fmt.Sprintf("%s_%d", tc.cidr, tc.bits), func(t *testing.T) {
			_, err := ParsePlan(tc.cidr, tc.bits)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("ParsePlan = %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("ParsePlan = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestHolds(t *testing.T) {
	plan, _ := ParsePlan("10.88.0.0/16", 24)
	for s, want := range map[string]bool{
		"10.88.3.0/24": true, "10.88.3.0/25": false, "10.88.3.1/24": false, "10.89.0.0/24": false, "10.88.0.0/16": false,
	} {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := plan.Holds(pf); got != want {
			t.Errorf("Holds(%s) = %v, want %v", s, got, want)
		}
	}
}

func TestGateway(t *testing.T) {
	if got := Gateway(netip.MustParsePrefix("10.88.3.0/24")); got.String() != "10.88.3.1" {
		t.Fatalf("Gateway = %s", got)
	}
}
