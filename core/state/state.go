// Package state is the core's in-memory, indexed view of the cluster state.
//
// The store plugin holds the durable copy; this view is loaded from it at
// start and after a snapshot restore, and the FSM updates both on every
// applied command. Reads never leave the process, so loops and the API can
// read as often as they like.
//
// Objects handed out are shared and must be treated as read-only: writers
// replace objects, they never mutate them. Clone before changing.
package state

import (
	"slices"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/sdk/network"
)

// Buckets in the store, one per kind of object.
const (
	BucketServices = "services"
	BucketTasks    = "tasks"
	BucketNodes    = "nodes"
	BucketSecrets  = "secrets"
	BucketVolumes  = "volumes"
	BucketConfigs  = "configs"
	BucketCluster  = "cluster"
)

// Buckets lists every bucket the state uses.
var Buckets = []string{BucketServices, BucketTasks, BucketNodes, BucketSecrets, BucketConfigs, BucketVolumes, BucketCluster}

// ClusterIDKey is the key of the cluster ID in BucketCluster.
const ClusterIDKey = "id"

// SecurityKey is the key of the cluster's security record (CA and join
// secrets) in BucketCluster.
const SecurityKey = "security"

// NetworkKey is the key of the cluster's overlay plan in BucketCluster.
const NetworkKey = "network"

type object interface {
	proto.Message
	GetId() string
}

// table holds one kind of object by ID, with an optional unique name index.
type table[T object] struct {
	byID   map[string]T
	byName map[string]string
	name   func(T) string
}

func newTable[T object](name func(T) string) *table[T] {
	t := &table[T]{byID: map[string]T{}, name: name}
	if name != nil {
		t.byName = map[string]string{}
	}
	return t
}

func (t *table[T]) put(o T) {
	if old, ok := t.byID[o.GetId()]; ok && t.name != nil {
		delete(t.byName, t.name(old))
	}
	t.byID[o.GetId()] = o
	if t.name != nil {
		t.byName[t.name(o)] = o.GetId()
	}
}

func (t *table[T]) del(id string) (T, bool) {
	old, ok := t.byID[id]
	if ok {
		delete(t.byID, id)
		if t.name != nil {
			delete(t.byName, t.name(old))
		}
	}
	return old, ok
}

func (t *table[T]) get(id string) (T, bool) {
	o, ok := t.byID[id]
	return o, ok
}

func (t *table[T]) byNameGet(name string) (T, bool) {
	var zero T
	if t.name == nil {
		return zero, false
	}
	id, ok := t.byName[name]
	if !ok {
		return zero, false
	}
	return t.byID[id], true
}

// lookup finds by exact name, exact ID, then unique ID prefix. ambiguous is
// true when a prefix matched several objects.
func (t *table[T]) lookup(nameOrID string) (o T, ambiguous bool, ok bool) {
	if nameOrID == "" {
		return o, false, false
	}
	if o, ok := t.byNameGet(nameOrID); ok {
		return o, false, true
	}
	if o, ok := t.byID[nameOrID]; ok {
		return o, false, true
	}
	var found T
	n := 0
	for id, obj := range t.byID {
		if strings.HasPrefix(id, nameOrID) {
			found = obj
			n++
		}
	}
	if n == 1 {
		return found, false, true
	}
	return o, n > 1, false
}

func (t *table[T]) list() []T {
	out := make([]T, 0, len(t.byID))
	for _, o := range t.byID {
		out = append(out, o)
	}
	return out
}

// State is the in-memory cluster state. It is safe for concurrent use.
type State struct {
	mu        sync.RWMutex
	clusterID string
	security  *fsmpb.ClusterSecurity
	network   *apiv1.ClusterNetwork
	services  *table[*apiv1.Service]
	tasks     *table[*apiv1.Task]
	nodes     *table[*apiv1.Node]
	secrets   *table[*apiv1.Secret]
	volumes   *table[*apiv1.Volume]
	configs   *table[*apiv1.Config]
	// secondary task indexes: service ID / node ID → task IDs.
	tasksByService map[string]map[string]struct{}
	tasksByNode    map[string]map[string]struct{}
	// sorted caches Tasks' sorted lists between task writes.
	sorted *sortedTasks
}

// New returns an empty State.
func New() *State {
	return &State{
		services:       newTable(func(s *apiv1.Service) string { return s.GetSpec().GetName() }),
		tasks:          newTable[*apiv1.Task](nil),
		nodes:          newTable(func(n *apiv1.Node) string { return n.GetName() }),
		secrets:        newTable(func(s *apiv1.Secret) string { return s.GetName() }),
		volumes:        newTable(func(v *apiv1.Volume) string { return v.GetName() }),
		configs:        newTable(func(c *apiv1.Config) string { return c.GetName() }),
		tasksByService: map[string]map[string]struct{}{},
		tasksByNode:    map[string]map[string]struct{}{},
		sorted:         newSortedTasks(),
	}
}

// Lookup outcome for name-or-ID lookups.
type Lookup int

// Lookup results.
const (
	Found Lookup = iota
	NotFound
	Ambiguous
)

func result(ambiguous, ok bool) Lookup {
	switch {
	case ok:
		return Found
	case ambiguous:
		return Ambiguous
	}
	return NotFound
}

// ClusterID returns the cluster's ID, empty before bootstrap.
func (s *State) ClusterID() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.clusterID
}

// ClusterNetwork returns the cluster's overlay plan: the one stored at bootstrap,
// or the defaults for a cluster created before plans were stored. The
// record is shared: callers must not modify it.
func (s *State) ClusterNetwork() *apiv1.ClusterNetwork {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.network == nil {
		return DefaultNetwork
	}
	return s.network
}

// DefaultNetwork is the overlay plan of a cluster that stored none.
var DefaultNetwork = &apiv1.ClusterNetwork{OverlayRange: network.DefaultRange, NodePrefix: network.DefaultNodePrefix, Domain: DefaultDomain}

// DefaultDomain is the cluster domain of a cluster that stored none.
const DefaultDomain = "warren"

// Security returns the cluster's security record, nil before bootstrap. The
// record is shared: callers must not modify it.
func (s *State) Security() *fsmpb.ClusterSecurity {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.security
}

// Service returns the service with that ID.
func (s *State) Service(id string) (*apiv1.Service, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.services.get(id)
}

// ServiceByName returns the service with that name.
func (s *State) ServiceByName(name string) (*apiv1.Service, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.services.byNameGet(name)
}

// LookupService finds a service by name, ID or unique ID prefix.
func (s *State) LookupService(nameOrID string) (*apiv1.Service, Lookup) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, amb, ok := s.services.lookup(nameOrID)
	return o, result(amb, ok)
}

// Services returns all services in CompareServices order (by name).
func (s *State) Services() []*apiv1.Service {
	s.mu.RLock()
	out := s.services.list()
	s.mu.RUnlock()
	slices.SortFunc(out, CompareServices)
	return out
}

// CompareServices is the order of Services: by name, then ID. It reads only
// the name and the ID, so a stub holding those two stands for a position in
// the list (an API page token).
func CompareServices(a, b *apiv1.Service) int {
	if c := strings.Compare(a.GetSpec().GetName(), b.GetSpec().GetName()); c != 0 {
		return c
	}
	return strings.Compare(a.GetId(), b.GetId())
}

// Task returns the task with that ID.
func (s *State) Task(id string) (*apiv1.Task, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tasks.get(id)
}

// NumTasks returns the number of tasks.
func (s *State) NumTasks() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.tasks.byID)
}

// LookupTask finds a task by ID or unique ID prefix.
func (s *State) LookupTask(idOrPrefix string) (*apiv1.Task, Lookup) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, amb, ok := s.tasks.lookup(idOrPrefix)
	return o, result(amb, ok)
}

// TaskFilter selects tasks; empty fields match everything.
type TaskFilter struct {
	ServiceID string
	NodeID    string
}

// Tasks returns the tasks matching f in CompareTasks order (service name,
// slot, newest first). It reads from the service and node indexes, not a
// full scan, and sorts a list once between writes to its tasks: pages of a
// listing reuse the order. The slice is the caller's; the tasks are shared
// records, not to be modified.
func (s *State) Tasks(f TaskFilter) []*apiv1.Task {
	s.mu.RLock()
	var sorted []*apiv1.Task
	switch {
	case f.ServiceID != "":
		sorted = s.sortedLocked(serviceKey(f.ServiceID), func() []*apiv1.Task {
			return s.gatherLocked(s.tasksByService[f.ServiceID])
		})
	case f.NodeID != "":
		sorted = s.sortedLocked(nodeKey(f.NodeID), func() []*apiv1.Task {
			return s.gatherLocked(s.tasksByNode[f.NodeID])
		})
	default:
		sorted = s.sortedLocked(allTasksKey, s.tasks.list)
	}
	if f.ServiceID == "" || f.NodeID == "" {
		return slices.Clone(sorted)
	}
	out := make([]*apiv1.Task, 0, len(sorted))
	for _, t := range sorted {
		if t.GetNodeId() == f.NodeID {
			out = append(out, t)
		}
	}
	return out
}

// TasksUnordered returns every task in no particular order: for a caller
// that scans them all and needs no order, without Tasks' sort (after a
// task write, sorting 10,000 tasks costs far more than the scan). The
// slice is the caller's; the tasks are shared records, not to be modified.
func (s *State) TasksUnordered() []*apiv1.Task {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.tasks.list()
}

func (s *State) gatherLocked(ids map[string]struct{}) []*apiv1.Task {
	out := make([]*apiv1.Task, 0, len(ids))
	for id := range ids {
		out = append(out, s.tasks.byID[id])
	}
	return out
}

// CompareTasks is the order of Tasks: by service name, slot, creation time
// (newest first) and ID. It reads only those four fields, so a stub holding
// them stands for a position in the list (an API page token).
func CompareTasks(a, b *apiv1.Task) int {
	if c := strings.Compare(a.GetServiceName(), b.GetServiceName()); c != 0 {
		return c
	}
	if a.GetSlot() != b.GetSlot() {
		if a.GetSlot() < b.GetSlot() {
			return -1
		}
		return 1
	}
	if c := a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()); c != 0 {
		return -c // newest first within a slot
	}
	return strings.Compare(a.GetId(), b.GetId())
}

// Node returns the node with that ID.
func (s *State) Node(id string) (*apiv1.Node, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.nodes.get(id)
}

// LookupNode finds a node by name, ID or unique ID prefix.
func (s *State) LookupNode(nameOrID string) (*apiv1.Node, Lookup) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, amb, ok := s.nodes.lookup(nameOrID)
	return o, result(amb, ok)
}

// Nodes returns all nodes in CompareNodes order (by name).
func (s *State) Nodes() []*apiv1.Node {
	s.mu.RLock()
	out := s.nodes.list()
	s.mu.RUnlock()
	slices.SortFunc(out, CompareNodes)
	return out
}

// CompareNodes is the order of Nodes: by name, then ID. It reads only the
// name and the ID, so a stub holding those two stands for a position in the
// list (an API page token).
func CompareNodes(a, b *apiv1.Node) int {
	if c := strings.Compare(a.GetName(), b.GetName()); c != 0 {
		return c
	}
	return strings.Compare(a.GetId(), b.GetId())
}

// SecretByName returns the secret with that name.
func (s *State) SecretByName(name string) (*apiv1.Secret, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.secrets.byNameGet(name)
}

// Secret returns the secret with that ID.
func (s *State) Secret(id string) (*apiv1.Secret, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.secrets.get(id)
}

// LookupSecret finds a secret by name, full ID or unique ID prefix.
func (s *State) LookupSecret(nameOrID string) (*apiv1.Secret, Lookup) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, amb, ok := s.secrets.lookup(nameOrID)
	return o, result(amb, ok)
}

// Secrets returns every secret, by name.
func (s *State) Secrets() []*apiv1.Secret {
	s.mu.RLock()
	out := s.secrets.list()
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *apiv1.Secret) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// ConfigByName returns the config with that name.
func (s *State) ConfigByName(name string) (*apiv1.Config, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.configs.byNameGet(name)
}

// Config returns the config with that ID.
func (s *State) Config(id string) (*apiv1.Config, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.configs.get(id)
}

// LookupConfig finds a config by name, full ID or unique ID prefix.
func (s *State) LookupConfig(nameOrID string) (*apiv1.Config, Lookup) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, amb, ok := s.configs.lookup(nameOrID)
	return o, result(amb, ok)
}

// Configs returns every config, by name.
func (s *State) Configs() []*apiv1.Config {
	s.mu.RLock()
	out := s.configs.list()
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *apiv1.Config) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// LookupVolume finds a volume by name, full ID or unique ID prefix.
func (s *State) LookupVolume(nameOrID string) (*apiv1.Volume, Lookup) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	o, amb, ok := s.volumes.lookup(nameOrID)
	return o, result(amb, ok)
}

// Volumes returns every volume, by name.
func (s *State) Volumes() []*apiv1.Volume {
	s.mu.RLock()
	out := s.volumes.list()
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b *apiv1.Volume) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// VolumeByName returns the volume with that name.
func (s *State) VolumeByName(name string) (*apiv1.Volume, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.volumes.byNameGet(name)
}

// Volume returns the volume with that ID.
func (s *State) Volume(id string) (*apiv1.Volume, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.volumes.get(id)
}

// Counts returns the number of services, tasks and nodes.
func (s *State) Counts() (services, tasks, nodes int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.services.byID), len(s.tasks.byID), len(s.nodes.byID)
}
