package config

import (
	"fmt"
	"math/big"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
)

// The gohcl-tagged shape of the files. Attributes are kept as expressions so
// that every value can be checked with its own range and a message naming it;
// gohcl still reports unknown attributes and blocks, missing labels and
// duplicate singleton blocks.

type agentBody struct {
	DataDir   hcl.Expression `hcl:"data_dir,optional"`
	BindAddr  hcl.Expression `hcl:"bind_addr,optional"`
	Advertise hcl.Expression `hcl:"advertise,optional"`
	APISocket hcl.Expression `hcl:"api_socket,optional"`
	APIGroup  hcl.Expression `hcl:"api_socket_group,optional"`
	PluginDir hcl.Expression `hcl:"plugin_dir,optional"`
	LogLevel  hcl.Expression `hcl:"log_level,optional"`
	NodeName  hcl.Expression `hcl:"node_name,optional"`
	Metrics   hcl.Expression `hcl:"metrics_addr,optional"`
	MemLimit  hcl.Expression `hcl:"memory_limit,optional"`

	Manager *managerBody  `hcl:"manager,block"`
	Worker  *workerBody   `hcl:"worker,block"`
	Join    *joinBody     `hcl:"join,block"`
	Plugins []*pluginBody `hcl:"plugin,block"`
}

type joinBody struct {
	Addresses hcl.Expression `hcl:"addresses,optional"`
	Token     hcl.Expression `hcl:"token,optional"`
	DefRange  hcl.Range      `hcl:",def_range"`
}

type managerBody struct {
	Store             hcl.Expression `hcl:"store,optional"`
	Scheduler         hcl.Expression `hcl:"scheduler,optional"`
	HeartbeatTTL      hcl.Expression `hcl:"heartbeat_ttl,optional"`
	SnapshotThreshold hcl.Expression `hcl:"snapshot_threshold,optional"`
	SnapshotInterval  hcl.Expression `hcl:"snapshot_interval,optional"`
	TrailingLogs      hcl.Expression `hcl:"trailing_logs,optional"`
	NodeCertTTL       hcl.Expression `hcl:"node_cert_ttl,optional"`
	OverlayRange      hcl.Expression `hcl:"overlay_range,optional"`
	OverlayNodePrefix hcl.Expression `hcl:"overlay_node_prefix,optional"`
	ClusterDomain     hcl.Expression `hcl:"cluster_domain,optional"`
	EventSubBytes     hcl.Expression `hcl:"event_subscriber_bytes,optional"`
}

type workerBody struct {
	Runtime           hcl.Expression `hcl:"runtime,optional"`
	Network           hcl.Expression `hcl:"network,optional"`
	Labels            hcl.Expression `hcl:"labels,optional"`
	HeartbeatInterval hcl.Expression `hcl:"heartbeat_interval,optional"`
	RuntimeTimeout    hcl.Expression `hcl:"runtime_timeout,optional"`
	VolumesDir        hcl.Expression `hcl:"volumes_dir,optional"`
}

type pluginBody struct {
	Name      string         `hcl:"name,label"`
	NameRange hcl.Range      `hcl:"name,label_range"`
	Path      hcl.Expression `hcl:"path,optional"`
	Args      hcl.Expression `hcl:"args,optional"`
	Env       hcl.Expression `hcl:"env,optional"`

	Config   *pluginConfigBody `hcl:"config,block"`
	DefRange hcl.Range         `hcl:",def_range"`
}

type pluginConfigBody struct {
	Body     hcl.Body  `hcl:",remain"`
	DefRange hcl.Range `hcl:",def_range"`
}

const (
	minHeartbeatTTL      = time.Second
	minSnapshotInterval  = time.Second
	minSnapshotThreshold = 1
	minEventSubBytes     = 64 << 10
	minMemoryLimit       = 64 << 20
	minHeartbeatInterval = 100 * time.Millisecond
	minRuntimeTimeout    = 100 * time.Millisecond
	minNodeCertTTL       = 30 * time.Second
)

var logLevels = []string{"trace", "debug", "info", "warn", "error"}

// decodeAgent decodes body into a, which holds only the parsed files. Errors
// about something missing from the whole configuration point at fileStart (nil
// for a directory) and name where, the file or directory.
func decodeAgent(a *Agent, body hcl.Body, fileStart *hcl.Range, where string) hcl.Diagnostics {
	var raw agentBody
	d := &decoder{diags: gohcl.DecodeBody(body, nil, &raw)}

	files := a.files
	*a = *defaultAgent()
	a.files = files

	if s, rng, ok := d.str(raw.DataDir, "data_dir"); ok {
		d.checkAbs(rng, "data_dir", s)
		a.DataDir = s
	}
	bindRange := hcl.Range{}
	bindOK := true
	if s, rng, ok := d.str(raw.BindAddr, "bind_addr"); ok {
		bindOK = d.checkHostPort(rng, "bind_addr", s, false)
		a.BindAddr, bindRange = s, rng
	}
	if s, rng, ok := d.str(raw.Advertise, "advertise"); ok {
		d.checkHostPort(rng, "advertise", s, true)
		a.Advertise = s
	} else if d.isUnset(raw.Advertise) {
		a.Advertise = a.BindAddr
		if bindOK && unspecifiedHost(a.BindAddr) {
			d.errorf(bindRange, "Missing advertise",
				"bind_addr %q listens on all interfaces, which other nodes cannot dial; set advertise to the host:port they should use to reach this node.",
				a.BindAddr)
		}
	}
	if v, ok := d.uint(raw.MemLimit, "memory_limit", minMemoryLimit); ok {
		a.MemoryLimit = v
	}
	if s, rng, ok := d.str(raw.Metrics, "metrics_addr"); ok {
		if s != "" {
			d.checkHostPort(rng, "metrics_addr", s, false)
		}
		a.MetricsAddr = s
	}
	if s, rng, ok := d.str(raw.APISocket, "api_socket"); ok {
		d.checkAbs(rng, "api_socket", s)
		a.APISocket = s
	}
	if s, rng, ok := d.str(raw.APIGroup, "api_socket_group"); ok {
		if problem := checkGroupName(s); problem != "" {
			d.errorf(rng, "Invalid api_socket_group", "api_socket_group %q is not a group name or ID: %s.", s, problem)
		}
		a.APISocketGroup = s
	}
	if s, rng, ok := d.str(raw.PluginDir, "plugin_dir"); ok {
		if s != "" {
			d.checkAbs(rng, "plugin_dir", s)
		}
		a.PluginDir = s
	}
	if s, rng, ok := d.str(raw.LogLevel, "log_level"); ok {
		if !slices.Contains(logLevels, s) {
			d.errorf(rng, "Invalid log_level", "log_level must be one of %s; got %q.",
				strings.Join(logLevels, ", "), s)
		}
		a.LogLevel = s
	}
	if s, rng, ok := d.str(raw.NodeName, "node_name"); ok {
		if problem := checkDNSLabel(s); problem != "" {
			d.errorf(rng, "Invalid node_name", "node_name %q is not a DNS label: %s.", s, problem)
		}
		a.NodeName = s
	} else if d.isUnset(raw.NodeName) && a.NodeName == "" {
		h, _ := hostname()
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Missing node_name",
			Detail: fmt.Sprintf("node_name is not set and the host name %q does not make a DNS label (lowercase letters, digits and '-', at most 63); set node_name.",
				h),
			Subject: fileStart,
		})
	}

	if raw.Manager != nil {
		a.Manager = d.manager(raw.Manager)
	}
	if raw.Worker != nil {
		a.Worker = d.worker(raw.Worker)
	}
	if raw.Manager == nil && raw.Worker == nil {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "No manager or worker block",
			Detail:   fmt.Sprintf("agent has neither a manager { } nor a worker { } block in %s. Add one of them, or both to run a single-node cluster.", where),
			Subject:  fileStart,
		})
	}

	if raw.Join != nil {
		a.Join = d.join(raw.Join)
	}

	seen := map[string]*pluginBody{}
	for _, rp := range raw.Plugins {
		p := d.plugin(rp)
		if prev, dup := seen[p.Name]; dup {
			d.errorf(rp.NameRange, "Duplicate plugin block",
				"A plugin block named %q is already declared at %s; each plugin can be declared once.",
				p.Name, prev.DefRange)
			continue
		}
		seen[p.Name] = rp
		a.Plugins = append(a.Plugins, p)
	}
	return d.diags
}

func (d *decoder) manager(raw *managerBody) *Manager {
	m := defaultManager()
	if s, rng, ok := d.str(raw.Store, "store"); ok {
		d.checkPluginRef(rng, "store", s)
		m.Store = s
	}
	if s, rng, ok := d.str(raw.Scheduler, "scheduler"); ok {
		d.checkPluginRef(rng, "scheduler", s)
		m.Scheduler = s
	}
	if v, ok := d.duration(raw.HeartbeatTTL, "heartbeat_ttl", minHeartbeatTTL); ok {
		m.HeartbeatTTL = v
	}
	if v, ok := d.uint(raw.SnapshotThreshold, "snapshot_threshold", minSnapshotThreshold); ok {
		m.SnapshotThreshold = v
	}
	if v, ok := d.duration(raw.SnapshotInterval, "snapshot_interval", minSnapshotInterval); ok {
		m.SnapshotInterval = v
	}
	if v, ok := d.uint(raw.TrailingLogs, "trailing_logs", 0); ok {
		m.TrailingLogs = v
	}
	if v, ok := d.duration(raw.NodeCertTTL, "node_cert_ttl", minNodeCertTTL); ok {
		m.NodeCertTTL = v
	}
	d.overlay(raw, m)
	if s, rng, ok := d.str(raw.ClusterDomain, "cluster_domain"); ok {
		if problem := checkDNSLabel(s); problem != "" {
			d.errorf(rng, "Invalid cluster_domain", "cluster_domain %q is not a DNS label: %s.", s, problem)
		}
		m.ClusterDomain = s
	}
	if v, ok := d.uint(raw.EventSubBytes, "event_subscriber_bytes", minEventSubBytes); ok {
		m.EventSubscriberBytes = v
	}
	return m
}

// overlay decodes overlay_range and overlay_node_prefix and checks them
// together.
func (d *decoder) overlay(raw *managerBody, m *Manager) {
	rangeSet, prefixSet := !d.isUnset(raw.OverlayRange), !d.isUnset(raw.OverlayNodePrefix)
	var rng hcl.Range
	if s, r, ok := d.str(raw.OverlayRange, "overlay_range"); ok {
		m.OverlayRange, rng = s, r
	} else if rangeSet {
		return
	}
	if v, ok := d.uint(raw.OverlayNodePrefix, "overlay_node_prefix", 1); ok {
		if v > 128 {
			d.errorf(raw.OverlayNodePrefix.Range(), "Invalid overlay_node_prefix", "overlay_node_prefix must be a prefix length such as 24; got %d.", v)
			return
		}
		m.OverlayNodePrefix = int(v)
		if !rangeSet {
			rng = raw.OverlayNodePrefix.Range()
		}
	} else if prefixSet {
		return
	}
	if !rangeSet && !prefixSet {
		return
	}
	if _, err := network.ParsePlan(m.OverlayRange, m.OverlayNodePrefix); err != nil {
		d.errorf(rng, "Invalid overlay", "%s.", strings.TrimSuffix(err.Error(), ": "+sdk.ErrInvalidArgument.Error()))
	}
}

func (d *decoder) join(raw *joinBody) *Join {
	j := &Join{}
	if addrs, ok := d.stringList(raw.Addresses, "addresses"); ok {
		for _, addr := range addrs {
			d.checkHostPort(raw.Addresses.Range(), "addresses", addr, true)
		}
		j.Addresses = addrs
	}
	if len(j.Addresses) == 0 && !d.diags.HasErrors() {
		d.errorf(raw.DefRange, "Missing join addresses",
			"A join block needs addresses: the host:port of at least one manager of the cluster to join.")
	}
	if s, rng, ok := d.str(raw.Token, "token"); ok {
		if problem := checkToken(s); problem != "" {
			d.errorf(rng, "Invalid join token", "token is not a Warren join token: %s. Print one on a manager with `warren cluster join-token worker` (or manager).", problem)
		}
		j.Token = s
	} else if d.isUnset(raw.Token) {
		d.errorf(raw.DefRange, "Missing join token",
			"A join block needs a token; print one on a manager with `warren cluster join-token worker` (or manager).")
	}
	return j
}

func (d *decoder) worker(raw *workerBody) *Worker {
	w := defaultWorker()
	if s, rng, ok := d.str(raw.Runtime, "runtime"); ok {
		d.checkPluginRef(rng, "runtime", s)
		w.Runtime = s
	}
	if s, rng, ok := d.str(raw.Network, "network"); ok {
		if s == NoNetwork {
			s = ""
		}
		if s != "" {
			d.checkPluginRef(rng, "network", s)
		}
		w.Network = s
	}
	if labels, ok := d.stringMap(raw.Labels, "labels", checkLabel); ok {
		w.Labels = labels
	}
	if v, ok := d.duration(raw.HeartbeatInterval, "heartbeat_interval", minHeartbeatInterval); ok {
		w.HeartbeatInterval = v
	}
	if v, ok := d.duration(raw.RuntimeTimeout, "runtime_timeout", minRuntimeTimeout); ok {
		w.RuntimeTimeout = v
	}
	if s, rng, ok := d.str(raw.VolumesDir, "volumes_dir"); ok {
		d.checkAbs(rng, "volumes_dir", s)
		w.VolumesDir = s
	}
	return w
}

func (d *decoder) plugin(raw *pluginBody) *Plugin {
	p := &Plugin{
		Name:        raw.Name,
		Config:      hcl.EmptyBody(),
		ConfigRange: raw.DefRange,
		DeclRange:   raw.DefRange,
	}
	if problem := checkDNSLabel(raw.Name); problem != "" {
		d.errorf(raw.NameRange, "Invalid plugin name", "Plugin name %q is not a DNS label: %s.", raw.Name, problem)
	}
	if s, rng, ok := d.str(raw.Path, "path"); ok {
		if s != "" {
			d.checkAbs(rng, "path", s)
		}
		p.Path = s
	}
	if args, ok := d.stringList(raw.Args, "args"); ok {
		p.Args = args
	}
	if env, ok := d.stringMap(raw.Env, "env", checkEnv); ok {
		p.Env = env
	}
	if raw.Config != nil {
		p.Config = raw.Config.Body
		p.ConfigRange = raw.Config.DefRange
	}
	return p
}

// decoder collects diagnostics while converting attribute expressions.
type decoder struct {
	diags hcl.Diagnostics
}

func (d *decoder) errorf(rng hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  rng.Ptr(),
	})
}

// isUnset reports whether expr is absent or null. Evaluation errors were
// already reported by value, so they count as set.
func (d *decoder) isUnset(expr hcl.Expression) bool {
	if expr == nil {
		return true
	}
	v, diags := expr.Value(nil)
	return !diags.HasErrors() && v.IsNull()
}

// value evaluates expr (no variables or functions) and converts it to ty. ok is
// false when the attribute is unset (absent or null) or invalid; in the latter
// case an error was recorded saying that name must be want.
func (d *decoder) value(expr hcl.Expression, name string, ty cty.Type, want string) (v cty.Value, ok bool) {
	if expr == nil {
		return cty.NilVal, false
	}
	v, diags := expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		d.errorf(expr.Range(), "Invalid "+name, "%s must be %s; got %s.", name, want, describe(v))
		return cty.NilVal, false
	}
	return cv, true
}

func (d *decoder) str(expr hcl.Expression, name string) (string, hcl.Range, bool) {
	v, ok := d.value(expr, name, cty.String, "a string")
	if !ok {
		return "", hcl.Range{}, false
	}
	return v.AsString(), expr.Range(), true
}

// uint decodes a whole number that must be at least min.
func (d *decoder) uint(expr hcl.Expression, name string, min uint64) (uint64, bool) {
	v, ok := d.value(expr, name, cty.Number, "a whole number")
	if !ok {
		return 0, false
	}
	rng := expr.Range()
	bf := v.AsBigFloat()
	n, acc := bf.Uint64()
	switch {
	case !bf.IsInt() || bf.Sign() < 0 || n < min:
		want := fmt.Sprintf("a whole number of at least %d", min)
		if min == 0 {
			want = "a whole number, 0 or more"
		}
		d.errorf(rng, "Invalid "+name, "%s must be %s; got %s.", name, want, bf.Text('g', -1))
		return 0, false
	case acc != big.Exact:
		d.errorf(rng, "Invalid "+name, "%s is too large; got %s.", name, bf.Text('g', -1))
		return 0, false
	}
	return n, true
}

// duration decodes a Go duration string such as "10s" that must be at least min.
func (d *decoder) duration(expr hcl.Expression, name string, min time.Duration) (time.Duration, bool) {
	s, rng, ok := d.str(expr, name)
	if !ok {
		return 0, false
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(rng, "Invalid duration",
			"%s: %s; use a number with a unit (ns, us, ms, s, m, h) such as \"10s\" or \"1m30s\".", name, err)
		return 0, false
	}
	if v < min {
		d.errorf(rng, "Invalid "+name, "%s must be at least %s; got %s.", name, min, v)
		return 0, false
	}
	return v, true
}

// stringList decodes a list of strings, checking each element at its own range.
func (d *decoder) stringList(expr hcl.Expression, name string) ([]string, bool) {
	if expr == nil {
		return nil, false
	}
	v, diags := expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return nil, false
	}
	if ty := v.Type(); !ty.IsTupleType() && !ty.IsListType() && !ty.IsSetType() {
		d.errorf(expr.Range(), "Invalid "+name, "%s must be a list of strings; got %s.", name, describe(v))
		return nil, false
	}
	elems, eDiags := hcl.ExprList(expr)
	if eDiags.HasErrors() || len(elems) != v.LengthInt() {
		// Not a literal list; report at the whole expression.
		elems = nil
	}
	out := make([]string, 0, v.LengthInt())
	valid := true
	for i, ev := range v.AsValueSlice() {
		rng := expr.Range()
		if elems != nil {
			rng = elems[i].Range()
		}
		s, err := convert.Convert(ev, cty.String)
		if err != nil || s.IsNull() || !s.IsKnown() {
			d.errorf(rng, "Invalid "+name, "%s must be a list of strings; element %d is %s.", name, i, describe(ev))
			valid = false
			continue
		}
		out = append(out, s.AsString())
	}
	return out, valid
}

// stringMap decodes a map of strings, such as { zone = "edge-1" }. check
// returns a problem with the key or with the value ("" when fine); each is
// reported at the range of the key or value.
func (d *decoder) stringMap(expr hcl.Expression, name string, check func(k, v string) (keyProblem, valueProblem string)) (map[string]string, bool) {
	const want = `a map of strings, such as { key = "value" }`
	if expr == nil {
		return nil, false
	}
	v, diags := expr.Value(nil)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return nil, false
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		d.errorf(expr.Range(), "Invalid "+name, "%s must be %s; got %s.", name, want, describe(v))
		return nil, false
	}

	type item struct {
		key, val         cty.Value
		keyRng, valueRng hcl.Range
	}
	var items []item
	if pairs, pDiags := hcl.ExprMap(expr); !pDiags.HasErrors() {
		for _, p := range pairs {
			k, kDiags := p.Key.Value(nil)
			val, vDiags := p.Value.Value(nil)
			d.diags = append(d.diags, kDiags...)
			d.diags = append(d.diags, vDiags...)
			items = append(items, item{k, val, p.Key.Range(), p.Value.Range()})
		}
	} else {
		// Not a literal object; report at the whole expression.
		for it := v.ElementIterator(); it.Next(); {
			k, val := it.Element()
			items = append(items, item{k, val, expr.Range(), expr.Range()})
		}
	}

	out := make(map[string]string, len(items))
	keyAt := map[string]hcl.Range{}
	valid := true
	for _, it := range items {
		k, err := convert.Convert(it.key, cty.String)
		if err != nil || k.IsNull() || !k.IsKnown() {
			d.errorf(it.keyRng, "Invalid "+name, "%s keys must be strings; got %s.", name, describe(it.key))
			valid = false
			continue
		}
		key := k.AsString()
		val, err := convert.Convert(it.val, cty.String)
		if err != nil || val.IsNull() || !val.IsKnown() {
			d.errorf(it.valueRng, "Invalid "+name, "%s must be %s; the value of %q is %s.", name, want, key, describe(it.val))
			valid = false
			continue
		}
		if prev, dup := keyAt[key]; dup {
			d.errorf(it.keyRng, "Duplicate "+name+" key", "%s key %q is already set at %s.", name, key, prev)
			valid = false
			continue
		}
		keyAt[key] = it.keyRng
		keyProblem, valueProblem := check(key, val.AsString())
		if keyProblem != "" {
			d.errorf(it.keyRng, "Invalid "+name+" key", "%s key %q is invalid: %s.", name, key, keyProblem)
			valid = false
		}
		if valueProblem != "" {
			d.errorf(it.valueRng, "Invalid "+name+" value", "%s value for %q is invalid: %s.", name, key, valueProblem)
			valid = false
		}
		out[key] = val.AsString()
	}
	return out, valid
}

func (d *decoder) checkAbs(rng hcl.Range, name, path string) {
	if !filepath.IsAbs(path) {
		d.errorf(rng, "Relative path", "%s must be an absolute path; got %q.", name, path)
	}
}

func (d *decoder) checkPluginRef(rng hcl.Range, name, plugin string) {
	if problem := checkDNSLabel(plugin); problem != "" {
		d.errorf(rng, "Invalid plugin name", "%s = %q is not a valid plugin name: %s.", name, plugin, problem)
	}
}

// checkHostPort reports whether s is a valid host:port; for an advertised
// address the host may not be 0.0.0.0 or ::.
func (d *decoder) checkHostPort(rng hcl.Range, name, s string, advertised bool) bool {
	if problem := checkHostPort(s); problem != "" {
		d.errorf(rng, "Invalid "+name, "%s %q is not a valid host:port: %s.", name, s, problem)
		return false
	}
	if advertised && unspecifiedHost(s) {
		d.errorf(rng, "Invalid "+name, "%s %q has an unspecified host, which other nodes cannot dial; use an IP address or host name of this node that they can reach.", name, s)
		return false
	}
	return true
}

// describe renders a value for an error message: primitives by value, others
// by type.
func describe(v cty.Value) string {
	switch {
	case v.IsNull():
		return "null"
	case !v.IsKnown():
		return "an unknown value"
	case v.Type() == cty.String:
		return fmt.Sprintf("%q", v.AsString())
	case v.Type() == cty.Number:
		return v.AsBigFloat().Text('g', -1)
	case v.Type() == cty.Bool:
		return fmt.Sprintf("%t", v.True())
	case v.Type().IsObjectType() || v.Type().IsMapType():
		return "a map"
	case v.Type().IsTupleType() || v.Type().IsListType() || v.Type().IsSetType():
		return "a list"
	}
	return v.Type().FriendlyName()
}
