package state

import (
	"testing"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// TestServing: a running task serves when it has no check, or when its
// check (its service's, or its image's that only its reported health
// reveals) passed.
func TestServing(t *testing.T) {
	const (
		running  = apiv1.TaskState_TASK_STATE_RUNNING
		starting = apiv1.HealthState_HEALTH_STATE_STARTING
		healthy  = apiv1.HealthState_HEALTH_STATE_HEALTHY
	)
	own := &apiv1.ServiceSpec{HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80}}
	none := &apiv1.ServiceSpec{HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}}
	for _, tt := range []struct {
		name string
		task *apiv1.Task
		want bool
	}{
		{"no check", &apiv1.Task{State: running, Spec: &apiv1.ServiceSpec{}}, true},
		{"not running", &apiv1.Task{State: apiv1.TaskState_TASK_STATE_STARTING, Spec: &apiv1.ServiceSpec{}}, false},
		{"own check, no health yet", &apiv1.Task{State: running, Spec: own}, false},
		{"own check, starting", &apiv1.Task{State: running, Spec: own, Health: starting}, false},
		{"own check, healthy", &apiv1.Task{State: running, Spec: own, Health: healthy}, true},
		{"image's check, starting", &apiv1.Task{State: running, Spec: &apiv1.ServiceSpec{}, Health: starting}, false},
		{"image's check, unhealthy", &apiv1.Task{State: running, Spec: &apiv1.ServiceSpec{}, Health: apiv1.HealthState_HEALTH_STATE_UNHEALTHY}, false},
		{"image's check, healthy", &apiv1.Task{State: running, Spec: &apiv1.ServiceSpec{}, Health: healthy}, true},
		{"no-healthcheck", &apiv1.Task{State: running, Spec: none}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Serving(tt.task); got != tt.want {
				t.Fatalf("Serving = %v, want %v", got, tt.want)
			}
		})
	}
}
