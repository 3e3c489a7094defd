package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// Install builds bin/warren and the named plugins the way `make build` lays
// them out (warren next to a plugins/ folder) and returns warren's path.
func Install(t testing.TB, plugins ...string) string {
	t.Helper()
	warren := Build(t, "cmd/warren")
	dir := filepath.Dir(warren)
	pdir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pdir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range plugins {
		bin := Build(t, "plugins/"+p)
		dst := filepath.Join(pdir, p)
		if _, err := os.Stat(dst); err == nil {
			continue
		}
		if err := os.Link(bin, dst); err != nil {
			t.Fatal(err)
		}
	}
	return warren
}

// FreePort returns a TCP port free on 127.0.0.1 right now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Agent is a warren agent process started by a test.
type Agent struct {
	t       testing.TB
	Bin     string
	Dir     string
	Config  string
	Socket  string
	DataDir string
	// NetNS, when set, is a network namespace path (/var/run/netns/NAME) the
	// agent runs in: Start launches it as `nsenter --net=NetNS -- Bin agent
	// ...`. nsenter execs the agent, so PID, Stop, Kill9 and Kill still act
	// on the agent itself, and the plugins it starts inherit the namespace.
	NetNS string
	// Args are extra arguments of `warren agent` (after -config).
	Args []string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	log    *lockedWriter
}

// AgentConfig returns a manager-only HCL config for dir, with the given
// extra text inside the manager block.
func AgentConfig(t testing.TB, dir, managerExtra string) string {
	return fmt.Sprintf(`
data_dir   = %q
bind_addr  = "127.0.0.1:%d"
api_socket = %q
node_name  = "test-manager"
log_level  = "debug"

manager {
%s
}
`, filepath.Join(dir, "data"), FreePort(t), filepath.Join(dir, "warren.sock"), managerExtra)
}

// NewAgent prepares (but does not start) a manager agent in a fresh
// directory; managerExtra goes inside its manager block.
func NewAgent(t testing.TB, bin, managerExtra string) *Agent {
	t.Helper()
	dir := t.TempDir()
	hcl := AgentConfig(t, dir, managerExtra)
	cfg := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(hcl), 0o600); err != nil {
		t.Fatal(err)
	}
	a := &Agent{t: t, Bin: bin, Dir: dir, Config: cfg, Socket: filepath.Join(dir, "warren.sock"), DataDir: filepath.Join(dir, "data")}
	t.Cleanup(a.Kill)
	return a
}

// Start starts the agent and waits until its API answers.
func (a *Agent) Start(ctx context.Context) {
	a.t.Helper()
	a.mu.Lock()
	a.log = &lockedWriter{w: &bytes.Buffer{}}
	args := append([]string{"agent", "-config", a.Config}, a.Args...)
	cmd := exec.Command(a.Bin, args...)
	if a.NetNS != "" {
		cmd = exec.Command("nsenter", append([]string{"--net=" + a.NetNS, "--", a.Bin}, args...)...)
	}
	cmd.Stdout = a.log
	cmd.Stderr = a.log
	if err := cmd.Start(); err != nil {
		a.mu.Unlock()
		a.t.Fatalf("start agent: %v", err)
	}
	a.cmd = cmd
	exited := make(chan struct{})
	a.exited = exited
	a.mu.Unlock()
	go func() { _ = cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			a.t.Fatalf("agent exited during start:\n%s", a.Output())
		default:
		}
		if a.ping(ctx) == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			a.t.Fatalf("agent API not up after 60s:\n%s", a.Output())
		}
		time.Sleep(20 * time.Millisecond) // polling the socket with a deadline
	}
}

// Output returns what the agent printed so far.
func (a *Agent) Output() string {
	a.mu.Lock()
	lw := a.log
	a.mu.Unlock()
	if lw == nil {
		return ""
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.String()
}

func (a *Agent) ping(ctx context.Context) error {
	if _, err := os.Stat(a.Socket); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := a.Client()
	_, err := c.ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
	return err
}

// Client returns an API client on the agent's socket, with opts added to
// its dial options.
func (a *Agent) Client(opts ...grpc.DialOption) apiv1.WarrenClient {
	a.t.Helper()
	conn, err := grpc.NewClient("unix://"+a.Socket, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		a.t.Fatal(err)
	}
	a.t.Cleanup(func() { conn.Close() })
	return apiv1.NewWarrenClient(conn)
}

// PID returns the agent's process ID.
func (a *Agent) PID() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cmd.Process.Pid
}

// Stop sends SIGTERM and waits for a clean exit.
func (a *Agent) Stop() {
	a.t.Helper()
	a.signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		a.t.Fatalf("agent did not exit 30s after SIGTERM:\n%s", a.Output())
	}
}

// Kill9 kills the agent with SIGKILL and waits for it to be gone.
func (a *Agent) Kill9() {
	a.signal(syscall.SIGKILL)
	<-a.exited
}

// Kill stops the agent if it still runs, and any plugin it left; used in
// cleanup so a failing test leaves no processes.
func (a *Agent) Kill() {
	a.mu.Lock()
	cmd, exited := a.cmd, a.exited
	a.mu.Unlock()
	if cmd == nil {
		return
	}
	// Only this agent's plugins: other agents of the same build (a
	// multi-node test) must be able to stop theirs cleanly.
	mine := childPIDs(PluginPIDs(a.Bin), cmd.Process.Pid)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(45 * time.Second): // the agent gives its plugins up to 20s, within its own 30s
		_ = cmd.Process.Kill()
		<-exited
	}
	for _, pid := range mine {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

func (a *Agent) signal(sig syscall.Signal) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cmd != nil {
		_ = a.cmd.Process.Signal(sig)
	}
}

// PluginPIDs returns the PIDs of running processes whose executable lives
// in the plugins folder next to bin: the plugin processes, without those
// that run in a session of their own, as the userspace WireGuard device
// processes of network-wireguard do (they detach to outlive the agent by
// design), and without the tasks' loggers that containerd shims run from
// the runtime plugin's binary (they live with their tasks).
func PluginPIDs(bin string) []int {
	pdir := filepath.Join(filepath.Dir(bin), "plugins") + "/"
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err != nil {
			continue
		}
		if strings.HasPrefix(exe, pdir) && !isWireGuardDevice(pid) && !isTaskLogger(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// isTaskLogger reports whether pid was started by a containerd shim: the
// runtime plugin's binary run as a task's logger, which lives with its task
// (the shim owns it), not with the agent.
func isTaskLogger(pid int) bool {
	f := statFields(pid)
	if len(f) < 2 {
		return false
	}
	parent, err := os.Readlink(filepath.Join("/proc", f[1], "exe"))
	return err == nil && strings.HasPrefix(filepath.Base(parent), "containerd-shim")
}

// statFields returns the fields of /proc/PID/stat after the command name
// (in parentheses, which may hold spaces): state, ppid, pgrp, session, ...
func statFields(pid int) []string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(s[i+1:])
}

// isWireGuardDevice reports whether pid leads a session of its own (its
// session ID is its PID), as a detached device process does and a plugin
// process, started in its agent's session, does not.
func isWireGuardDevice(pid int) bool {
	f := statFields(pid)
	return len(f) >= 4 && f[3] == strconv.Itoa(pid)
}

// childPIDs returns the pids whose parent is parent.
func childPIDs(pids []int, parent int) []int {
	var out []int
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(parent) {
			out = append(out, pid)
		}
	}
	return out
}

// Alive reports whether a process with that PID exists (and is not a zombie).
func Alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// Eventually polls cond every 20ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// RunCLI runs the warren CLI against socket and returns its stdout, stderr
// and exit code.
func RunCLI(t testing.TB, bin, socket string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return Run(t, bin, append([]string{"--socket", socket}, args...)...)
}

// Run runs bin with args and returns its stdout, stderr and exit code.
func Run(t testing.TB, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runInput(t, bin, nil, args...)
}

// RunCLIInput is RunCLI with stdin as the command's standard input.
func RunCLIInput(t testing.TB, bin, socket, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return runInput(t, bin, strings.NewReader(stdin), append([]string{"--socket", socket}, args...)...)
}

func runInput(t testing.TB, bin string, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Stdin = stdin
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run warren %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}

// RunCLIStdin is RunCLI with stdin as the CLI's standard input.
func RunCLIStdin(t testing.TB, bin, socket string, stdin io.Reader, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--socket", socket}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return o.String(), e.String(), ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("run warren %v: %v", args, err)
	}
	return o.String(), e.String(), 0
}
