package testutil

import "testing"

// NewAgentAt prepares (but does not start) an agent whose configuration
// file the caller wrote: config is its path, socket its api_socket and
// dataDir its data_dir. t.Cleanup stops it.
func NewAgentAt(t testing.TB, bin, dir, config, socket, dataDir string) *Agent {
	a := &Agent{t: t, Bin: bin, Dir: dir, Config: config, Socket: socket, DataDir: dataDir}
	t.Cleanup(a.Kill)
	return a
}
