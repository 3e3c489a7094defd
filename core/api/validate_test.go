package api

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
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
