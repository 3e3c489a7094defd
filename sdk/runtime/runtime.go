// Package runtime is the contract for Warren's runtime plugins: the part of
// a worker that runs tasks (containers) and manages their images.
//
// The worker agent drives a runtime through this interface only. It asks
// for images with EnsureImage or ImportImage, starts a task from a TaskSpec,
// persists the TaskHandle that StartTask returns, watches TaskEvents to learn
// about exits at once, and after any restart (of the agent, of the plugin)
// finds its tasks again with RecoverTask. The default implementation drives
// containerd; anything that can run an OCI image and let it outlive its own
// process can implement Runtime.
//
// A plugin's main function is
//
//	func main() { runtime.Serve(myruntime.New()) }
//
// and its conformance test is
//
//	func TestConformance(t *testing.T) {
//		runtimetest.Run(t, func(t *testing.T) runtime.Runtime { return myruntime.New() }, runtimetest.Options{...})
//	}
package runtime

import (
	"context"
	"io"
	"time"

	"github.com/warrenorch/warren/sdk"
)

// Runtime is implemented by runtime plugins.
//
// # Task lifetime
//
// A task must keep running when the plugin process exits, crashes or is
// killed, and when the warren agent does: the runtime must not tie a task's
// lifetime to its own process (no child processes that die with it, no
// parent-death signals, no stdio pipes whose closing kills the task). Use a
// shim or a daemon that owns the task, as containerd does. Only StopTask,
// DestroyTask, the task's own exit or the machine going down end a task. A
// new plugin process finds the tasks of the old one with RecoverTask and
// ListTasks.
//
// A task ID names one task from StartTask until DestroyTask: while it exists,
// exited or not, no other task may use the ID.
//
// # Idempotency
//
// The agent retries calls after timeouts and restarts, so every call is
// repeat-safe or fails in a way that says what is already true:
//
//   - StartTask with the ID of an existing task returns ErrAlreadyExists and
//     changes nothing;
//   - StopTask on an exited task returns its status;
//   - DestroyTask of a missing task returns nil;
//   - RecoverTask of a task the plugin already tracks returns its status.
//
// # Errors
//
// Wrap the sdk sentinels with the identifier concerned, as in
// fmt.Errorf("task %q: %w", id, sdk.ErrNotFound):
//
//   - ErrNotFound: the task or image does not exist;
//   - ErrAlreadyExists: StartTask with an ID in use;
//   - ErrInvalidArgument: a malformed spec, ref, handle or tarball;
//   - ErrFailedPrecondition: the call does not fit the task's state
//     (DestroyTask of a running task without force);
//   - ErrUnsupported: a feature this runtime does not provide (a mount type,
//     a resource limit it cannot enforce, image import...). Never ignore a
//     part of a spec silently: refuse it with ErrUnsupported and say what.
//
// Never return ErrPluginUnavailable yourself: the host reads it as "the
// plugin is gone" and restarts it.
//
// # Threading
//
// Every method may be called concurrently with every other, from any
// goroutine. Calls about different tasks must not wait on each other: a
// StopTask waiting out a grace period must not hold up a StartTask. A
// runtime may serialize calls about one task ID.
//
// # Deadlines and health
//
// A runtime never hangs on a backend that stopped answering (a containerd
// that is frozen, a daemon stuck on a dead disk): every call into the
// backend has a deadline, derived from the caller's ctx and the runtime's
// own per-call default, and a call that runs out of it returns an error
// wrapping context.DeadlineExceeded that names the backend and the limit.
// Long operations (pulling or importing images, big layers) are bounded by
// progress instead: they fail once they stop moving for that long, not
// after a fixed time. StopTask's grace period comes on top of the per-call
// default. The agent bounds its calls too, and reads a call that ran out of
// time as "the runtime did not answer": the task fails with that error.
//
// Health says whether the backend answers right now; the agent calls it
// periodically and shows a failure as the node's "runtime" condition.
//
// # Events
//
// See TaskEvents: events of one task arrive in the order they happened;
// events of different tasks have no order between them. Events are a prompt
// to act; the status from InspectTask, RecoverTask or ListTasks is the truth,
// with one exception: an EventExited's ExitCode and Time are the process's
// final exit status and time (an OOM kill is the EventOOM before it), and
// the worker reports the task's end from the event alone.
type Runtime interface {
	sdk.Plugin

	// Fingerprint describes the machine and the runtime: the CPU and memory
	// tasks may use (both must be non-zero), OS and architecture in Go's
	// GOOS/GOARCH terms, the runtime's name and version, and free-form
	// attributes the scheduler may match on.
	Fingerprint(ctx context.Context) (Fingerprint, error)

	// EnsureImage makes the image ref available locally and describes it.
	// When the image is present already and alwaysPull is false it returns
	// at once, without touching the network; otherwise it pulls.
	//
	// A ref the runtime cannot parse returns ErrInvalidArgument. ErrNotFound
	// means the image definitely does not exist: the registry said so, or a
	// runtime that cannot pull does not have it. Other pull failures (network,
	// authentication) return other errors naming the ref; the caller may
	// retry them. A runtime may normalize refs ("busybox" may become
	// "docker.io/library/busybox:latest"); Image.Ref is the normalized form and
	// the form the caller gave keeps working in TaskSpec.Image.
	EnsureImage(ctx context.Context, ref string, alwaysPull bool) (Image, error)

	// ImportImage reads an image archive from r until io.EOF (an OCI image
	// layout or a docker-archive tarball, as `docker save` writes) and stores
	// the images it holds under the refs the archive names, replacing images
	// with the same refs. It returns what it imported. This is how air-gapped
	// sites get images. A malformed archive returns ErrInvalidArgument and
	// an error reading r fails the call; either way no image is stored. A
	// runtime without import returns ErrUnsupported.
	ImportImage(ctx context.Context, r io.Reader) ([]Image, error)

	// StartTask creates the task spec describes and starts its process. It
	// never pulls: an image that is not present returns an error wrapping
	// ErrNotFound that names the image, and the caller runs EnsureImage
	// first. An ID in use (even by an exited task) returns ErrAlreadyExists.
	// A spec that fails Validate returns ErrInvalidArgument.
	//
	// On success the task runs, or already ran to completion: the status is
	// Running with a non-zero PID, or Exited. The handle is what the agent
	// stores to find the task again after a restart (see TaskHandle). When
	// StartTask fails it leaves nothing behind: the same ID may be started
	// again.
	StartTask(ctx context.Context, spec TaskSpec) (TaskHandle, TaskStatus, error)

	// StopTask sends the task's stop signal, waits up to grace for the
	// process to exit, then kills it, and returns the Exited status. A grace
	// of 0 means the spec's StopGracePeriod (and, when that is 0 too,
	// DefaultStopGracePeriod); a negative grace returns ErrInvalidArgument.
	// StopTask on an exited task returns its status unchanged. A missing task
	// returns ErrNotFound. The task is stopped, not removed: its status and
	// logs remain until DestroyTask.
	StopTask(ctx context.Context, taskID string, grace time.Duration) (TaskStatus, error)

	// DestroyTask removes the task and everything the runtime holds for it
	// (container, filesystem snapshot, logs, handle state). A running task
	// returns ErrFailedPrecondition unless force is set, in which case it is
	// killed first (without grace). A missing task returns nil, so
	// DestroyTask may be repeated. Afterwards the ID is free again.
	DestroyTask(ctx context.Context, taskID string, force bool) error

	// InspectTask returns the task's current status, or ErrNotFound.
	InspectTask(ctx context.Context, taskID string) (TaskStatus, error)

	// TaskStats returns a running task's resource usage: the CPU time it
	// used since it started and its memory use and limit. A missing task
	// returns ErrNotFound, an exited one ErrFailedPrecondition.
	TaskStats(ctx context.Context, taskID string) (TaskStats, error)

	// RecoverTask finds again a task started earlier, possibly by another
	// process of this plugin, from the handle StartTask returned, and returns
	// its status: Running, or Exited with its exit code if it ended while
	// nobody was watching. From then on the task is tracked as if this
	// process had started it (events, logs, stop). A task that no longer
	// exists (the machine rebooted, someone removed it) returns ErrNotFound;
	// the agent then starts a new one. A handle from another runtime, or with
	// a version this plugin does not know, returns ErrInvalidArgument.
	RecoverTask(ctx context.Context, handle TaskHandle) (TaskStatus, error)

	// ListTasks returns the status of every task the runtime holds that was
	// not destroyed, in no particular order, including tasks left by earlier
	// processes of this plugin whether or not RecoverTask was called for them:
	// this is how the agent finds orphans whose handle it lost.
	ListTasks(ctx context.Context) ([]TaskStatus, error)

	// TaskEvents subscribes to the events of all tasks. Every event that
	// happens after TaskEvents returns is delivered on the channel; nothing
	// from before is replayed, so subscribe first, then list or start.
	//
	// The runtime emits EventStarted when a task's process starts,
	// EventOOM when the kernel's OOM killer hits it, and EventExited, with the
	// exit code and time as InspectTask would then report them (the worker
	// does not ask again), once when its process ends, however it ends (StopTask, a
	// forced DestroyTask, a crash). Events of one task arrive in that order.
	//
	// The channel is closed when ctx ends or the plugin goes away. A runtime
	// never blocks its work on a slow subscriber and never drops an event
	// silently: if a subscriber falls too far behind, the runtime closes its
	// channel. A subscriber whose channel closes while its ctx is still live
	// subscribes again and resyncs with ListTasks.
	TaskEvents(ctx context.Context) (<-chan TaskEvent, error)

	// TaskLogs calls fn with the task's output, chunk by chunk, in order
	// within each stream, and returns nil when done:
	//
	//   - req.Tail lines from the end of what the task wrote so far come first
	//     (TailAll for everything, 0 for nothing);
	//   - req.Since leaves out lines written before it and req.Timestamps
	//     puts each line's time in front of it; a runtime that keeps no
	//     times for a task's lines (logs written before it kept them)
	//     delivers them whole and without times;
	//   - without req.Follow, TaskLogs returns after them;
	//   - with req.Follow, it goes on with new output as the task writes it and
	//     returns once the task has exited and its output has been delivered.
	//     Following an exited task is the same as not following.
	//
	// A chunk holds bytes of one stream, not necessarily whole lines. fn is
	// called from one goroutine at a time and may keep chunk.Data. If fn
	// returns an error TaskLogs stops and returns that error unchanged; if ctx
	// ends it returns ctx's error. A missing task returns ErrNotFound. Logs
	// are kept until DestroyTask.
	TaskLogs(ctx context.Context, req LogsRequest, fn func(LogChunk) error) error

	// ListImages returns the images the runtime holds for tasks, sorted by
	// Ref (what ImportImage and EnsureImage stored, under their normalized
	// refs). Size is 0 where the runtime cannot tell. A runtime that cannot
	// list returns ErrUnsupported.
	ListImages(ctx context.Context) ([]Image, error)

	// Exec runs req.Cmd inside the running task req.TaskID, as the task's
	// process runs (user, working directory, namespaces, cgroup) with
	// req.Env added to its environment, and returns the command's exit
	// code once it has exited and its output has been written to
	// req.Stdout and req.Stderr.
	//
	//   - With req.TTY the command gets a terminal of req.Size: its output
	//     all goes to req.Stdout, and sizes from req.Resize apply as they
	//     come.
	//   - req.Stdin nil gives the command an empty input; otherwise its
	//     input ends when req.Stdin returns io.EOF.
	//   - If ctx ends first, the command is killed and Exec returns ctx's
	//     error: a health-check caller bounds a probe with a deadline and
	//     reads the output from a buffer.
	//
	// A missing task returns ErrNotFound; a task that is not running (it
	// exited, or has not started) returns ErrFailedPrecondition; an empty
	// Cmd returns ErrInvalidArgument; a command that cannot be started
	// (not found in the task's filesystem) returns an error naming it. A
	// runtime that cannot exec returns ErrUnsupported.
	Exec(ctx context.Context, req ExecRequest) (exitCode int, err error)

	// Health returns nil when the runtime can do its work now: its backend
	// answers a cheap request (containerd's version, a daemon's ping). It
	// returns an error saying what does not answer and for how long it
	// waited otherwise, such as "containerd at /run/containerd.sock did not
	// answer within 2s"; keep the text stable while the fault lasts, since
	// the agent shows it as the node's "runtime" condition and commits it
	// to the cluster state each time it changes. Health must be cheap and
	// return within a few seconds, whatever the backend does (bound the
	// probe with a short deadline of its own). Before Configure it returns
	// ErrFailedPrecondition.
	Health(ctx context.Context) error
}
