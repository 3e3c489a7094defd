package integration

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/plugins/runtime-containerd/containerdtest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/netns"
	"github.com/warrenorch/warren/test/testutil"
)

// The tests in this file run services on the overlay: a manager+worker
// agent with worker { network = "network-wireguard" }, in a network
// namespace of its own (test/netns) so that its WireGuard device, bridge
// and DNS server touch nothing of the machine's.

// overlayRange is the tests' overlay, away from test/netns's subnets.
const overlayRange = "10.252.0.0/16"

// startOverlayNode starts a manager+worker agent on the overlay in a fresh
// network namespace.
func startOverlayNode(t *testing.T) *node {
	t.Helper()
	netns.SkipUnlessAvailable(t)
	bin := testutil.Install(t, ctrtest.WorkerPlugins...)
	host := netns.New(t).AddHost(t, "n1")
	a := ctrtest.NewWorkerAgentWith(t, bin, fmt.Sprintf("overlay_range = %q", overlayRange), `network = "network-wireguard"`, "")
	a.NetNS = host.Path()
	t.Cleanup(func() {
		a.Kill()
		sweep(t, a.DataDir)
		ctrtest.SweepNetns(t, a.DataDir)
	})
	a.Start(context.Background())
	n := &node{t: t, a: a, bin: bin, c: a.Client(), host: host}
	ctrtest.ImportImages(t, n.c)
	n.ctd, n.cctx = ctrtest.Containerd(t, a)
	return n
}

// namespaces counts the task network namespaces under the agent's data dir.
func (n *node) namespaces() int { return ctrtest.Namespaces(n.t, n.a.DataDir) }

// addresses returns the addresses of a service's RUNNING tasks by task ID.
func (n *node) addresses(service string) map[string]string {
	n.t.Helper()
	out := map[string]string{}
	for _, tk := range n.tasks(service, false) {
		if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING {
			out[tk.GetId()] = tk.GetAddress()
		}
	}
	return out
}

func TestNetworkByName(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startOverlayNode(t)

	nodes, err := n.c.ListNodes(context.Background(), &apiv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.GetNodes()) != 1 || !strings.HasPrefix(nodes.GetNodes()[0].GetNetwork().GetSubnet(), "10.252.") {
		t.Fatalf("nodes = %v, want one with a subnet of %s", nodes.GetNodes(), overlayRange)
	}

	n.cli("service", "create", "web", "--image", ctrtest.TestImage, converge, "--",
		"sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www")
	// The client looks web up in the node's DNS (the nameserver of its
	// /etc/resolv.conf) and fetches web's page with nc, five times a
	// second. busybox-static's wget segfaults here, even on an address.
	n.cli("service", "create", "client", "--image", ctrtest.TestImage, converge, "--",
		"sh", "-c", `while true; do a=$(nslookup web | sed -n 's/^Address: *//p' | tail -1); echo web=$a; [ -n "$a" ] || { nslookup web; ip -4 addr show eth0 | grep inet; ip route; }; printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 $a 8080 || echo nc-failed; sleep 0.2; done`)
	webAddr := n.addresses("web")
	if len(webAddr) != 1 {
		t.Fatalf("web's running tasks: %v", webAddr)
	}
	for id, addr := range webAddr {
		if !strings.HasPrefix(addr, "10.252.") {
			t.Fatalf("web task %s address %q, want one of %s", id, addr, overlayRange)
		}
	}
	reached := func(what string) {
		t.Helper()
		before := strings.Count(n.cli("service", "logs", "client"), "hello-from-web")
		deadline := time.Now().Add(15 * time.Second)
		for {
			logs := n.cli("service", "logs", "client")
			if strings.Count(logs, "hello-from-web") > before {
				return
			}
			if time.Now().After(deadline) {
				diag := ""
				for id := range n.addresses("client") {
					for _, addr := range n.addresses("web") {
						ip := strings.SplitN(addr, "/", 2)[0]
						out, err := exec.Command("nsenter", "--net="+filepath.Join(n.a.DataDir, "netns", id), "--", containerdtest.BusyboxPath, "sh", "-c",
							fmt.Sprintf("ping -c1 -W1 %s; printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 %s 8080; nslookup web %s", strings.TrimSuffix(ip, ip[strings.LastIndex(ip, "."):])+".1", ip, strings.TrimSuffix(ip, ip[strings.LastIndex(ip, "."):])+".1")).CombinedOutput()
						diag += fmt.Sprintf("from the client's netns to %s: %v\n%s\n", ip, err, out)
					}
				}
				links, _ := exec.Command("nsenter", "--net="+n.a.NetNS, "--", "ip", "-br", "link").CombinedOutput()
				diag += "links in the node's netns:\n" + string(links)
				t.Logf("diagnostics:\n%s", diag)
				t.Fatalf("%s: not within 15s; the client's log ends:\n%s\nagent output:\n%s", what, tail(logs, 10), tail(n.a.Output(), 80))
			}
			time.Sleep(100 * time.Millisecond) // polling the logs with a deadline
		}
	}
	reached("the client reaching web by name")
	if got := n.namespaces(); got != 2 {
		t.Fatalf("%d task namespaces, want 2", got)
	}

	// kill -9 of the agent: the tasks keep their namespace and address,
	// and the connectivity.
	n.a.Kill9()
	n.a.Start(context.Background())
	n.c = n.a.Client()
	testutil.Eventually(t, 30*time.Second, "web's task RUNNING again in the state", func() bool {
		got := n.addresses("web")
		return len(got) == 1 && fmt.Sprint(got) == fmt.Sprint(webAddr)
	})
	reached("the client reaching web by name after the agent's kill -9")
	if got := n.namespaces(); got != 2 {
		t.Fatalf("%d task namespaces after the restart, want 2", got)
	}

	// kill -9 of the network plugin: the host restarts it, the worker sets
	// the node up again (the plugin adopts its device), and a new task is
	// attached.
	pid, restarts, _ := n.plugin("network")
	setups := strings.Count(n.a.Output(), "overlay set up")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "the network plugin restarted and the node set up again", func() bool {
		_, r, state := n.plugin("network")
		return r > restarts && state == "running" && strings.Count(n.a.Output(), "overlay set up") > setups
	})
	n.cli("service", "scale", "web=2", converge)
	if got := n.addresses("web"); len(got) != 2 {
		t.Fatalf("web's tasks after the plugin's restart: %v", got)
	}
	seen := map[string]string{}
	for _, svc := range []string{"web", "client"} {
		for id, addr := range n.addresses(svc) {
			if other, dup := seen[addr]; dup {
				t.Fatalf("tasks %s and %s both have address %s", other, id, addr)
			}
			seen[addr] = id
		}
	}
	reached("the client reaching web by name after the network plugin's kill -9")

	n.cli("service", "rm", "client", "web")
	testutil.Eventually(t, 30*time.Second, "no container and no task namespace left", func() bool {
		ctrs, _ := n.containers()
		return ctrs == 0 && n.namespaces() == 0
	})
}
