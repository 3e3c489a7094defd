package fsm

import (
	"errors"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
)

// PortsFree refuses a port another service publishes (not the service
// itself), and lists the services only when the spec publishes a port.
func TestPortsFree(t *testing.T) {
	web := &apiv1.Service{Id: "s1", Spec: &apiv1.ServiceSpec{Name: "web", Ports: []*apiv1.PortConfig{{Published: 8080, Target: 80}}}}
	dns := &apiv1.Service{Id: "s2", Spec: &apiv1.ServiceSpec{Name: "dns", Ports: []*apiv1.PortConfig{{Published: 53, Target: 53, Protocol: apiv1.PortProtocol_PORT_PROTOCOL_UDP}}}}
	port := func(published uint32, proto apiv1.PortProtocol) []*apiv1.PortConfig {
		return []*apiv1.PortConfig{{Published: published, Target: 1, Protocol: proto}}
	}
	cases := []struct {
		name   string
		self   string
		ports  []*apiv1.PortConfig
		taken  bool // want ErrAlreadyExists
		listed bool // want the services listed
	}{
		{name: "no ports: the services are not listed", ports: nil},
		{name: "a free port", ports: port(9090, 0), listed: true},
		{name: "another service's port", ports: port(8080, 0), taken: true, listed: true},
		{name: "the same number, another protocol", ports: port(53, 0), listed: true},
		{name: "another service's udp port", ports: port(53, apiv1.PortProtocol_PORT_PROTOCOL_UDP), taken: true, listed: true},
		{name: "its own port (an update)", self: "s1", ports: port(8080, 0), listed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			listed := false
			services := func() []*apiv1.Service { listed = true; return []*apiv1.Service{dns, web} }
			err := PortsFree(services, tc.self, &apiv1.ServiceSpec{Name: "new", Ports: tc.ports})
			if got := errors.Is(err, sdk.ErrAlreadyExists); got != tc.taken {
				t.Fatalf("PortsFree = %v; want taken %t", err, tc.taken)
			}
			if listed != tc.listed {
				t.Fatalf("services listed: %t, want %t", listed, tc.listed)
			}
		})
	}
}
