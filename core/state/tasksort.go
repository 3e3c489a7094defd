package state

import (
	"slices"
	"sync"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// sortedTasks caches the sorted task lists Tasks returns, one per filter
// key, until a task of that key changes: a listing that pages through a
// service's 10,000 tasks sorts them once, not once per page. Each key has a
// generation, bumped (under the state's write lock) when one of its tasks is
// put or deleted; a cached list serves only while its generation is the
// key's. Sorting happens outside the state's lock, so a list sorted while a
// write went by is stored with the old generation and never served.
type sortedTasks struct {
	// gens and seq are guarded by the state's mu.
	gens map[listKey]uint64
	seq  uint64

	mu    sync.Mutex
	lists map[listKey]sortedList
}

type sortedList struct {
	gen  uint64
	list []*apiv1.Task
}

func newSortedTasks() *sortedTasks {
	return &sortedTasks{gens: map[listKey]uint64{}, lists: map[listKey]sortedList{}}
}

// listKey names a list: all tasks, a service's, a node's (a struct, so
// that the FSM's writes build no key strings).
type listKey struct {
	kind byte // 0: all, 's': a service's, 'n': a node's
	id   string
}

var allTasksKey = listKey{}

func serviceKey(id string) listKey { return listKey{'s', id} }
func nodeKey(id string) listKey    { return listKey{'n', id} }

// touchedLocked marks the lists t is in changed, after t was put or
// deleted and the indexes updated; the caller holds the state's write lock.
// A key whose last task went is forgotten (its generation back to 0): no
// list of it is cached with generation 0 but the empty one, since readers
// see generation 0 only while the key has no task.
func (s *State) touchedLocked(t *apiv1.Task) {
	c := s.sorted
	c.seq++
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range [3]listKey{allTasksKey, serviceKey(t.GetServiceId()), nodeKey(t.GetNodeId())} {
		delete(c.lists, k)
		c.gens[k] = c.seq
	}
	if s.tasksByService[t.GetServiceId()] == nil {
		delete(c.gens, serviceKey(t.GetServiceId()))
	}
	if s.tasksByNode[t.GetNodeId()] == nil {
		delete(c.gens, nodeKey(t.GetNodeId()))
	}
}

// get returns the cached list of key if it is of generation gen.
func (c *sortedTasks) get(key listKey, gen uint64) ([]*apiv1.Task, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.lists[key]
	if !ok || l.gen != gen {
		return nil, false
	}
	return l.list, true
}

// put caches the sorted list of key at generation gen, unless a later one
// is there already.
func (c *sortedTasks) put(key listKey, gen uint64, list []*apiv1.Task) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l, ok := c.lists[key]; ok && l.gen >= gen {
		return
	}
	c.lists[key] = sortedList{gen: gen, list: list}
}

// sortedLocked returns key's tasks in CompareTasks order: the cached list,
// or gather's result sorted and cached. The caller holds the state's read
// lock, which sortedLocked releases (sorting runs without it). The list is
// shared: the caller copies it before handing it out.
func (s *State) sortedLocked(key listKey, gather func() []*apiv1.Task) []*apiv1.Task {
	gen := s.sorted.gens[key]
	if l, ok := s.sorted.get(key, gen); ok {
		s.mu.RUnlock()
		return l
	}
	out := gather()
	s.mu.RUnlock()
	slices.SortFunc(out, CompareTasks)
	s.sorted.put(key, gen, out)
	return out
}

// reset forgets every list and generation; the caller holds the state's
// write lock. A list sorted before and stored after has a generation above
// 0 (its key had tasks) or is empty, and any task put after the reset
// takes its key past every generation handed out before.
func (c *sortedTasks) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.lists)
	clear(c.gens)
}
