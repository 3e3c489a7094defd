package dispatcher_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

func netNode(id, subnet, key string) *apiv1.Node {
	n := &apiv1.Node{Id: id, Name: "node-" + id, Worker: true, Status: ready}
	if subnet != "" {
		n.Network = &apiv1.NodeNetwork{Subnet: subnet, PublicKey: key}
		if key != "" {
			n.Network.Endpoint = "192.0.2.1:51820"
		}
	}
	return n
}

func TestBuildNetworkTables(t *testing.T) {
	withAddr := func(id, svc, addr string, desired, st apiv1.TaskState) *apiv1.Task {
		tk := task(id, "n1", desired, st)
		tk.ServiceName, tk.Address = svc, addr
		return tk
	}
	downNode := netNode("c", "10.88.2.0/24", "kc")
	downNode.Status = down
	got := dispatcher.BuildNetworkTables(
		[]*apiv1.Node{netNode("b", "10.88.1.0/24", "kb"), netNode("a", "10.88.0.0/24", "ka"), netNode("nokey", "10.88.3.0/24", ""), netNode("nosubnet", "", ""), downNode},
		[]*apiv1.Task{
			withAddr("t1", "web", "10.88.0.9/24", running, running),
			withAddr("t2", "web", "10.88.1.2/24", running, running),
			withAddr("t3", "web", "10.88.1.3/24", running, starting), // not running yet
			withAddr("t4", "web", "10.88.1.4/24", shutdown, running), // being stopped
			withAddr("t5", "db", "10.88.0.7/24", running, running),
			withAddr("t6", "db", "", running, running),               // no address: host or none mode
			withAddr("t7", "cache", "10.88.0.8/24", running, failed), // ended
			withHealth(withAddr("t8", "api", "10.88.0.10/24", running, running), apiv1.HealthState_HEALTH_STATE_STARTING),
			withHealth(withAddr("t9", "api", "10.88.0.11/24", running, running), apiv1.HealthState_HEALTH_STATE_HEALTHY),
			withHealth(withAddr("t10", "api", "10.88.0.12/24", running, running), apiv1.HealthState_HEALTH_STATE_UNHEALTHY),
		})
	var peers []string
	for _, p := range got.Peers {
		peers = append(peers, p.GetNodeId())
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(peers, want) {
		t.Errorf("peers = %v, want %v (with a subnet and a key, DOWN included, by ID)", peers, want)
	}
	if len(got.Subnets) != 4 || got.Subnets["nokey"] != "10.88.3.0/24" {
		t.Errorf("subnets = %v", got.Subnets)
	}
	var eps []string
	for _, e := range got.Endpoints {
		eps = append(eps, e.GetName()+"="+strings.Join(e.GetAddresses(), ","))
	}
	// api has a health check: only its healthy task answers.
	if want := []string{"api=10.88.0.11", "db=10.88.0.7", "web=10.88.0.9,10.88.1.2"}; !slices.Equal(eps, want) {
		t.Errorf("endpoints = %v, want %v", eps, want)
	}
}

func TestNetworkTablesWithPorts(t *testing.T) {
	port := &apiv1.PortConfig{Published: 8080, Target: 80}
	tables := dispatcher.NetworkTables{Endpoints: []*apiv1.Endpoint{{Name: "web", Addresses: []string{"10.88.0.9"}}, {Name: "db", Addresses: []string{"10.88.0.7"}}}}
	got := tables.WithPorts([]*apiv1.Service{
		{Id: "s1", Spec: &apiv1.ServiceSpec{Name: "web", Ports: []*apiv1.PortConfig{port}}},
		{Id: "s2", Spec: &apiv1.ServiceSpec{Name: "db"}},
		{Id: "s3", Spec: &apiv1.ServiceSpec{Name: "idle", Ports: []*apiv1.PortConfig{{Published: 9090, Target: 90}}}}, // no running task: no endpoint
	})
	if len(got.Endpoints) != 2 || len(got.Endpoints[0].GetPorts()) != 1 || got.Endpoints[0].GetPorts()[0].Key() != "8080/tcp" || len(got.Endpoints[1].GetPorts()) != 0 {
		t.Errorf("endpoints with ports = %v", got.Endpoints)
	}
}

// withHealth gives tk an HTTP health check and health h.
func withHealth(tk *apiv1.Task, h apiv1.HealthState) *apiv1.Task {
	tk.Spec = &apiv1.ServiceSpec{HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_HTTP, Path: "/"}}
	tk.Health = h
	return tk
}

// netClient collects what a session is sent about the overlay.
type netClient struct {
	*client
	subnet    string
	peers     []string // node IDs of the last complete set
	endpoints map[string][]string
	// sets counts complete peer sets received.
	sets int
}

// until reads messages until cond holds, within 10s.
func (c *netClient) until(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.After(10 * time.Second)
	var pending []string
	for !cond() {
		var m *apiv1.ManagerMessage
		select {
		case m = <-c.msgs:
		case err := <-c.err:
			c.t.Fatalf("waiting for %s: session ended: %v", what, err)
		case <-deadline:
			c.t.Fatalf("waiting for %s: not within 10s (subnet %q, peers %v, endpoints %v)", what, c.subnet, c.peers, c.endpoints)
		}
		if n := m.GetNetwork(); n != nil {
			c.subnet = n.GetSubnet()
		}
		if p := m.GetPeers(); p != nil {
			for _, peer := range p.GetPeers() {
				pending = append(pending, peer.GetNodeId())
			}
			if !p.GetMore() {
				c.peers, pending = pending, nil
				c.sets++
			}
		}
		if e := m.GetEndpoints(); e != nil {
			c.endpoints = map[string][]string{}
			for _, ep := range e.GetEndpoints() {
				c.endpoints[ep.GetName()] = ep.GetAddresses()
			}
		}
	}
}

func TestSessionPushesTheOverlay(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	m.Apply(&fsmpb.UpsertNode{Node: netNode("n1", "10.88.0.0/24", "")})
	m.Apply(&fsmpb.UpsertNode{Node: netNode("n2", "10.88.1.0/24", "k2")})
	m.Apply(&fsmpb.UpsertNode{Node: netNode("n3", "", "")})

	c := &netClient{client: connect(t, m, "n1")}
	c.until("the subnet and the first peer set", func() bool { return c.subnet == "10.88.0.0/24" && c.sets == 1 && c.endpoints != nil })
	if !slices.Equal(c.peers, []string{"n2"}) {
		t.Fatalf("peers = %v, want [n2]", c.peers)
	}

	t.Run("a node without a subnet is sent nothing about the overlay", func(t *testing.T) {
		c3 := connect(t, m, "n3")
		if a := c3.next(); a.GetAssignments() == nil {
			t.Fatalf("first message after SessionInfo = %v, want the assignments", a)
		}
		c3.cancel()
	})

	t.Run("the reported peer is committed once", func(t *testing.T) {
		nodeEvents := m.Events.Subscribe(func(ev *apiv1.Event) bool { return ev.GetKind() == "node" && ev.GetId() == "n1" }, 64)
		defer nodeEvents.Close()
		peer := &apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Network{Network: &apiv1.NodeNetwork{PublicKey: "k1", Endpoint: "192.0.2.9:51820", Plugin: "network-wireguard (userspace)"}}}
		for range 3 {
			c.send(peer)
		}
		dispatchertest.Eventually(t, "n1's key committed", func() bool {
			n, _ := m.State.Node("n1")
			return n.GetNetwork().GetPublicKey() == "k1"
		})
		// A heartbeat after the reports: once it is handled, so are they.
		c.send(&apiv1.WorkerMessage{Msg: &apiv1.WorkerMessage_Heartbeat{Heartbeat: &apiv1.Heartbeat{}}})
		c.send(batch(status1("ghost", running)))
		n, _ := m.State.Node("n1")
		if n.GetNetwork().GetSubnet() != "10.88.0.0/24" || n.GetNetwork().GetPlugin() != "network-wireguard (userspace)" {
			t.Fatalf("node network = %v", n.GetNetwork())
		}
		writes := 0
		for len(nodeEvents.C) > 0 {
			<-nodeEvents.C
			writes++
		}
		if writes != 1 {
			t.Fatalf("three identical peer reports made %d node writes, want 1", writes)
		}
	})

	t.Run("a peer's change is pushed", func(t *testing.T) {
		n := netNode("n4", "10.88.4.0/24", "k4")
		m.Apply(&fsmpb.UpsertNode{Node: n})
		c.until("n4 in the peers", func() bool { return slices.Equal(c.peers, []string{"n2", "n4"}) })
	})

	t.Run("a DOWN node keeps its entry, a removed one goes", func(t *testing.T) {
		n := netNode("n4", "10.88.4.0/24", "k4")
		n.Status = down
		sets := c.sets
		m.Apply(&fsmpb.UpsertNode{Node: n})
		m.Apply(&fsmpb.RemoveNode{Id: "n2"})
		c.until("n2 gone", func() bool { return slices.Equal(c.peers, []string{"n4"}) })
		if c.sets-sets > 2 {
			t.Fatalf("%d peer sets for two changes", c.sets-sets)
		}
	})

	t.Run("names follow running tasks elsewhere", func(t *testing.T) {
		tk := task("w1", "n4", running, running)
		tk.Address = "10.88.4.2/24"
		start := time.Now()
		m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{tk}})
		c.until("web in the endpoints", func() bool { return slices.Equal(c.endpoints["web"], []string{"10.88.4.2"}) })
		if d := time.Since(start); d > time.Second {
			t.Fatalf("the endpoint table took %s", d)
		}
		tk = task("w1", "n4", shutdown, shutdown)
		m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{tk}})
		c.until("web gone from the endpoints", func() bool { _, ok := c.endpoints["web"]; return !ok })
	})

	t.Run("a status report's address is stored", func(t *testing.T) {
		m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{task("own", "n1", running, assigned)}})
		up := status1("own", running)
		up.Address = "10.88.0.2/24"
		c.send(batch(up))
		dispatchertest.Eventually(t, "the address stored", func() bool {
			tk, _ := m.State.Task("own")
			return tk.GetAddress() == "10.88.0.2/24" && tk.GetState() == running
		})
		// A later manager write without the address keeps it.
		tk, _ := m.State.Task("own")
		tk = proto.CloneOf(tk)
		tk.Address, tk.DesiredState = "", shutdown
		m.Apply(&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{tk}})
		if got, _ := m.State.Task("own"); got.GetAddress() != "10.88.0.2/24" {
			t.Fatalf("address after a manager write = %q", got.GetAddress())
		}
	})
}

func TestPeerSetsAreBounded(t *testing.T) {
	m := dispatchertest.Start(t, dispatchertest.Options{})
	// Enough peers, with long keys and plugin texts, for several messages.
	var nodes []*apiv1.Node
	for i := range 150 {
		n := netNode(fmt.Sprintf("p%04d", i), fmt.Sprintf("10.%d.%d.0/24", 80+i/256, i%256), strings.Repeat("k", 4000))
		n.Network.Plugin = strings.Repeat("x", 4000)
		nodes = append(nodes, n)
	}
	m.Apply(&fsmpb.SetClusterInfo{ClusterId: "c", Network: &apiv1.ClusterNetwork{OverlayRange: "10.80.0.0/12", NodePrefix: 24, Domain: "warren"}})
	for _, n := range nodes {
		m.Apply(&fsmpb.UpsertNode{Node: n})
	}
	c := connect(t, m, "p0000")
	// The first set may predate the last writes (the tables are rebuilt
	// within a few milliseconds): read sets until one is complete.
	for {
		msgs, peers := 0, 0
		for {
			msg := c.next()
			p := msg.GetPeers()
			if p == nil {
				continue
			}
			msgs++
			peers += len(p.GetPeers())
			if n := proto.Size(msg); n > dispatcher.MaxAssignmentBytes+64 {
				t.Fatalf("a Peers message of %d bytes, over the %d bound", n, dispatcher.MaxAssignmentBytes)
			}
			if !p.GetMore() {
				break
			}
		}
		if peers == 149 {
			if msgs < 2 {
				t.Fatalf("%d peers in %d message, want several", peers, msgs)
			}
			return
		}
	}
}
