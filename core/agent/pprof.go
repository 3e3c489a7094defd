package agent

import (
	"net/http"
	_ "net/http/pprof" // profiling endpoints, served only when asked for
	"os"

	"github.com/hashicorp/go-hclog"
)

// EnvPprof names an environment variable holding a loopback address; when
// set, the agent serves Go's pprof endpoints there (for benchmarking and
// debugging, never on by default).
const EnvPprof = "WARREN_PPROF"

func startPprof(logger hclog.Logger) {
	addr := os.Getenv(EnvPprof)
	if addr == "" {
		return
	}
	logger.Warn("serving pprof", "addr", addr)
	go func() {
		if err := http.ListenAndServe(addr, nil); err != nil {
			logger.Error("pprof", "error", err)
		}
	}()
}
