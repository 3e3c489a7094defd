package apiv1

import "google.golang.org/protobuf/proto"

// TaskShape is what of spec its tasks are made from: a copy without the
// fields that change no task (replicas and max_concurrent; update_policy,
// rollback_policy and restart_policy, which the orchestrator reads from
// the service; and ports, which the nodes publish while the tasks stay as
// they are). Two specs with equal shapes need no task replaced. Nil for a
// nil spec.
func TaskShape(spec *ServiceSpec) *ServiceSpec {
	if spec == nil {
		return nil
	}
	c := proto.CloneOf(spec)
	c.Replicas = 0
	c.MaxConcurrent = 0
	c.UpdatePolicy = nil
	c.RollbackPolicy = nil
	c.RestartPolicy = nil
	c.Ports = nil
	return c
}

// IsJob reports whether mode runs its tasks to completion
// (replicated-job, global-job).
func IsJob(mode ServiceMode) bool {
	return mode == ServiceMode_SERVICE_MODE_REPLICATED_JOB || mode == ServiceMode_SERVICE_MODE_GLOBAL_JOB
}

// IsGlobal reports whether mode runs one task on every eligible node
// (global, global-job).
func IsGlobal(mode ServiceMode) bool {
	return mode == ServiceMode_SERVICE_MODE_GLOBAL || mode == ServiceMode_SERVICE_MODE_GLOBAL_JOB
}
