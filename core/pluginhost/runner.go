package pluginhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin/runner"
)

// drainTimeout bounds how long go-plugin reads a dead plugin's stdout and
// stderr after the process exited. A child of the plugin that inherited them
// (a daemon it started) keeps them open; go-plugin would wait for the end of
// them forever, and with it Kill.
const drainTimeout = 2 * time.Second

// procRunner is the go-plugin runner for one plugin process. go-plugin's own
// runner is internal to it; this one differs where Warren needs it to:
//
//   - the process is forked on the launcher thread, so its parent-death signal
//     fires only when the agent itself dies (see launcherLoop);
//   - exit is noticed the moment the process is reaped, through exited, even
//     if a grandchild keeps the log pipes open;
//   - it has no stdin.
type procRunner struct {
	path   string
	cmd    *exec.Cmd
	stdout *pipeReader
	stderr *pipeReader
	outW   *os.File
	errW   *os.File

	exited  chan struct{} // closed once the process is reaped
	waitErr error         // how it ended; read after exited is closed

	mu     sync.Mutex
	proc   *os.Process // nil until started
	killed bool        // Kill was called, perhaps before the process started
}

var _ runner.Runner = (*procRunner)(nil)

// newProcRunner prepares cmd to run with pipes for go-plugin to read. cmd
// must not be started.
func newProcRunner(cmd *exec.Cmd) (*procRunner, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	cmd.Stdin = nil
	cmd.Stdout = outW
	cmd.Stderr = errW
	return &procRunner{
		path:   cmd.Path,
		cmd:    cmd,
		stdout: newPipeReader(outR),
		stderr: newPipeReader(errR),
		outW:   outW,
		errW:   errW,
		exited: make(chan struct{}),
	}, nil
}

// Start forks the process on the launcher thread.
func (r *procRunner) Start(_ context.Context) error {
	err := startOnLauncher(r.cmd)
	// The child has its own copies of the write ends (or none, on failure).
	r.outW.Close()
	r.errW.Close()
	if err != nil {
		r.stdout.Close()
		r.stderr.Close()
		return err
	}
	r.mu.Lock()
	r.proc = r.cmd.Process
	killed := r.killed
	r.mu.Unlock()
	go r.wait()
	if killed {
		_ = r.Kill(context.Background())
	}
	return nil
}

// wait reaps the process, then lets the log readers reach the end of what
// it wrote. Pipes still open past drainTimeout are held by some other
// process: they are detached from go-plugin.
func (r *procRunner) wait() {
	r.waitErr = r.cmd.Wait()
	close(r.exited)
	t := time.NewTimer(drainTimeout)
	defer t.Stop()
	expired := false
	for _, p := range []*pipeReader{r.stdout, r.stderr} {
		if !expired {
			select {
			case <-p.eof:
			case <-t.C:
				expired = true
			}
		}
		select {
		case <-p.eof:
			p.Close()
		default:
			p.detach()
		}
	}
}

// exitedOnItsOwn reports whether the process has been reaped after exiting
// by itself rather than by a signal.
func (r *procRunner) exitedOnItsOwn() bool {
	select {
	case <-r.exited:
	default:
		return false
	}
	if r.waitErr == nil {
		return true
	}
	var ee *exec.ExitError
	return errors.As(r.waitErr, &ee) && ee.Exited()
}

// Wait blocks until the process is reaped and returns how it ended.
func (r *procRunner) Wait(_ context.Context) error {
	<-r.exited
	return r.waitErr
}

// Kill sends SIGKILL to the process; it is a no-op once the process is gone
// or before it started.
func (r *procRunner) Kill(_ context.Context) error {
	r.mu.Lock()
	r.killed = true
	p := r.proc
	r.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	return nil
}

// PID returns the process ID, 0 before the process started.
func (r *procRunner) PID() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.proc == nil {
		return 0
	}
	return r.proc.Pid
}

func (r *procRunner) ID() string {
	if pid := r.PID(); pid != 0 {
		return strconv.Itoa(pid)
	}
	return ""
}

func (r *procRunner) Stdout() io.ReadCloser { return r.stdout }
func (r *procRunner) Stderr() io.ReadCloser { return r.stderr }
func (r *procRunner) Name() string          { return r.path }

func (r *procRunner) Diagnose(_ context.Context) string {
	return "A Warren plugin prints go-plugin's handshake line on stdout as it starts: " +
		"is " + r.path + " a Warren plugin built for this machine that calls its kind's Serve from main?"
}

func (r *procRunner) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (r *procRunner) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// pipeReader is the read end of a plugin's stdout or stderr; eof is closed
// once a read failed, normally at the end.
type pipeReader struct {
	f        *os.File
	eof      chan struct{}
	eofOnce  sync.Once
	detached atomic.Bool
}

func newPipeReader(f *os.File) *pipeReader {
	return &pipeReader{f: f, eof: make(chan struct{})}
}

func (p *pipeReader) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	if err != nil && p.detached.Load() && errors.Is(err, os.ErrDeadlineExceeded) {
		err = io.EOF
	}
	if err != nil {
		p.eofOnce.Do(func() { close(p.eof) })
	}
	return n, err
}

func (p *pipeReader) Close() error {
	err := p.f.Close()
	if errors.Is(err, os.ErrClosed) {
		return nil
	}
	return err
}

// detach ends go-plugin's reading (its Read returns io.EOF) and drains the
// pipe into nothing until the last process holding it closes it. Closing
// the pipe instead would kill that process with SIGPIPE at its next write:
// it may be a runtime plugin's containerd, which must outlive the plugin.
func (p *pipeReader) detach() {
	p.detached.Store(true)
	_ = p.f.SetReadDeadline(time.Unix(1, 0))
	<-p.eof // go-plugin's reader has stopped
	_ = p.f.SetReadDeadline(time.Time{})
	go func() {
		_, _ = io.Copy(io.Discard, p.f)
		p.f.Close()
	}()
}

// The launcher: every plugin process is forked by one goroutine locked to its
// own OS thread that never exits.
//
// Plugin processes carry Pdeathsig = SIGKILL so that they die with the agent
// even when it is kill -9'd. Linux sends that signal when the *thread* that
// forked the child exits, not the process. Go never ends a thread of its own
// accord except when a goroutine exits while locked to it, so a fork from an
// arbitrary goroutine would usually be fine, but a caller that happened to
// run on a locked thread (runtime.LockOSThread for a namespace switch, say)
// would have its plugins killed the moment that goroutine returned. Forking
// only from the launcher's thread, which lives as long as the process, rules
// that out. Only the fork happens there; the handshake and everything after
// it run on the caller's goroutine.
var launcher struct {
	once sync.Once
	jobs chan func()
}

// startOnLauncher runs cmd.Start on the launcher thread.
func startOnLauncher(cmd *exec.Cmd) error {
	launcher.once.Do(func() {
		launcher.jobs = make(chan func())
		go launcherLoop(launcher.jobs)
	})
	errc := make(chan error, 1)
	launcher.jobs <- func() { errc <- cmd.Start() }
	return <-errc
}

func launcherLoop(jobs <-chan func()) {
	// Never unlocked and never returns: the thread must outlive every child
	// it forks.
	runtime.LockOSThread()
	for job := range jobs {
		job()
	}
}

// sysProcAttr is how every plugin process is started: killed when the agent
// dies (Pdeathsig), and in a process group of its own (Setpgid), so signals
// meant for the agent's group (Ctrl-C in a terminal, `timeout`, a supervisor
// signalling the group) reach only the agent, which then stops its plugins
// cleanly. A plugin that starts long-lived children of its own (containerd
// shims and the containers under them) is responsible for detaching them,
// and the host never signals anything but the plugin process itself.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
