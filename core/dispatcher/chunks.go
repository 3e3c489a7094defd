package dispatcher

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// MaxAssignmentBytes bounds the tasks and removed IDs of one Assignments
// message. It is well under MaxWorkerMessageBytes, so that a message that
// holds several tasks of the largest spec the API accepts
// (api.MaxSpecBytes) still fits with room to spare.
const MaxAssignmentBytes = 1 << 20

// MaxWorkerMessageBytes is the largest message a worker receives: gRPC's
// default receive limit, which workers keep. A single task larger than that
// cannot be sent at all.
const MaxWorkerMessageBytes = 4 << 20

// chunkOverhead is what a task or an ID costs in an Assignments message
// beyond its own size: its field tag and length prefix.
const chunkOverhead = 1 + 5

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

// split cuts a into messages whose tasks and removed IDs add up to at most
// limit bytes each, in order. A task larger than limit goes alone in its
// message; one larger than MaxWorkerMessageBytes is left out and returned
// in dropped. A full set becomes consecutive messages with full and more
// set and a last one with more unset, the end of the set (an empty full
// set is one message); incremental messages are independent. An
// incremental a with nothing in it gives no message.
func split(a *apiv1.Assignments, limit int) (msgs []*apiv1.ManagerMessage, dropped []oversized) {
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
		n := proto.Size(t)
		if n+messageOverhead > MaxWorkerMessageBytes {
			dropped = append(dropped, oversized{taskID: t.GetId(), bytes: n})
			continue
		}
		room(n + chunkOverhead)
		cur.Tasks = append(cur.Tasks, t)
	}
	for _, id := range a.GetRemoved() {
		room(len(id) + chunkOverhead)
		cur.Removed = append(cur.Removed, id)
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
