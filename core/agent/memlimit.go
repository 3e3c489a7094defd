package agent

import (
	"math"
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
)

// setMemoryLimit sets the agent's soft memory limit to limit bytes (the
// configuration's memory_limit) unless GOMEMLIMIT is set, which the Go
// runtime has applied already. It returns the limit in force.
func setMemoryLimit(limit uint64, logger hclog.Logger) int64 {
	if os.Getenv("GOMEMLIMIT") != "" || limit == 0 {
		cur := debug.SetMemoryLimit(-1) // -1 reads it
		logger.Debug("memory limit left to GOMEMLIMIT", "bytes", cur)
		return cur
	}
	l := int64(min(limit, math.MaxInt64))
	debug.SetMemoryLimit(l)
	logger.Debug("memory limit", "bytes", l)
	return l
}
