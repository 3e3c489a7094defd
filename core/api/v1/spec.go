package apiv1

import "google.golang.org/protobuf/proto"

// TaskShape is what of spec its tasks are made from: a copy without the
// fields that change no task (replicas; update_policy, rollback_policy
// and restart_policy, which the orchestrator reads from the service; and
// ports, which the nodes publish while the tasks stay as they are). Two
// specs with equal shapes need no task replaced. Nil for a nil spec.
func TaskShape(spec *ServiceSpec) *ServiceSpec {
	if spec == nil {
		return nil
	}
	c := proto.CloneOf(spec)
	c.Replicas = 0
	c.UpdatePolicy = nil
	c.RollbackPolicy = nil
	c.RestartPolicy = nil
	c.Ports = nil
	return c
}
