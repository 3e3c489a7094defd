//go:build linux

// Package netns builds throwaway multi-host networks on one Linux machine for
// tests: every "host" is a network namespace with one veth (eth0) whose peer
// sits on a Linux bridge, and the bridge lives in a namespace of its own. The
// root namespace's interfaces and routes are never touched; all traffic stays
// inside namespaces this package creates.
//
// A Net is torn down by t.Cleanup. Register the cleanup of processes that run
// inside a host (agents, helpers) after New, so that they are stopped first.
//
// Daemons are started in a host with [Host.Command] (nsenter --net=PATH -- prog),
// not `ip netns exec`, which remounts /sys in a way that hides the cgroup mount
// from runc. Note that /var/run/wireguard and every other path are shared by all
// hosts: only the network stack is per host.
package netns

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// prefix starts the name of every namespace this package creates.
	prefix = "wrn"
	// netnsDir is where `ip netns` keeps named namespaces.
	netnsDir = "/var/run/netns"
	// bridgeName is the bridge inside a Net's bridge namespace.
	bridgeName = "br0"
	// readyTimeout bounds how long AddHost and Heal wait for the host's
	// link to carry traffic.
	readyTimeout = 10 * time.Second
)

// lockDir holds one lock file per live Net (wrn<id>.lock), flock-ed by the test
// process that owns the Net. A lock file nobody holds belongs to a crashed run
// whose namespaces can be removed. A variable so tests can point it elsewhere.
var lockDir = "/run/warren-netns"

var (
	// hostName is what AddHost accepts: it becomes part of a namespace name
	// (a file name) and of a bridge-side interface name.
	hostName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}$`)
	// lockName matches a published lock file and captures the Net id.
	lockName = regexp.MustCompile(`^` + prefix + `([0-9a-f]{5})\.lock$`)

	subnetsMu sync.Mutex
	subnets   = map[[2]byte]bool{} // 10.x.y.0/24 in use by this process
)

// SkipUnlessAvailable skips t unless it runs as root with `ip` and `nsenter`
// on PATH.
func SkipUnlessAvailable(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netns: network namespaces need root")
	}
	for _, prog := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("netns: %s not found: %v", prog, err)
		}
	}
}

// Net is one test network: a bridge in its own namespace and the hosts
// attached to it. Its methods may be called from one goroutine at a time.
type Net struct {
	// ID is the random id shared by the names of all of the Net's namespaces.
	ID string
	// BridgeNS is the namespace holding the bridge ("wrn<id>-br").
	BridgeNS string
	// Subnet is the Net's address range, e.g. "10.77.3.0/24".
	Subnet string
	// BridgeIP is the bridge's own address (.1 of Subnet); hosts start at .2.
	BridgeIP string

	net3   [3]byte // first three octets of Subnet
	lock   *os.File
	hosts  []*Host
	spaces []string // namespaces of AddNamespace
}

// Host is one simulated machine: a network namespace with lo and eth0 up.
type Host struct {
	Name string // as given to AddHost
	NS   string // namespace name, "wrn<id>-<name>"
	IP   string // eth0's address, e.g. "10.77.3.2"

	net  *Net
	port string // the veth end on the bridge, inside Net.BridgeNS
}

// New creates a test network: a namespace holding a bridge. It first removes
// the namespaces of earlier runs that crashed before cleaning up. t.Cleanup
// deletes every namespace and link the Net made, also when the test fails.
func New(t testing.TB) *Net {
	t.Helper()
	SkipUnlessAvailable(t)
	removeStale(t)

	n := &Net{}
	n.ID, n.lock, n.net3 = claim(t)
	n.BridgeNS = prefix + n.ID + "-br"
	n.Subnet = fmt.Sprintf("%d.%d.%d.0/24", n.net3[0], n.net3[1], n.net3[2])
	n.BridgeIP = n.addr(1)
	t.Cleanup(func() { n.cleanup(t) })

	mustIP(t, "netns", "add", n.BridgeNS)
	mustIP(t, "-n", n.BridgeNS, "link", "set", "lo", "up")
	mustIP(t, "-n", n.BridgeNS, "link", "add", bridgeName, "type", "bridge", "forward_delay", "0", "stp_state", "0")
	mustIP(t, "-n", n.BridgeNS, "addr", "add", n.BridgeIP+"/24", "dev", bridgeName)
	mustIP(t, "-n", n.BridgeNS, "link", "set", bridgeName, "up")
	return n
}

// AddHost creates a namespace with lo up and one veth (eth0 inside, its peer
// attached to the bridge), gives eth0 the next free address of the Net's
// subnet (.2, .3, ...) and returns the host once it can reach the bridge.
// name must be unique within the Net, made of letters, digits, '.', '_' and
// '-', and must not be "br". The host has no default route: it reaches the
// Net's subnet only.
func (n *Net) AddHost(t testing.TB, name string) *Host {
	t.Helper()
	if err := n.checkName(name); err != nil {
		t.Fatal(err)
	}
	idx := len(n.hosts) + 1
	if idx > 250 {
		t.Fatalf("netns: host %q: a Net holds at most 250 hosts", name)
	}
	h := &Host{
		Name: name,
		NS:   prefix + n.ID + "-" + name,
		IP:   n.addr(idx + 1),
		net:  n,
		port: ifName(fmt.Sprintf("v%d-%s", idx, name)),
	}
	// Recorded before creating anything so cleanup covers a half-made host.
	n.hosts = append(n.hosts, h)

	mustIP(t, "netns", "add", h.NS)
	mustIP(t, "-n", h.NS, "link", "set", "lo", "up")
	// Created inside the bridge namespace with the peer moved straight into
	// the host's, so no interface ever appears in the root namespace.
	mustIP(t, "-n", n.BridgeNS, "link", "add", h.port, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	mustIP(t, "-n", n.BridgeNS, "link", "set", h.port, "master", bridgeName)
	mustIP(t, "-n", n.BridgeNS, "link", "set", h.port, "up")
	mustIP(t, "-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
	mustIP(t, "-n", h.NS, "link", "set", "eth0", "up")
	h.waitReachable(t, "after setup")
	return h
}

// AddNamespace creates a bare network namespace, with only lo (up), that is
// not attached to the bridge, such as the namespace of a task a network
// plugin attaches. It returns it as a Host without an IP, so Do and Command
// work in it; DelNamespace or the Net's cleanup removes it. name must be
// unique among the Net's hosts and namespaces.
func (n *Net) AddNamespace(t testing.TB, name string) *Host {
	t.Helper()
	if err := n.checkName(name); err != nil {
		t.Fatal(err)
	}
	for _, s := range n.spaces {
		if s == prefix+n.ID+"-"+name {
			t.Fatalf("netns: namespace %q already used in net %s", name, n.ID)
		}
	}
	h := &Host{Name: name, NS: prefix + n.ID + "-" + name, net: n}
	n.spaces = append(n.spaces, h.NS)
	mustIP(t, "netns", "add", h.NS)
	mustIP(t, "-n", h.NS, "link", "set", "lo", "up")
	return h
}

// DelNamespace deletes a namespace AddNamespace made, as when a task's
// namespace goes away; one already gone is no error.
func (n *Net) DelNamespace(t testing.TB, h *Host) {
	t.Helper()
	if err := delNS(h.NS); err != nil {
		t.Fatalf("netns: %v", err)
	}
}

// Hosts returns the Net's hosts in the order they were added.
func (n *Net) Hosts() []*Host {
	return append([]*Host(nil), n.hosts...)
}

func (n *Net) checkName(name string) error {
	if !hostName.MatchString(name) {
		return fmt.Errorf("netns: host name %q: want 1-32 of [a-zA-Z0-9_.-], not starting with a punctuation mark", name)
	}
	if name == "br" {
		return fmt.Errorf("netns: host name %q is reserved for the bridge namespace", name)
	}
	for _, h := range n.hosts {
		if h.Name == name {
			return fmt.Errorf("netns: host name %q already used in net %s", name, n.ID)
		}
	}
	return nil
}

func (n *Net) addr(last int) string {
	return fmt.Sprintf("%d.%d.%d.%d", n.net3[0], n.net3[1], n.net3[2], last)
}

// cleanup deletes the bridge-side veth of every host (which takes eth0 with
// it, even if a leftover process still holds the host's namespace), then the
// namespaces, then the lock file.
func (n *Net) cleanup(t testing.TB) {
	t.Helper()
	var errs []error
	for _, ns := range n.spaces {
		if err := delNS(ns); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(n.hosts) - 1; i >= 0; i-- {
		h := n.hosts[i]
		if linkExists(n.BridgeNS, h.port) {
			if err := ip("-n", n.BridgeNS, "link", "del", h.port); err != nil {
				errs = append(errs, err)
			}
		}
		if err := delNS(h.NS); err != nil {
			errs = append(errs, err)
		}
	}
	if err := delNS(n.BridgeNS); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Errorf("netns: cleaning up net %s: %v", n.ID, err)
	}
	subnetsMu.Lock()
	delete(subnets, [2]byte{n.net3[1], n.net3[2]})
	subnetsMu.Unlock()
	if n.lock != nil {
		_ = os.Remove(lockPath(n.ID))
		_ = n.lock.Close() // releases the flock
	}
}

// Path is /var/run/netns/<NS>, the path nsenter --net= and the runtime's
// netns options take.
func (h *Host) Path() string {
	return filepath.Join(netnsDir, h.NS)
}

// Command returns an exec.Cmd that runs prog inside the host's network
// namespace via nsenter. nsenter execs prog, so the started process's PID is
// prog's own.
func (h *Host) Command(prog string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + h.Path(), "--", prog}, args...)...)
}

// Run runs prog inside the host namespace and returns its combined output; it
// calls t.Fatal if the command fails.
func (h *Host) Run(t testing.TB, prog string, args ...string) string {
	t.Helper()
	out, err := h.Command(prog, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("netns: host %s: %s %s: %v\n%s", h.Name, prog, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Addr returns IP:port.
func (h *Host) Addr(port int) string {
	return net.JoinHostPort(h.IP, strconv.Itoa(port))
}

// Do runs fn on an OS thread that has joined the host's network namespace, so
// sockets fn creates belong to the host (they stay there after fn returns).
// Goroutines fn starts do not run in the namespace.
func (h *Host) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only once it is back in its own namespace;
		// otherwise it dies with this goroutine and never runs other code.
		runtime.LockOSThread()
		errc <- h.do(fn)
	}()
	return <-errc
}

func (h *Host) do(fn func() error) error {
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return fmt.Errorf("netns: host %s: %w", h.Name, err)
	}
	defer self.Close()
	target, err := os.Open(h.Path())
	if err != nil {
		return fmt.Errorf("netns: host %s: %w", h.Name, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: host %s: setns %s: %w", h.Name, h.Path(), err)
	}
	ferr := fn()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
		runtime.UnlockOSThread()
	}
	return ferr
}

// Listen opens a TCP listener on the host's IP inside its namespace (port 0
// picks a free one). t.Cleanup closes it.
func (h *Host) Listen(t testing.TB, port int) net.Listener {
	t.Helper()
	var l net.Listener
	err := h.Do(func() error {
		var err error
		l, err = net.Listen("tcp", h.Addr(port))
		return err
	})
	if err != nil {
		t.Fatalf("netns: host %s: listen: %v", h.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// Partition cuts the host off the network by setting its bridge-side veth
// down. It takes effect at once: frames are dropped from the moment it
// returns. The host keeps its address and can still reach itself.
func (h *Host) Partition(t testing.TB) {
	t.Helper()
	mustIP(t, "-n", h.net.BridgeNS, "link", "set", h.port, "down")
}

// Heal brings a partitioned host back and waits until it can reach the bridge
// again: eth0 and the bridge port are up, and a TCP dial from the host to the
// bridge's own address gets an answer. It also clears the host's ARP cache,
// so the first connection after Heal does not wait out ARP retries left over
// from the partition.
func (h *Host) Heal(t testing.TB) {
	t.Helper()
	mustIP(t, "-n", h.net.BridgeNS, "link", "set", h.port, "up")
	h.waitReachable(t, "after heal")
	// Losing carrier flushed the host's ARP cache; addresses it tried to
	// reach while cut off sit INCOMPLETE, and the kernel retries those only
	// once a second. Forget them so the next packet asks at once.
	mustIP(t, "-n", h.NS, "neigh", "flush", "dev", "eth0")
}

// waitReachable polls until the host reaches the bridge. Until the kernel's
// link watcher has marked a new or re-enabled veth up (it batches those
// events, up to a second apart machine-wide), the device drops what is sent
// on it, so a first connection attempt would only succeed on a retransmit.
func (h *Host) waitReachable(t testing.TB, when string) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		err := h.reachesBridge()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("netns: host %s: bridge not reachable %s %s: %v", h.Name, readyTimeout, when, err)
		}
		time.Sleep(20 * time.Millisecond) // polling link state with a deadline
	}
}

// reachesBridge reports why the host cannot reach the bridge yet, or nil.
func (h *Host) reachesBridge() error {
	if !operUp(h.NS, "eth0") {
		return errors.New("eth0 has no carrier")
	}
	if !operUp(h.net.BridgeNS, h.port) {
		return fmt.Errorf("bridge port %s is down", h.port)
	}
	// Nothing listens on the bridge's port 1, so an answer is a refusal.
	return h.Do(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(h.net.BridgeIP, "1"), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		return err
	})
}

// claim picks an unused Net id and subnet, and publishes a held lock file for
// it. The file is written under a temporary name, locked, then hard-linked to
// its final name, so nobody ever sees a published lock file that is not held
// and link's EEXIST settles id collisions between processes.
func claim(t testing.TB) (id string, lock *os.File, net3 [3]byte) {
	t.Helper()
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		t.Fatalf("netns: %v", err)
	}
	for range 100 {
		r := rand.Uint32N(1 << 20)
		id = fmt.Sprintf("%05x", r)
		// 10.64.0.0 - 10.127.255.0: 14 bits of the id pick the /24.
		net3 = [3]byte{10, byte(64 + (r>>8)&0x3f), byte(r)}
		if _, err := os.Stat(filepath.Join(netnsDir, prefix+id+"-br")); err == nil {
			continue
		}
		subnetsMu.Lock()
		taken := subnets[[2]byte{net3[1], net3[2]}]
		if !taken {
			subnets[[2]byte{net3[1], net3[2]}] = true
		}
		subnetsMu.Unlock()
		if taken {
			continue
		}
		f, err := publishLock(id)
		if err == nil {
			return id, f, net3
		}
		subnetsMu.Lock()
		delete(subnets, [2]byte{net3[1], net3[2]})
		subnetsMu.Unlock()
		if !errors.Is(err, os.ErrExist) {
			t.Fatalf("netns: %v", err)
		}
	}
	t.Fatal("netns: no free net id after 100 tries")
	return
}

func publishLock(id string) (*os.File, error) {
	f, err := os.CreateTemp(lockDir, ".tmp-")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", tmp, err)
	}
	if err := os.Link(tmp, lockPath(id)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func lockPath(id string) string {
	return filepath.Join(lockDir, prefix+id+".lock")
}

// removeStale deletes the namespaces of Nets whose owner died without
// cleaning up: their lock file is published but nobody holds its lock. A
// lock held by a live process (this one included) is left alone.
func removeStale(t testing.TB) {
	t.Helper()
	entries, err := os.ReadDir(lockDir)
	if err != nil {
		return // no lock dir yet: nothing can be stale
	}
	for _, e := range entries {
		m := lockName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		f, err := os.Open(filepath.Join(lockDir, e.Name()))
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			f.Close() // owner alive
			continue
		}
		if err := removeNet(m[1]); err != nil {
			t.Logf("netns: removing stale net %s: %v", m[1], err)
		} else {
			_ = os.Remove(f.Name())
		}
		f.Close()
	}
}

// removeNet deletes every namespace named wrn<id>-*. Deleting a host's
// namespace also deletes its eth0 and, with it, the bridge-side peer.
func removeNet(id string) error {
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix+id+"-") {
			errs = append(errs, delNS(e.Name()))
		}
	}
	return errors.Join(errs...)
}

// delNS deletes a named namespace; one that is already gone is no error.
func delNS(name string) error {
	if _, err := os.Stat(filepath.Join(netnsDir, name)); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return ip("netns", "del", name)
}

// ip runs the ip command with args.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func mustIP(t testing.TB, args ...string) {
	t.Helper()
	if err := ip(args...); err != nil {
		t.Fatalf("netns: %v", err)
	}
}

func linkExists(ns, dev string) bool {
	return exec.Command("ip", "-n", ns, "link", "show", "dev", dev).Run() == nil
}

// operUp reports whether dev in namespace ns is operationally up (admin up
// and carrier), which the kernel settles asynchronously after `link set up`.
func operUp(ns, dev string) bool {
	out, err := exec.Command("ip", "-n", ns, "-o", "link", "show", "dev", dev).Output()
	return err == nil && strings.Contains(string(out), " state UP ")
}

// ifName truncates s to the 15 bytes Linux allows in an interface name.
func ifName(s string) string {
	if len(s) > unix.IFNAMSIZ-1 {
		return s[:unix.IFNAMSIZ-1]
	}
	return s
}
