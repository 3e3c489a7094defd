package dispatcher

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// MaxAssignmentBytes bounds the tasks, specs and IDs of one Assignments
// message. It is well under MaxWorkerMessageBytes, so that a message that
// holds the largest spec the API accepts (api.MaxSpecBytes) and tasks
// still fits with room to spare.
const MaxAssignmentBytes = 1 << 20

// MaxWorkerMessageBytes is the largest message a worker receives: gRPC's
// default receive limit, which workers keep. A single task (with its spec,
// when that has to go along) larger than that cannot be sent at all.
const MaxWorkerMessageBytes = 4 << 20

// chunkOverhead is what a task or an ID costs in an Assignments message
// beyond its own size: its field tag and length prefix.
const chunkOverhead = 1 + 5

// mapEntryOverhead is what an entry of specs or spec_refs costs beyond its
// task ID and spec: a 32-character reference, tags and length prefixes.
const mapEntryOverhead = 32 + 16

// messageOverhead bounds what a ManagerMessage with one task adds to the
// task's size: the tags and length prefixes around it.
const messageOverhead = 64

// oversized is a task that was left out of the messages because it alone
// is larger than a worker can receive.
type oversized struct {
	taskID string
	bytes  int
}

func (o oversized) String() string {
	return fmt.Sprintf("task %s is %d bytes, too large for the %d bytes a worker receives in one message", o.taskID, o.bytes, MaxWorkerMessageBytes)
}

// specCache is what a session knows of the specs its worker holds: the
// references it sent and not told it to forget, with the number of known
// tasks that use each, and the reference each such task uses. Only the
// session's goroutine uses it.
type specCache struct {
	users  map[string]int    // ref → tasks using it (0: unused, to forget)
	byTask map[string]string // task ID → ref
}

func newSpecCache() *specCache {
	return &specCache{users: map[string]int{}, byTask: map[string]string{}}
}

// reset forgets everything: a full set starts the worker's specs afresh.
func (c *specCache) reset() {
	clear(c.users)
	clear(c.byTask)
}

// use records that task id now uses ref.
func (c *specCache) use(id, ref string) {
	c.release(id)
	c.byTask[id] = ref
	c.users[ref]++
}

// release records that task id uses no spec of the cache any more.
func (c *specCache) release(id string) {
	if old, ok := c.byTask[id]; ok {
		c.users[old]--
		delete(c.byTask, id)
	}
}

// unused removes and returns the references no task uses.
func (c *specCache) unused() []string {
	var out []string
	for ref, n := range c.users {
		if n <= 0 {
			out = append(out, ref)
			delete(c.users, ref)
		}
	}
	return out
}

// specRef is the reference of a spec: a digest of its deterministic
// encoding.
func specRef(s *apiv1.ServiceSpec) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(s)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// split cuts a into messages whose contents add up to at most limit bytes
// each, in order. With a cache, each task goes without its spec, which is
// sent once, in the first message that needs it, unless the worker has it
// already; references no task uses any more are sent in forget_specs of
// the last message. (A full a resets the cache.) A task larger than limit
// goes alone in its message; one larger than MaxWorkerMessageBytes is left
// out and returned in dropped. A full set becomes consecutive messages
// with full and more set and a last one with more unset, the end of the
// set (an empty full set is one message); incremental messages are
// independent. An incremental a with nothing in it gives no message.
func split(a *apiv1.Assignments, limit int, cache *specCache) (msgs []*apiv1.ManagerMessage, dropped []oversized) {
	if a.GetFull() && cache != nil {
		cache.reset()
	}
	var cur *apiv1.Assignments
	size := 0
	flush := func() {
		if cur != nil {
			msgs = append(msgs, &apiv1.ManagerMessage{Msg: &apiv1.ManagerMessage_Assignments{Assignments: cur}})
		}
		cur, size = nil, 0
	}
	room := func(n int) {
		if cur != nil && size+n > limit {
			flush()
		}
		if cur == nil {
			cur = &apiv1.Assignments{Full: a.GetFull()}
		}
		size += n
	}
	for _, t := range a.GetTasks() {
		if cache == nil || t.GetSpec() == nil {
			n := proto.Size(t)
			if n+messageOverhead > MaxWorkerMessageBytes {
				dropped = append(dropped, oversized{taskID: t.GetId(), bytes: n})
				continue
			}
			if cache != nil {
				cache.release(t.GetId())
			}
			room(n + chunkOverhead)
			cur.Tasks = append(cur.Tasks, t)
			continue
		}
		bare := proto.CloneOf(t)
		bare.Spec = nil
		ref := specRef(t.GetSpec())
		_, has := cache.users[ref]
		n := proto.Size(bare) + chunkOverhead + len(t.GetId()) + mapEntryOverhead
		if !has {
			n += proto.Size(t.GetSpec()) + mapEntryOverhead
		}
		if n+messageOverhead > MaxWorkerMessageBytes {
			dropped = append(dropped, oversized{taskID: t.GetId(), bytes: n})
			continue
		}
		room(n)
		if !has {
			if cur.Specs == nil {
				cur.Specs = map[string]*apiv1.ServiceSpec{}
			}
			cur.Specs[ref] = t.GetSpec()
		}
		if cur.SpecRefs == nil {
			cur.SpecRefs = map[string]string{}
		}
		cur.SpecRefs[t.GetId()] = ref
		cur.Tasks = append(cur.Tasks, bare)
		cache.use(t.GetId(), ref)
	}
	for _, id := range a.GetRemoved() {
		if cache != nil {
			cache.release(id)
		}
		room(len(id) + chunkOverhead)
		cur.Removed = append(cur.Removed, id)
	}
	if cache != nil {
		for _, ref := range cache.unused() {
			room(len(ref) + chunkOverhead)
			cur.ForgetSpecs = append(cur.ForgetSpecs, ref)
		}
	}
	if cur == nil && a.GetFull() {
		cur = &apiv1.Assignments{Full: true}
	}
	flush()
	if a.GetFull() {
		for _, m := range msgs[:len(msgs)-1] {
			m.GetAssignments().More = true
		}
	}
	return msgs, dropped
}
