package api

import (
	"errors"
	"net"
	"strings"
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
)

func TestValidatePorts(t *testing.T) {
	port := func(pub, target uint32) *apiv1.PortConfig { return &apiv1.PortConfig{Published: pub, Target: target} }
	udp := &apiv1.PortConfig{Published: 8080, Target: 80, Protocol: apiv1.PortProtocol_PORT_PROTOCOL_UDP}
	tests := []struct {
		name  string
		mode  apiv1.NetworkMode
		ports []*apiv1.PortConfig
		want  string // in the error; "" when valid
	}{
		{"none", apiv1.NetworkMode_NETWORK_MODE_HOST, nil, ""},
		{"one", 0, []*apiv1.PortConfig{port(8080, 80)}, ""},
		{"same number, tcp and udp", apiv1.NetworkMode_NETWORK_MODE_OVERLAY, []*apiv1.PortConfig{port(8080, 80), udp}, ""},
		{"bounds", 0, []*apiv1.PortConfig{port(1, 65535)}, ""},
		{"published 0", 0, []*apiv1.PortConfig{port(0, 80)}, "published port 0 is out of range 1-65535"},
		{"published too large", 0, []*apiv1.PortConfig{port(65536, 80)}, "published port 65536 is out of range"},
		{"target 0", 0, []*apiv1.PortConfig{port(8080, 0)}, "target port 0 is out of range"},
		{"twice", 0, []*apiv1.PortConfig{port(8080, 80), port(8080, 81)}, "port 8080/tcp is published twice"},
		{"unknown protocol", 0, []*apiv1.PortConfig{{Published: 1, Target: 1, Protocol: 9}}, "protocol 9 is unknown"},
		{"unknown mode", 0, []*apiv1.PortConfig{{Published: 1, Target: 1, Mode: 9}}, "publish mode 9 is unknown"},
		{"network host", apiv1.NetworkMode_NETWORK_MODE_HOST, []*apiv1.PortConfig{port(8080, 80)}, "published ports need the overlay network (its tasks are on network host)"},
		{"network none", apiv1.NetworkMode_NETWORK_MODE_NONE, []*apiv1.PortConfig{port(8080, 80)}, "on network none"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &apiv1.ServiceSpec{Name: "web", Image: "busybox", NetworkMode: tt.mode, Ports: tt.ports}
			err := ValidateServiceSpec(spec)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, sdk.ErrInvalidArgument) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want an invalid argument naming %q", err, tt.want)
			}
		})
	}
}

func TestCheckHostPorts(t *testing.T) {
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	held := uint32(l.Addr().(*net.TCPAddr).Port)
	err = checkHostPorts("web", []*apiv1.PortConfig{{Published: held, Target: 80}})
	if !errors.Is(err, sdk.ErrFailedPrecondition) || !strings.Contains(err.Error(), "is in use on this manager's host") {
		t.Errorf("a held port: %v, want a failed precondition saying it is in use", err)
	}
	// The same number over UDP is free (nothing holds it), and so is the
	// port once it is released.
	if err := checkHostPorts("web", []*apiv1.PortConfig{{Published: held, Target: 80, Protocol: apiv1.PortProtocol_PORT_PROTOCOL_UDP}}); err != nil {
		t.Errorf("the held TCP port's number over UDP: %v", err)
	}
	old := &apiv1.ServiceSpec{Ports: []*apiv1.PortConfig{{Published: held, Target: 80}}}
	spec := &apiv1.ServiceSpec{Ports: []*apiv1.PortConfig{{Published: held, Target: 81}, {Published: 1, Target: 1}}}
	if got := newPorts(old, spec); len(got) != 1 || got[0].GetPublished() != 1 {
		t.Errorf("newPorts = %v, want only port 1 (the service had %d already)", got, held)
	}
}
