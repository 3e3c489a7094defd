package worker

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// Labels the worker puts on every task it starts, next to the service's
// own. The runtime adds warren.task-id itself (and refuses a spec that sets
// it).
const (
	LabelService   = "warren.service"
	LabelServiceID = "warren.service-id"
	LabelSlot      = "warren.slot"
)

// TaskSpec turns an assigned task into what the runtime runs, on a worker
// without a network plugin, less its secrets and configs (which the worker
// adds once it has written them). Parts of the spec this worker cannot provide
// (volume mounts, the overlay) are refused with an error wrapping
// sdk.ErrUnsupported, never ignored.
func TaskSpec(t *apiv1.Task) (runtime.TaskSpec, error) { return taskSpec(t, nil, "") }

// TaskNeeds returns the runtime capabilities t's spec needs, on a worker
// with a network plugin or without one (the scheduler's constraints), or an
// error when no worker can run it.
func TaskNeeds(t *apiv1.Task) ([]runtime.Capability, error) {
	spec, err := taskSpec(t, &taskNet{netns: "/"}, "/")
	if err != nil {
		return nil, err
	}
	spec.Mounts = append(spec.Mounts, fileMounts("/", t)...)
	return spec.Needs(), nil
}

// taskSpec is TaskSpec with the task's overlay attachment, nil when the
// task is not on the overlay, and the directory of the node's volumes
// (empty: volume mounts are refused).
func taskSpec(t *apiv1.Task, tn *taskNet, volumesDir string) (runtime.TaskSpec, error) {
	s := t.GetSpec()
	if s == nil {
		return runtime.TaskSpec{}, fmt.Errorf("task %q has no spec: %w", t.GetId(), sdk.ErrInvalidArgument)
	}
	hostNetwork := false
	var netns string
	mounts := make([]runtime.Mount, 0, len(s.GetMounts())+2)
	switch s.GetNetworkMode() {
	case apiv1.NetworkMode_NETWORK_MODE_UNSPECIFIED, apiv1.NetworkMode_NETWORK_MODE_NONE:
		// A namespace of the task's own with only loopback, or (no mode,
		// a worker with a network plugin) the overlay.
		if tn != nil && s.GetNetworkMode() == apiv1.NetworkMode_NETWORK_MODE_UNSPECIFIED {
			netns, mounts = tn.netns, append(mounts, tn.mounts...)
		}
	case apiv1.NetworkMode_NETWORK_MODE_HOST:
		hostNetwork = true
	case apiv1.NetworkMode_NETWORK_MODE_OVERLAY:
		if tn == nil {
			return runtime.TaskSpec{}, fmt.Errorf("service %q: network mode overlay needs a network plugin on the worker, and this one has none (set worker { network = \"network-wireguard\" }): %w", serviceName(t), sdk.ErrUnsupported)
		}
		netns, mounts = tn.netns, append(mounts, tn.mounts...)
	default:
		return runtime.TaskSpec{}, fmt.Errorf("service %q: network mode %d is unknown: %w", serviceName(t), s.GetNetworkMode(), sdk.ErrInvalidArgument)
	}
	for _, m := range s.GetMounts() {
		var typ runtime.MountType
		switch m.GetType() {
		case "bind":
			typ = runtime.MountBind
		case "tmpfs":
			typ = runtime.MountTmpfs
		case "volume":
			if volumesDir == "" {
				return runtime.TaskSpec{}, fmt.Errorf("volume %q at %q: this worker has no volumes directory: %w", m.GetSource(), m.GetTarget(), sdk.ErrUnsupported)
			}
			mounts = append(mounts, runtime.Mount{Type: runtime.MountBind, Source: VolumePath(volumesDir, m.GetSource()), Target: m.GetTarget(), ReadOnly: m.GetReadOnly()})
			continue
		default:
			return runtime.TaskSpec{}, fmt.Errorf("mount type %q at %q is unknown: %w", m.GetType(), m.GetTarget(), sdk.ErrInvalidArgument)
		}
		mounts = append(mounts, runtime.Mount{Type: typ, Source: m.GetSource(), Target: m.GetTarget(), ReadOnly: m.GetReadOnly(),
			TmpfsSize: m.GetTmpfsSizeBytes(), TmpfsMode: m.GetTmpfsMode()})
	}
	sig, err := StopSignal(s.GetStopSignal())
	if err != nil {
		return runtime.TaskSpec{}, err
	}
	labels := maps.Clone(s.GetLabels())
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelService] = serviceName(t)
	labels[LabelServiceID] = t.GetServiceId()
	labels[LabelSlot] = strconv.FormatUint(t.GetSlot(), 10)
	return runtime.TaskSpec{
		TaskID:     t.GetId(),
		Image:      s.GetImage(),
		Command:    slices.Clone(s.GetCommand()),
		Args:       slices.Clone(s.GetArgs()),
		Env:        maps.Clone(s.GetEnv()),
		WorkingDir: s.GetWorkingDir(),
		User:       s.GetUser(),
		Labels:     labels,
		Limits: runtime.Resources{
			NanoCPUs:    s.GetLimits().GetNanoCpus(),
			MemoryBytes: s.GetLimits().GetMemoryBytes(),
		},
		Mounts:          mounts,
		StopSignal:      sig,
		StopGracePeriod: s.GetStopGracePeriod().AsDuration(),
		Hostname:        fmt.Sprintf("%s.%d", serviceName(t), t.GetSlot()),
		HostNetwork:     hostNetwork,
		NetnsPath:       netns,
	}, nil
}

// VolumePath is where the named volume lives under a worker's volumes
// directory.
func VolumePath(volumesDir, name string) string { return filepath.Join(volumesDir, name) }

// ensureVolumes makes the directories of t's volumes that do not exist
// yet: a volume is made on its node by its first use.
func ensureVolumes(volumesDir string, t *apiv1.Task) error {
	for _, m := range t.GetSpec().GetMounts() {
		if m.GetType() != "volume" {
			continue
		}
		if err := os.MkdirAll(VolumePath(volumesDir, m.GetSource()), 0o755); err != nil {
			return fmt.Errorf("volume %q: %w", m.GetSource(), err)
		}
	}
	return nil
}

func serviceName(t *apiv1.Task) string {
	if n := t.GetServiceName(); n != "" {
		return n
	}
	return t.GetSpec().GetName()
}

// signalNames maps Linux signal numbers to names, for stop signals given as
// a number.
var signalNames = map[int]string{
	1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT",
	7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2",
	13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP",
	20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 23: "SIGURG", 24: "SIGXCPU", 25: "SIGXFSZ",
	26: "SIGVTALRM", 27: "SIGPROF", 28: "SIGWINCH", 29: "SIGIO", 30: "SIGPWR", 31: "SIGSYS",
}

// StopSignal turns a service's stop signal, as the API accepts it ("SIGTERM",
// "TERM" or "15"), into the name a runtime expects ("SIGTERM"). Empty stays
// empty: the runtime's default.
func StopSignal(sig string) (string, error) {
	switch {
	case sig == "":
		return "", nil
	case strings.HasPrefix(sig, "SIG"):
		return sig, nil
	}
	if n, err := strconv.Atoi(sig); err == nil {
		if name, ok := signalNames[n]; ok {
			return name, nil
		}
		return "", fmt.Errorf("stop signal %s: no such signal number: %w", sig, sdk.ErrInvalidArgument)
	}
	return "SIG" + sig, nil
}

// capabilityNames are a runtime's capabilities as the node registers them.
func capabilityNames(cs []runtime.Capability) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}
