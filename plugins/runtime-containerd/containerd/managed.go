package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/warrenorch/warren/sdk"
)

const (
	// managedStartTimeout bounds a managed containerd's start, up to the
	// moment its socket answers.
	managedStartTimeout = 30 * time.Second
	// managedPoll paces waiting for a managed containerd to come up or go.
	managedPoll = 25 * time.Millisecond
)

// managedPaths are the files of a managed containerd under its data dir.
type managedPaths struct {
	dir      string
	root     string // containerd's root: content, metadata, snapshots
	state    string // containerd's state: shim bundles, the runc root
	socket   string // gRPC address; ttrpc listens at socket + ".ttrpc"
	config   string // generated config.toml
	pidFile  string
	lockFile string // held while starting, so two plugins start one daemon
	logFile  string // containerd's own output
}

func newManagedPaths(dir string) managedPaths {
	return managedPaths{
		dir:      dir,
		root:     filepath.Join(dir, "root"),
		state:    filepath.Join(dir, "state"),
		socket:   filepath.Join(dir, "containerd.sock"),
		config:   filepath.Join(dir, "config.toml"),
		pidFile:  filepath.Join(dir, "containerd.pid"),
		lockFile: filepath.Join(dir, "containerd.lock"),
		logFile:  filepath.Join(dir, "containerd.log"),
	}
}

// runcRoot is where runc keeps its container state for a managed
// containerd (the shim's default is under /run/containerd).
func (p managedPaths) runcRoot() string { return filepath.Join(p.state, "runc") }

// disabledPlugins are the containerd 1.6/1.7 plugins a managed containerd
// does not load: CRI (Warren is not Kubernetes), the snapshotters other
// than overlayfs and native, tracing, and /opt installs. The v1 runtime
// stays: containerd 1.6's task service refuses to load without it.
var disabledPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.snapshotter.v1.aufs",
	"io.containerd.snapshotter.v1.btrfs",
	"io.containerd.snapshotter.v1.devmapper",
	"io.containerd.snapshotter.v1.zfs",
	"io.containerd.snapshotter.v1.blockfile",
	"io.containerd.tracing.processor.v1.otlp",
	"io.containerd.internal.v1.tracing",
	"io.containerd.internal.v1.opt",
	"io.containerd.nri.v1.nri",
	"io.containerd.sandbox.controller.v1.local",
}

// configTOML is a managed containerd's config.toml (version 2): every path
// under its data dir, nothing under /run/containerd or /var/lib/containerd.
func (p managedPaths) configTOML() []byte {
	var b bytes.Buffer
	q := strconv.Quote
	fmt.Fprintf(&b, "# Written by the Warren %s plugin; rewritten at each start.\n", Name)
	fmt.Fprintf(&b, "version = 2\nroot = %s\nstate = %s\n", q(p.root), q(p.state))
	quoted := make([]string, len(disabledPlugins))
	for i, d := range disabledPlugins {
		quoted[i] = q(d)
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(quoted, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n", q(p.socket))
	fmt.Fprintf(&b, "[ttrpc]\n  address = %s\n\n", q(p.socket+".ttrpc"))
	b.WriteString("[debug]\n  address = \"\"\n  level = \"info\"\n\n")
	b.WriteString("[metrics]\n  address = \"\"\n")
	return b.Bytes()
}

// ensureManaged makes sure the managed containerd of p runs and answers:
// it reuses one that answers on the socket, and otherwise starts one.
func ensureManaged(ctx context.Context, binary string, p managedPaths, log sdk.Logger) error {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%s: managed containerd in %s: %s: %w", Name, p.dir, fmt.Sprintf(format, args...), sdk.ErrFailedPrecondition)
	}
	for _, d := range []string{p.dir, p.root, p.state} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return fail("%v", err)
		}
	}
	unlock, err := lockFile(ctx, p.lockFile)
	if err != nil {
		return fail("locking %s: %v", p.lockFile, err)
	}
	defer unlock()

	if answers(p.socket) {
		log.Debug("reusing the managed containerd", "socket", p.socket)
		return nil
	}
	if pid := p.runningPid(); pid > 0 {
		// Ours but not answering: it may be starting. Give it a while, then
		// replace it.
		if waitAnswers(ctx, p.socket, pid, 5*time.Second) {
			return nil
		}
		log.Warn("the managed containerd does not answer; killing it", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(ctx, pid, 5*time.Second)
	}

	if err := os.WriteFile(p.config, p.configTOML(), 0o600); err != nil {
		return fail("%v", err)
	}
	for _, f := range []string{p.socket, p.socket + ".ttrpc"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fail("removing the stale socket: %v", err)
		}
	}
	logf, err := os.OpenFile(p.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fail("%v", err)
	}
	defer logf.Close()
	cmd := exec.Command(binary, "--config", p.config)
	cmd.Dir = "/"
	cmd.Stdout = logf
	cmd.Stderr = logf
	// A process group of its own: signals to the agent's group (Ctrl-C)
	// do not reach it, and it outlives the plugin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fail("starting %s: %v", binary, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps it if it dies while the plugin lives
	pid := cmd.Process.Pid
	if err := os.WriteFile(p.pidFile, []byte(strconv.Itoa(pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return fail("%v", err)
	}
	log.Info("started a managed containerd", "pid", pid, "socket", p.socket, "log", p.logFile)

	ctx, cancel := context.WithTimeout(ctx, managedStartTimeout)
	defer cancel()
	tick := time.NewTicker(managedPoll)
	defer tick.Stop()
	for !answers(p.socket) {
		select {
		case err := <-exited:
			return fail("containerd exited at start (%v); see %s:\n%s", err, p.logFile, tail(p.logFile, 2048))
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return fail("containerd did not answer on %s: %v; see %s", p.socket, ctx.Err(), p.logFile)
		case <-tick.C:
		}
	}
	return nil
}

// ShutdownManaged stops the managed containerd whose data dir is dataDir,
// if one runs: SIGTERM, then SIGKILL when it has not exited within ctx.
// Tasks keep running (their shims do not depend on containerd); a later
// Configure starts containerd again and finds them. The plugin never calls
// it; operators' tooling and tests do.
func ShutdownManaged(ctx context.Context, dataDir string) error {
	p := newManagedPaths(dataDir)
	pid := p.runningPid()
	if pid <= 0 {
		_ = os.Remove(p.pidFile)
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping managed containerd %d: %w", pid, err)
	}
	if !waitGone(ctx, pid, 0) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		waitGone(context.Background(), pid, 5*time.Second)
	}
	_ = os.Remove(p.pidFile)
	return nil
}

// runningPid returns the pid in the pid file if that process is alive and
// is the containerd of this data dir; 0 otherwise.
func (p managedPaths) runningPid() int {
	b, err := os.ReadFile(p.pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !alive(pid) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("\x00"+p.config+"\x00")) {
		return 0
	}
	return pid
}

// answers reports whether something accepts connections on the socket.
func answers(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitAnswers waits up to limit for the socket to answer while pid lives.
func waitAnswers(ctx context.Context, socket string, pid int, limit time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	tick := time.NewTicker(managedPoll)
	defer tick.Stop()
	for {
		if answers(socket) {
			return true
		}
		if !alive(pid) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// waitGone waits until pid has exited (or is a zombie), up to limit when
// limit > 0 and while ctx lives. It reports whether pid is gone.
func waitGone(ctx context.Context, pid int, limit time.Duration) bool {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	tick := time.NewTicker(managedPoll)
	defer tick.Stop()
	for alive(pid) {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
	return true
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command, which is in parentheses and may
	// itself hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
}

// lockFile takes an exclusive flock on path, polling until ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	tick := time.NewTicker(managedPoll)
	defer tick.Stop()
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, err
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// tail returns up to n bytes from the end of a file, for error messages.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(fi.Size()-n, 0)
	b := make([]byte, fi.Size()-off)
	nr, _ := f.ReadAt(b, off)
	return string(b[:nr])
}
