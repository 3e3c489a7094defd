package sdk_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"google.golang.org/grpc"

	"github.com/warrenorch/warren/sdk"
)

// panicky is a plugin whose Configure panics.
type panicky struct{}

func (panicky) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Kind: sdk.KindScheduler, Name: "panicky", Version: "0", APIVersions: []uint32{sdk.APIVersion}}, nil
}
func (panicky) ConfigSchema(context.Context) (sdk.Schema, error) { return sdk.Schema{}, nil }
func (panicky) Configure(context.Context, []byte) error {
	var m map[string]int
	m["boom"] = 1 // a nil map write: a runtime panic
	return nil
}

// TestPanicInACallIsThatCallsError: a panicking handler answers its call
// with an internal error naming the plugin and the method, and the plugin
// goes on serving.
func TestPanicInACallIsThatCallsError(t *testing.T) {
	c := sdk.NewBaseClient(sdk.TestConn(t, panicky{}, func(grpc.ServiceRegistrar) {}))
	err := c.Configure(t.Context(), []byte("{}"))
	if !errors.Is(err, sdk.ErrInternal) {
		t.Fatalf("Configure = %v, want an internal error", err)
	}
	for _, want := range []string{"plugin panicky", "panic in /warren.sdk.base.v1.Plugin/Configure", "nil map"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	for range 3 {
		if info, err := c.Info(t.Context()); err != nil || info.Name != "panicky" {
			t.Fatalf("after the panic, Info = %+v, %v; want the plugin still serving", info, err)
		}
	}
}
