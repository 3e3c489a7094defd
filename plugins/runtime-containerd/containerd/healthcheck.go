package containerd

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/warrenorch/warren/sdk/runtime"
)

// parseImageHealthcheck reads the health check of an image config blob (the
// Docker extension "config.Healthcheck" of the OCI image config, which
// ocispec.Image leaves out): nil when the image has none, inherits none (an
// empty Test) or disables it (Test ["NONE"]). A Test of an unknown kind or
// without a command is an error.
func parseImageHealthcheck(blob []byte) (*runtime.ImageHealthCheck, error) {
	var cfg struct {
		Config struct {
			Healthcheck *struct {
				Test        []string
				Interval    time.Duration
				Timeout     time.Duration
				StartPeriod time.Duration
				Retries     int
			}
		} `json:"config"`
	}
	if err := json.Unmarshal(blob, &cfg); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	h := cfg.Config.Healthcheck
	if h == nil || len(h.Test) == 0 {
		return nil, nil
	}
	if h.Interval < 0 || h.Timeout < 0 || h.StartPeriod < 0 || h.Retries < 0 {
		return nil, fmt.Errorf("image config: Healthcheck: negative interval, timeout, start period or retries")
	}
	out := &runtime.ImageHealthCheck{Interval: h.Interval, Timeout: h.Timeout, StartPeriod: h.StartPeriod, Retries: h.Retries}
	switch kind, args := h.Test[0], h.Test[1:]; kind {
	case "NONE":
		return nil, nil
	case "CMD":
		if len(args) == 0 || args[0] == "" {
			return nil, fmt.Errorf("image config: Healthcheck: Test [\"CMD\"] needs a command")
		}
		out.Command = append([]string(nil), args...)
	case "CMD-SHELL":
		if len(args) != 1 || args[0] == "" {
			return nil, fmt.Errorf("image config: Healthcheck: Test [\"CMD-SHELL\", ...] needs one shell command, got %d", len(args))
		}
		out.Command = []string{"/bin/sh", "-c", args[0]}
	default:
		return nil, fmt.Errorf("image config: Healthcheck: unknown Test kind %q (want CMD, CMD-SHELL or NONE)", kind)
	}
	return out, nil
}
