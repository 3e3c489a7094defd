package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk"
)

func TestCheckPublished(t *testing.T) {
	a, b := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	web := PublishedPort{Service: "web", Protocol: TCP, Port: 8080, TargetPort: 80, Mode: Ingress, Backends: []netip.Addr{b, a, b}}
	edit := func(f func(*PublishedPort)) PublishedPort { p := web; f(&p); return p }
	tests := []struct {
		name  string
		ports []PublishedPort
		want  string // in the error; "" when valid
	}{
		{"none", nil, ""},
		{"one", []PublishedPort{web}, ""},
		{"same number over udp", []PublishedPort{web, edit(func(p *PublishedPort) { p.Protocol = UDP })}, ""},
		{"port 0", []PublishedPort{edit(func(p *PublishedPort) { p.Port = 0 })}, "port 0 is not a port"},
		{"target 0", []PublishedPort{edit(func(p *PublishedPort) { p.TargetPort = 0 })}, "port 0 is not a port"},
		{"protocol", []PublishedPort{edit(func(p *PublishedPort) { p.Protocol = "sctp" })}, `protocol "sctp" is not tcp or udp`},
		{"mode", []PublishedPort{edit(func(p *PublishedPort) { p.Mode = "x" })}, `mode "x" is not ingress or host`},
		{"no backends", []PublishedPort{edit(func(p *PublishedPort) { p.Backends = nil })}, "no backends"},
		{"bad backend", []PublishedPort{edit(func(p *PublishedPort) { p.Backends = []netip.Addr{{}} })}, "a backend is not an address"},
		{"twice", []PublishedPort{web, edit(func(p *PublishedPort) { p.Service = "api" })}, `tcp/8080: listed twice (services "web" and "api")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CheckPublished(tt.ports)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				for _, p := range got {
					if len(p.Backends) != 2 || p.Backends[0] != a || p.Backends[1] != b {
						t.Errorf("backends %v, want [%s %s] (sorted, without duplicates)", p.Backends, a, b)
					}
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want an invalid argument naming %q", err, tt.want)
			}
		})
	}
	if web.Backends[0] != b {
		t.Errorf("CheckPublished sorted the caller's backends")
	}
}
