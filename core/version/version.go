// Package version holds Warren's version, set at build time with
// -ldflags "-X github.com/warrenorch/warren/core/version.Version=...".
package version

// Version is the agent and CLI version.
var Version = "0.1.0-dev"
