package fsm

import (
	"fmt"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
)

// PortsFree returns an error wrapping sdk.ErrAlreadyExists, naming the
// port and the service holding it, when spec publishes a port/protocol
// that a service of services() other than the one with ID self publishes.
// The FSM checks it when it applies a create or update, so that two
// concurrent requests cannot both take a port. services is called only
// when spec publishes a port: listing (and sorting) every service for
// each create of a service without ports cost the FSM's apply goroutine
// more than the rest of the create at 1,000 services.
func PortsFree(services func() []*apiv1.Service, self string, spec *apiv1.ServiceSpec) error {
	if len(spec.GetPorts()) == 0 {
		return nil
	}
	want := map[string]bool{}
	for _, p := range spec.GetPorts() {
		want[p.Key()] = true
	}
	for _, other := range services() {
		if other.GetId() == self {
			continue
		}
		for _, p := range other.GetSpec().GetPorts() {
			if want[p.Key()] {
				return fmt.Errorf("service %q: port %s is already published by service %q: %w", spec.GetName(), p.Key(), other.GetSpec().GetName(), sdk.ErrAlreadyExists)
			}
		}
	}
	return nil
}
