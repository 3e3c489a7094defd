package agent

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
)

// socketDir returns a fresh directory any user may traverse, removed at
// the end of the test.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "warren-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestAPISocketModeFromTheStart starts the API socket over and over under
// umask 000 while another goroutine watches the path: the socket must never
// be seen with a mode wider than its final one (issue 9, point 7).
func TestAPISocketModeFromTheStart(t *testing.T) {
	old := syscall.Umask(0)
	t.Cleanup(func() { syscall.Umask(old) })
	cases := []struct {
		name  string
		group string
		want  os.FileMode
	}{
		{name: "root only", want: 0o600},
		{name: "with a group", group: "daemon", want: 0o660},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(socketDir(t), "warren.sock")
			var worst atomic.Uint32
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if fi, err := os.Lstat(path); err == nil {
						if extra := uint32(fi.Mode().Perm() &^ tc.want); extra != 0 {
							worst.Store(uint32(fi.Mode().Perm()))
						}
					}
				}
			}()
			for range 200 {
				lis, err := listenAPISocket(path, tc.group, hclog.NewNullLogger())
				if err != nil {
					close(stop)
					wg.Wait()
					t.Fatal(err)
				}
				fi, err := os.Lstat(path)
				if err != nil || fi.Mode().Perm() != tc.want {
					t.Errorf("socket %s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, tc.want)
				}
				lis.Close()
				os.Remove(path)
			}
			close(stop)
			wg.Wait()
			if m := worst.Load(); m != 0 {
				t.Errorf("the socket was seen with mode %v, wider than %v, while the agent started", os.FileMode(m), tc.want)
			}
			if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".w*")); len(leftovers) > 0 {
				t.Errorf("temporary directories left behind: %v", leftovers)
			}
		})
	}
}

// Exit codes of the peer helper process.
const (
	peerServed  = 0 // the server talked to it
	peerRefused = 3 // the server closed the connection at once
	peerNoDial  = 4 // connect(2) failed (the socket file's mode)
)

// TestAPISocketPeerHelper is the child process of
// TestAPISocketPeerCredentials: it connects to the socket and reports, by
// its exit code, whether it was served.
func TestAPISocketPeerHelper(t *testing.T) {
	path := os.Getenv("WARREN_TEST_PEER_SOCKET")
	if path == "" {
		t.Skip("run by TestAPISocketPeerCredentials only")
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		os.Exit(peerNoDial)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		os.Exit(peerRefused) // EOF or reset: closed by the agent
	}
	os.Exit(peerServed)
}

// TestAPISocketPeerCredentials connects to a real gRPC server on the API
// socket from child processes with other credentials: only root and the
// members of api_socket_group are served, even when the socket's mode
// lets others connect (issue 9, point 7).
func TestAPISocketPeerCredentials(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run processes as other users")
	}
	// The test binary, where user nobody may run it.
	exe := filepath.Join(socketDir(t), "agent.test")
	copyExecutable(t, os.Args[0], exe)

	const nobody, daemonGID = 65534, 1
	cases := []struct {
		name  string
		group string
		cred  *syscall.Credential // nil: root
		chmod os.FileMode         // 0: leave the agent's mode
		want  int
	}{
		{name: "root", want: peerServed},
		{name: "nobody, root-only socket", cred: &syscall.Credential{Uid: nobody, Gid: nobody}, want: peerNoDial},
		{name: "nobody, socket opened to all by hand", chmod: 0o666, cred: &syscall.Credential{Uid: nobody, Gid: nobody}, want: peerRefused},
		{name: "nobody not in the group, socket opened to all", group: "daemon", chmod: 0o666, cred: &syscall.Credential{Uid: nobody, Gid: nobody}, want: peerRefused},
		{name: "nobody with the group as a supplementary group", group: "daemon", cred: &syscall.Credential{Uid: nobody, Gid: nobody, Groups: []uint32{daemonGID}}, want: peerServed},
		{name: "nobody with the group as its primary group", group: "1", cred: &syscall.Credential{Uid: nobody, Gid: daemonGID}, want: peerServed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(socketDir(t), "warren.sock")
			lis, err := listenAPISocket(path, tc.group, hclog.NewNullLogger())
			if err != nil {
				t.Fatal(err)
			}
			srv := grpc.NewServer()
			done := make(chan error, 1)
			go func() { done <- srv.Serve(lis) }()
			t.Cleanup(func() {
				srv.Stop()
				if err := <-done; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
					t.Errorf("Serve: %v", err)
				}
			})
			if tc.chmod != 0 {
				if err := os.Chmod(path, tc.chmod); err != nil {
					t.Fatal(err)
				}
			}
			cmd := exec.Command(exe, "-test.run=^TestAPISocketPeerHelper$")
			cmd.Env = append(os.Environ(), "WARREN_TEST_PEER_SOCKET="+path)
			if tc.cred != nil {
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tc.cred}
			}
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("run the helper: %v", err)
			}
			if code != tc.want {
				t.Errorf("helper exited %d, want %d (0 served, 3 refused, 4 could not connect); output:\n%s", code, tc.want, out)
			}
		})
	}
}

func copyExecutable(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
