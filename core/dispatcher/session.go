package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
)

// session is one worker's stream.
type session struct {
	nodeID string
	cancel context.CancelCauseFunc

	// inbox is where the dispatcher's fanout leaves the changes for this
	// session.
	inbox *inbox
	// known holds the IDs of the tasks the worker was sent and not told to
	// forget. It is guarded by the fanout's mutex: the fanout routes a
	// task's events to the sessions that know it.
	known map[string]struct{}

	// tooLarge holds, by task ID, the tasks left out of what the worker
	// was sent because each alone is larger than a message may be. Only
	// the session's goroutine uses it.
	tooLarge map[string]oversized
	// specs is what the worker holds of the specs it was sent. Only the
	// session's goroutine uses it.
	specs *specCache
	// files are the secrets and configs the worker holds. Only the
	// session's goroutine uses it.
	files map[fileKey]struct{}
}

// Session serves one worker's stream. The first message must be
// RegisterWorker; the node is then committed as READY and the worker gets
// SessionInfo and its full set of tasks, then changes as they happen. The
// session ends when the worker goes away or misses its heartbeat TTL (the
// node is then committed as DOWN), when the same node opens a newer session,
// or when this manager stops leading.
func (d *Dispatcher) Session(stream apiv1.Dispatcher_SessionServer) error {
	if !d.deps.Leader() {
		return status.Error(codes.Unavailable, "not the leader")
	}
	runCtx, fan := d.awaitRunning(stream.Context())
	if runCtx == nil {
		return status.Error(codes.Unavailable, "not the leader: the dispatcher is not running")
	}
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	stopOnRunEnd := context.AfterFunc(runCtx, func() { cancel(errNotLeader) })
	defer stopOnRunEnd()

	// One goroutine receives; this one decides and is the only one to send.
	msgs := make(chan *apiv1.WorkerMessage)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()

	ttl := time.NewTimer(d.deps.HeartbeatTTL)
	defer ttl.Stop()
	var reg *apiv1.RegisterWorker
	select {
	case m := <-msgs:
		reg = m.GetRegister()
	case err := <-recvErr:
		return recvStatus(err)
	case <-ttl.C:
		return status.Errorf(codes.DeadlineExceeded, "no RegisterWorker within %s", d.deps.HeartbeatTTL)
	case <-ctx.Done():
		return causeStatus(ctx)
	}
	if reg == nil {
		return status.Error(codes.InvalidArgument, "the first message of a session must be RegisterWorker")
	}
	if reg.GetNodeId() == "" || reg.GetName() == "" {
		return status.Error(codes.InvalidArgument, "RegisterWorker: node_id and name are required")
	}

	s := &session{nodeID: reg.GetNodeId(), cancel: cancel, inbox: newInbox(d.backlog), known: map[string]struct{}{}, tooLarge: map[string]oversized{}, specs: newSpecCache(), files: map[fileKey]struct{}{}}
	e := d.entry(s.nodeID)
	// reason, when set as the session ends, marks the node DOWN at once.
	reason := ""
	// held is set once the session has lasted a whole TTL: it took its
	// assignment. sessionErr is what ended it.
	held := false
	var sessionErr error
	defer func() { d.detach(e, s, reason, held, sessionErr) }()
	if err := d.attach(ctx, e, s, reg); err != nil {
		if ctx.Err() != nil {
			return causeStatus(ctx)
		}
		return sdk.ToStatus(err)
	}
	// A session that just ends (the worker's agent restarts, a connection
	// resets) leaves the node READY: the sweep marks it DOWN once it has
	// been without a session for a whole TTL, so a restart or a short blip
	// moves none of its tasks. Missed heartbeats mark it DOWN at once:
	// that TTL has passed already.
	log := d.log.With("node", reg.GetName(), "id", s.nodeID)

	fan.add(s)
	defer fan.remove(s)
	if err := stream.Send(&apiv1.ManagerMessage{Msg: &apiv1.ManagerMessage_Session{Session: &apiv1.SessionInfo{
		NodeId:            s.nodeID,
		IssuedAt:          timestamppb.Now(),
		HeartbeatPeriodMs: d.deps.HeartbeatPeriod.Milliseconds(),
		Managers:          d.managers(),
		Role:              d.role(s.nodeID),
	}}}); err != nil {
		return err
	}
	// The overlay first: a worker needs its subnet before it starts the
	// overlay tasks of its full set.
	var sent netSent
	tables, netC := d.net.get()
	for _, m := range d.networkMessages(s.nodeID, tables, &sent) {
		if err := stream.Send(m); err != nil {
			sessionErr = err
			return err
		}
	}
	if err := d.sendFiles(stream, s, true); err != nil {
		sessionErr = err
		return err
	}
	if err := d.send(ctx, stream, s, d.full(fan, s), false); err != nil {
		sessionErr = err
		return err
	}
	log.Debug("session started")

	ttl.Reset(d.deps.HeartbeatTTL)
	stable := time.NewTimer(d.deps.HeartbeatTTL)
	defer stable.Stop()
	batch := time.NewTimer(0)
	<-batch.C
	defer batch.Stop()
	var batchC <-chan time.Time
	changed := map[string]struct{}{}
	for {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), errSuperseded) || errors.Is(context.Cause(ctx), errNotLeader) {
				reason = ""
			}
			sessionErr = context.Cause(ctx)
			return causeStatus(ctx)
		case err := <-recvErr:
			log.Debug("session ended by the worker", "error", err)
			sessionErr = err
			return recvStatus(err)
		case <-netC:
			tables, netC = d.net.get()
			for _, m := range d.networkMessages(s.nodeID, tables, &sent) {
				if err := stream.Send(m); err != nil {
					sessionErr = err
					return err
				}
			}
		case <-stable.C:
			held = true
			d.sessionHeld(ctx, e, s)
		case <-ttl.C:
			reason = fmt.Sprintf("no heartbeat within %s", d.deps.HeartbeatTTL)
			return status.Error(codes.DeadlineExceeded, reason)
		case m := <-msgs:
			ttl.Reset(d.deps.HeartbeatTTL)
			d.seen(e)
			switch msg := m.GetMsg().(type) {
			case *apiv1.WorkerMessage_Heartbeat:
				d.heartbeats.Add(1)
				if !d.deps.Leader() {
					reason = ""
					return status.Error(codes.Unavailable, "not the leader")
				}
				d.commitConditions(ctx, s.nodeID, msg.Heartbeat.GetConditions())
			case *apiv1.WorkerMessage_Status:
				d.enqueue(s.nodeID, msg.Status.GetUpdates())
			case *apiv1.WorkerMessage_Network:
				d.commitPeer(ctx, s.nodeID, msg.Network)
			case *apiv1.WorkerMessage_Register:
				return status.Error(codes.InvalidArgument, "RegisterWorker sent twice in one session")
			default:
				return status.Error(codes.InvalidArgument, "unknown worker message")
			}
		case <-s.inbox.ready:
			if batchC == nil {
				batch.Reset(d.deps.AssignmentBatchWindow)
				batchC = batch.C
			}
		case <-batchC:
			batchC = nil
			resync, lagged, err := s.inbox.take(changed)
			// The changes taken count as waiting until they are sent.
			sending := len(changed)
			if err != nil {
				reason = ""
				return status.Error(codes.Unavailable, err.Error())
			}
			if lagged {
				log.Warn("session fell behind the event bus; resending the full task set")
			}
			hadTooLarge := len(s.tooLarge) > 0
			var a *apiv1.Assignments
			if resync {
				a = d.full(fan, s)
			} else {
				a = d.incremental(fan, s, changed)
			}
			err = d.sendFiles(stream, s, resync)
			if err == nil {
				err = d.send(ctx, stream, s, a, hadTooLarge)
			}
			d.backlog.done(sending)
			if err != nil {
				sessionErr = err
				return err
			}
		}
	}
}

// send sends a to the worker in messages of at most MaxAssignmentBytes
// each (see split), and shows on the node, as its "assignment" condition,
// the tasks that could not be sent at all (hadTooLarge: some could not
// before a was made).
func (d *Dispatcher) send(ctx context.Context, stream apiv1.Dispatcher_SessionServer, s *session, a *apiv1.Assignments, hadTooLarge bool) error {
	msgs, dropped := split(a, MaxAssignmentBytes, s.specs)
	for _, o := range dropped {
		s.tooLarge[o.taskID] = o
		d.log.Error("a task is too large to send to its worker", "node", s.nodeID, "task", o.taskID, "bytes", o.bytes, "limit", MaxWorkerMessageBytes)
	}
	if len(dropped) > 0 || hadTooLarge {
		d.updateCondition(ctx, d.entry(s.nodeID), s)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// sendFiles sends the secrets and configs the worker's tasks need before
// the assignments that start them (see filesMessages).
func (d *Dispatcher) sendFiles(stream apiv1.Dispatcher_SessionServer, s *session, full bool) error {
	for _, m := range d.filesMessages(s, full) {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// full returns every task the worker must know about and makes it the
// session's known set.
func (d *Dispatcher) full(fan *fanout, s *session) *apiv1.Assignments {
	a := &apiv1.Assignments{Full: true}
	known := map[string]struct{}{}
	clear(s.tooLarge)
	fan.mu.Lock()
	defer fan.mu.Unlock()
	for _, t := range d.deps.State.Tasks(state.TaskFilter{NodeID: s.nodeID}) {
		if Relevant(t) {
			a.Tasks = append(a.Tasks, t)
			known[t.GetId()] = struct{}{}
		}
	}
	fan.setKnownLocked(s, known)
	return a
}

// incremental returns the current version of the changed tasks the worker
// must know about, and the known tasks it can forget.
//
// It records the changed tasks as known before it reads them, and reads
// them without the fanout's lock: the state holds a change before its
// event is published, so a change this read misses has its event routed
// to the session afterwards (through known). Those that are not for the
// worker are forgotten again after the read.
func (d *Dispatcher) incremental(fan *fanout, s *session, changed map[string]struct{}) *apiv1.Assignments {
	a := &apiv1.Assignments{}
	wasKnown := make(map[string]bool, len(changed))
	fan.mu.Lock()
	for id := range changed {
		_, wasKnown[id] = s.known[id]
		fan.knowLocked(s, id)
	}
	fan.mu.Unlock()
	var forget []string
	for id := range changed {
		delete(s.tooLarge, id) // split finds it again if it still is
		t, ok := d.deps.State.Task(id)
		if ok && t.GetNodeId() == s.nodeID && Relevant(t) {
			a.Tasks = append(a.Tasks, t)
			continue
		}
		if wasKnown[id] {
			a.Removed = append(a.Removed, id)
		}
		forget = append(forget, id)
	}
	if len(forget) > 0 {
		fan.mu.Lock()
		for _, id := range forget {
			fan.forgetLocked(s, id)
		}
		fan.mu.Unlock()
	}
	return a
}

// recvStatus is what a session returns when receiving failed.
func recvStatus(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unavailable, err.Error())
}

// causeStatus turns the reason a session's context ended into a status.
func causeStatus(ctx context.Context) error {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, errSuperseded):
		return status.Error(codes.Aborted, cause.Error())
	case errors.Is(cause, errNotLeader), errors.Is(cause, errDisconnected):
		return status.Error(codes.Unavailable, cause.Error())
	}
	return status.FromContextError(ctx.Err()).Err()
}

// managers returns the managers' cluster addresses for SessionInfo.
func (d *Dispatcher) managers() []string {
	if d.deps.Managers == nil {
		return nil
	}
	return d.deps.Managers()
}

// role returns the node's role in the state for SessionInfo: a worker
// whose role changed restarts in its new role.
func (d *Dispatcher) role(nodeID string) apiv1.NodeRole {
	if n, ok := d.deps.State.Node(nodeID); ok {
		return n.GetRole()
	}
	return apiv1.NodeRole_NODE_ROLE_UNSPECIFIED
}
