package api

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Bounds on what a service spec may hold. They keep one service well inside
// what a Raft entry and a store value should carry.
const (
	MaxSpecBytes     = 256 << 10
	MaxReplicas      = 10000
	MaxImageLen      = 512
	MaxEnv           = 1000
	MaxLabels        = 256
	MaxArgs          = 1000
	MaxArgLen        = 32 << 10
	MaxConstraints   = 64
	MaxMounts        = 64
	MinMemoryLimit   = 4 << 20
	MaxStopGrace     = time.Hour
	MaxRestartDelay  = 24 * time.Hour
	maxLabelKeyLen   = 128
	maxLabelValueLen = 4096
)

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	envKey   = regexp.MustCompile(`^[^=\x00]+$`)
	labelKey = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$`)
	signal   = regexp.MustCompile(`^(SIG)?[A-Z0-9+-]{2,12}$|^[0-9]{1,2}$`)
)

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, sdk.ErrInvalidArgument)...)
}

// ValidateName checks a service (or other object) name against DNS-label
// rules: 1-63 characters of a-z, 0-9 and '-', not starting or ending with '-'.
func ValidateName(kind, name string) error {
	if name == "" {
		return invalid("%s name is required", kind)
	}
	if !dnsLabel.MatchString(name) {
		return invalid("%s name %q is invalid: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// ValidateServiceSpec checks a spec before anything is proposed. Errors wrap
// sdk.ErrInvalidArgument and name the offending field.
func ValidateServiceSpec(s *apiv1.ServiceSpec) error {
	if s == nil {
		return invalid("spec is required")
	}
	if err := noUnknownFields(s); err != nil {
		return err
	}
	if n := proto.Size(s); n > MaxSpecBytes {
		return invalid("spec is %d bytes, more than the %d allowed", n, MaxSpecBytes)
	}
	if err := ValidateName("service", s.GetName()); err != nil {
		return err
	}
	img := s.GetImage()
	switch {
	case img == "" && len(s.GetCommand()) == 0:
		return invalid("service %q: image is required (or, for a runtime that runs programs without images, a command)", s.GetName())
	case len(img) > MaxImageLen:
		return invalid("service %q: image reference is longer than %d characters", s.GetName(), MaxImageLen)
	case strings.ContainsAny(img, " \t\n\r\x00"):
		return invalid("service %q: image %q contains whitespace", s.GetName(), img)
	}
	if s.GetReplicas() > MaxReplicas {
		return invalid("service %q: replicas %d is more than the %d allowed", s.GetName(), s.GetReplicas(), MaxReplicas)
	}
	if len(s.GetCommand())+len(s.GetArgs()) > MaxArgs {
		return invalid("service %q: more than %d command and args entries", s.GetName(), MaxArgs)
	}
	for _, a := range append(append([]string{}, s.GetCommand()...), s.GetArgs()...) {
		if len(a) > MaxArgLen || strings.ContainsRune(a, 0) {
			return invalid("service %q: a command or args entry is longer than %d bytes or contains NUL", s.GetName(), MaxArgLen)
		}
	}
	if len(s.GetEnv()) > MaxEnv {
		return invalid("service %q: more than %d env entries", s.GetName(), MaxEnv)
	}
	for k := range s.GetEnv() {
		if !envKey.MatchString(k) {
			return invalid("service %q: env name %q is invalid (empty, or contains '=' or NUL)", s.GetName(), k)
		}
	}
	if err := validateLabels(fmt.Sprintf("service %q", s.GetName()), s.GetLabels()); err != nil {
		return err
	}
	if w := s.GetWorkingDir(); w != "" && !path.IsAbs(w) {
		return invalid("service %q: working_dir %q must be an absolute path", s.GetName(), w)
	}
	if err := validateResources(s.GetName(), "limits", s.GetLimits()); err != nil {
		return err
	}
	if err := validateResources(s.GetName(), "reservations", s.GetReservations()); err != nil {
		return err
	}
	if m := s.GetLimits().GetMemoryBytes(); m != 0 && m < MinMemoryLimit {
		return invalid("service %q: memory limit %d bytes is below the 4MiB minimum", s.GetName(), m)
	}
	if len(s.GetConstraints()) > MaxConstraints {
		return invalid("service %q: more than %d constraints", s.GetName(), MaxConstraints)
	}
	for _, c := range s.GetConstraints() {
		if _, err := scheduler.ParseConstraint(c); err != nil {
			return fmt.Errorf("service %q: constraint: %w", s.GetName(), err)
		}
	}
	targets := map[string]bool{}
	if err := validateMounts(s.GetName(), s.GetMounts(), targets); err != nil {
		return err
	}
	if err := validateFiles(s.GetName(), "secret", s.GetSecrets(), targets); err != nil {
		return err
	}
	if err := validateFiles(s.GetName(), "config", s.GetConfigs(), targets); err != nil {
		return err
	}
	if _, ok := apiv1.NetworkMode_name[int32(s.GetNetworkMode())]; !ok {
		return invalid("service %q: network mode %d is unknown", s.GetName(), s.GetNetworkMode())
	}
	if err := validatePorts(s); err != nil {
		return err
	}
	if sig := s.GetStopSignal(); sig != "" && !signal.MatchString(sig) {
		return invalid("service %q: stop_signal %q is not a signal name or number", s.GetName(), sig)
	}
	if d := s.GetStopGracePeriod(); d != nil {
		if err := validateDuration(s.GetName(), "stop_grace_period", d.AsDuration(), MaxStopGrace); err != nil {
			return err
		}
	}
	if rp := s.GetRestartPolicy(); rp != nil {
		if _, ok := apiv1.RestartPolicy_Condition_name[int32(rp.GetCondition())]; !ok {
			return invalid("service %q: restart condition %d is unknown", s.GetName(), rp.GetCondition())
		}
		for name, d := range map[string]time.Duration{"delay": rp.GetDelay().AsDuration(), "window": rp.GetWindow().AsDuration(), "max_delay": rp.GetMaxDelay().AsDuration()} {
			if err := validateDuration(s.GetName(), "restart_policy."+name, d, MaxRestartDelay); err != nil {
				return err
			}
		}
	}
	switch s.GetMode() {
	case apiv1.ServiceMode_SERVICE_MODE_UNSPECIFIED, apiv1.ServiceMode_SERVICE_MODE_REPLICATED:
	case apiv1.ServiceMode_SERVICE_MODE_GLOBAL:
		if s.GetReplicas() != 0 {
			return invalid("service %q: a global service runs one task per eligible node: replicas (%d) must not be set", s.GetName(), s.GetReplicas())
		}
	case apiv1.ServiceMode_SERVICE_MODE_REPLICATED_JOB, apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB:
	default:
		return invalid("service %q: mode %d is unknown", s.GetName(), s.GetMode())
	}
	if err := validateJob(s); err != nil {
		return err
	}
	if err := validateHealthCheck(s.GetName(), s.GetHealthCheck()); err != nil {
		return err
	}
	if err := validateUpdatePolicy(s, "update_policy", s.GetUpdatePolicy()); err != nil {
		return err
	}
	if err := validateUpdatePolicy(s, "rollback_policy", s.GetRollbackPolicy()); err != nil {
		return err
	}
	return nil
}

// validateJob checks what only a job takes, and what a job does not take:
// max_concurrent is a replicated job's; a global job has no replicas; a
// job has no update or rollback policy (an update re-runs it, with no
// rolling) and no restart condition any (a task that completed is done).
func validateJob(s *apiv1.ServiceSpec) error {
	name, mode := s.GetName(), s.GetMode()
	if !apiv1.IsJob(mode) {
		if s.GetMaxConcurrent() != 0 {
			return invalid("service %q: max_concurrent (%d) is for a replicated job (mode replicated-job) only", name, s.GetMaxConcurrent())
		}
		return nil
	}
	switch {
	case mode == apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB && s.GetReplicas() != 0:
		return invalid("service %q: a global job runs one task per eligible node: replicas (%d) must not be set", name, s.GetReplicas())
	case mode == apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB && s.GetMaxConcurrent() != 0:
		return invalid("service %q: max_concurrent (%d) is for a replicated job; a global job runs one task per eligible node", name, s.GetMaxConcurrent())
	case s.GetUpdatePolicy() != nil:
		return invalid("service %q: a job has no update policy: an update re-runs it", name)
	case s.GetRollbackPolicy() != nil:
		return invalid("service %q: a job has no rollback policy: an update re-runs it", name)
	case s.GetRestartPolicy().GetCondition() == apiv1.RestartPolicy_CONDITION_ANY:
		return invalid("service %q: restart condition any is not for a job (a completed task would run again): use on-failure (the default) or none", name)
	}
	return nil
}

// validateUpdatePolicy checks an update or rollback policy (field says
// which): known order and failure action (no rollback of a rollback), a
// monitor that is not negative and not shorter than the health check's
// interval (a failure would go unseen), a failure ratio within 0..1.
func validateUpdatePolicy(s *apiv1.ServiceSpec, field string, up *apiv1.UpdatePolicy) error {
	if up == nil {
		return nil
	}
	svc := s.GetName()
	if _, ok := apiv1.UpdatePolicy_Order_name[int32(up.GetOrder())]; !ok {
		return invalid("service %q: %s order %d is unknown", svc, field, up.GetOrder())
	}
	if _, ok := apiv1.UpdatePolicy_FailureAction_name[int32(up.GetFailureAction())]; !ok {
		return invalid("service %q: %s failure action %d is unknown", svc, field, up.GetFailureAction())
	}
	if field == "rollback_policy" && up.GetFailureAction() == apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK {
		return invalid("service %q: a rollback's failure action is pause or continue, not rollback", svc)
	}
	if err := validateCanary(s, field, up); err != nil {
		return err
	}
	if err := validateDuration(svc, field+".delay", up.GetDelay().AsDuration(), MaxRestartDelay); err != nil {
		return err
	}
	if err := validateDuration(svc, field+".monitor", up.GetMonitor().AsDuration(), MaxHealthDuration); err != nil {
		return err
	}
	if up.GetMonitor() != nil && up.GetMonitor().AsDuration() == 0 {
		return invalid("service %q: %s.monitor must be positive", svc, field)
	}
	if m, iv := up.GetMonitor(), s.GetHealthCheck().GetInterval(); m != nil && iv != nil && m.AsDuration() < iv.AsDuration() {
		return invalid("service %q: %s.monitor %s is shorter than the health check interval %s: a failing task would not be seen", svc, field, m.AsDuration(), iv.AsDuration())
	}
	if r := up.GetMaxFailureRatio(); r < 0 || r > 1 || r != r {
		return invalid("service %q: %s.max_failure_ratio %v is not between 0 and 1", svc, field, r)
	}
	return nil
}

// MaxHealthDuration bounds a health check's interval, timeout and start
// period.
const MaxHealthDuration = time.Hour

// validateHealthCheck checks a service's health check: a known type with
// what it needs, and durations that make sense (an interval or timeout
// given is positive).
func validateHealthCheck(svc string, c *apiv1.HealthCheck) error {
	if c == nil {
		return nil
	}
	if _, ok := apiv1.HealthCheck_Type_name[int32(c.GetType())]; !ok {
		return invalid("service %q: health check type %d is unknown", svc, c.GetType())
	}
	switch c.GetType() {
	case apiv1.HealthCheck_TYPE_UNSPECIFIED:
		if proto.Size(c) != 0 {
			return invalid("service %q: health check settings without a check (--health-http or --health-tcp)", svc)
		}
		return nil
	case apiv1.HealthCheck_TYPE_NONE:
		if proto.Size(c) != proto.Size(&apiv1.HealthCheck{Type: c.GetType()}) {
			return invalid("service %q: health check none (--no-healthcheck) takes no other setting", svc)
		}
		return nil
	case apiv1.HealthCheck_TYPE_HTTP:
		if !strings.HasPrefix(c.GetPath(), "/") || strings.ContainsAny(c.GetPath(), " \t\r\n\x00") {
			return invalid("service %q: health check path %q must start with \"/\" and contain no whitespace", svc, c.GetPath())
		}
	case apiv1.HealthCheck_TYPE_TCP:
		if c.GetPort() == 0 {
			return invalid("service %q: a TCP health check needs a port", svc)
		}
	case apiv1.HealthCheck_TYPE_CMD:
		if len(c.GetCommand()) == 0 || c.GetCommand()[0] == "" {
			return invalid("service %q: a command health check needs a command", svc)
		}
	}
	if c.GetPort() > 65535 {
		return invalid("service %q: health check port %d is out of range (1-65535)", svc, c.GetPort())
	}
	for _, f := range []struct {
		name string
		d    interface{ AsDuration() time.Duration }
		set  bool
	}{
		{"health_check.interval", c.GetInterval(), c.GetInterval() != nil},
		{"health_check.timeout", c.GetTimeout(), c.GetTimeout() != nil},
	} {
		if f.set && f.d.AsDuration() <= 0 {
			return invalid("service %q: %s must be positive", svc, f.name)
		}
		if err := validateDuration(svc, f.name, f.d.AsDuration(), MaxHealthDuration); err != nil {
			return err
		}
	}
	return validateDuration(svc, "health_check.start_period", c.GetStartPeriod().AsDuration(), MaxHealthDuration)
}

// validateCanary checks a policy's canary and auto_promote: an update
// policy's only, at most the replicas, and for a replicated service (a
// global service has one task per node, none to start beside it).
func validateCanary(s *apiv1.ServiceSpec, field string, up *apiv1.UpdatePolicy) error {
	svc, n := s.GetName(), up.GetCanary()
	switch {
	case n == 0 && up.GetAutoPromote():
		return invalid("service %q: %s auto_promote needs a canary (--update-canary)", svc, field)
	case n == 0:
		return nil
	case field == "rollback_policy":
		return invalid("service %q: a rollback has no canary (rollback_policy canary %d)", svc, n)
	case s.GetMode() == apiv1.ServiceMode_SERVICE_MODE_GLOBAL:
		return invalid("service %q: canary %d: a global service runs one task per node, so it has no canary; use a replicated service", svc, n)
	case uint64(n) > s.GetReplicas():
		return invalid("service %q: canary %d is more than its %d replicas", svc, n, s.GetReplicas())
	}
	return nil
}

func validateDuration(svc, field string, d, max time.Duration) error {
	if d < 0 {
		return invalid("service %q: %s must not be negative", svc, field)
	}
	if d > max {
		return invalid("service %q: %s %s is more than %s", svc, field, d, max)
	}
	return nil
}

func validateResources(svc, field string, r *apiv1.Resources) error {
	if r.GetNanoCpus() < 0 || r.GetMemoryBytes() < 0 {
		return invalid("service %q: %s must not be negative", svc, field)
	}
	return nil
}

// validateLabels checks the labels of an object: owner names it in the
// errors (`service "web"`).
func validateLabels(owner string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return invalid("%s: more than %d labels", owner, MaxLabels)
	}
	for k, v := range labels {
		if len(k) > maxLabelKeyLen || !labelKey.MatchString(k) {
			return invalid("%s: label key %q is invalid", owner, k)
		}
		if len(v) > maxLabelValueLen {
			return invalid("%s: label %q value is longer than %d bytes", owner, k, maxLabelValueLen)
		}
	}
	return nil
}

// validateMounts checks mounts and adds their targets to targets, which
// must not hold them already.
func validateMounts(svc string, mounts []*apiv1.Mount, targets map[string]bool) error {
	if len(mounts) > MaxMounts {
		return invalid("service %q: more than %d mounts", svc, MaxMounts)
	}
	for _, m := range mounts {
		switch m.GetType() {
		case "bind", "volume":
			if m.GetSource() == "" {
				return invalid("service %q: %s mount to %q needs a source", svc, m.GetType(), m.GetTarget())
			}
			if m.GetType() == "bind" && !path.IsAbs(m.GetSource()) {
				return invalid("service %q: bind mount source %q must be an absolute path", svc, m.GetSource())
			}
		case "tmpfs":
			if m.GetSource() != "" {
				return invalid("service %q: tmpfs mount to %q takes no source", svc, m.GetTarget())
			}
		default:
			return invalid("service %q: mount type %q is unknown (bind, volume or tmpfs)", svc, m.GetType())
		}
		if m.GetType() != "tmpfs" && (m.GetTmpfsSizeBytes() != 0 || m.GetTmpfsMode() != 0) {
			return invalid("service %q: tmpfs size and mode are for tmpfs mounts, not the %s mount to %q", svc, m.GetType(), m.GetTarget())
		}
		if m.GetTmpfsSizeBytes() < 0 || m.GetTmpfsMode() > 0o7777 {
			return invalid("service %q: tmpfs mount to %q: size %d or mode %#o out of range", svc, m.GetTarget(), m.GetTmpfsSizeBytes(), m.GetTmpfsMode())
		}
		if m.GetType() == "volume" {
			if err := ValidateName("volume", m.GetSource()); err != nil {
				return fmt.Errorf("service %q: %w", svc, err)
			}
		}
		t := m.GetTarget()
		if !path.IsAbs(t) || path.Clean(t) == "/" {
			return invalid("service %q: mount target %q must be an absolute path other than /", svc, t)
		}
		if targets[path.Clean(t)] {
			return invalid("service %q: two mounts target %q", svc, t)
		}
		targets[path.Clean(t)] = true
	}
	return nil
}

// SecretsDir is where a secret goes in a container when its reference
// names no target: SecretsDir/<name>.
const SecretsDir = "/run/secrets"

// DefaultFileMode is the mode of a secret or config file whose reference
// gives none.
const DefaultFileMode = 0o444

// FillFileDefaults sets the defaults of the spec's secret and config
// references: a secret's target, and the mode. The API applies it before
// ValidateServiceSpec.
func FillFileDefaults(s *apiv1.ServiceSpec) {
	for _, r := range s.GetSecrets() {
		if r.GetTarget() == "" && r.GetName() != "" {
			r.Target = path.Join(SecretsDir, r.GetName())
		}
	}
	for _, r := range append(slices.Clone(s.GetSecrets()), s.GetConfigs()...) {
		if r.GetMode() == 0 {
			r.Mode = DefaultFileMode
		}
	}
}

// validateFiles checks the secret or config references of a spec and adds
// their targets to targets, which must not hold them already.
func validateFiles(svc, kind string, refs []*apiv1.FileReference, targets map[string]bool) error {
	if len(refs) > MaxMounts {
		return invalid("service %q: more than %d %ss", svc, MaxMounts, kind)
	}
	names := map[string]bool{}
	for _, r := range refs {
		if err := ValidateName(kind, r.GetName()); err != nil {
			return fmt.Errorf("service %q: %w", svc, err)
		}
		if names[r.GetName()] && kind == "secret" {
			return invalid("service %q: secret %q is given twice", svc, r.GetName())
		}
		names[r.GetName()] = true
		t := r.GetTarget()
		if t == "" {
			return invalid("service %q: %s %q needs a target path", svc, kind, r.GetName())
		}
		if !path.IsAbs(t) || path.Clean(t) == "/" || path.Clean(t) != t {
			return invalid("service %q: %s %q target %q must be a clean absolute path other than /", svc, kind, r.GetName(), t)
		}
		if targets[t] {
			return invalid("service %q: %s %q target %q collides with another mount, secret or config", svc, kind, r.GetName(), t)
		}
		for other := range targets {
			if strings.HasPrefix(t, other+"/") || strings.HasPrefix(other, t+"/") {
				return invalid("service %q: %s %q target %q collides with %q", svc, kind, r.GetName(), t, other)
			}
		}
		targets[t] = true
		if r.GetMode() > 0o777 {
			return invalid("service %q: %s %q mode %#o has bits beyond 0777", svc, kind, r.GetName(), r.GetMode())
		}
	}
	return nil
}

// noUnknownFields rejects messages carrying fields this version does not
// know: a newer client's intent would otherwise be silently dropped.
func noUnknownFields(m proto.Message) error {
	msg := m.ProtoReflect()
	if at, bad := unknownFieldsAt(msg); bad {
		return invalid("%s%s carries fields this agent does not know; upgrade the agent or drop them", msg.Descriptor().Name(), at)
	}
	return nil
}

// unknownFieldsAt finds the first message under msg carrying unknown
// fields and returns its path below msg (".spec.resources"). The path is
// built only when one is found: this runs on every request.
func unknownFieldsAt(msg protoreflect.Message) (at string, bad bool) {
	if len(msg.GetUnknown()) > 0 {
		return "", true
	}
	msg.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Message() == nil {
			return true
		}
		switch {
		case fd.IsList():
			for i := 0; i < v.List().Len() && !bad; i++ {
				at, bad = unknownFieldsAt(v.List().Get(i).Message())
			}
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
					at, bad = unknownFieldsAt(mv.Message())
					return !bad
				})
			}
		default:
			at, bad = unknownFieldsAt(v.Message())
		}
		if bad {
			at = "." + string(fd.Name()) + at
		}
		return !bad
	})
	return at, bad
}

// Bounds on what UpdateNode may set. They match what an agent configuration
// may give a node (worker { labels }).
const (
	MaxNodeLabels        = 64
	maxNodeRefLen        = 128
	maxNodeLabelKeyLen   = 63
	maxNodeLabelValueLen = 63
)

// nodeRef is what names a node in a request: its name (a DNS label), its
// ID or a prefix of it.
var nodeRef = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateNodeRef checks the name, ID or ID prefix that names a node in a
// request.
func ValidateNodeRef(ref string) error {
	switch {
	case ref == "":
		return invalid("a node name or ID is required")
	case len(ref) > maxNodeRefLen:
		return invalid("node name or ID %q is longer than %d characters", ref[:32]+"...", maxNodeRefLen)
	case !nodeRef.MatchString(ref):
		return invalid("node name or ID %q is invalid: use letters, digits, '.', '_' and '-', starting with a letter or digit", ref)
	}
	return nil
}

// ValidateNodeLabel checks one node label: a key of 1-63 letters, digits and
// . _ / -, starting and ending with a letter or digit, and a value of at
// most 63 characters with no control characters (it may be empty).
func ValidateNodeLabel(key, value string) error {
	if err := validateNodeLabelKey(key); err != nil {
		return err
	}
	if n := utf8.RuneCountInString(value); n > maxNodeLabelValueLen {
		return invalid("label %q: the value is %d characters long, more than the %d allowed", key, n, maxNodeLabelValueLen)
	}
	if !utf8.ValidString(value) || strings.IndexFunc(value, unicode.IsControl) >= 0 {
		return invalid("label %q: the value %q contains control characters or invalid UTF-8", key, value)
	}
	return nil
}

func validateNodeLabelKey(key string) error {
	switch {
	case key == "":
		return invalid("a label key is empty")
	case len(key) > maxNodeLabelKeyLen:
		return invalid("label key %q is %d characters long, more than the %d allowed", key, len(key), maxNodeLabelKeyLen)
	case !labelKey.MatchString(key):
		return invalid("label key %q is invalid: use letters, digits, '.', '_', '/' and '-', starting and ending with a letter or digit", key)
	}
	return nil
}

// ValidateUpdateNode checks an UpdateNode request before the node is read:
// the node reference, the availability and the labels. Errors wrap
// sdk.ErrInvalidArgument and name what is wrong.
func ValidateUpdateNode(req *apiv1.UpdateNodeRequest) error {
	if err := noUnknownFields(req); err != nil {
		return err
	}
	if err := ValidateNodeRef(req.GetNode()); err != nil {
		return err
	}
	if req.Availability == nil && len(req.GetLabelsAdd()) == 0 && len(req.GetLabelsRm()) == 0 {
		return invalid("node %q: nothing to update: set availability, labels_add or labels_rm", req.GetNode())
	}
	if req.Availability != nil {
		switch a := req.GetAvailability(); a {
		case apiv1.NodeAvailability_NODE_AVAILABILITY_ACTIVE, apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE, apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN:
		default:
			return invalid("node %q: availability %s is not one of active, pause or drain", req.GetNode(), availabilityName(a))
		}
	}
	if n := len(req.GetLabelsAdd()); n > MaxNodeLabels {
		return invalid("node %q: %d labels to add, more than the %d a node may have", req.GetNode(), n, MaxNodeLabels)
	}
	if n := len(req.GetLabelsRm()); n > MaxNodeLabels {
		return invalid("node %q: %d labels to remove, more than the %d a node may have", req.GetNode(), n, MaxNodeLabels)
	}
	for k, v := range req.GetLabelsAdd() {
		if err := ValidateNodeLabel(k, v); err != nil {
			return fmt.Errorf("node %q: %w", req.GetNode(), err)
		}
	}
	for _, k := range req.GetLabelsRm() {
		if err := validateNodeLabelKey(k); err != nil {
			return fmt.Errorf("node %q: labels_rm: %w", req.GetNode(), err)
		}
	}
	return nil
}

// availabilityName is a's enum name, or its number when it has none.
func availabilityName(a apiv1.NodeAvailability) string {
	if name, ok := apiv1.NodeAvailability_name[int32(a)]; ok {
		return name
	}
	return fmt.Sprint(int32(a))
}
