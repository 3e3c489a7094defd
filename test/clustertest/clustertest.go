// Package clustertest starts multi-node Warren clusters for tests: each node
// is a warren agent in its own network namespace (a test host from
// test/netns), with its own data dir, plugins and, for workers, its own
// managed containerd. Managers talk over the hosts' veth links, always with
// mutual TLS.
package clustertest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/netns"
	"github.com/warrenorch/warren/test/testutil"
)

// Port is the cluster port every test host's agent listens on.
const Port = 7420

// MetricsPort is the port of the agents' metrics_addr when Cluster.Metrics is set.
const MetricsPort = 9420

// Plugins are the plugins cluster tests install, the workers' default
// network plugin included.
var Plugins = []string{"store-bolt", "scheduler-roundrobin", "runtime-containerd", "network-wireguard"}

// Cluster is a set of test hosts with one agent each.
type Cluster struct {
	t   testing.TB
	Bin string
	Net *netns.Net
	// HeartbeatTTL is the managers' heartbeat_ttl.
	HeartbeatTTL time.Duration
	// NodeCertTTL, when set, is the managers' node_cert_ttl.
	NodeCertTTL time.Duration
	// Metrics, when set, gives every agent a metrics_addr on its host's
	// address and MetricsPort; read it with Node.Scrape.
	Metrics bool
	// OverlayRange is the managers' overlay_range; when empty, the first
	// manager added claims one of its own (testutil.OverlayRange).
	OverlayRange string
	// Nodes by name, in the order they were added.
	Nodes []*Node
}

// Node is one test host and its agent.
type Node struct {
	*testutil.Agent
	Name    string
	Host    *netns.Host
	Manager bool
	Worker  bool
	c       *Cluster
}

// Addr is the node's cluster address.
func (n *Node) Addr() string { return n.Host.Addr(Port) }

// New returns an empty cluster on a new test network. It skips the test when
// namespaces or containerd are not available.
func New(t testing.TB, bin string) *Cluster {
	t.Helper()
	netns.SkipUnlessAvailable(t)
	ctrtest.SkipWithoutContainerd(t)
	return &Cluster{t: t, Bin: bin, Net: netns.New(t), HeartbeatTTL: 2 * time.Second}
}

// Spec says what a node is.
type Spec struct {
	Manager bool
	Worker  bool
	// Join is the token to join with; empty bootstraps a new cluster.
	Join string
	// JoinAddrs are the managers to join through; default: every manager
	// added so far.
	JoinAddrs []string
	// Labels are the worker's labels.
	Labels map[string]string
	// Extra is appended to the configuration.
	Extra string
}

// Add creates a host and writes its agent's configuration; Start it.
func (c *Cluster) Add(name string, spec Spec) *Node {
	c.t.Helper()
	host := c.Net.AddHost(c.t, name)
	dir := c.t.TempDir()
	dataDir := filepath.Join(dir, "data")
	if spec.Worker {
		// Registered before the agent's own clean-up, so it runs after it.
		c.t.Cleanup(func() {
			ctrtest.SweepRuntime(c.t, dataDir)
			ctrtest.SweepNetns(c.t, dataDir)
		})
	}
	var b strings.Builder
	fmt.Fprintf(&b, "data_dir   = %q\nbind_addr  = %q\napi_socket = %q\nnode_name  = %q\nlog_level  = \"debug\"\n",
		dataDir, host.Addr(Port), filepath.Join(dir, "warren.sock"), name)
	if spec.Manager {
		fmt.Fprintf(&b, "manager {\n  heartbeat_ttl = %q\n", c.HeartbeatTTL.String())
		if c.NodeCertTTL > 0 {
			fmt.Fprintf(&b, "  node_cert_ttl = %q\n", c.NodeCertTTL.String())
		}
		if c.OverlayRange == "" {
			c.OverlayRange = testutil.OverlayRange(c.t)
		}
		fmt.Fprintf(&b, "  overlay_range = %q\n", c.OverlayRange)
		b.WriteString("}\n")
	}
	if spec.Worker {
		b.WriteString("worker {\n")
		if len(spec.Labels) > 0 {
			b.WriteString("  labels = {\n")
			for k, v := range spec.Labels {
				fmt.Fprintf(&b, "    %q = %q\n", k, v)
			}
			b.WriteString("  }\n")
		}
		b.WriteString("}\n")
		b.WriteString("plugin \"runtime-containerd\" {\n  config {\n    stop_on_exit = true\n  }\n}\n")
		// The default network plugin, with names unique to this test
		// process and node.
		b.WriteString(ctrtest.OverlayPluginBlock(c.t, name))
	}
	if spec.Join != "" {
		addrs := spec.JoinAddrs
		if len(addrs) == 0 {
			for _, n := range c.Nodes {
				if n.Manager {
					addrs = append(addrs, n.Addr())
				}
			}
		}
		fmt.Fprintf(&b, "join {\n  addresses = [%s]\n  token = %q\n}\n", quoteList(addrs), spec.Join)
	}
	if c.Metrics {
		fmt.Fprintf(&b, "metrics_addr = %q\n", host.Addr(MetricsPort))
	}
	b.WriteString(spec.Extra)
	cfg := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		c.t.Fatal(err)
	}
	a := testutil.NewAgentAt(c.t, c.Bin, dir, cfg, filepath.Join(dir, "warren.sock"), dataDir)
	a.NetNS = host.Path()
	c.t.Cleanup(func() {
		if c.t.Failed() {
			c.t.Logf("---- agent %s ----\n%s", name, tail(a.Output(), 60))
		}
	})
	n := &Node{Agent: a, Name: name, Host: host, Manager: spec.Manager, Worker: spec.Worker, c: c}
	c.Nodes = append(c.Nodes, n)
	return n
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}

// Node returns the node called name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

// Form starts a cluster of managers and workers: the first manager
// bootstraps, the others join with tokens. Workers get the test images.
func (c *Cluster) Form(managers, workers []string) {
	c.t.Helper()
	ctx := context.Background()
	first := c.Add(managers[0], Spec{Manager: true})
	first.Start(ctx)
	mtok := c.Token(first, "manager")
	wtok := c.Token(first, "worker")
	for _, name := range managers[1:] {
		c.Add(name, Spec{Manager: true, Join: mtok}).Start(ctx)
	}
	c.WaitMembers(first, len(managers))
	for _, name := range workers {
		w := c.Add(name, Spec{Worker: true, Join: wtok})
		w.Start(ctx)
		ctrtest.ImportImages(c.t, w.Client())
	}
	c.WaitReady(first, len(managers)+len(workers))
}

// Token prints a join token on n.
func (c *Cluster) Token(n *Node, role string) string {
	c.t.Helper()
	out := n.CLI(0, "cluster", "join-token", "-q", role)
	return strings.TrimSpace(out)
}

// CLI runs the warren CLI against n's socket and fails the test unless the
// exit code is want.
func (n *Node) CLI(want int, args ...string) string {
	n.c.t.Helper()
	stdout, stderr, code := testutil.RunCLI(n.c.t, n.c.Bin, n.Socket, args...)
	if code != want {
		n.c.t.Fatalf("warren %s on %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), n.Name, code, want, stdout, stderr)
	}
	return stdout + stderr
}

// Scrape reads n's /metrics (Cluster.Metrics must be set) from inside its
// host's network namespace.
func (n *Node) Scrape() testutil.Metrics {
	n.c.t.Helper()
	return testutil.ScrapeVia(n.c.t, Dialer(n.Host), "http://"+n.Host.Addr(MetricsPort)+"/metrics")
}

// Cluster returns a client of n's Cluster service on its socket.
func (n *Node) ClusterClient() apiv1.ClusterClient {
	n.c.t.Helper()
	conn, err := grpc.NewClient("unix://"+n.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		n.c.t.Fatal(err)
	}
	n.c.t.Cleanup(func() { conn.Close() })
	return apiv1.NewClusterClient(conn)
}

// WaitMembers waits until n reports want Raft voters, all reachable, and a
// leader.
func (c *Cluster) WaitMembers(n *Node, want int) {
	c.t.Helper()
	cl := n.ClusterClient()
	testutil.Eventually(c.t, 60*time.Second, fmt.Sprintf("%d reachable managers with a leader", want), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cl.Members(ctx, &apiv1.MembersRequest{})
		if err != nil || resp.GetLeaderId() == "" {
			return false
		}
		ok := 0
		for _, m := range resp.GetMembers() {
			if m.GetSuffrage() == "voter" && m.GetReachable() {
				ok++
			}
		}
		return ok == want && len(resp.GetMembers()) == want
	})
}

// WaitReady waits until n lists want nodes, all ready.
func (c *Cluster) WaitReady(n *Node, want int) {
	c.t.Helper()
	cl := n.Client()
	testutil.Eventually(c.t, 60*time.Second, fmt.Sprintf("%d ready nodes", want), func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cl.ListNodes(ctx, &apiv1.ListNodesRequest{})
		if err != nil {
			return false
		}
		ready := 0
		for _, nd := range resp.GetNodes() {
			if nd.GetStatus() == apiv1.NodeStatus_NODE_STATUS_READY {
				ready++
			}
		}
		return ready == want
	})
}

// Leader returns the manager node that is the Raft leader, asking through
// any running manager.
func (c *Cluster) Leader(except ...*Node) *Node {
	c.t.Helper()
	var leader *Node
	testutil.Eventually(c.t, 30*time.Second, "a leader", func() bool {
		for _, n := range c.Nodes {
			if !n.Manager || contains(except, n) {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			info, err := n.Client().ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
			cancel()
			if err == nil && info.GetIsLeader() {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

func contains(ns []*Node, n *Node) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

// RunningOn returns the task IDs whose containers run on worker n.
func (n *Node) RunningOn() map[string]uint32 {
	n.c.t.Helper()
	return ctrtest.RunningContainers(n.c.t, n.Agent)
}

// Dialer returns a gRPC context dialer whose connections are made inside
// host's network namespace, for clients that play a node (or an
// intruder) on that host.
func Dialer(host *netns.Host) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var conn net.Conn
		err := host.Do(func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
}

// StartExpectFailure runs the node's agent and expects it to exit with an
// error within a minute; it returns what the agent printed.
func (n *Node) StartExpectFailure() string {
	n.c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+n.Host.Path(), "--", n.c.Bin, "agent", "-config", n.Config).CombinedOutput()
	if ctx.Err() != nil {
		n.c.t.Fatalf("agent on %s still ran after a minute; expected it to fail:\n%s", n.Name, out)
	}
	if err == nil {
		n.c.t.Fatalf("agent on %s exited cleanly; expected a failure:\n%s", n.Name, out)
	}
	return string(out)
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
