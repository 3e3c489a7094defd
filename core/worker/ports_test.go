package worker_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/worker"
)

func TestPublishedPorts(t *testing.T) {
	ingress := &apiv1.PortConfig{Published: 8080, Target: 80}
	host := &apiv1.PortConfig{Published: 9090, Target: 90, Protocol: apiv1.PortProtocol_PORT_PROTOCOL_UDP, Mode: apiv1.PublishMode_PUBLISH_MODE_HOST}
	eps := []*apiv1.Endpoint{
		{Name: "web", Addresses: []string{"10.88.0.5", "10.88.1.7"}, Ports: []*apiv1.PortConfig{ingress}},
		{Name: "dns", Addresses: []string{"10.88.1.9", "bad"}, Ports: []*apiv1.PortConfig{host}},
		{Name: "db", Addresses: []string{"10.88.0.6"}}, // publishes nothing
	}
	tests := []struct {
		name   string
		subnet string
		want   []string
	}{
		{"a node with web and dns tasks", "10.88.1.0/24", []string{"web tcp/8080->80 ingress [10.88.0.5 10.88.1.7]", "dns udp/9090->90 host [10.88.1.9]"}},
		{"a node without dns tasks: no host port", "10.88.0.0/24", []string{"web tcp/8080->80 ingress [10.88.0.5 10.88.1.7]"}},
		{"a node with no task at all still publishes ingress", "10.88.2.0/24", []string{"web tcp/8080->80 ingress [10.88.0.5 10.88.1.7]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, p := range worker.PublishedPorts(eps, netip.MustParsePrefix(tt.subnet)) {
				got = append(got, fmt.Sprintf("%s %s/%d->%d %s %v", p.Service, p.Protocol, p.Port, p.TargetPort, p.Mode, p.Backends))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := worker.PublishedPorts(nil, netip.MustParsePrefix("10.88.0.0/24")); len(got) != 0 {
		t.Errorf("no endpoints: %v", got)
	}
}
