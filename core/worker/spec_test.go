package worker_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/worker"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

func TestTaskSpec(t *testing.T) {
	full := &apiv1.Task{
		Id: "t1", ServiceId: "svc-1", ServiceName: "web", Slot: 3,
		Spec: &apiv1.ServiceSpec{
			Name: "web", Image: "busybox:1.36",
			Command: []string{"sh", "-c"}, Args: []string{"sleep 10"},
			Env: map[string]string{"A": "1"}, WorkingDir: "/srv", User: "1000:1000",
			Labels:          map[string]string{"team": "edge"},
			Limits:          &apiv1.Resources{NanoCpus: 5e8, MemoryBytes: 64 << 20},
			Mounts:          []*apiv1.Mount{{Type: "bind", Source: "/var/data", Target: "/data", ReadOnly: true}, {Type: "tmpfs", Target: "/tmp"}},
			StopSignal:      "INT",
			StopGracePeriod: durationpb.New(3 * time.Second),
		},
	}
	want := runtime.TaskSpec{
		TaskID: "t1", Image: "busybox:1.36",
		Command: []string{"sh", "-c"}, Args: []string{"sleep 10"},
		Env: map[string]string{"A": "1"}, WorkingDir: "/srv", User: "1000:1000",
		Labels: map[string]string{"team": "edge", worker.LabelService: "web", worker.LabelServiceID: "svc-1", worker.LabelSlot: "3"},
		Limits: runtime.Resources{NanoCPUs: 5e8, MemoryBytes: 64 << 20},
		Mounts: []runtime.Mount{
			{Type: runtime.MountBind, Source: "/var/data", Target: "/data", ReadOnly: true},
			{Type: runtime.MountTmpfs, Target: "/tmp"},
		},
		StopSignal: "SIGINT", StopGracePeriod: 3 * time.Second,
		Hostname: "web.3",
	}
	got, err := worker.TaskSpec(full)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("TaskSpec =\n%+v\nwant\n%+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("the converted spec does not validate: %v", err)
	}

	refused := []struct {
		name    string
		spec    *apiv1.ServiceSpec
		wantErr error
	}{
		{"no spec", nil, sdk.ErrInvalidArgument},
		{"volume mount without a volumes directory", &apiv1.ServiceSpec{Name: "web", Image: "i", Mounts: []*apiv1.Mount{{Type: "volume", Source: "v", Target: "/v"}}}, sdk.ErrUnsupported},
		{"unknown mount", &apiv1.ServiceSpec{Name: "web", Image: "i", Mounts: []*apiv1.Mount{{Type: "nfs", Target: "/v"}}}, sdk.ErrInvalidArgument},
		{"overlay network without a network plugin", &apiv1.ServiceSpec{Name: "web", Image: "i", NetworkMode: apiv1.NetworkMode_NETWORK_MODE_OVERLAY}, sdk.ErrUnsupported},
		{"unknown network mode", &apiv1.ServiceSpec{Name: "web", Image: "i", NetworkMode: 42}, sdk.ErrInvalidArgument},
		{"bad signal number", &apiv1.ServiceSpec{Name: "web", Image: "i", StopSignal: "99"}, sdk.ErrInvalidArgument},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, err := worker.TaskSpec(&apiv1.Task{Id: "t1", ServiceName: "web", Spec: tt.spec})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("TaskSpec error = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestStopSignal(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"", "", true},
		{"SIGTERM", "SIGTERM", true},
		{"TERM", "SIGTERM", true},
		{"SIGRTMIN+3", "SIGRTMIN+3", true},
		{"15", "SIGTERM", true},
		{"9", "SIGKILL", true},
		{"0", "", false},
		{"64", "", false},
	}
	for _, tt := range tests {
		got, err := worker.StopSignal(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("StopSignal(%q) = %q, %v; want %q (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}
