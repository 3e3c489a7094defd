package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/warrenorch/warren/core/ratelimit"
)

// The API socket serves every call as the cluster's admin, without TLS:
// only root (or the agent's own user) and the members of api_socket_group
// may reach it. Two walls keep others out. The socket file never exists
// with a wider mode than its final one: it is bound inside a fresh 0700
// directory, given its mode and group there, and then renamed into place,
// whatever the umask. And every accepted connection's peer credentials
// (SO_PEERCRED, SO_PEERGROUPS) are checked before a byte is served, so a
// wrong mode set by hand, or a connection made in some window, is still
// refused.

// listenAPISocket listens on the API socket at path, replacing a stale
// socket file but refusing to take over from a live agent. group (a name
// or numeric ID, may be empty) is the group whose members may connect.
func listenAPISocket(path, group string, logger hclog.Logger) (net.Listener, error) {
	gid := -1
	if group != "" {
		g, err := lookupGroup(group)
		if err != nil {
			return nil, fmt.Errorf("api_socket_group %q: %w", group, err)
		}
		gid = g
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api_socket: %w", err)
	}
	if _, err := os.Lstat(path); err == nil {
		if live(path) {
			return nil, fmt.Errorf("api_socket %s: another warren agent is listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("api_socket: remove stale %s: %w", path, err)
		}
	}
	ul, err := bindPrivate(path, gid)
	if err != nil {
		return nil, fmt.Errorf("api_socket %s: %w", path, err)
	}
	return &peerCheckListener{UnixListener: ul, gid: gid, self: os.Geteuid(), path: path, logger: logger,
		refusedLog: ratelimit.Sometimes{Every: 10 * time.Second}}, nil
}

// maxSocketPath is the longest path a unix socket may be bound at on Linux
// (sun_path is 108 bytes with the terminating NUL).
const maxSocketPath = 107

// privateBindExtra is how much longer than its folder the path bindPrivate
// binds at first can be: "/.w", os.MkdirTemp's up to 10 digits, "/s".
const privateBindExtra = len("/.w") + 10 + len("/s")

// checkAPISocketPath reports an api_socket whose folder is too long for
// bindPrivate to bind in, before anything is created.
func checkAPISocketPath(path string) error {
	dir := filepath.Dir(path)
	if n := len(dir) + privateBindExtra; n > maxSocketPath {
		return fmt.Errorf("api_socket %s: the folder is too long: the agent binds a socket in a new directory inside it first (up to %d bytes), and a unix socket's path has at most %d; use a folder of at most %d bytes", path, n, maxSocketPath, maxSocketPath-privateBindExtra)
	}
	return nil
}

// bindPrivate binds a unix socket in a new 0700 directory next to path,
// sets its mode (0600, or 0660 with group gid when gid >= 0) and renames it
// to path: nobody can connect before the mode is right.
func bindPrivate(path string, gid int) (*net.UnixListener, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".w")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	if len(tmp) > maxSocketPath {
		return nil, fmt.Errorf("the path is too long: the agent binds %s (%d bytes) first, and a unix socket's path has at most %d; use a shorter api_socket", tmp, len(tmp), maxSocketPath)
	}
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ul.SetUnlinkOnClose(false) // it is renamed: the agent removes path itself
	mode := os.FileMode(0o600)
	if gid >= 0 {
		mode = 0o660
		if err := os.Chown(tmp, -1, gid); err != nil {
			ul.Close()
			return nil, fmt.Errorf("give the socket group %d: %w", gid, err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		ul.Close()
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		return nil, err
	}
	return ul, nil
}

// lookupGroup resolves a group name or numeric ID to a GID that exists.
func lookupGroup(group string) (int, error) {
	var g *user.Group
	var err error
	if _, nerr := strconv.Atoi(group); nerr == nil {
		g, err = user.LookupGroupId(group)
	} else {
		g, err = user.LookupGroup(group)
	}
	if err != nil {
		return 0, fmt.Errorf("no such group on this host (create it, or remove api_socket_group): %w", err)
	}
	return strconv.Atoi(g.Gid)
}

// errPeerRefused is the reason a connection on the API socket is closed.
var errPeerRefused = errors.New("not root, the agent's user or a member of api_socket_group")

// peerCheckListener accepts only connections whose peer may use the API.
type peerCheckListener struct {
	*net.UnixListener
	gid        int // -1: no group
	self       int // the agent's effective UID
	path       string
	logger     hclog.Logger
	refusedLog ratelimit.Sometimes
}

// Accept returns the next connection whose peer passes allowPeer; it
// closes (and logs, sampled) the others.
func (l *peerCheckListener) Accept() (net.Conn, error) {
	for {
		c, err := l.UnixListener.AcceptUnix()
		if err != nil {
			return nil, err
		}
		cred, err := l.allowPeer(c)
		if err == nil {
			return c, nil
		}
		c.Close()
		l.refusedLog.Do(func(suppressed int) {
			l.logger.Warn("refused a connection on the API socket", "socket", l.path,
				"uid", cred.Uid, "gid", cred.Gid, "pid", cred.Pid, "error", err, "more_since_last_log", suppressed)
		})
	}
}

// allowPeer checks c's peer: root, the agent's own user, or (with a group)
// a process whose group or supplementary groups hold it.
func (l *peerCheckListener) allowPeer(c *net.UnixConn) (unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return unix.Ucred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var groups []uint32
	var credErr, groupsErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		if l.gid >= 0 {
			groups, groupsErr = peerGroups(int(fd))
		}
	}); err != nil {
		return unix.Ucred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return unix.Ucred{}, fmt.Errorf("peer credentials (SO_PEERCRED): %w", credErr)
	}
	if cred.Uid == 0 || int(cred.Uid) == l.self {
		return *cred, nil
	}
	if l.gid >= 0 {
		if int(cred.Gid) == l.gid {
			return *cred, nil
		}
		if groupsErr != nil {
			return *cred, fmt.Errorf("peer groups (SO_PEERGROUPS): %w", groupsErr)
		}
		if slices.Contains(groups, uint32(l.gid)) {
			return *cred, nil
		}
		return *cred, fmt.Errorf("uid %d: %w (group %d)", cred.Uid, errPeerRefused, l.gid)
	}
	return *cred, fmt.Errorf("uid %d: %w (none is set: root only)", cred.Uid, errPeerRefused)
}

// peerGroups returns the supplementary groups the peer of the unix socket
// fd had when it connected (SO_PEERGROUPS, Linux 4.13).
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 64)
	for {
		size := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == syscall.ERANGE && int(size/4) > len(buf):
			buf = make([]uint32, size/4)
			continue
		case errno != 0:
			return nil, errno
		}
		return buf[:size/4], nil
	}
}
