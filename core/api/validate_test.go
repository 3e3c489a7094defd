package api

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
)

// withUnknown appends field 999 to m's unknown fields, as a newer client's
// field would arrive.
func withUnknown[M proto.Message](m M) M {
	r := m.ProtoReflect()
	r.SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 999, protowire.VarintType), 1))
	return m
}

func TestNoUnknownFields(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		at   string // path named in the error; empty when the message is accepted
	}{
		{"none", &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: "web", Limits: &apiv1.Resources{}, Mounts: []*apiv1.Mount{{}}}}, ""},
		{"top level", withUnknown(&apiv1.CreateServiceRequest{}), "CreateServiceRequest carries"},
		{"nested message", &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Limits: withUnknown(&apiv1.Resources{})}}, "CreateServiceRequest.spec.limits carries"},
		{"list element", &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Mounts: []*apiv1.Mount{{}, withUnknown(&apiv1.Mount{})}}}, "CreateServiceRequest.spec.mounts carries"},
		{"spec itself", &apiv1.UpdateServiceRequest{Spec: withUnknown(&apiv1.ServiceSpec{})}, "UpdateServiceRequest.spec carries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := noUnknownFields(tt.msg)
			if tt.at == "" {
				if err != nil {
					t.Fatalf("rejected a message with no unknown fields: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.at) {
				t.Fatalf("error = %v, want one naming %q", err, tt.at)
			}
		})
	}
}

func TestValidateHealthCheck(t *testing.T) {
	sec := func(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * time.Second) }
	tests := []struct {
		name    string
		check   *apiv1.HealthCheck
		wantErr string
	}{
		{"none", nil, ""},
		{"http", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_HTTP, Path: "/healthz", Port: 8080, Interval: sec(1), Timeout: sec(1), Retries: 2, StartPeriod: sec(5)}, ""},
		{"tcp", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 6379}, ""},
		{"settings without a check", &apiv1.HealthCheck{Interval: sec(1)}, "health check settings without a check"},
		{"unknown type", &apiv1.HealthCheck{Type: 9}, "health check type 9 is unknown"},
		{"none", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}, ""},
		{"none with settings", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE, Interval: sec(1)}, "health check none (--no-healthcheck) takes no other setting"},
		{"http without a path", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_HTTP}, `must start with "/"`},
		{"tcp without a port", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP}, "a TCP health check needs a port"},
		{"port out of range", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 70000}, "port 70000 is out of range"},
		{"zero interval", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80, Interval: sec(0)}, "health_check.interval must be positive"},
		{"negative timeout", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80, Timeout: sec(-1)}, "health_check.timeout must be positive"},
		{"negative start period", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80, StartPeriod: sec(-1)}, "health_check.start_period must not be negative"},
		{"interval too long", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80, Interval: sec(7200)}, "is more than 1h0m0s"},
		{"cmd without a command", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_CMD}, "needs a command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateServiceSpec(&apiv1.ServiceSpec{Name: "web", Image: "nginx", HealthCheck: tt.check})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if tt.name == "cmd unsupported" && !errors.Is(err, sdk.ErrUnsupported) {
				t.Fatalf("error = %v, want sdk.ErrUnsupported", err)
			}
		})
	}
}

func TestValidateUpdatePolicy(t *testing.T) {
	sec := func(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * time.Second) }
	check := &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80, Interval: sec(10)}
	tests := []struct {
		name     string
		update   *apiv1.UpdatePolicy
		rollback *apiv1.UpdatePolicy
		wantErr  string
	}{
		{"good", &apiv1.UpdatePolicy{Parallelism: 1, FailureAction: apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK, Monitor: sec(10), MaxFailureRatio: 0.2},
			&apiv1.UpdatePolicy{FailureAction: apiv1.UpdatePolicy_FAILURE_ACTION_CONTINUE}, ""},
		{"monitor shorter than the health interval", &apiv1.UpdatePolicy{Monitor: sec(5)}, nil, "update_policy.monitor 5s is shorter than the health check interval 10s"},
		{"zero monitor", &apiv1.UpdatePolicy{Monitor: sec(0)}, nil, "update_policy.monitor must be positive"},
		{"negative monitor", nil, &apiv1.UpdatePolicy{Monitor: sec(-1)}, "rollback_policy.monitor must not be negative"},
		{"ratio above 1", &apiv1.UpdatePolicy{MaxFailureRatio: 1.5}, nil, "max_failure_ratio 1.5 is not between 0 and 1"},
		{"rollback of a rollback", nil, &apiv1.UpdatePolicy{FailureAction: apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK}, "a rollback's failure action is pause or continue"},
		{"unknown failure action", &apiv1.UpdatePolicy{FailureAction: 9}, nil, "update_policy failure action 9 is unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateServiceSpec(&apiv1.ServiceSpec{Name: "web", Image: "nginx", HealthCheck: check, UpdatePolicy: tt.update, RollbackPolicy: tt.rollback})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestValidateCanary(t *testing.T) {
	global := apiv1.ServiceMode_SERVICE_MODE_GLOBAL
	tests := []struct {
		name     string
		mode     apiv1.ServiceMode
		update   *apiv1.UpdatePolicy
		rollback *apiv1.UpdatePolicy
		wantErr  string
	}{
		{"good", 0, &apiv1.UpdatePolicy{Canary: 3, AutoPromote: true}, nil, ""},
		{"more than the replicas", 0, &apiv1.UpdatePolicy{Canary: 4}, nil, `service "web": canary 4 is more than its 3 replicas`},
		{"auto-promote without a canary", 0, &apiv1.UpdatePolicy{AutoPromote: true}, nil, "auto_promote needs a canary"},
		{"in a rollback policy", 0, nil, &apiv1.UpdatePolicy{Canary: 1}, "a rollback has no canary"},
		{"global service", global, &apiv1.UpdatePolicy{Canary: 1}, nil, "a global service runs one task per node, so it has no canary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &apiv1.ServiceSpec{Name: "web", Image: "nginx", Replicas: 3, Mode: tt.mode, UpdatePolicy: tt.update, RollbackPolicy: tt.rollback}
			if tt.mode == global {
				spec.Replicas = 0
			}
			err := ValidateServiceSpec(spec)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestValidateJob: max_concurrent is a replicated job's only; a global job
// has no replicas; a job has no update or rollback policy and no restart
// condition any. Each is refused with an error naming it.
func TestValidateJob(t *testing.T) {
	rjob, gjob := apiv1.ServiceMode_SERVICE_MODE_REPLICATED_JOB, apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB
	tests := []struct {
		name    string
		spec    *apiv1.ServiceSpec
		wantErr string
	}{
		{"replicated job", &apiv1.ServiceSpec{Mode: rjob, Replicas: 3, MaxConcurrent: 2}, ""},
		{"job on-failure", &apiv1.ServiceSpec{Mode: rjob, Replicas: 1, RestartPolicy: &apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_ON_FAILURE, MaxAttempts: 2}}, ""},
		{"global job", &apiv1.ServiceSpec{Mode: gjob}, ""},
		{"max_concurrent on a replicated service", &apiv1.ServiceSpec{Replicas: 3, MaxConcurrent: 2}, "max_concurrent (2) is for a replicated job"},
		{"max_concurrent on a global service", &apiv1.ServiceSpec{Mode: apiv1.ServiceMode_SERVICE_MODE_GLOBAL, MaxConcurrent: 1}, "max_concurrent (1) is for a replicated job"},
		{"max_concurrent on a global job", &apiv1.ServiceSpec{Mode: gjob, MaxConcurrent: 1}, "a global job runs one task per eligible node"},
		{"replicas on a global job", &apiv1.ServiceSpec{Mode: gjob, Replicas: 2}, "replicas (2) must not be set"},
		{"update policy", &apiv1.ServiceSpec{Mode: rjob, Replicas: 1, UpdatePolicy: &apiv1.UpdatePolicy{Parallelism: 1}}, "a job has no update policy"},
		{"rollback policy", &apiv1.ServiceSpec{Mode: gjob, RollbackPolicy: &apiv1.UpdatePolicy{}}, "a job has no rollback policy"},
		{"restart condition any", &apiv1.ServiceSpec{Mode: rjob, Replicas: 1, RestartPolicy: &apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_ANY}}, "restart condition any is not for a job"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.Name, tt.spec.Image = "web", "nginx"
			err := ValidateServiceSpec(tt.spec)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, sdk.ErrInvalidArgument)):
				t.Fatalf("error = %v, want an invalid argument containing %q", err, tt.wantErr)
			}
		})
	}
}
