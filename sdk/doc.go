// Package sdk is what a Warren plugin author imports: the handshake every
// plugin shares, the base interface every plugin implements (who it is, the
// schema of its config block, and Configure), typed errors that survive the
// gRPC wire, and the go-plugin glue the per-kind packages build on.
//
// A plugin is a separate executable. Its main function builds an
// implementation of one kind's interface and hands it to that kind's Serve:
//
//	func main() {
//		store.Serve(bolt.New())
//	}
//
// The kinds live in sub-packages: sdk/store, sdk/scheduler, sdk/runtime and
// sdk/network, each with a conformance suite in sdk/<kind>test that a plugin
// author runs against their own implementation. sdk/plugintest starts the
// author's built binary in a test exactly as the agent does (ClientConfig).
//
// This package must stay small: it never imports Warren's core, config or
// plugins, nor hashicorp/raft (deps_test.go enforces this).
package sdk
