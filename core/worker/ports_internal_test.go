package worker

import (
	"errors"
	"strings"
	"testing"

	"github.com/warrenorch/warren/sdk/network"
)

func TestTakePorts(t *testing.T) {
	web := network.PublishedPort{Service: "web", Protocol: network.TCP, Port: 8080}
	dns := network.PublishedPort{Service: "dns", Protocol: network.UDP, Port: 53}
	busy := func(p network.PublishedPort) error {
		if p.Port == 53 {
			return errors.New("address already in use")
		}
		return nil
	}
	tests := []struct {
		name     string
		applied  map[string]bool
		wantKeys []string
		wantMsg  string
	}{
		{"a new port the host holds is left out", nil, []string{"8080/tcp"}, `cannot publish port 53/udp of service "dns" (address already in use): in use on the node`},
		{"a port published already is kept", map[string]bool{"53/udp": true}, []string{"8080/tcp", "53/udp"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, msg := takePorts([]network.PublishedPort{web, dns}, tt.applied, busy)
			var keys []string
			for _, p := range got {
				keys = append(keys, portKey(p))
			}
			if strings.Join(keys, ",") != strings.Join(tt.wantKeys, ",") || msg != tt.wantMsg {
				t.Errorf("got %v, %q; want %v, %q", keys, msg, tt.wantKeys, tt.wantMsg)
			}
		})
	}
}
