package main

import (
	"testing"

	"github.com/warrenorch/warren/config"
)

// TestDevConfigServesMetrics: `warren agent -dev` serves /metrics on the
// loopback at config.DevMetricsAddr.
func TestDevConfigServesMetrics(t *testing.T) {
	cfg, diags := config.Parse(devConfig(t.TempDir(), false, ""), "warren-dev.hcl")
	if diags.HasErrors() {
		t.Fatalf("the -dev configuration: %v", diags)
	}
	if cfg.MetricsAddr != config.DevMetricsAddr || config.DevMetricsAddr != "127.0.0.1:9420" {
		t.Fatalf("-dev metrics_addr = %q, want %q on the loopback", cfg.MetricsAddr, "127.0.0.1:9420")
	}
}
