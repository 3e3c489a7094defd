package worker

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
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

// TestPortDrainLeft: a running task with an address whose service publishes
// ports is drained for PortDrain from the first time it is wanted stopped,
// once; any other task goes at once.
func TestPortDrainLeft(t *testing.T) {
	const drain = time.Hour
	ported := &apiv1.Task{Spec: &apiv1.ServiceSpec{Ports: []*apiv1.PortConfig{{Published: 8080, Target: 80}}}}
	for _, tt := range []struct {
		name      string
		state     apiv1.TaskState
		address   string
		want      *apiv1.Task
		drainOpt  time.Duration
		wantDrain bool
	}{
		{"running behind a port", stateRunning, "10.0.0.2/24", ported, drain, true},
		{"no published port", stateRunning, "10.0.0.2/24", &apiv1.Task{Spec: &apiv1.ServiceSpec{}}, drain, false},
		{"not running", stateFailed, "10.0.0.2/24", ported, drain, false},
		{"no address", stateRunning, "", ported, drain, false},
		{"drain off", stateRunning, "10.0.0.2/24", ported, -1, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &taskRunner{state: tt.state, rec: &record{Address: tt.address},
				w: &Worker{opts: Options{PortDrain: tt.drainOpt}, log: hclog.NewNullLogger()}}
			first := r.portDrainLeft(tt.want)
			if got := first > 0; got != tt.wantDrain {
				t.Fatalf("portDrainLeft = %s, want a drain: %v", first, tt.wantDrain)
			}
			if !tt.wantDrain {
				return
			}
			if first > drain {
				t.Fatalf("portDrainLeft = %s, more than PortDrain %s", first, drain)
			}
			if again := r.portDrainLeft(tt.want); again > first {
				t.Fatalf("portDrainLeft again = %s after %s: the drain started over", again, first)
			}
		})
	}
}
