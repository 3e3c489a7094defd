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
		// Listed without the spec (the API's BASIC view): health_checked
		// stands for the spec's check.
		{"listed, own check, no health yet", &apiv1.Task{State: running, HealthChecked: true}, false},
		{"listed, own check, healthy", &apiv1.Task{State: running, HealthChecked: true, Health: healthy}, true},
		{"listed, no check", &apiv1.Task{State: running}, true},
		{"listed, image's check, starting", &apiv1.Task{State: running, Health: starting}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := Serving(tt.task); got != tt.want {
				t.Fatalf("Serving = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSpecDigest: specs that run the same tasks have one digest, whatever
// their replicas, policies and ports; any change to what tasks run changes
// it.
func TestSpecDigest(t *testing.T) {
	base := func() *apiv1.ServiceSpec {
		return &apiv1.ServiceSpec{Name: "web", Image: "nginx:1", Env: map[string]string{"A": "1", "B": "2"}, Replicas: 3}
	}
	want := SpecDigest(base())
	if len(want) != 32 {
		t.Fatalf("SpecDigest = %q, want 32 hex digits", want)
	}
	for _, tt := range []struct {
		name   string
		change func(*apiv1.ServiceSpec)
		same   bool
	}{
		{"same spec", func(*apiv1.ServiceSpec) {}, true},
		{"other replicas", func(s *apiv1.ServiceSpec) { s.Replicas = 10 }, true},
		{"ports", func(s *apiv1.ServiceSpec) { s.Ports = []*apiv1.PortConfig{{Published: 80, Target: 80}} }, true},
		{"update policy", func(s *apiv1.ServiceSpec) { s.UpdatePolicy = &apiv1.UpdatePolicy{Parallelism: 2} }, true},
		{"other image", func(s *apiv1.ServiceSpec) { s.Image = "nginx:2" }, false},
		{"other env", func(s *apiv1.ServiceSpec) { s.Env["B"] = "3" }, false},
		{"health check", func(s *apiv1.ServiceSpec) {
			s.HealthCheck = &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80}
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			tt.change(s)
			if got := SpecDigest(s); (got == want) != tt.same {
				t.Fatalf("SpecDigest = %q, base's %q: same = %v, want %v", got, want, got == want, tt.same)
			}
		})
	}
	if got := SpecDigest(nil); got != "" {
		t.Errorf("SpecDigest(nil) = %q, want \"\"", got)
	}
}
