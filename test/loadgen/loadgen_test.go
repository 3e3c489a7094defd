package loadgen_test

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/loadgen"
	"github.com/warrenorch/warren/test/testutil"
)

// TestSmallFleet is the load generator's small version, untimed: 50
// simulated nodes on a real manager, 500 tasks; one node lost; every task
// runs, the lost node's elsewhere, one per slot; the same for a node whose
// agent stops.
func TestSmallFleet(t *testing.T) {
	bin := testutil.Install(t, "store-bolt", "scheduler-roundrobin")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ttl = 3 * time.Second
	m, err := loadgen.StartManager(ctx, bin, t.TempDir(), ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	tok, err := m.Cluster.JoinToken(ctx, &apiv1.JoinTokenRequest{Role: apiv1.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	f, err := loadgen.New(loadgen.Options{Addr: m.Addr, Token: tok.GetToken(), Nodes: 50, StartDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b := &loadgen.Bench{API: m.API, Cluster: m.Cluster, Fleet: f, LeaderPID: m.PID(), TTL: ttl, Timeout: 40 * time.Second, Out: io.Discard}
	if testing.Verbose() {
		b.Out = testWriter{t}
	}
	b.Attach()
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	if err := b.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	// The manager sees each node's connection from its own address.
	peers := remoteAddrs(t, m.Addr)
	for _, n := range f.Nodes {
		if src := loadgen.SourceAddr(n.Index).String(); !peers[src] {
			t.Fatalf("no connection to the manager from node %s's source address %s; from: %v", n.Name, src, peers)
		}
	}
	names, err := b.Create(ctx, "small", 5, 100)
	if err != nil {
		t.Fatalf("%v\n%s", err, m.Output())
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	// One node lost as in a power loss, then one whose agent stops.
	for _, silent := range []bool{true, false} {
		victims, err := b.Loss(ctx, 0.02, silent) // one node of the live ones
		if err != nil {
			t.Fatalf("silent %t: %v\n%s", silent, err, m.Output())
		}
		if len(victims) != 1 {
			t.Fatalf("silent %t: lost %d nodes, want 1", silent, len(victims))
		}
		if err := b.Check(ctx); err != nil {
			t.Fatalf("silent %t: %v", silent, err)
		}
		// None of the running tasks is on the lost node.
		for _, n := range names {
			r, err := m.API.ListTasks(ctx, &apiv1.ListTasksRequest{Service: n, Node: victims[0].ID, View: apiv1.TaskView_TASK_VIEW_FULL})
			if err != nil {
				t.Fatal(err)
			}
			for _, task := range r.GetTasks() {
				if task.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && task.GetState() == apiv1.TaskState_TASK_STATE_RUNNING {
					t.Fatalf("silent %t: task %s still counted running on the lost node", silent, task.GetId())
				}
			}
		}
	}
	if f.Running() != 500 {
		t.Fatalf("%d tasks running, want 500", f.Running())
	}
}

// remoteAddrs returns the remote IP addresses of the established TCP
// connections on the local side of addr (a listener's host:port), from
// /proc/net/tcp: the peers the manager sees.
func remoteAddrs(t *testing.T, addr string) map[string]bool {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	// hexAddr decodes "0100007F:1F90": an IPv4 address in host (little
	// endian) order and a port.
	hexAddr := func(s string) (net.IP, uint64) {
		ip, port, _ := strings.Cut(s, ":")
		v, err1 := strconv.ParseUint(ip, 16, 32)
		pt, err2 := strconv.ParseUint(port, 16, 16)
		if err1 != nil || err2 != nil {
			t.Fatalf("/proc/net/tcp: unreadable address %q", s)
		}
		return net.IPv4(byte(v), byte(v>>8), byte(v>>16), byte(v>>24)), pt
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 4 || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		if _, lport := hexAddr(f[1]); lport != p {
			continue
		}
		rip, _ := hexAddr(f[2])
		out[rip.String()] = true
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// TestRollingRestart is the restart scenario's small version, untimed: 3
// real managers, 30 simulated nodes, 100 tasks; the managers restarted one
// at a time, the leader last. Every task keeps running (none of a slot
// ends) and no slot runs twice, sampled through the restarts and a TTL
// after, and every node holds a session with the new leader at the end.
func TestRollingRestart(t *testing.T) {
	bin := testutil.Install(t, "store-bolt", "scheduler-roundrobin")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	const ttl = 5 * time.Second
	ms, err := loadgen.StartManagers(ctx, bin, t.TempDir(), 3, ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, m := range ms {
			if t.Failed() {
				t.Logf("---- manager %s ----\n%s", m.Addr, m.Tail(40))
			}
			m.Stop()
		}
	})
	tok, err := ms[0].Cluster.JoinToken(ctx, &apiv1.JoinTokenRequest{Role: apiv1.NodeRole_NODE_ROLE_WORKER})
	if err != nil {
		t.Fatal(err)
	}
	f, err := loadgen.New(loadgen.Options{Addr: ms[0].Addr, Managers: []string{ms[1].Addr, ms[2].Addr}, Token: tok.GetToken(),
		Nodes: 30, StartDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	b := &loadgen.Bench{API: ms[0].API, Cluster: ms[0].Cluster, Fleet: f, TTL: ttl, Timeout: time.Minute, Out: io.Discard}
	if testing.Verbose() {
		b.Out = testWriter{t}
	}
	if err := f.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Stop)
	if err := b.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Create(ctx, "rr", 10, 10); err != nil {
		t.Fatal(err)
	}
	if err := b.Check(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.RollingRestart(ctx, ms); err != nil {
		t.Fatal(err)
	}
	if f.Running() != 100 {
		t.Fatalf("%d tasks running after the restarts, want 100", f.Running())
	}
}
