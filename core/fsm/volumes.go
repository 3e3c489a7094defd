package fsm

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// A named volume lives on one node. UpsertVolume creates it, on a node or
// not yet on any; the first placement of a task that mounts it (an
// AssignTasks that gives such a task a node) puts it on that task's node in
// the same entry. Its node never changes after that: the scheduling loop
// constrains every task that mounts it to that node. RemoveVolume is refused
// while a service mounts it.

// VolumeUsers returns the names of the services that mount the volume
// name, sorted.
func VolumeUsers(st *state.State, name string) []string {
	var out []string
	for _, svc := range st.Services() {
		if slices.ContainsFunc(svc.GetSpec().GetMounts(), func(m *apiv1.Mount) bool { return m.GetType() == "volume" && m.GetSource() == name }) {
			out = append(out, svc.GetSpec().GetName())
		}
	}
	return out
}

func (f *FSM) applyUpsertVolume(tx *txn, c *fsmpb.UpsertVolume) any {
	v := c.GetVolume()
	if old, ok := f.state.Volume(v.GetId()); ok && old.GetNodeId() != "" && old.GetNodeId() != v.GetNodeId() {
		return fmt.Errorf("volume %q lives on node %s; it cannot move to %q: %w", old.GetName(), old.GetNodeId(), v.GetNodeId(), sdk.ErrConflict)
	}
	if id := v.GetNodeId(); id != "" {
		if _, ok := f.state.Node(id); !ok {
			return fmt.Errorf("volume %q: node %q: %w", v.GetName(), id, sdk.ErrNotFound)
		}
	}
	return f.putVolume(tx, v)
}

func (f *FSM) putVolume(tx *txn, v *apiv1.Volume) any {
	return upsertNamed(tx, "volume", state.BucketVolumes, v, f.state.VolumeByName, f.state.Volume, f.state.PutVolume,
		func(o *apiv1.Volume, ver uint64) { o.Version = ver },
		func(e *apiv1.Event, o *apiv1.Volume) { e.Object = &apiv1.Event_Volume{Volume: o} })
}

func (f *FSM) applyRemoveVolume(tx *txn, c *fsmpb.RemoveVolume) any {
	if old, ok := f.state.Volume(c.GetId()); ok {
		if users := VolumeUsers(f.state, old.GetName()); len(users) > 0 {
			return fmt.Errorf("volume %q is used by service %s: %w", old.GetName(), strings.Join(users, ", "), sdk.ErrConflict)
		}
	}
	return removeNamed(tx, "volume", state.BucketVolumes, c.GetId(), f.state.Volume, f.state.DeleteVolume,
		func(e *apiv1.Event, o *apiv1.Volume) { e.Object = &apiv1.Event_Volume{Volume: o} })
}

// bindVolumes puts each volume that is on no node yet on the node of the
// first task of ts that mounts it and has a node. A task of ts that is just
// placed (ASSIGNED, not yet taken up by its worker) on another node than a
// volume it mounts lives on (put there before this entry or by an earlier
// task of it: two placements that raced for one unbound volume) is sent
// back to PENDING with no node, in state and in ts (its element replaced),
// so the scheduling loop places it again on the volume's node. Callers put
// ts into state first and write ts out after.
func (f *FSM) bindVolumes(tx *txn, ts []*apiv1.Task) {
	for i, t := range ts {
		if t.GetNodeId() == "" {
			continue
		}
		var unbound []*apiv1.Volume
		refused := ""
		for _, m := range t.GetSpec().GetMounts() {
			if m.GetType() != "volume" {
				continue
			}
			v, ok := f.state.VolumeByName(m.GetSource())
			switch {
			case !ok:
			case v.GetNodeId() == "":
				unbound = append(unbound, v)
			case v.GetNodeId() != t.GetNodeId() && t.GetState() == apiv1.TaskState_TASK_STATE_ASSIGNED:
				refused = fmt.Sprintf("%s%q lives on node %s, not on %s", VolumeElsewherePrefix, v.GetName(), v.GetNodeId(), t.GetNodeId())
			}
			if refused != "" {
				break
			}
		}
		if refused != "" {
			back := proto.CloneOf(t)
			back.NodeId = ""
			back.State = apiv1.TaskState_TASK_STATE_PENDING
			back.Message = refused
			f.state.PutTasks([]*apiv1.Task{back})
			ts[i] = back
			continue
		}
		for _, v := range unbound {
			v = proto.CloneOf(v)
			v.NodeId = t.GetNodeId()
			f.putVolume(tx, v)
		}
	}
}

// VolumeElsewherePrefix starts the message of a task sent back to PENDING
// because a volume it mounts was put on another node than the one it was
// placed on.
const VolumeElsewherePrefix = "placement refused: volume "
