package main

import (
	"testing"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// TestHealthCheckFromNone: a check given to a service that disables
// checks (TYPE_NONE) starts afresh, and --no-healthcheck on it is no change.
func TestHealthCheckFromNone(t *testing.T) {
	none := &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}
	for _, tt := range []struct {
		name        string
		args        []string
		want        *apiv1.HealthCheck
		wantChanged bool
	}{
		{"a tcp check replaces none", []string{"--health-tcp", "80"}, &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80}, true},
		{"none again changes nothing", []string{"--no-healthcheck"}, none, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var o healthOptions
			fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
			o.addFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			got, changed, err := o.check(fs, none)
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) || changed != tt.wantChanged {
				t.Fatalf("check = %v, %v; want %v, %v", got, changed, tt.want, tt.wantChanged)
			}
		})
	}
}

// TestTaskHealthText: task inspect names the check a task runs with, its
// image's when its service has none but it reports a health.
func TestTaskHealthText(t *testing.T) {
	for _, tt := range []struct {
		name string
		task *apiv1.Task
		want string
	}{
		{"no check", &apiv1.Task{Spec: &apiv1.ServiceSpec{}}, ""},
		{"the image's", &apiv1.Task{Spec: &apiv1.ServiceSpec{}, Health: apiv1.HealthState_HEALTH_STATE_HEALTHY}, imageHealthText},
		{"none", &apiv1.Task{Spec: &apiv1.ServiceSpec{HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}}}, "none (not even the image's)"},
		{"the service's", &apiv1.Task{Spec: &apiv1.ServiceSpec{HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80}}, Health: apiv1.HealthState_HEALTH_STATE_STARTING},
			"tcp port 80, interval 30s, timeout 30s, retries 3, start period 0s"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := taskHealthText(tt.task); got != tt.want {
				t.Fatalf("taskHealthText = %q, want %q", got, tt.want)
			}
		})
	}
}
