package dispatcher

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/state"
)

// DefaultNetworkBatchWindow coalesces the changes that alter the peer set or
// the endpoint table before they are pushed to workers.
const DefaultNetworkBatchWindow = 5 * time.Millisecond

// netResync is the safety-net period of the network tables' rebuild.
const netResync = 30 * time.Second

// NetworkTables is what the dispatcher pushes to workers about the overlay:
// every node with a subnet and a public key (Peers, by node ID), the node
// subnets (by node ID), and the endpoint table (by service name).
type NetworkTables struct {
	Peers     []*apiv1.Peer
	Subnets   map[string]string
	Endpoints []*apiv1.Endpoint
}

// BuildNetworkTables is the pure decision behind the pushes: peers are the
// nodes with a subnet and a public key, whatever their status (a DOWN node
// keeps its entry, a removed one is not in nodes); endpoints map each
// service name to the addresses of its tasks that are RUNNING and wanted
// running, sorted.
func BuildNetworkTables(nodes []*apiv1.Node, tasks []*apiv1.Task) NetworkTables {
	out := NetworkTables{Subnets: map[string]string{}}
	for _, n := range nodes {
		nn := n.GetNetwork()
		if nn.GetSubnet() == "" {
			continue
		}
		out.Subnets[n.GetId()] = nn.GetSubnet()
		if nn.GetPublicKey() != "" {
			out.Peers = append(out.Peers, &apiv1.Peer{NodeId: n.GetId(), Name: n.GetName(), Network: nn})
		}
	}
	slices.SortFunc(out.Peers, func(a, b *apiv1.Peer) int { return strings.Compare(a.GetNodeId(), b.GetNodeId()) })
	byName := map[string][]string{}
	for _, t := range tasks {
		// A task whose health check has not passed is left out of DNS.
		if !state.Serving(t) || t.GetDesiredState() != apiv1.TaskState_TASK_STATE_RUNNING || t.GetServiceName() == "" {
			continue
		}
		pf, err := netip.ParsePrefix(t.GetAddress())
		if err != nil {
			continue
		}
		byName[t.GetServiceName()] = append(byName[t.GetServiceName()], pf.Addr().String())
	}
	for name, addrs := range byName {
		slices.Sort(addrs)
		out.Endpoints = append(out.Endpoints, &apiv1.Endpoint{Name: name, Addresses: addrs})
	}
	slices.SortFunc(out.Endpoints, func(a, b *apiv1.Endpoint) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// WithPorts sets on each endpoint of t the published ports of its service
// in services (every worker derives what it publishes from them) and
// returns t.
func (t NetworkTables) WithPorts(services []*apiv1.Service) NetworkTables {
	ports := map[string][]*apiv1.PortConfig{}
	for _, svc := range services {
		if ps := svc.GetSpec().GetPorts(); len(ps) > 0 {
			ports[svc.GetSpec().GetName()] = ps
		}
	}
	for _, e := range t.Endpoints {
		e.Ports = ports[e.GetName()]
	}
	return t
}

// netState holds the current tables and a channel closed when they change.
type netState struct {
	mu      sync.Mutex
	tables  NetworkTables
	changed chan struct{}
}

func newNetState() *netState { return &netState{changed: make(chan struct{})} }

// get returns the current tables and the channel closed at their next change.
func (n *netState) get() (NetworkTables, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.tables, n.changed
}

// set replaces the tables and wakes the sessions when they differ.
func (n *netState) set(t NetworkTables) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if tablesEqual(n.tables, t) {
		return
	}
	n.tables = t
	close(n.changed)
	n.changed = make(chan struct{})
}

func tablesEqual(a, b NetworkTables) bool {
	return peersEqual(a.Peers, b.Peers) && endpointsEqual(a.Endpoints, b.Endpoints) && mapsEqual(a.Subnets, b.Subnets)
}

func peersEqual(a, b []*apiv1.Peer) bool {
	return slices.EqualFunc(a, b, func(x, y *apiv1.Peer) bool { return proto.Equal(x, y) })
}

func endpointsEqual(a, b []*apiv1.Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y *apiv1.Endpoint) bool { return proto.Equal(x, y) })
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// watchNetwork rebuilds the network tables on node and task events
// (coalesced over DefaultNetworkBatchWindow) and on a slow resync, until
// ctx ends.
func (d *Dispatcher) watchNetwork(ctx context.Context) {
	if d.deps.Events == nil || d.deps.State == nil {
		return // a dispatcher without state serves no overlay
	}
	kick := d.deps.Events.Notify(ctx, func(ev *apiv1.Event) bool {
		switch ev.GetKind() {
		case "task":
			// Only a task with an overlay address is in the endpoints
			// (a worker sets it once and it stays): the others (host or
			// none network, not attached yet) change no table.
			return ev.GetTask().GetAddress() != ""
		case "node", "cluster", "service":
			return true
		}
		return false
	}, eventBuffer)
	defer kick.Wait()
	rebuild := func() {
		d.net.set(BuildNetworkTables(d.deps.State.Nodes(), d.deps.State.TasksUnordered()).WithPorts(d.deps.State.Services()))
	}
	rebuild()
	resync := time.NewTicker(netResync)
	defer resync.Stop()
	window := time.NewTimer(0)
	<-window.C
	defer window.Stop()
	var windowC <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick.C:
			if windowC == nil {
				window.Reset(DefaultNetworkBatchWindow)
				windowC = window.C
			}
		case <-windowC:
			windowC = nil
			rebuild()
		case <-resync.C:
			rebuild()
		}
	}
}

// netSent is what a session last sent its worker about the overlay.
type netSent struct {
	subnet    string
	peers     []*apiv1.Peer
	endpoints []*apiv1.Endpoint
}

// networkMessages returns the messages that bring a worker from what it was
// sent (sent, updated) to tables. A node without a subnet is sent nothing.
// Once it has one: its NetworkInfo (again if the subnet changes), then the
// peer set (every node but itself) and the endpoint table, both in full the
// first time and then only when they change, each split in messages of at
// most MaxAssignmentBytes.
func (d *Dispatcher) networkMessages(nodeID string, tables NetworkTables, sent *netSent) []*apiv1.ManagerMessage {
	sub := tables.Subnets[nodeID]
	if sub == "" {
		return nil
	}
	var out []*apiv1.ManagerMessage
	first := sent.subnet == ""
	if sub != sent.subnet {
		out = append(out, &apiv1.ManagerMessage{Msg: &apiv1.ManagerMessage_Network{Network: &apiv1.NetworkInfo{
			Subnet: sub, Plan: d.deps.State.ClusterNetwork(),
		}}})
		sent.subnet = sub
	}
	peers := make([]*apiv1.Peer, 0, len(tables.Peers))
	for _, p := range tables.Peers {
		if p.GetNodeId() != nodeID {
			peers = append(peers, p)
		}
	}
	if first || !peersEqual(peers, sent.peers) {
		for _, chunk := range splitBySize(peers, MaxAssignmentBytes) {
			out = append(out, &apiv1.ManagerMessage{Msg: &apiv1.ManagerMessage_Peers{Peers: &apiv1.Peers{Peers: chunk.items, More: chunk.more}}})
		}
		sent.peers = peers
	}
	if first || !endpointsEqual(tables.Endpoints, sent.endpoints) {
		for _, chunk := range splitBySize(tables.Endpoints, MaxAssignmentBytes) {
			out = append(out, &apiv1.ManagerMessage{Msg: &apiv1.ManagerMessage_Endpoints{Endpoints: &apiv1.Endpoints{Endpoints: chunk.items, More: chunk.more}}})
		}
		sent.endpoints = tables.Endpoints
	}
	return out
}

type chunk[T proto.Message] struct {
	items []T
	more  bool
}

// splitBySize cuts items into consecutive chunks of at most limit bytes
// each (an item larger than limit goes alone), all but the last with more
// set. No items is one empty chunk: an empty set is still a set to apply.
func splitBySize[T proto.Message](items []T, limit int) []chunk[T] {
	var out []chunk[T]
	cur, size := []T(nil), 0
	for _, it := range items {
		n := proto.Size(it) + chunkOverhead
		if len(cur) > 0 && size+n > limit {
			out = append(out, chunk[T]{items: cur, more: true})
			cur, size = nil, 0
		}
		cur = append(cur, it)
		size += n
	}
	return append(out, chunk[T]{items: cur})
}

// commitPeer records the peer a node's worker reports (public key, endpoint,
// plugin) in Node.network, only when it differs from what the node holds:
// an unchanged report is no Raft write.
func (d *Dispatcher) commitPeer(ctx context.Context, nodeID string, p *apiv1.NodeNetwork) {
	if n, ok := d.deps.State.Node(nodeID); ok && samePeer(n.GetNetwork(), p) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, commitTimeout)
	defer cancel()
	_, err := fsm.UpdateNode(cctx, d.deps.Raft.Apply, d.deps.State, nodeID, func(n *apiv1.Node) (bool, error) {
		if samePeer(n.GetNetwork(), p) {
			return false, nil
		}
		if n.Network == nil {
			n.Network = &apiv1.NodeNetwork{}
		}
		n.Network.PublicKey, n.Network.Endpoint, n.Network.Plugin = p.GetPublicKey(), p.GetEndpoint(), p.GetPlugin()
		return true, nil
	})
	if err != nil && ctx.Err() == nil {
		d.log.Error("record the node's network peer", "id", nodeID, "error", err)
	}
}

func samePeer(a, b *apiv1.NodeNetwork) bool {
	return a.GetPublicKey() == b.GetPublicKey() && a.GetEndpoint() == b.GetEndpoint() && a.GetPlugin() == b.GetPlugin()
}
