package main

import (
	"fmt"
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

// TestDevConfigNetwork: `warren agent -dev` puts its worker on
// network-wireguard, whose devices go with the throwaway cluster unless
// -keep is given.
func TestDevConfigNetwork(t *testing.T) {
	for _, tc := range []struct {
		name         string
		keep         bool
		network      string
		wantNetwork  string
		wantTeardown string // "" when the config has no network-wireguard block
	}{
		{"default", false, "", "network-wireguard", "true"},
		{"kept", true, "", "network-wireguard", "false"},
		{"none", false, "none", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, diags := config.Parse(devConfig(t.TempDir(), tc.keep, tc.network), "warren-dev.hcl")
			if diags.HasErrors() {
				t.Fatalf("the -dev configuration: %v", diags)
			}
			if cfg.Worker.Network != tc.wantNetwork {
				t.Errorf("worker network = %q, want %q", cfg.Worker.Network, tc.wantNetwork)
			}
			got := ""
			if p := cfg.Plugin("network-wireguard"); p != nil {
				attrs, diags := p.Config.JustAttributes()
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				if a, ok := attrs["teardown_on_exit"]; ok {
					v, _ := a.Expr.Value(nil)
					got = fmt.Sprint(v.True())
				}
			}
			if got != tc.wantTeardown {
				t.Errorf("network-wireguard teardown_on_exit = %q, want %q", got, tc.wantTeardown)
			}
		})
	}
}
