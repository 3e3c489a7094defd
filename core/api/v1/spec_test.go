package apiv1

import (
	"testing"

	"google.golang.org/protobuf/proto"
)

// TestTaskShape: the fields the orchestrator or the nodes read from the
// service change no task's shape; every other field does.
func TestTaskShape(t *testing.T) {
	base := &ServiceSpec{Name: "web", Image: "nginx:1", Replicas: 2}
	tests := []struct {
		name    string
		edit    func(*ServiceSpec)
		replace bool
	}{
		{"replicas", func(s *ServiceSpec) { s.Replicas = 5 }, false},
		{"update policy", func(s *ServiceSpec) { s.UpdatePolicy = &UpdatePolicy{Parallelism: 1} }, false},
		{"rollback policy", func(s *ServiceSpec) { s.RollbackPolicy = &UpdatePolicy{Parallelism: 1} }, false},
		{"restart policy", func(s *ServiceSpec) { s.RestartPolicy = &RestartPolicy{MaxAttempts: 3} }, false},
		{"ports", func(s *ServiceSpec) { s.Ports = []*PortConfig{{Published: 8080, Target: 80}} }, false},
		{"image", func(s *ServiceSpec) { s.Image = "nginx:2" }, true},
		{"env", func(s *ServiceSpec) { s.Env = map[string]string{"A": "1"} }, true},
		{"stop signal", func(s *ServiceSpec) { s.StopSignal = "SIGINT" }, true},
		{"constraints", func(s *ServiceSpec) { s.Constraints = []string{"node.role==worker"} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := proto.CloneOf(base)
			tt.edit(changed)
			if got := !proto.Equal(TaskShape(base), TaskShape(changed)); got != tt.replace {
				t.Errorf("shape changed = %v, want %v", got, tt.replace)
			}
		})
	}
	if TaskShape(nil) != nil {
		t.Error("TaskShape(nil) is not nil")
	}
}
