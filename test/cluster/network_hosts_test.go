package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/netns"
	"github.com/warrenorch/warren/test/testutil"
)

// The tests in this file run inside TestClusterOverlay, on its cluster (m1;
// workers w1 and w2, each a test host with its agent, plugins and
// containerd), before the node removal that ends it.

// overlayHostTests are the host-level cases: what the underlay carries,
// egress, restarts and a host reboot.
func overlayHostTests(t *testing.T, c *clustertest.Cluster, m1 *clustertest.Node, onW1, onW2 *apiv1.Task) {
	w1, w2 := c.Node("w1"), c.Node("w2")
	get := func(t *testing.T, from *apiv1.Task, to string) (string, error) {
		t.Helper()
		return inTask(t, w1, from.GetId(), fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080`, to))
	}

	t.Run("the traffic between hosts is WireGuard", func(t *testing.T) {
		// A marker the task sends in the clear; a capture on w2's underlay
		// interface must see WireGuard datagrams but never the marker.
		marker := fmt.Sprintf("warren-plain-%d", time.Now().UnixNano())
		cap := capture(t, w2.Host, "eth0")
		out, err := inTask(t, w1, onW1.GetId(), fmt.Sprintf(`printf 'GET /%s HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080`, marker, addrOf(onW2)))
		if err != nil || !strings.Contains(out, "HTTP/1.") {
			t.Fatalf("from w1's web task to %s: %v\n%s", addrOf(onW2), err, out)
		}
		frames := cap.stop()
		var wg int
		for _, f := range frames {
			if bytes.Contains(f, []byte(marker)) {
				t.Fatalf("the plain payload %q crossed the underlay (frame of %d bytes)", marker, len(f))
			}
			if udpPort(f) == 51820 {
				wg++
			}
		}
		if wg == 0 {
			t.Fatalf("captured %d frames on w2's underlay, none WireGuard (UDP 51820)", len(frames))
		}
		t.Logf("%d frames on w2's underlay, %d of them WireGuard, none with the payload", len(frames), wg)
	})

	t.Run("a task reaches the world outside the overlay", func(t *testing.T) {
		outside := c.Net.AddHost(t, "outside")
		l := outside.Listen(t, 0)
		from := make(chan string, 1)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case from <- r.RemoteAddr:
			default:
			}
			fmt.Fprint(w, "hello from outside")
		})}
		go func() { _ = srv.Serve(l) }()
		defer srv.Close()
		host, port, _ := net.SplitHostPort(l.Addr().String())
		out, err := inTask(t, w1, onW1.GetId(), fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s %s`, host, port))
		if err != nil || !strings.Contains(out, "hello from outside") {
			t.Fatalf("from w1's web task to %s outside the overlay: %v\n%s", l.Addr(), err, out)
		}
		// Masqueraded: the outside world sees the node, not the overlay.
		if got := <-from; !strings.HasPrefix(got, w1.Host.IP+":") {
			t.Errorf("the outside host saw the request from %s, want w1's address %s", got, w1.Host.IP)
		}
	})

	t.Run("an agent restart and a plugin kill -9 keep addresses and connectivity", func(t *testing.T) {
		before := taskAddrs(t, m1, "web")
		w1.Kill9()
		w1.Start(context.Background())
		pid := networkPluginPID(c, w2)
		if pid == 0 {
			t.Fatal("no network plugin process on w2")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 30*time.Second, "w2's network plugin running again", func() bool {
			p := networkPluginPID(c, w2)
			return p != 0 && p != pid
		})
		if got := taskAddrs(t, m1, "web"); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatalf("web's tasks and addresses %v after the restarts, want %v", got, before)
		}
		if out, err := get(t, onW1, addrOf(onW2)); err != nil || !strings.Contains(out, "web.") {
			t.Fatalf("from w1's web task to %s after the restarts: %v\n%s", addrOf(onW2), err, out)
		}
		// The restarted agent answers DNS again once it has set the node
		// up. (inTask runs the host's busybox, with the host's
		// resolv.conf: ask the gateway by name.)
		gw := gatewayOf(onW1)
		testutil.Eventually(t, 10*time.Second, "both web addresses in w1's DNS after the restarts", func() bool {
			out, _ := inTask(t, w1, onW1.GetId(), "nslookup web "+gw)
			return strings.Contains(out, addrOf(onW1)) && strings.Contains(out, addrOf(onW2))
		})
	})

	t.Run("a rebooted host comes back with every service reachable", func(t *testing.T) {
		old := taskAddrs(t, m1, "web")
		oldLate := taskAddrs(t, m1, "late")
		reboot(t, w2)
		w2.Start(context.Background())
		var web []*apiv1.Task
		testutil.Eventually(t, 90*time.Second, "web's two tasks running again, one replaced", func() bool {
			web = overlayTasks(t, m1, "web")
			if len(web) != 2 {
				return false
			}
			for _, tk := range web {
				if _, ok := old[tk.GetId()]; !ok {
					return true
				}
			}
			return false
		})
		for _, tk := range web {
			if out, err := get(t, onW1, addrOf(tk)); err != nil || !strings.Contains(out, "web.") {
				t.Fatalf("from w1's web task to %s (on %s) after w2's reboot: %v\n%s", tk.GetAddress(), tk.GetNodeId(), err, out)
			}
		}
		gw := gatewayOf(onW1)
		testutil.Eventually(t, 10*time.Second, "both web addresses in w1's DNS after w2's reboot", func() bool {
			out, _ := inTask(t, w1, onW1.GetId(), "nslookup web "+gw)
			return strings.Contains(out, addrOf(web[0])) && strings.Contains(out, addrOf(web[1]))
		})
		// late runs on w2 only: its address answering proves w2's own
		// overlay (device, bridge, peers) is back.
		var late []*apiv1.Task
		testutil.Eventually(t, 90*time.Second, "late's task replaced and running on w2 again", func() bool {
			late = overlayTasks(t, m1, "late")
			if len(late) != 1 {
				return false
			}
			_, same := oldLate[late[0].GetId()]
			return !same
		})
		testutil.Eventually(t, 10*time.Second, "w1's task reaching late on w2", func() bool {
			_, err := inTask(t, w1, onW1.GetId(), "ping -c 1 -W 1 "+addrOf(late[0]))
			return err == nil
		})
	})
}

// taskAddrs maps the service's RUNNING tasks to their addresses.
func taskAddrs(t *testing.T, m *clustertest.Node, service string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tk := range overlayTasks(t, m, service) {
		out[tk.GetId()] = tk.GetAddress()
	}
	return out
}

// networkPluginPID is the PID of worker n's network plugin process (not its
// WireGuard device process), 0 while none runs.
func networkPluginPID(c *clustertest.Cluster, n *clustertest.Node) int {
	in := procsIn([]string{n.Host.Path()})
	for _, pid := range testutil.PluginPIDs(c.Bin) {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if in[pid] && filepath.Base(exe) == "network-wireguard" {
			return pid
		}
	}
	return 0
}

// reboot does to worker n what a power cut does: every process in its
// host's network namespace and in its tasks' (agent, plugins, containerd,
// shims, containers, the WireGuard device) is killed -9, the devices it
// built (bridge, veths, nftables) and the task namespaces are removed, and
// the runtime's state directory (a tmpfs on a real host) is emptied. Disks
// (data_dir) survive.
func reboot(t *testing.T, n *clustertest.Node) {
	t.Helper()
	n.Kill9()
	nsDir := filepath.Join(n.DataDir, "netns")
	entries, _ := os.ReadDir(nsDir)
	paths := []string{n.Host.Path()}
	for _, e := range entries {
		paths = append(paths, filepath.Join(nsDir, e.Name()))
	}
	killIn(t, paths)
	ctrtest.SweepNetns(t, n.DataDir)
	err := n.Host.Do(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if name := l.Attrs().Name; name != "lo" && name != "eth0" {
				// A veth's peer went with it: ENODEV.
				if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
					return fmt.Errorf("delete %s: %w", name, err)
				}
			}
		}
		c, err := nftables.New()
		if err != nil {
			return err
		}
		c.FlushRuleset()
		return c.Flush()
	})
	if err != nil {
		t.Fatalf("rebooting %s: %v", n.Name, err)
	}
	// The containers' root file systems are mounted under the state dir.
	state := filepath.Join(n.DataDir, "runtime-containerd", "state")
	unmountUnder(t, state)
	if err := os.RemoveAll(state); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join("/var/run/wireguard", ctrtest.OverlayInterface(n.Name)+".sock"))
}

// procsIn returns the live processes whose network namespace is one of
// paths.
func procsIn(paths []string) map[int]bool {
	inodes := map[uint64]bool{}
	for _, p := range paths {
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err == nil {
			inodes[st.Ino] = true
		}
	}
	pids := map[int]bool{}
	procs, _ := os.ReadDir("/proc")
	for _, e := range procs {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && inodes[st.Ino] && testutil.Alive(pid) {
			pids[pid] = true
		}
	}
	return pids
}

// killIn kills -9 every process whose network namespace is one of paths,
// and waits until they are gone.
func killIn(t *testing.T, paths []string) {
	t.Helper()
	for pid := range procsIn(paths) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	testutil.Eventually(t, 10*time.Second, "every process of the host gone", func() bool { return len(procsIn(paths)) == 0 })
}

// unmountUnder unmounts every mount point under dir, deepest first.
func unmountUnder(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var points []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		if err := unix.Unmount(points[i], unix.MNT_DETACH); err != nil {
			t.Logf("unmount %s: %v", points[i], err)
		}
	}
}

// capturer reads every frame on one interface of a test host, as tcpdump
// would, through an AF_PACKET socket opened in the host's namespace.
type capturer struct {
	fd     int
	mu     sync.Mutex
	frames [][]byte
	done   chan struct{}
	quit   chan struct{}
}

func capture(t *testing.T, h *netns.Host, ifname string) *capturer {
	t.Helper()
	c := &capturer{done: make(chan struct{}), quit: make(chan struct{})}
	proto := int(htons(unix.ETH_P_ALL))
	err := h.Do(func() error {
		l, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("capture on %s of %s: %v", ifname, h.Name, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 65536)
		for {
			select {
			case <-c.quit:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				continue // the timeout, to look at quit
			}
			c.mu.Lock()
			c.frames = append(c.frames, bytes.Clone(buf[:n]))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

// stop ends the capture and returns the frames seen.
func (c *capturer) stop() [][]byte {
	select {
	case <-c.quit:
	default:
		close(c.quit)
		<-c.done
		unix.Close(c.fd)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.frames
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// udpPort is the destination or source UDP port of an Ethernet frame
// carrying IPv4 UDP, whichever is 51820, else the destination; 0 for other
// frames.
func udpPort(f []byte) int {
	if len(f) < 14+20+8 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP || f[14+9] != unix.IPPROTO_UDP {
		return 0
	}
	ihl := int(f[14]&0x0f) * 4
	if len(f) < 14+ihl+8 {
		return 0
	}
	src := int(binary.BigEndian.Uint16(f[14+ihl:]))
	dst := int(binary.BigEndian.Uint16(f[14+ihl+2:]))
	if src == 51820 {
		return src
	}
	return dst
}
