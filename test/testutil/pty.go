package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Terminal is a command running on a pseudo-terminal of its own, as a
// user's shell would run it: the terminal is its controlling terminal, so
// resizing it sends the command SIGWINCH.
type Terminal struct {
	t      testing.TB
	master *os.File
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{}
}

// StartOnTerminal runs bin with args on a new pseudo-terminal of rows x
// cols; the command is killed and the terminal closed when the test ends.
func StartOnTerminal(t testing.TB, rows, cols uint16, bin string, args ...string) *Terminal {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		t.Fatalf("unlocking the pseudo-terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		t.Fatalf("naming the pseudo-terminal: %v", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("opening the pseudo-terminal's slave: %v", err)
	}
	defer slave.Close()
	if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		master.Close()
		t.Fatalf("sizing the pseudo-terminal: %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		master.Close()
		t.Fatalf("starting %s: %v", bin, err)
	}
	term := &Terminal{t: t, master: master, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(term.done)
		buf := make([]byte, 4096)
		for {
			k, err := master.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:k])
			term.mu.Unlock()
			if err != nil {
				return // EIO once the command and its terminal are gone
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		master.Close()
		<-term.done
	})
	return term
}

// Output is what the command has written to the terminal so far.
func (term *Terminal) Output() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// Type writes s to the terminal, as typed keys.
func (term *Terminal) Type(s string) {
	term.t.Helper()
	if _, err := term.master.WriteString(s); err != nil {
		term.t.Fatalf("typing %q: %v", s, err)
	}
}

// Resize changes the terminal's size, which sends the command SIGWINCH.
func (term *Terminal) Resize(rows, cols uint16) {
	term.t.Helper()
	if err := unix.IoctlSetWinsize(int(term.master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		term.t.Fatalf("resizing the terminal: %v", err)
	}
}

// WaitOutput waits until the output holds want, typing keys (if not
// empty) again every poll, for up to timeout.
func (term *Terminal) WaitOutput(timeout time.Duration, want, keys string) {
	term.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(term.Output(), want) {
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal did not show %q within %s:\n%s", want, timeout, term.Output())
		}
		if keys != "" {
			term.Type(keys)
		}
		select {
		case <-tick.C:
		case <-term.done:
			if !strings.Contains(term.Output(), want) {
				term.t.Fatalf("the command ended without showing %q:\n%s", want, term.Output())
			}
		}
	}
}

// Wait waits up to timeout for the command to exit and returns its exit
// code.
func (term *Terminal) Wait(timeout time.Duration) int {
	term.t.Helper()
	exited := make(chan error, 1)
	go func() { exited <- term.cmd.Wait() }()
	select {
	case err := <-exited:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			term.t.Fatalf("waiting for the command: %v", err)
		}
		return 0
	case <-time.After(timeout):
		term.t.Fatalf("the command did not exit within %s:\n%s", timeout, term.Output())
		return -1
	}
}
