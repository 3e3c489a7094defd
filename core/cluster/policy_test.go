package cluster

import (
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/pki"
)

// served are the services on the cluster port.
var served = []grpc.ServiceDesc{apiv1.Warren_ServiceDesc, apiv1.Cluster_ServiceDesc, apiv1.NodeCA_ServiceDesc, apiv1.Dispatcher_ServiceDesc, apiv1.NodeTunnel_ServiceDesc}

func methods(d grpc.ServiceDesc) []string {
	var out []string
	for _, m := range d.Methods {
		out = append(out, "/"+d.ServiceName+"/"+m.MethodName)
	}
	for _, s := range d.Streams {
		out = append(out, "/"+d.ServiceName+"/"+s.StreamName)
	}
	return out
}

// Every served method has a policy, and only Join is public: a new method
// must be placed deliberately.
func TestPolicyCoversEveryMethod(t *testing.T) {
	n := 0
	for _, d := range served {
		for _, m := range methods(d) {
			n++
			need, ok := policy[m]
			if !ok {
				t.Errorf("%s has no policy entry", m)
				continue
			}
			if need == accessPublic && m != apiv1.NodeCA_Join_FullMethodName {
				t.Errorf("%s is public", m)
			}
		}
	}
	if n != len(policy) {
		t.Errorf("policy has %d entries for %d served methods", len(policy), n)
	}
}

func TestAllowed(t *testing.T) {
	worker := Caller{Identity: pki.Identity{NodeID: "w", Role: pki.RoleWorker}}
	manager := Caller{Identity: pki.Identity{NodeID: "m", Role: pki.RoleManager}}
	admin := Caller{Identity: pki.Identity{NodeID: "admin-x", Role: pki.RoleAdmin}}
	local := Caller{Identity: pki.Identity{Role: pki.RoleAdmin}, Local: true}
	none := Caller{}
	cases := []struct {
		name   string
		need   access
		caller Caller
		want   bool
	}{
		{"public/none", accessPublic, none, true},
		{"node/none", accessNode, none, false},
		{"node/worker", accessNode, worker, true},
		{"node/manager", accessNode, manager, true},
		{"node/admin", accessNode, admin, false},
		{"manager/worker", accessManager, worker, false},
		{"manager/admin", accessManager, admin, false},
		{"manager/manager", accessManager, manager, true},
		{"admin/worker", accessAdmin, worker, false},
		{"admin/admin", accessAdmin, admin, true},
		{"admin/manager", accessAdmin, manager, true},
		{"admin/local", accessAdmin, local, true},
		{"admin/none", accessAdmin, none, false},
		{"none/manager", accessNone, manager, false},
	}
	for _, c := range cases {
		if got := allowed(c.need, c.caller); got != c.want {
			t.Errorf("%s: allowed = %v, want %v", c.name, got, c.want)
		}
	}
}

// Forwarding builds the reply of every unary method from the registry.
func TestNewReplyForEveryUnaryMethod(t *testing.T) {
	for _, d := range served {
		for _, m := range d.Methods {
			full := "/" + d.ServiceName + "/" + m.MethodName
			r, err := newReply(full)
			if err != nil {
				t.Errorf("%s: %v", full, err)
				continue
			}
			desc, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(d.ServiceName + "." + m.MethodName))
			if err != nil {
				t.Fatalf("%s: %v", full, err)
			}
			want := desc.(protoreflect.MethodDescriptor).Output().FullName()
			if got := r.ProtoReflect().Descriptor().FullName(); got != want {
				t.Errorf("%s: reply %s, want %s", full, got, want)
			}
		}
	}
}
