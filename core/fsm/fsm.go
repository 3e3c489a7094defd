package fsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/sdk/store"
)

// FSM is the Raft state machine. It implements raft.BatchingFSM.
type FSM struct {
	store  store.Store
	state  *state.State
	bus    *events.Broker
	logger hclog.Logger

	// applied is the index of the last entry applied to the view; entries
	// at or below it are skipped (after a restart: the store's index).
	applied uint64
	writer  *writer
}

var _ raft.BatchingFSM = (*FSM)(nil)

// New loads the state view from st and returns an FSM that writes to it.
func New(ctx context.Context, st store.Store, view *state.State, bus *events.Broker, logger hclog.Logger) (*FSM, error) {
	f := &FSM{store: st, state: view, bus: bus, logger: logger.Named("fsm")}
	if err := f.reload(ctx); err != nil {
		return nil, err
	}
	f.writer = newWriter(st, f.applied, f.logger)
	return f, nil
}

// reload rebuilds the view from the store.
func (f *FSM) reload(ctx context.Context) error {
	idx, err := f.store.AppliedIndex(ctx)
	if err != nil {
		return fmt.Errorf("fsm: read applied index: %w", err)
	}
	f.state.Reset()
	for _, b := range state.Buckets {
		recs, err := f.store.List(ctx, b, "")
		if err != nil {
			return fmt.Errorf("fsm: load bucket %q: %w", b, err)
		}
		for _, r := range recs {
			if err := f.state.Load(r.Bucket, r.Key, r.Value); err != nil {
				return err
			}
		}
	}
	f.applied = idx
	return nil
}

// AppliedIndex is the index of the last entry applied to the state view.
func (f *FSM) AppliedIndex() uint64 { return f.applied }

// Flush waits until every applied entry is in the store. Raft's apply
// goroutine must not be running an Apply concurrently for the result to be
// final; tests and shutdown use it.
func (f *FSM) Flush() { f.writer.flush() }

// Close flushes what it can and stops the store writer; entries not yet
// stored are replayed from the Raft log on the next start.
func (f *FSM) Close() {
	done := make(chan struct{})
	go func() { f.writer.flush(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		f.logger.Warn("store did not catch up within 10s of shutdown")
	}
	f.writer.close()
}

// Apply applies one log entry.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies consecutive log entries as one store batch, publishing
// the events of each entry as soon as that entry is in the view.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	tx := &txn{}
	var last uint64
	for i, l := range logs {
		if l.Index <= f.applied {
			// Replayed after a restart: already in the store. Nobody
			// waits for a replayed entry's result; a proposer that does
			// (Raft handed out an index the store has applied: its log
			// went back behind the store) gets an error, never a silent
			// success for a write that was dropped.
			results[i] = fmt.Errorf("fsm: entry %d was not applied: the state is at index %d already "+
				"(a replay after a restart, or Raft's log went back behind the state store): %w", l.Index, f.applied, sdk.ErrDataLoss)
			continue
		}
		last = l.Index
		if l.Type != raft.LogCommand {
			continue
		}
		tx.index = l.Index
		results[i] = f.applyOne(tx, l.Data)
		// Each entry's events go out as soon as it is in the view: the
		// first entries of a long batch must not wait for the last.
		f.bus.Publish(tx.events)
		tx.events = nil
	}
	if last == 0 {
		return results
	}
	f.writer.enqueue(tx.ops, last)
	f.applied = last
	return results
}

// txn collects the store writes and events of one batch.
type txn struct {
	index  uint64
	ops    []store.Op
	events []*apiv1.Event
}

func (tx *txn) put(bucket, key string, msg proto.Message) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		panic(fmt.Sprintf("fsm: marshal %T: %v", msg, err)) // only on a programming error
	}
	tx.ops = append(tx.ops, store.Op{Type: store.OpPut, Bucket: bucket, Key: key, Value: b})
}

func (tx *txn) del(bucket, key string) {
	tx.ops = append(tx.ops, store.Op{Type: store.OpDelete, Bucket: bucket, Key: key})
}

func (tx *txn) event(kind string, action apiv1.EventAction, id, name string, set func(*apiv1.Event)) {
	ev := &apiv1.Event{Index: tx.index, Kind: kind, Action: action, Id: id, Name: name, Time: timestamppb.Now()}
	if set != nil {
		set(ev)
	}
	tx.events = append(tx.events, ev)
}

// applyOne decodes and applies one command. It returns the applied object
// or an error; a command that fails validation changes nothing.
//
// The decoded command belongs to this entry alone, so the apply functions
// keep its objects in the state view as they are, without copying them;
// objects already in the view are shared and are copied before a change.
func (f *FSM) applyOne(tx *txn, data []byte) any {
	t, cmd, ok, err := Decode(data)
	if err != nil {
		f.logger.Error("cannot apply entry", "index", tx.index, "error", err)
		return err
	}
	if !ok {
		f.logger.Warn("skipping unknown ignorable command", "index", tx.index, "type", t)
		return nil
	}
	switch c := cmd.(type) {
	case *fsmpb.CreateService:
		return f.applyCreateService(tx, c)
	case *fsmpb.UpdateService:
		return f.applyUpdateService(tx, c)
	case *fsmpb.RemoveService:
		return f.applyRemoveService(tx, c)
	case *fsmpb.UpsertNode:
		return f.applyUpsertNode(tx, c)
	case *fsmpb.RemoveNode:
		return f.applyRemoveNode(tx, c)
	case *fsmpb.UpsertTasks:
		return f.applyUpsertTasks(tx, c)
	case *fsmpb.RemoveTasks:
		return f.applyRemoveTasks(tx, c)
	case *fsmpb.UpsertSecret:
		return f.applyUpsertSecret(tx, c)
	case *fsmpb.RemoveSecret:
		return f.applyRemoveSecret(tx, c)
	case *fsmpb.UpsertConfig:
		return f.applyUpsertConfig(tx, c)
	case *fsmpb.RemoveConfig:
		return f.applyRemoveConfig(tx, c)
	case *fsmpb.UpsertVolume:
		return f.applyUpsertVolume(tx, c)
	case *fsmpb.RemoveVolume:
		return f.applyRemoveVolume(tx, c)
	case *fsmpb.SetClusterInfo:
		return f.applySetClusterInfo(tx, c)
	case *fsmpb.SetSecurity:
		return f.applySetSecurity(tx, c)
	case *fsmpb.Batch:
		return f.applyBatchCommand(tx, c)
	case *fsmpb.CreateTasks:
		return f.applyCreateTasks(tx, c)
	case *fsmpb.AssignTasks:
		return f.applyAssignTasks(tx, c)
	case *fsmpb.ReportStatus:
		return f.applyReportStatus(tx, c)
	case *fsmpb.SetDesiredState:
		return f.applySetDesiredState(tx, c)
	case *fsmpb.MarkNodesDown:
		return f.applyMarkNodesDown(tx, c)
	}
	return fmt.Errorf("fsm: no apply function for command type %d", t)
}

// applyBatchCommand applies a Batch's commands in order, each with its own
// result: one failing changes nothing of its own and does not stop the
// others, as if each had been an entry of its own.
func (f *FSM) applyBatchCommand(tx *txn, c *fsmpb.Batch) any {
	results := make([]any, len(c.GetCommands()))
	for i, data := range c.GetCommands() {
		if len(data) > 0 && CommandType(data[0])&^IgnoreUnknownTypeFlag == BatchType {
			results[i] = invalid("a batch command cannot hold another batch")
			continue
		}
		results[i] = f.applyOne(tx, data)
	}
	return results
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, sdk.ErrInvalidArgument)...)
}

func (f *FSM) applyCreateService(tx *txn, c *fsmpb.CreateService) any {
	s := c.GetService()
	if s.GetId() == "" || s.GetSpec().GetName() == "" {
		return invalid("create service: id and name are required")
	}
	if _, ok := f.state.Service(s.GetId()); ok {
		return fmt.Errorf("service id %q: %w", s.GetId(), sdk.ErrAlreadyExists)
	}
	if err := f.resolveRefs(s.GetSpec().GetName(), s.GetSpec()); err != nil {
		return err
	}
	if _, ok := f.state.ServiceByName(s.GetSpec().GetName()); ok {
		return fmt.Errorf("service %q: %w", s.GetSpec().GetName(), sdk.ErrAlreadyExists)
	}
	if err := PortsFree(f.state.Services, s.GetId(), s.GetSpec()); err != nil {
		return err
	}
	s.Version = tx.index
	f.state.PutService(s)
	tx.put(state.BucketServices, s.GetId(), s)
	tx.event("service", apiv1.EventAction_EVENT_ACTION_CREATED, s.GetId(), s.GetSpec().GetName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Service{Service: s} })
	return s
}

func (f *FSM) applyUpdateService(tx *txn, c *fsmpb.UpdateService) any {
	s := c.GetService()
	old, ok := f.state.Service(s.GetId())
	if !ok {
		return fmt.Errorf("service %q: %w", s.GetId(), sdk.ErrNotFound)
	}
	if v := c.GetExpectedVersion(); v != 0 && v != old.GetVersion() {
		return fmt.Errorf("service %q is at version %d, not %d: %w", old.GetSpec().GetName(), old.GetVersion(), v, sdk.ErrConflict)
	}
	if other, ok := f.state.ServiceByName(s.GetSpec().GetName()); ok && other.GetId() != s.GetId() {
		return fmt.Errorf("service %q: %w", s.GetSpec().GetName(), sdk.ErrAlreadyExists)
	}
	if err := PortsFree(f.state.Services, s.GetId(), s.GetSpec()); err != nil {
		return err
	}
	if err := f.resolveRefs(s.GetSpec().GetName(), s.GetSpec()); err != nil {
		return err
	}
	s.Version = tx.index
	s.CreatedAt = old.GetCreatedAt()
	f.state.PutService(s)
	tx.put(state.BucketServices, s.GetId(), s)
	tx.event("service", apiv1.EventAction_EVENT_ACTION_UPDATED, s.GetId(), s.GetSpec().GetName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Service{Service: s} })
	return s
}

func (f *FSM) applyRemoveService(tx *txn, c *fsmpb.RemoveService) any {
	old, ok := f.state.Service(c.GetId())
	if !ok {
		return fmt.Errorf("service %q: %w", c.GetId(), sdk.ErrNotFound)
	}
	f.state.DeleteService(old.GetId())
	tx.del(state.BucketServices, old.GetId())
	tx.event("service", apiv1.EventAction_EVENT_ACTION_DELETED, old.GetId(), old.GetSpec().GetName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Service{Service: old} })
	// The service's tasks are no longer wanted: workers stop them and the
	// reconciler removes them once they are down.
	var changed []*apiv1.Task
	for _, t := range f.state.Tasks(state.TaskFilter{ServiceID: old.GetId()}) {
		if t.GetDesiredState() == apiv1.TaskState_TASK_STATE_SHUTDOWN {
			continue
		}
		t = proto.CloneOf(t)
		t.DesiredState = apiv1.TaskState_TASK_STATE_SHUTDOWN
		t.Version = tx.index
		changed = append(changed, t)
	}
	f.putTasks(tx, changed, false)
	return old
}

// putTasks stores ts and publishes their events; byWorker marks the events
// as their workers' own reports (Event.worker_report).
func (f *FSM) putTasks(tx *txn, ts []*apiv1.Task, byWorker bool) {
	if len(ts) == 0 {
		return
	}
	f.state.PutTasks(ts)
	f.bindVolumes(tx, ts)
	for _, t := range ts {
		tx.put(state.BucketTasks, t.GetId(), t)
		tx.event("task", apiv1.EventAction_EVENT_ACTION_UPDATED, t.GetId(), t.GetServiceName(), func(e *apiv1.Event) {
			e.Object = &apiv1.Event_Task{Task: t}
			e.WorkerReport = byWorker
		})
	}
}

func (f *FSM) applyUpsertNode(tx *txn, c *fsmpb.UpsertNode) any {
	n := c.GetNode()
	if n.GetId() == "" || n.GetName() == "" {
		return invalid("upsert node: id and name are required")
	}
	action := apiv1.EventAction_EVENT_ACTION_CREATED
	old, ok := f.state.Node(n.GetId())
	if v := c.GetExpectedVersion(); v != 0 && (!ok || old.GetVersion() != v) {
		return fmt.Errorf("node %s changed since it was read (version %d, expected %d): %w", n.GetId(), old.GetVersion(), v, sdk.ErrConflict)
	}
	if ok {
		action = apiv1.EventAction_EVENT_ACTION_UPDATED
		if n.CreatedAt == nil {
			n.CreatedAt = old.GetCreatedAt()
		}
	}
	if other, ok := f.state.LookupNode(n.GetName()); ok == state.Found && other.GetId() != n.GetId() && other.GetName() == n.GetName() {
		return fmt.Errorf("node name %q is taken by node %s: %w", n.GetName(), other.GetId(), sdk.ErrAlreadyExists)
	}
	if sub := n.GetNetwork().GetSubnet(); sub != "" && sub != old.GetNetwork().GetSubnet() {
		if err := f.checkSubnet(n.GetId(), sub); err != nil {
			return err
		}
	}
	n.Version = tx.index
	f.state.PutNode(n)
	tx.put(state.BucketNodes, n.GetId(), n)
	tx.event("node", action, n.GetId(), n.GetName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Node{Node: n} })
	return n
}

// checkSubnet refuses a node subnet that is not one of the cluster plan's
// or that another node holds: two nodes never share one.
func (f *FSM) checkSubnet(nodeID, subnet string) error {
	plan := f.state.ClusterNetwork()
	p, err := network.ParsePlan(plan.GetOverlayRange(), int(plan.GetNodePrefix()))
	if err != nil {
		return fmt.Errorf("node %s: the cluster's overlay plan: %w", nodeID, err)
	}
	pf, err := netip.ParsePrefix(subnet)
	if err != nil || !p.Holds(pf) {
		return fmt.Errorf("node %s: subnet %q is not a node subnet of the overlay %s: %w", nodeID, subnet, p, sdk.ErrInvalidArgument)
	}
	for _, other := range f.state.Nodes() {
		if other.GetId() != nodeID && other.GetNetwork().GetSubnet() == subnet {
			return fmt.Errorf("node %s: subnet %s is held by node %s: %w", nodeID, subnet, other.GetId(), sdk.ErrConflict)
		}
	}
	return nil
}

func (f *FSM) applyRemoveNode(tx *txn, c *fsmpb.RemoveNode) any {
	old, ok := f.state.Node(c.GetId())
	if !ok {
		return fmt.Errorf("node %q: %w", c.GetId(), sdk.ErrNotFound)
	}
	f.state.DeleteNode(old.GetId())
	tx.del(state.BucketNodes, old.GetId())
	tx.event("node", apiv1.EventAction_EVENT_ACTION_DELETED, old.GetId(), old.GetName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Node{Node: old} })
	return old
}

func (f *FSM) applyUpsertTasks(tx *txn, c *fsmpb.UpsertTasks) any {
	ts := make([]*apiv1.Task, 0, len(c.GetTasks()))
	for _, t := range c.GetTasks() {
		if t.GetId() == "" || t.GetServiceId() == "" {
			return invalid("upsert tasks: task id and service id are required")
		}
		if old, ok := f.state.Task(t.GetId()); ok {
			t = state.MergeTask(old, t)
		}
		t.Version = tx.index
		ts = append(ts, t)
	}
	f.state.PutTasks(ts)
	f.bindVolumes(tx, ts)
	for _, t := range ts {
		tx.put(state.BucketTasks, t.GetId(), t)
		tx.event("task", apiv1.EventAction_EVENT_ACTION_UPDATED, t.GetId(), t.GetServiceName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Task{Task: t} })
	}
	return len(ts)
}

func (f *FSM) applyRemoveTasks(tx *txn, c *fsmpb.RemoveTasks) any {
	var gone []string
	for _, id := range c.GetIds() {
		if t, ok := f.state.Task(id); ok {
			gone = append(gone, id)
			tx.del(state.BucketTasks, id)
			tx.event("task", apiv1.EventAction_EVENT_ACTION_DELETED, id, t.GetServiceName(), func(e *apiv1.Event) { e.Object = &apiv1.Event_Task{Task: t} })
		}
	}
	f.state.DeleteTasks(gone)
	return len(gone)
}

// named is what secrets, volumes and networks share.
type named interface {
	proto.Message
	GetId() string
	GetName() string
}

// upsertNamed applies an upsert of a uniquely named object.
func upsertNamed[T named](tx *txn, kind, bucket string, o T, byName func(string) (T, bool), byID func(string) (T, bool), put func(T), setVersion func(T, uint64), wrap func(*apiv1.Event, T)) any {
	if o.GetId() == "" || o.GetName() == "" {
		return invalid("upsert %s: id and name are required", kind)
	}
	if other, ok := byName(o.GetName()); ok && other.GetId() != o.GetId() {
		return fmt.Errorf("%s %q: %w", kind, o.GetName(), sdk.ErrAlreadyExists)
	}
	action := apiv1.EventAction_EVENT_ACTION_CREATED
	if _, ok := byID(o.GetId()); ok {
		action = apiv1.EventAction_EVENT_ACTION_UPDATED
	}
	setVersion(o, tx.index)
	put(o)
	tx.put(bucket, o.GetId(), o)
	tx.event(kind, action, o.GetId(), o.GetName(), func(e *apiv1.Event) { wrap(e, o) })
	return o
}

// removeNamed applies a removal of a uniquely named object.
func removeNamed[T named](tx *txn, kind, bucket, id string, byID func(string) (T, bool), del func(string), wrap func(*apiv1.Event, T)) any {
	old, ok := byID(id)
	if !ok {
		return fmt.Errorf("%s %q: %w", kind, id, sdk.ErrNotFound)
	}
	del(id)
	tx.del(bucket, id)
	tx.event(kind, apiv1.EventAction_EVENT_ACTION_DELETED, id, old.GetName(), func(e *apiv1.Event) { wrap(e, old) })
	return old
}

func (f *FSM) applySetClusterInfo(tx *txn, c *fsmpb.SetClusterInfo) any {
	if id := f.state.ClusterID(); id != "" {
		return id // set once, at bootstrap; later proposals change nothing
	}
	if c.GetClusterId() == "" {
		return invalid("set cluster info: cluster id is required")
	}
	if n := c.GetNetwork(); n != nil {
		if _, err := network.ParsePlan(n.GetOverlayRange(), int(n.GetNodePrefix())); err != nil {
			return invalid("set cluster info: %v", err)
		}
		if n.GetDomain() == "" {
			return invalid("set cluster info: the cluster domain is required")
		}
		value, err := proto.MarshalOptions{Deterministic: true}.Marshal(n)
		if err != nil {
			return fmt.Errorf("set cluster info: %w", err)
		}
		f.state.SetNetwork(n)
		tx.ops = append(tx.ops, store.Op{Type: store.OpPut, Bucket: state.BucketCluster, Key: state.NetworkKey, Value: value})
	}
	f.state.SetClusterID(c.GetClusterId())
	tx.ops = append(tx.ops, store.Op{Type: store.OpPut, Bucket: state.BucketCluster, Key: state.ClusterIDKey, Value: []byte(c.GetClusterId())})
	return c.GetClusterId()
}

func (f *FSM) applySetSecurity(tx *txn, c *fsmpb.SetSecurity) any {
	sec := c.GetSecurity()
	if len(sec.GetCaCertPem()) == 0 || len(sec.GetSealedCaKey()) == 0 || len(sec.GetSealedWorkerSecret()) == 0 || len(sec.GetSealedManagerSecret()) == 0 {
		return invalid("set security: CA certificate, sealed CA key and both join secrets are required")
	}
	if c.GetOnlyIfUnset() && f.state.Security() != nil {
		return f.state.Security()
	}
	value, err := proto.MarshalOptions{Deterministic: true}.Marshal(sec)
	if err != nil {
		return fmt.Errorf("set security: %w", err)
	}
	f.state.SetSecurity(sec)
	tx.ops = append(tx.ops, store.Op{Type: store.OpPut, Bucket: state.BucketCluster, Key: state.SecurityKey, Value: value})
	return sec
}

var errSnapshotFormat = errors.New("not a warren snapshot")

// snapshotMagic starts every snapshot Warren writes.
const snapshotMagic = "WRNSNAP1"

// Snapshot captures the store as of now. Raft calls it between applies, so
// the store's point in time is the FSM's.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	// Everything applied so far must be in the store before Raft may
	// compact its log up to this point.
	f.writer.flush()
	snap, err := f.store.Snapshot(context.Background())
	if err != nil {
		return nil, fmt.Errorf("fsm: snapshot store: %w", err)
	}
	return &fsmSnapshot{snap: snap}, nil
}

// Restore replaces the state with a snapshot's. When the store already holds
// the snapshot's index or later (the usual case when Raft restores its
// latest snapshot at start), the store is kept as it is: it is newer, and
// Raft replays only entries after the snapshot, which apply skips up to the
// store's index.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	r := newSnapshotReader(rc)
	index, err := r.header()
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	ctx := context.Background()
	f.writer.flush()
	if index <= f.applied {
		f.logger.Info("store is already at or past the snapshot; keeping it", "snapshot_index", index, "store_index", f.applied)
		return nil
	}
	if err := f.store.Restore(ctx, index, r); err != nil {
		return fmt.Errorf("fsm: restore store to index %d: %w", index, err)
	}
	if err := f.reload(ctx); err != nil {
		return fmt.Errorf("fsm: reload after restore: %w", err)
	}
	f.writer.reset(f.applied)
	// Watchers cannot tell what changed: tell them to read everything again.
	f.bus.Publish([]*apiv1.Event{{Index: index, Kind: "cluster", Action: apiv1.EventAction_EVENT_ACTION_UPDATED, Name: "restored-from-snapshot", Time: timestamppb.Now()}})
	f.logger.Info("restored snapshot", "index", index)
	return nil
}
