package state

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// The write side is used by the FSM only, from one goroutine at a time.

// SetClusterID records the cluster's ID.
func (s *State) SetClusterID(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusterID = id
}

// SetNetwork records the cluster's overlay plan. The state keeps n.
func (s *State) SetNetwork(n *apiv1.ClusterNetwork) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.network = n
}

// SetSecurity records the cluster's security record. The state keeps sec:
// callers must not modify it afterwards.
func (s *State) SetSecurity(sec *fsmpb.ClusterSecurity) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.security = sec
}

// PutService inserts or replaces a service.
func (s *State) PutService(o *apiv1.Service) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services.put(o)
}

// DeleteService removes a service.
func (s *State) DeleteService(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services.del(id)
}

// PutTasks inserts or replaces tasks, all at once for readers.
func (s *State) PutTasks(ts []*apiv1.Task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		s.putTaskLocked(t)
	}
}

func (s *State) putTaskLocked(t *apiv1.Task) {
	if old, ok := s.tasks.get(t.GetId()); ok {
		unindex(s.tasksByService, old.GetServiceId(), old.GetId())
		unindex(s.tasksByNode, old.GetNodeId(), old.GetId())
		s.touchedLocked(old)
	}
	s.tasks.put(t)
	index(s.tasksByService, t.GetServiceId(), t.GetId())
	index(s.tasksByNode, t.GetNodeId(), t.GetId())
	s.touchedLocked(t)
}

// DeleteTasks removes tasks, all at once for readers.
func (s *State) DeleteTasks(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if old, ok := s.tasks.del(id); ok {
			unindex(s.tasksByService, old.GetServiceId(), id)
			unindex(s.tasksByNode, old.GetNodeId(), id)
			s.touchedLocked(old)
		}
	}
}

func index(m map[string]map[string]struct{}, key, id string) {
	if key == "" {
		return
	}
	set := m[key]
	if set == nil {
		set = map[string]struct{}{}
		m[key] = set
	}
	set[id] = struct{}{}
}

func unindex(m map[string]map[string]struct{}, key, id string) {
	if set := m[key]; set != nil {
		delete(set, id)
		if len(set) == 0 {
			delete(m, key)
		}
	}
}

// PutNode inserts or replaces a node.
func (s *State) PutNode(o *apiv1.Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes.put(o)
}

// DeleteNode removes a node.
func (s *State) DeleteNode(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodes.del(id)
}

// PutSecret inserts or replaces a secret.
func (s *State) PutSecret(o *apiv1.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets.put(o)
}

// DeleteSecret removes a secret.
func (s *State) DeleteSecret(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secrets.del(id)
}

// PutConfig inserts or replaces a config.
func (s *State) PutConfig(o *apiv1.Config) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configs.put(o)
}

// DeleteConfig removes a config.
func (s *State) DeleteConfig(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.configs.del(id)
}

// PutVolume inserts or replaces a volume.
func (s *State) PutVolume(o *apiv1.Volume) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.volumes.put(o)
}

// DeleteVolume removes a volume.
func (s *State) DeleteVolume(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.volumes.del(id)
}

// Load decodes one stored record into the state; it is how the view is
// rebuilt from the store plugin.
func (s *State) Load(bucket, key string, value []byte) error {
	var msg proto.Message
	switch bucket {
	case BucketServices:
		msg = &apiv1.Service{}
	case BucketTasks:
		msg = &apiv1.Task{}
	case BucketNodes:
		msg = &apiv1.Node{}
	case BucketSecrets:
		msg = &apiv1.Secret{}
	case BucketVolumes:
		msg = &apiv1.Volume{}
	case BucketConfigs:
		msg = &apiv1.Config{}
	case BucketCluster:
		switch key {
		case ClusterIDKey:
			s.SetClusterID(string(value))
		case SecurityKey:
			sec := &fsmpb.ClusterSecurity{}
			if err := proto.Unmarshal(value, sec); err != nil {
				return fmt.Errorf("state: decode %s/%s: %w", bucket, key, err)
			}
			s.SetSecurity(sec)
		case NetworkKey:
			n := &apiv1.ClusterNetwork{}
			if err := proto.Unmarshal(value, n); err != nil {
				return fmt.Errorf("state: decode %s/%s: %w", bucket, key, err)
			}
			s.SetNetwork(n)
		}
		return nil
	default:
		return fmt.Errorf("state: unknown bucket %q", bucket)
	}
	if err := proto.Unmarshal(value, msg); err != nil {
		return fmt.Errorf("state: decode %s/%s: %w", bucket, key, err)
	}
	switch o := msg.(type) {
	case *apiv1.Service:
		s.PutService(o)
	case *apiv1.Task:
		s.PutTasks([]*apiv1.Task{o})
	case *apiv1.Node:
		s.PutNode(o)
	case *apiv1.Secret:
		s.PutSecret(o)
	case *apiv1.Volume:
		s.PutVolume(o)
	case *apiv1.Config:
		s.PutConfig(o)
	}
	return nil
}

// Reset empties the state; the FSM calls it before reloading after a
// snapshot restore.
func (s *State) Reset() {
	fresh := New()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusterID = ""
	s.security = nil
	s.network = nil
	s.services, s.tasks, s.nodes = fresh.services, fresh.tasks, fresh.nodes
	s.secrets, s.volumes, s.configs = fresh.secrets, fresh.volumes, fresh.configs
	s.tasksByService, s.tasksByNode = fresh.tasksByService, fresh.tasksByNode
	s.sorted.reset()
}
