package dispatcher

import (
	"cmp"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/state"
)

// fileKey is a TaskFileKey as a map key.
type fileKey struct {
	kind     fsm.FileKind
	name     string
	revision uint64
}

func (k fileKey) pb() *apiv1.TaskFileKey {
	return &apiv1.TaskFileKey{Kind: string(k.kind), Name: k.name, Revision: k.revision}
}

// wantsFiles reports whether a task's secrets and configs must be on its
// worker: the manager wants it running and it has not ended. A task being
// stopped needs none (it was given them at its start).
func wantsFiles(t *apiv1.Task) bool {
	return t.GetDesiredState() == apiv1.TaskState_TASK_STATE_RUNNING && !Terminal(t.GetState())
}

// neededFiles returns the secrets and configs (kind, name, revision) the
// tasks assigned to node use.
func (d *Dispatcher) neededFiles(nodeID string) map[fileKey]struct{} {
	need := map[fileKey]struct{}{}
	for _, t := range d.deps.State.Tasks(state.TaskFilter{NodeID: nodeID}) {
		if !wantsFiles(t) {
			continue
		}
		for _, kind := range []fsm.FileKind{fsm.KindSecret, fsm.KindConfig} {
			for _, r := range kind.Refs(t.GetSpec()) {
				need[fileKey{kind, r.GetName(), r.GetRevision()}] = struct{}{}
			}
		}
	}
	return need
}

// fileData returns the plaintext of one revision of a secret or config,
// or an error when the cluster no longer holds that revision.
func (d *Dispatcher) fileData(k fileKey) ([]byte, error) {
	switch k.kind {
	case fsm.KindSecret:
		sec, ok := d.deps.State.SecretByName(k.name)
		if !ok || sec.GetRevision() != k.revision {
			return nil, fmt.Errorf("secret %q revision %d is not in the cluster state", k.name, k.revision)
		}
		return pki.Open(d.deps.KEK, sec.GetData(), fsm.SecretAAD(sec.GetId(), sec.GetRevision()))
	case fsm.KindConfig:
		c, ok := d.deps.State.ConfigByName(k.name)
		if !ok || c.GetRevision() != k.revision {
			return nil, fmt.Errorf("config %q revision %d is not in the cluster state", k.name, k.revision)
		}
		return c.GetData(), nil
	}
	return nil, fmt.Errorf("unknown file kind %q", k.kind)
}

// filesMessages returns the TaskFiles messages that bring the worker's
// files from what it was sent (s.files) to what its tasks need now, and
// records the new set. full starts the worker's set afresh. Puts come in
// messages of at most about MaxAssignmentBytes, the forgets with the last.
// A task that runs already has its files in place and needs the worker's
// copy no more. A revision the cluster no longer holds (replaced meanwhile) is
// skipped: the task that wanted it is being replaced.
func (d *Dispatcher) filesMessages(s *session, full bool) []*apiv1.ManagerMessage {
	need := d.neededFiles(s.nodeID)
	if full {
		clear(s.files)
	}
	var puts []fileKey
	for k := range need {
		if _, sent := s.files[k]; !sent {
			puts = append(puts, k)
		}
	}
	var forgets []*apiv1.TaskFileKey
	for k := range s.files {
		if _, ok := need[k]; !ok {
			forgets = append(forgets, k.pb())
			delete(s.files, k)
		}
	}
	if len(puts) == 0 && len(forgets) == 0 {
		return nil
	}
	slices.SortFunc(puts, func(a, b fileKey) int {
		return cmp.Or(cmp.Compare(a.kind, b.kind), cmp.Compare(a.name, b.name), cmp.Compare(a.revision, b.revision))
	})
	var msgs []*apiv1.ManagerMessage
	cur := &apiv1.TaskFiles{Full: full}
	size := 0
	for _, k := range puts {
		data, err := d.fileData(k)
		if err != nil {
			d.log.Warn("a task's file cannot be sent", "node", s.nodeID, "kind", k.kind, "name", k.name, "revision", k.revision, "error", err)
			continue
		}
		if size+len(data) > MaxAssignmentBytes && len(cur.Put) > 0 {
			msgs = append(msgs, &apiv1.ManagerMessage{Msg: &apiv1.ManagerMessage_Files{Files: cur}})
			cur, size = &apiv1.TaskFiles{}, 0
		}
		cur.Put = append(cur.Put, &apiv1.TaskFile{Key: k.pb(), Data: data})
		size += len(data) + messageOverhead
		s.files[k] = struct{}{}
	}
	cur.Forget = forgets
	if proto.Size(cur) > 0 {
		msgs = append(msgs, &apiv1.ManagerMessage{Msg: &apiv1.ManagerMessage_Files{Files: cur}})
	}
	return msgs
}
