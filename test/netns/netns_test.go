//go:build linux

package netns

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenorch/warren/test/testutil"
)

// helperEnv makes the test binary act as a one-shot TCP client instead of
// running tests: it dials helperAddr within helperTimeout, prints the first
// line it reads and exits 0, or prints the error and exits 1.
const (
	helperEnv     = "WARREN_NETNS_HELPER"
	helperAddr    = "WARREN_NETNS_ADDR"
	helperTimeout = "WARREN_NETNS_TIMEOUT"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "dial" {
		os.Exit(dialHelper())
	}
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

func dialHelper() int {
	timeout, err := time.ParseDuration(os.Getenv(helperTimeout))
	if err != nil {
		fmt.Println(err)
		return 2
	}
	c, err := net.DialTimeout("tcp", os.Getenv(helperAddr), timeout)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Println(err)
		return 1
	}
	fmt.Print(line)
	return 0
}

// dial runs the test binary inside from's namespace as a TCP client of addr
// and returns the line it read, or an error with the helper's output.
func dial(from *Host, addr string, timeout time.Duration) (string, error) {
	cmd := from.Command(os.Args[0], "-test.run=^$")
	// Under -race the helper would sleep a second before exiting.
	race := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(os.Environ(), helperEnv+"=dial", helperAddr+"="+addr, helperTimeout+"="+timeout.String(), "GORACE="+race)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("dial %s from %s: %w: %s", addr, from.Name, err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// greet serves l until it is closed, telling every client the address it
// came from.
func greet(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		fmt.Fprintf(c, "hello %s\n", host)
		c.Close()
	}
}

func serve(t *testing.T, h *Host) net.Listener {
	t.Helper()
	l := h.Listen(t, 0)
	done := make(chan struct{})
	go func() { greet(l); close(done) }()
	t.Cleanup(func() { l.Close(); <-done })
	return l
}

func TestHostsReachEachOther(t *testing.T) {
	SkipUnlessAvailable(t)
	t.Parallel()
	n := New(t)
	a, b := n.AddHost(t, "a"), n.AddHost(t, "b")
	l := serve(t, a)

	got, err := dial(b, l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello " + b.IP; got != want {
		t.Fatalf("a answered %q, want %q", got, want)
	}
	if l.Addr().(*net.TCPAddr).IP.String() != a.IP {
		t.Fatalf("listener on %s, want %s", l.Addr(), a.IP)
	}
	// The listener lives in a's namespace only: the root namespace has no
	// 10.64/10 address, so nothing there can reach it.
	if out := b.Run(t, "ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, b.IP+"/24") {
		t.Fatalf("b's eth0 lacks %s/24:\n%s", b.IP, out)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	SkipUnlessAvailable(t)
	t.Parallel()
	n := New(t)
	a, b, c := n.AddHost(t, "a"), n.AddHost(t, "b"), n.AddHost(t, "c")
	l := serve(t, a)
	addr := l.Addr().String()

	if _, err := dial(b, addr, 5*time.Second); err != nil {
		t.Fatalf("before partition: %v", err)
	}

	b.Partition(t)
	got, err := dial(b, addr, 500*time.Millisecond)
	if err == nil {
		t.Fatalf("partitioned b reached a: %q", got)
	}
	if msg := err.Error(); !strings.Contains(msg, "i/o timeout") && !strings.Contains(msg, "no route to host") {
		t.Fatalf("partitioned b failed for another reason than the cut: %v", err)
	}
	if _, err := dial(c, addr, 5*time.Second); err != nil {
		t.Fatalf("c lost a while only b is partitioned: %v", err)
	}

	b.Heal(t)
	got, err = dial(b, addr, 5*time.Second)
	if err != nil {
		t.Fatalf("after heal: %v", err)
	}
	if want := "hello " + b.IP; got != want {
		t.Fatalf("a answered %q, want %q", got, want)
	}
}

func TestNetsGetDistinctSubnets(t *testing.T) {
	SkipUnlessAvailable(t)
	t.Parallel()
	n1, n2 := New(t), New(t)
	if n1.Subnet == n2.Subnet || n1.ID == n2.ID {
		t.Fatalf("two nets share id or subnet: %s %s, %s %s", n1.ID, n1.Subnet, n2.ID, n2.Subnet)
	}
	h1, h2 := n1.AddHost(t, "x"), n2.AddHost(t, "x")
	if h1.NS == h2.NS || h1.IP == h2.IP {
		t.Fatalf("hosts of two nets collide: %+v %+v", h1, h2)
	}
	_, sub1, err := net.ParseCIDR(n1.Subnet)
	if err != nil {
		t.Fatal(err)
	}
	if !sub1.Contains(net.ParseIP(h1.IP)) || !sub1.Contains(net.ParseIP(n1.BridgeIP)) {
		t.Fatalf("%s or %s outside %s", h1.IP, n1.BridgeIP, n1.Subnet)
	}
}

func TestCleanupRemovesEverything(t *testing.T) {
	SkipUnlessAvailable(t)
	t.Parallel()
	var names []string
	var id string
	t.Run("net", func(t *testing.T) {
		n := New(t)
		id = n.ID
		names = append(names, n.BridgeNS)
		for _, name := range []string{"m1", "w1", "a-very-long-host-name"} {
			h := n.AddHost(t, name)
			names = append(names, h.NS)
			if _, err := os.Stat(h.Path()); err != nil {
				t.Fatal(err)
			}
		}
	})
	// The subtest's cleanups have run.
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, out)
	}
	for _, name := range names {
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == name {
				t.Errorf("namespace %s still listed:\n%s", name, out)
			}
		}
	}
	if _, err := os.Stat(lockPath(id)); !os.IsNotExist(err) {
		t.Errorf("lock file of net %s: %v, want it gone", id, err)
	}
}

// TestNewRemovesStaleNets fakes a crashed run: a published lock file nobody
// holds and a namespace of that id. The next New must remove both, and must
// leave a live Net of this process alone.
func TestNewRemovesStaleNets(t *testing.T) {
	SkipUnlessAvailable(t)
	t.Parallel()
	live := New(t)
	liveHost := live.AddHost(t, "h")

	// Namespace first, lock file second: a New running in parallel may
	// remove the pair, but never leaves the namespace without its lock file.
	const staleID = "fffff"
	stale := prefix + staleID + "-br"
	t.Cleanup(func() { _ = delNS(stale); _ = os.Remove(lockPath(staleID)) })
	mustIP(t, "netns", "add", stale)
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(lockPath(staleID), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	New(t) // sweeps stale nets first
	if _, err := os.Stat(filepath.Join(netnsDir, stale)); !os.IsNotExist(err) {
		t.Errorf("stale namespace %s: %v, want it gone", stale, err)
	}
	if _, err := os.Stat(lockPath(staleID)); !os.IsNotExist(err) {
		t.Errorf("stale lock file: %v, want it gone", err)
	}
	if _, err := os.Stat(liveHost.Path()); err != nil {
		t.Errorf("live host namespace removed: %v", err)
	}
	if _, err := os.Stat(lockPath(live.ID)); err != nil {
		t.Errorf("live lock file removed: %v", err)
	}
}

func TestCheckName(t *testing.T) {
	n := &Net{ID: "00000", hosts: []*Host{{Name: "taken"}}}
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"manager-1", true},
		{"w_2.x", true},
		{strings.Repeat("a", 32), true},
		{strings.Repeat("a", 33), false},
		{"", false},
		{"-a", false},
		{"a/b", false},
		{"a b", false},
		{"br", false},
		{"taken", false},
	} {
		if err := n.checkName(tc.name); (err == nil) != tc.ok {
			t.Errorf("checkName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestIfName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"v1-a", "v1-a"},
		{"v1-abcdefghijk", "v1-abcdefghijk"},
		{"v12-abcdefghijklmnop", "v12-abcdefghijk"},
	} {
		if got := ifName(tc.in); got != tc.want {
			t.Errorf("ifName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestAgentInNamespace runs a real warren agent through testutil.Agent with
// NetNS set and checks that the PID it reports is the agent's own and that
// the agent and its plugins live in the host's namespace.
func TestAgentInNamespace(t *testing.T) {
	SkipUnlessAvailable(t)
	if testing.Short() {
		t.Skip("builds and runs a real agent")
	}
	bin := testutil.Install(t, "store-bolt", "scheduler-roundrobin")
	n := New(t)
	h := n.AddHost(t, "m1")
	want := nsInode(t, h.Path())

	ag := testutil.NewAgent(t, bin, "")
	ag.NetNS = h.Path()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ag.Start(ctx)

	pid := ag.PID()
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		t.Fatal(err)
	}
	if exe != bin {
		t.Fatalf("PID %d runs %s, want the agent %s", pid, exe, bin)
	}
	if got := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", pid)); got != want {
		t.Fatalf("agent in netns inode %d, want %d (%s)", got, want, h.NS)
	}
	plugins := testutil.PluginPIDs(bin)
	if len(plugins) == 0 {
		t.Fatal("agent started no plugins")
	}
	for _, p := range plugins {
		if got := nsInode(t, fmt.Sprintf("/proc/%d/ns/net", p)); got != want {
			t.Errorf("plugin %d in netns inode %d, want %d", p, got, want)
		}
	}

	ag.Kill9()
	if testutil.Alive(pid) {
		t.Fatalf("agent %d alive after Kill9", pid)
	}
}

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// TestDo checks that Do runs fn inside the host's namespace and returns
// fn's error.
func TestDo(t *testing.T) {
	SkipUnlessAvailable(t)
	t.Parallel()
	n := New(t)
	h := n.AddHost(t, "a")
	var inside uint64
	if err := h.Do(func() error {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), &st); err != nil {
			return err
		}
		inside = st.Ino
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := nsInode(t, h.Path()); inside != want {
		t.Fatalf("Do ran in netns %d, want %d", inside, want)
	}
	if err := h.Do(func() error { return syscall.EINVAL }); err != syscall.EINVAL {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
}
