package runtime

import (
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/warrenorch/warren/sdk"
)

// DefaultStopGracePeriod is how long StopTask waits for a task to exit
// before killing it when neither the call nor the spec says.
const DefaultStopGracePeriod = 10 * time.Second

// MaxTaskIDLen bounds a task ID.
const MaxTaskIDLen = 64

// MaxHandleStateLen bounds TaskHandle.State. The agent stores handles in its
// local state; keep them small.
const MaxHandleStateLen = 64 << 10

// TaskSpec is what to run. Zero values mean "the image's or the runtime's
// default" unless a field says otherwise.
type TaskSpec struct {
	// TaskID names the task; see ValidateTaskID for its syntax.
	TaskID string
	// Image is an image ref made available by EnsureImage or ImportImage.
	Image string
	// Command replaces the image's entrypoint when non-empty.
	Command []string
	// Args replaces the image's default arguments (its CMD) when non-empty.
	// The process runs Command (or the entrypoint) followed by Args.
	Args []string
	// Env is added to the image's environment, replacing variables of the
	// same name.
	Env map[string]string
	// WorkingDir replaces the image's working directory when set.
	WorkingDir string
	// User is "uid", "uid:gid", "name" or "name:group", resolved inside the
	// image; empty means the image's user.
	User string
	// Labels are kept with the task (as container labels) for operators to
	// see; the runtime does not interpret them.
	Labels map[string]string
	// Limits caps the task's resources; a zero field means no limit. A
	// runtime that cannot enforce a limit returns ErrUnsupported rather than
	// ignoring it.
	Limits Resources
	// Mounts are applied in order.
	Mounts []Mount
	// StopSignal is the signal StopTask sends first, by name ("SIGTERM",
	// "SIGINT", "SIGRTMIN+3"); empty means SIGTERM.
	StopSignal string
	// StopGracePeriod is how long StopTask waits after StopSignal before it
	// kills the task; 0 means DefaultStopGracePeriod.
	StopGracePeriod time.Duration
	// NetnsPath, when set, is the network namespace the task joins (one the
	// network plugin attached). Empty gives the task a network namespace of
	// its own with only a loopback interface, never the host's.
	NetnsPath string
	// Hostname is the task's hostname; empty lets the runtime choose. The
	// worker always sets it, to <service>.<slot> ("web.3"); a runtime that
	// cannot give a task a hostname of its own (one that runs tasks as host
	// processes) ignores it and says so in its docs.
	Hostname string
	// HostNetwork runs the task in the node's own network namespace (a
	// service of network mode host); NetnsPath is then empty.
	HostNetwork bool
}

// Capability is something a runtime supports beyond running a command. A
// runtime lists its capabilities in its Fingerprint; the scheduler places a
// task only on a node whose runtime has every capability the task needs
// (see Needs), so a runtime is never sent a task it would have to refuse
// for lack of one. A runtime that declares a capability and then refuses a
// task for lack of it is a bug the worker reports as such.
type Capability string

// The capabilities. A runtime declares only those it fully supports.
const (
	// CapImages: tasks run from an image (Image), made available by
	// EnsureImage or ImportImage. A runtime without it runs tasks whose
	// Image is empty (Command is then the program).
	CapImages Capability = "images"
	// CapNetworkNamespace: a task not on the host's network gets a network
	// namespace of its own (only loopback), or joins NetnsPath. A runtime
	// without it gets only tasks with HostNetwork.
	CapNetworkNamespace Capability = "network-namespace"
	// CapMountBind and CapMountTmpfs: Mounts of that type.
	CapMountBind  Capability = "mount-bind"
	CapMountTmpfs Capability = "mount-tmpfs"
	// CapLimitCPU and CapLimitMemory: Limits of that resource are enforced
	// (the memory limit kills the task with an OOM exit).
	CapLimitCPU    Capability = "limit-cpu"
	CapLimitMemory Capability = "limit-memory"
)

// Capabilities lists every capability this version of the contract
// defines.
var Capabilities = []Capability{CapImages, CapNetworkNamespace, CapMountBind, CapMountTmpfs, CapLimitCPU, CapLimitMemory}

// Needs returns the capabilities a runtime must have to run s, in the order
// of Capabilities.
func (s TaskSpec) Needs() []Capability {
	need := map[Capability]bool{
		CapImages:           s.Image != "",
		CapNetworkNamespace: !s.HostNetwork,
		CapLimitCPU:         s.Limits.NanoCPUs > 0,
		CapLimitMemory:      s.Limits.MemoryBytes > 0,
	}
	for _, m := range s.Mounts {
		switch m.Type {
		case MountBind:
			need[CapMountBind] = true
		case MountTmpfs:
			need[CapMountTmpfs] = true
		}
	}
	var out []Capability
	for _, c := range Capabilities {
		if need[c] {
			out = append(out, c)
		}
	}
	return out
}

// Validate checks what any runtime must refuse, returning an error wrapping
// sdk.ErrInvalidArgument that names the task and the field. Runtimes call it
// at the top of StartTask and add their own checks.
func (s TaskSpec) Validate() error {
	if err := ValidateTaskID(s.TaskID); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("task %q: %s: %w", s.TaskID, fmt.Sprintf(format, args...), sdk.ErrInvalidArgument)
	}
	if s.Image == "" && len(s.Command) == 0 {
		return bad("neither an image nor a command")
	}
	for k := range s.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return bad("env name %q is invalid", k)
		}
	}
	if s.Limits.NanoCPUs < 0 || s.Limits.MemoryBytes < 0 {
		return bad("negative resource limit")
	}
	for i, m := range s.Mounts {
		switch m.Type {
		case MountBind:
			if !path.IsAbs(m.Source) {
				return bad("mount %d: bind source %q is not an absolute path", i, m.Source)
			}
		case MountTmpfs:
		default:
			return bad("mount %d: unknown type %q", i, m.Type)
		}
		if m.Type != MountTmpfs && (m.TmpfsSize != 0 || m.TmpfsMode != 0) {
			return bad("mount %d: tmpfs size or mode on a %s mount", i, m.Type)
		}
		if m.TmpfsSize < 0 || m.TmpfsMode > 0o7777 {
			return bad("mount %d: tmpfs size %d or mode %#o out of range", i, m.TmpfsSize, m.TmpfsMode)
		}
		if !path.IsAbs(m.Target) {
			return bad("mount %d: target %q is not an absolute path", i, m.Target)
		}
	}
	if s.StopSignal != "" && (len(s.StopSignal) <= 3 || !strings.HasPrefix(s.StopSignal, "SIG")) {
		return bad("stop signal %q is not a signal name like SIGTERM", s.StopSignal)
	}
	if s.StopGracePeriod < 0 {
		return bad("negative stop grace period")
	}
	if s.NetnsPath != "" && !path.IsAbs(s.NetnsPath) {
		return bad("netns path %q is not absolute", s.NetnsPath)
	}
	if s.NetnsPath != "" && s.HostNetwork {
		return bad("both a netns path and the host's network")
	}
	return nil
}

// ValidateTaskID checks that id is 1 to MaxTaskIDLen letters, digits and
// single '.', '_' or '-' separators, starting and ending with a letter or a
// digit (what containerd accepts as an identifier). Errors wrap
// sdk.ErrInvalidArgument.
func ValidateTaskID(id string) error {
	if id == "" || len(id) > MaxTaskIDLen {
		return fmt.Errorf("task ID %q: must be 1 to %d characters: %w", id, MaxTaskIDLen, sdk.ErrInvalidArgument)
	}
	alnum := func(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' }
	for i := 0; i < len(id); i++ {
		if alnum(id[i]) {
			continue
		}
		if strings.IndexByte("._-", id[i]) < 0 || i == 0 || i == len(id)-1 || !alnum(id[i-1]) {
			return fmt.Errorf("task ID %q: only letters, digits and single '.', '_', '-' between them: %w", id, sdk.ErrInvalidArgument)
		}
	}
	return nil
}

// MountType is the kind of a Mount.
type MountType string

// The mount types a spec may ask for.
const (
	// MountBind binds Source, a path on the host, at Target.
	MountBind MountType = "bind"
	// MountTmpfs mounts an in-memory filesystem at Target; Source is unused.
	// Warren gives secrets to tasks this way.
	MountTmpfs MountType = "tmpfs"
)

// Mount is a filesystem mounted into a task.
//
// Warren gives a task its secrets and configs as read-only bind mounts of
// single files (from a tmpfs the worker owns), and a named volume as a bind
// mount of a directory on the node: a runtime needs only bind and tmpfs
// mounts for every kind of data.
type Mount struct {
	Type MountType
	// Source is the host path of a bind mount: a directory or a file,
	// which must exist.
	Source string
	// Target is the absolute path in the task.
	Target string
	// ReadOnly mounts it read-only.
	ReadOnly bool
	// TmpfsSize bounds a tmpfs mount in bytes; 0 is the runtime's
	// default. Only for MountTmpfs.
	TmpfsSize int64
	// TmpfsMode is the permission bits of a tmpfs mount's root; 0 means
	// 01777. Only for MountTmpfs.
	TmpfsMode uint32
}

// Resources is an amount of CPU and memory.
type Resources struct {
	// NanoCPUs is CPU time in billionths of a CPU (1.5 CPUs = 1_500_000_000).
	NanoCPUs int64
	// MemoryBytes is memory in bytes.
	MemoryBytes int64
}

// TaskHandle is what the agent persists to find a task again after a
// restart. The agent stores it verbatim and never looks inside State.
type TaskHandle struct {
	// Version is the format of State, chosen by the plugin, starting at 1.
	// A plugin must keep reading every version it ever wrote, so that a
	// newer plugin recovers tasks an older one started; it rejects versions
	// newer than it knows with ErrInvalidArgument.
	Version uint32
	// TaskID is the task's ID.
	TaskID string
	// Runtime is the Info.Name of the plugin that started the task.
	Runtime string
	// State is whatever the plugin needs to find the task again (container
	// ID, namespace, shim address...), at most MaxHandleStateLen bytes.
	State []byte
}

// State is where a task is in its life.
type State int

// The task states. Their values match the protocol's.
const (
	// StateCreated: the task exists but its process has not started.
	StateCreated State = iota + 1
	// StateRunning: the task's process runs.
	StateRunning
	// StateExited: the task's process ended; ExitCode says how.
	StateExited
	// StateUnknown: the runtime cannot tell (its backend does not answer);
	// TaskStatus.Error says why.
	StateUnknown
)

// String returns the state's lower-case name.
func (s State) String() string {
	switch s {
	case StateCreated:
		return "created"
	case StateRunning:
		return "running"
	case StateExited:
		return "exited"
	case StateUnknown:
		return "unknown"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// TaskStatus is what a runtime knows about a task.
type TaskStatus struct {
	TaskID string
	State  State
	// PID is the task's main process ID on the host while it runs.
	PID uint32
	// ExitCode is the process's exit status once Exited; a process killed by
	// a signal exits with 128 + the signal number.
	ExitCode int32
	// OOMKilled is set when the kernel's OOM killer ended the task.
	OOMKilled bool
	// Error explains a failure the runtime saw (the process could not be
	// started, the backend does not answer); empty otherwise.
	Error string
	// StartedAt is when the process started; zero before.
	StartedAt time.Time
	// FinishedAt is when it exited; zero before.
	FinishedAt time.Time
}

// EventType says what happened to a task.
type EventType int

// The event types. Their values match the protocol's.
const (
	// EventStarted: the task's process started.
	EventStarted EventType = iota + 1
	// EventExited: the task's process ended; ExitCode says how.
	EventExited
	// EventOOM: the kernel's OOM killer hit the task.
	EventOOM
)

// String returns the event type's lower-case name.
func (t EventType) String() string {
	switch t {
	case EventStarted:
		return "started"
	case EventExited:
		return "exited"
	case EventOOM:
		return "oom"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// TaskEvent is something that happened to a task.
type TaskEvent struct {
	TaskID string
	Type   EventType
	// ExitCode is set for EventExited.
	ExitCode int32
	Time     time.Time
	// Message is a human-readable detail, possibly empty.
	Message string
}

// Fingerprint describes a worker as its runtime sees it.
type Fingerprint struct {
	// NanoCPUs and MemoryBytes are what tasks may use in total.
	NanoCPUs    int64
	MemoryBytes int64
	// OS and Arch use Go's GOOS and GOARCH names ("linux", "arm64").
	OS   string
	Arch string
	// RuntimeName and RuntimeVersion name the backend ("containerd", "2.0.4").
	RuntimeName    string
	RuntimeVersion string
	// Attributes are free-form facts, keyed "<runtime>.<fact>", that
	// placement constraints match as node.attr.<key> (and the scheduler sees
	// in scheduler.Node.Attributes). A key must pass
	// scheduler.CheckAttributeKey: 1 to 128 letters, digits, '.', '_' and
	// '-', starting and ending with a letter or digit; the manager leaves out
	// any other, with a warning in its log. OS and Arch are matched as
	// node.platform.os and node.platform.arch.
	Attributes map[string]string
	// Capabilities are what the runtime supports (see Capability). The
	// scheduler sends a task only to a node whose runtime has all the
	// capabilities the task needs (TaskSpec.Needs); the worker leaves out,
	// with an error in its log, names this version does not define.
	Capabilities []Capability
}

// Image is an image available to tasks.
type Image struct {
	// Ref is the image's reference in the runtime's normalized form.
	Ref string
	// Digest identifies the image's content ("sha256:...").
	Digest string
	// Size is the image's size in bytes as the runtime stores it, 0 when
	// unknown.
	Size int64
	// HealthCheck is the health check the image declares (Docker's
	// HEALTHCHECK, the "Healthcheck" of the image config), nil when it
	// declares none or disables it (Test ["NONE"]). The worker runs it
	// through Exec for a task whose service has no check of its own and
	// does not disable checks. A runtime that cannot read it leaves it nil.
	HealthCheck *ImageHealthCheck
}

// ImageHealthCheck is an image's own health check. Zero durations and
// retries mean the worker's defaults (Docker's: 30s, 30s, 0s, 3).
type ImageHealthCheck struct {
	// Command is run in the task with Exec; exit code 0 passes. Docker's
	// CMD-SHELL form becomes ["/bin/sh", "-c", cmd].
	Command []string
	// Interval is the time between checks, Timeout the time one may take.
	Interval time.Duration
	Timeout  time.Duration
	// StartPeriod is the time after the start during which failures do not
	// count.
	StartPeriod time.Duration
	// Retries is the number of failures in a row that make a task
	// unhealthy.
	Retries int
}

// TailAll asks TaskLogs for all of a task's output.
const TailAll int64 = -1

// LogsRequest says which output TaskLogs delivers.
type LogsRequest struct {
	TaskID string
	// Follow keeps the stream open for new output until the task exits.
	Follow bool
	// Tail is the number of last lines to deliver first: TailAll for all,
	// 0 for none (with Follow: only output written from now on).
	Tail int64
	// Since, when not zero, leaves out the lines written before it (with
	// Tail: of the last Tail lines, those written since).
	Since time.Time
	// Timestamps puts in front of each line the time it was written, in
	// RFC 3339 with nanoseconds (UTC) and a space, as docker logs does.
	Timestamps bool
}

// LogStream says which of a task's output streams a chunk comes from.
type LogStream int

// The output streams. Their values match the protocol's.
const (
	StreamStdout LogStream = iota + 1
	StreamStderr
)

// String returns "stdout" or "stderr".
func (s LogStream) String() string {
	switch s {
	case StreamStdout:
		return "stdout"
	case StreamStderr:
		return "stderr"
	}
	return fmt.Sprintf("LogStream(%d)", int(s))
}

// LogChunk is a piece of a task's output.
type LogChunk struct {
	Stream LogStream
	Data   []byte
}

// ExecRequest is a command for Exec to run in a running task.
type ExecRequest struct {
	TaskID string
	// Cmd is the command and its arguments; required.
	Cmd []string
	// Env are KEY=VALUE variables added to the task's environment.
	Env []string
	// TTY gives the command a terminal.
	TTY bool
	// Size is the terminal's first size, with TTY (zero: the runtime's
	// default).
	Size TermSize
	// Resize delivers later terminal sizes, with TTY; may be nil.
	Resize <-chan TermSize
	// Stdin is the command's input; nil: empty.
	Stdin io.Reader
	// Stdout and Stderr receive the command's output; nil discards it.
	// Exec writes to each from one goroutine at a time.
	Stdout, Stderr io.Writer
}

// TermSize is a terminal's size in characters.
type TermSize struct {
	Width, Height uint16
}

// TaskStats is a running task's resource usage at one moment.
type TaskStats struct {
	// CPUUsageNanos is the CPU time the task used since it started.
	CPUUsageNanos uint64
	// MemoryBytes is the memory the task uses now.
	MemoryBytes uint64
	// MemoryLimitBytes is the task's memory limit; 0 means none.
	MemoryLimitBytes uint64
}
