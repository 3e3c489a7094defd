package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// healthOptions are the health check flags of `service create` and
// `service update`.
type healthOptions struct {
	http        string
	tcp         uint32
	cmd         string
	interval    time.Duration
	timeout     time.Duration
	retries     uint32
	startPeriod time.Duration
	none        bool
}

// healthFlags are the flag names healthOptions adds.
var healthFlags = []string{"health-http", "health-tcp", "health-cmd", "health-interval", "health-timeout", "health-retries", "health-start-period", "no-healthcheck"}

func (o *healthOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.http, "health-http", "", "health check: GET `PATH[:PORT]` (port default 80) from inside the task's network namespace; 2xx/3xx passes")
	f.Var(newUintValue(&o.tcp, 0), "health-tcp", "health check: a TCP connection to `PORT` from inside the task's network namespace")
	f.StringVar(&o.cmd, "health-cmd", "", "health check: a shell command run in the container with /bin/sh -c; exit 0 passes")
	f.DurationVar(&o.interval, "health-interval", 0, "time between health checks (default 30s)")
	f.DurationVar(&o.timeout, "health-timeout", 0, "time one health check may take (default 30s)")
	f.Var(newUintValue(&o.retries, 0), "health-retries", "consecutive failed checks that make a task unhealthy (default 3)")
	f.DurationVar(&o.startPeriod, "health-start-period", 0, "time after the start during which failed checks do not count (default 0s)")
	f.BoolVar(&o.none, "no-healthcheck", false, "no health check at all, not even the image's own HEALTHCHECK (update: replaces the service's)")
}

// check returns the health check the flags in f make of old (the service's
// current check, nil on create), and whether they changed anything.
func (o *healthOptions) check(f *pflag.FlagSet, old *apiv1.HealthCheck) (*apiv1.HealthCheck, bool, error) {
	changed := false
	for _, n := range healthFlags {
		changed = changed || f.Changed(n)
	}
	if !changed {
		return old, false, nil
	}
	kinds := 0
	for _, n := range []string{"health-http", "health-tcp", "health-cmd"} {
		if f.Changed(n) {
			kinds++
		}
	}
	if kinds > 1 {
		return nil, false, usageErrorf("give one of --health-http, --health-tcp and --health-cmd")
	}
	if o.none {
		if kinds > 0 || f.Changed("health-interval") || f.Changed("health-timeout") || f.Changed("health-retries") || f.Changed("health-start-period") {
			return nil, false, usageErrorf("--no-healthcheck cannot be combined with other --health-* flags")
		}
		c := &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}
		return c, !proto.Equal(c, old), nil
	}
	c := &apiv1.HealthCheck{}
	if old != nil && old.GetType() != apiv1.HealthCheck_TYPE_NONE {
		c = proto.CloneOf(old)
	}
	switch {
	case f.Changed("health-http"):
		path, port, err := parseHealthHTTP(o.http)
		if err != nil {
			return nil, false, err
		}
		c.Type, c.Path, c.Port, c.Command = apiv1.HealthCheck_TYPE_HTTP, path, port, nil
	case f.Changed("health-tcp"):
		if o.tcp == 0 || o.tcp > 65535 {
			return nil, false, usageErrorf("invalid --health-tcp %d: a port is 1-65535", o.tcp)
		}
		c.Type, c.Path, c.Port, c.Command = apiv1.HealthCheck_TYPE_TCP, "", o.tcp, nil
	case f.Changed("health-cmd"):
		if strings.TrimSpace(o.cmd) == "" {
			return nil, false, usageErrorf("invalid --health-cmd %q: a command is needed", o.cmd)
		}
		// Docker's CMD-SHELL: the string runs under /bin/sh -c.
		c.Type, c.Path, c.Port, c.Command = apiv1.HealthCheck_TYPE_CMD, "", 0, []string{"/bin/sh", "-c", o.cmd}
	}
	if c.GetType() == apiv1.HealthCheck_TYPE_UNSPECIFIED {
		return nil, false, usageErrorf("--health-interval, --health-timeout, --health-retries and --health-start-period need a check: --health-http, --health-tcp or --health-cmd")
	}
	for _, d := range []struct {
		flag     string
		v        time.Duration
		positive bool
		dst      **durationpb.Duration
	}{
		{"health-interval", o.interval, true, &c.Interval},
		{"health-timeout", o.timeout, true, &c.Timeout},
		{"health-start-period", o.startPeriod, false, &c.StartPeriod},
	} {
		if !f.Changed(d.flag) {
			continue
		}
		if d.v < 0 || (d.positive && d.v == 0) {
			return nil, false, usageErrorf("invalid --%s %s: must be positive", d.flag, d.v)
		}
		*d.dst = durationpb.New(d.v)
	}
	if f.Changed("health-retries") {
		if o.retries == 0 {
			return nil, false, usageErrorf("invalid --health-retries 0: at least 1")
		}
		c.Retries = o.retries
	}
	return c, !proto.Equal(c, old), nil
}

// parseHealthHTTP splits --health-http's PATH[:PORT].
func parseHealthHTTP(v string) (string, uint32, error) {
	path, port := v, uint32(0)
	if i := strings.LastIndex(v, ":"); i >= 0 {
		p, err := strconv.ParseUint(v[i+1:], 10, 16)
		if err != nil || p == 0 {
			return "", 0, usageErrorf("invalid --health-http %q: the port after ':' must be 1-65535", v)
		}
		path, port = v[:i], uint32(p)
	}
	if !strings.HasPrefix(path, "/") {
		return "", 0, usageErrorf("invalid --health-http %q: the path must start with \"/\" (PATH[:PORT], e.g. /healthz:8080)", v)
	}
	return path, port, nil
}

// healthText is a health check for `service inspect`.
func healthText(c *apiv1.HealthCheck) string {
	if c == nil {
		return ""
	}
	var s string
	switch c.GetType() {
	case apiv1.HealthCheck_TYPE_HTTP:
		port := c.GetPort()
		if port == 0 {
			port = 80
		}
		s = "http GET " + c.GetPath() + " port " + strconv.Itoa(int(port))
	case apiv1.HealthCheck_TYPE_TCP:
		s = "tcp port " + strconv.Itoa(int(c.GetPort()))
	case apiv1.HealthCheck_TYPE_CMD:
		s = "cmd " + shellJoin(c.GetCommand())
	case apiv1.HealthCheck_TYPE_NONE:
		return "none (not even the image's)"
	default:
		return ""
	}
	orDefault := func(d *durationpb.Duration, def string) string {
		if d == nil {
			return def
		}
		return d.AsDuration().String()
	}
	retries := "3"
	if c.GetRetries() > 0 {
		retries = strconv.Itoa(int(c.GetRetries()))
	}
	return s + ", interval " + orDefault(c.GetInterval(), "30s") + ", timeout " + orDefault(c.GetTimeout(), "30s") +
		", retries " + retries + ", start period " + orDefault(c.GetStartPeriod(), "0s")
}

// imageHealthText is the health check of a task that runs its image's own.
const imageHealthText = "the image's HEALTHCHECK"

// taskHealthText is the health check a task runs with, for `task inspect`:
// its service's, its image's (a task whose service has none but that
// reports a health), or "" for none.
func taskHealthText(t *apiv1.Task) string {
	if c := t.GetSpec().GetHealthCheck(); c.GetType() != apiv1.HealthCheck_TYPE_UNSPECIFIED {
		return healthText(c)
	}
	if t.GetHealth() != apiv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		return imageHealthText
	}
	return ""
}

// healthName is a task's health in lists: "" when it has no check.
func healthName(h apiv1.HealthState) string {
	if h == apiv1.HealthState_HEALTH_STATE_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(h.String(), "HEALTH_STATE_"))
}
