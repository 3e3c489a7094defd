package testutil

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a Prometheus /metrics endpoint, by family name.
type Metrics map[string]*dto.MetricFamily

// Scrape fetches url (http://host:port/metrics) and parses the text format.
func Scrape(t testing.TB, url string) Metrics {
	t.Helper()
	return ScrapeVia(t, nil, url)
}

// ScrapeVia is Scrape with connections made by dial (nil: the default
// dialer), e.g. inside a test host's network namespace.
func ScrapeVia(t testing.TB, dial func(ctx context.Context, addr string) (net.Conn, error), url string) Metrics {
	t.Helper()
	client := http.DefaultClient
	if dial != nil {
		client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) },
		}}
		defer client.CloseIdleConnections()
	}
	m, err := scrape(client, url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	return m
}

func scrape(client *http.Client, url string) (Metrics, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	return Metrics(fams), nil
}

// Value returns the value of the sample of family name whose labels
// include labels (name, value pairs): a gauge's or counter's value, a
// histogram's sample count. With several matching samples it returns their
// sum. ok is false when the family or no matching sample exists.
func (m Metrics) Value(name string, labels ...string) (v float64, ok bool) {
	fam := m[name]
	if fam == nil {
		return 0, false
	}
	for _, s := range fam.GetMetric() {
		if !hasLabels(s, labels) {
			continue
		}
		ok = true
		switch {
		case s.GetGauge() != nil:
			v += s.GetGauge().GetValue()
		case s.GetCounter() != nil:
			v += s.GetCounter().GetValue()
		case s.GetHistogram() != nil:
			v += float64(s.GetHistogram().GetSampleCount())
		case s.GetUntyped() != nil:
			v += s.GetUntyped().GetValue()
		}
	}
	return v, ok
}

func hasLabels(s *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, l := range s.GetLabel() {
			if l.GetName() == want[i] && l.GetValue() == want[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// EnableMetrics sets metrics_addr in the agent's config (before Start) to
// a free loopback port and returns the URL of its /metrics.
func (a *Agent) EnableMetrics() string {
	a.t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", FreePort(a.t))
	a.SetTopLevel(fmt.Sprintf("metrics_addr = %q", addr))
	return "http://" + addr + "/metrics"
}

// SetTopLevel adds a top-level attribute line to the agent's config file.
func (a *Agent) SetTopLevel(line string) {
	a.t.Helper()
	b, err := os.ReadFile(a.Config)
	if err != nil {
		a.t.Fatal(err)
	}
	if err := os.WriteFile(a.Config, append([]byte(line+"\n"), b...), 0o600); err != nil {
		a.t.Fatal(err)
	}
}
