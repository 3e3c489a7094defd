package containerd

import (
	"bufio"
	"context"
	"fmt"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// cgroupRoot is where the cgroup filesystems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// cgroupInfo is what the machine's cgroups can enforce.
type cgroupInfo struct {
	mode   string // "v2", "hybrid" or "v1"
	memory bool   // memory limits
	swap   bool   // swap accounting (v1: memory.memsw.*)
	cpu    bool   // CFS quotas
}

// detectCgroups looks at /sys/fs/cgroup.
func detectCgroups() cgroupInfo {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if b, err := os.ReadFile(cgroupRoot + "/cgroup.controllers"); err == nil {
		ctrl := strings.Fields(string(b))
		mem := slices.Contains(ctrl, "memory")
		return cgroupInfo{mode: "v2", memory: mem, swap: mem, cpu: slices.Contains(ctrl, "cpu")}
	}
	ci := cgroupInfo{
		mode:   "v1",
		memory: exists(cgroupRoot + "/memory/memory.limit_in_bytes"),
		swap:   exists(cgroupRoot + "/memory/memory.memsw.limit_in_bytes"),
		cpu:    exists(cgroupRoot + "/cpu/cpu.cfs_quota_us"),
	}
	if exists(cgroupRoot + "/unified/cgroup.controllers") {
		ci.mode = "hybrid"
	}
	return ci
}

// capabilities are what this plugin does: containers from images in
// network namespaces of their own, bind and tmpfs mounts, and CPU and
// memory limits where the machine's cgroups have those controllers.
func (ci cgroupInfo) capabilities() []runtime.Capability {
	caps := []runtime.Capability{runtime.CapImages, runtime.CapNetworkNamespace, runtime.CapMountBind, runtime.CapMountTmpfs}
	if ci.cpu {
		caps = append(caps, runtime.CapLimitCPU)
	}
	if ci.memory {
		caps = append(caps, runtime.CapLimitMemory)
	}
	return caps
}

// hostNetns is the plugin's own network namespace, the node's, which tasks
// on the host's network join.
var hostNetns = fmt.Sprintf("/proc/%d/ns/net", os.Getpid())

// Fingerprint reports the machine's CPUs and memory, OS and architecture,
// and containerd's version.
func (r *Runtime) Fingerprint(ctx context.Context) (_ runtime.Fingerprint, err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return runtime.Fingerprint{}, err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	mem, err := memTotal()
	if err != nil {
		return runtime.Fingerprint{}, fmt.Errorf("%s: fingerprint: %v: %w", Name, err, sdk.ErrInternal)
	}
	ver, err := be.client.Version(ctx)
	if err != nil {
		return runtime.Fingerprint{}, wrapErr(err, "%s: fingerprint: containerd version", Name)
	}
	attrs := map[string]string{
		"containerd.namespace":   be.s.namespace,
		"containerd.snapshotter": snapshotter,
		"containerd.shim":        runcShim,
		"containerd.cgroups":     be.cgroups.mode,
		"containerd.revision":    ver.Revision,
		"containerd.managed":     strconv.FormatBool(be.s.managed != nil),
	}
	return runtime.Fingerprint{
		NanoCPUs:       int64(goruntime.NumCPU()) * 1_000_000_000,
		MemoryBytes:    mem,
		OS:             goruntime.GOOS,
		Arch:           goruntime.GOARCH,
		RuntimeName:    "containerd",
		RuntimeVersion: ver.Version,
		Attributes:     attrs,
		Capabilities:   be.cgroups.capabilities(),
	}, nil
}

// memTotal reads MemTotal from /proc/meminfo, in bytes.
func memTotal() (int64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("/proc/meminfo: MemTotal %q: %w", fields[1], err)
			}
			return kb * 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/meminfo has no MemTotal")
}
