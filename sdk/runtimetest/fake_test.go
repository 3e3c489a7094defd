package runtimetest

import (
	"testing"

	"github.com/warrenorch/warren/sdk/runtime"
)

func TestFakeRuntime(t *testing.T) {
	Run(t, func(*testing.T) runtime.Runtime { return NewFakeRuntime() }, FakeOptions())
}

// TestFakeRuntimePull runs the suite with the image pulled from the fake's
// registry instead of imported.
func TestFakeRuntimePull(t *testing.T) {
	opts := FakeOptions()
	opts.ImageTarball = nil
	Run(t, func(*testing.T) runtime.Runtime { return NewFakeRuntime(opts.Image) }, opts)
}
