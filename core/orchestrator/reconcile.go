// Package orchestrator keeps every service's tasks in line with its spec.
//
// The decision is the pure Reconcile: one service (or nil once removed),
// its tasks, the nodes they are on and the time go in; Create / Shutdown /
// Remove / Orphan / Note actions come out. It implements the Orchestrator
// part of docs/task-lifecycle.md: slots, scaling, rolling updates, restart
// policy with backoff, history cleanup, removed services, and the tasks of
// nodes that are down, removed or draining. Run is the thin loop around
// it: it wakes on service, task and node events, reconciles the services
// they concern and commits each round's actions through Raft in as few
// entries as possible.
//
// A rolling update waits, slot batch by slot batch, for the new tasks to
// serve (RUNNING and, with a health check, healthy), and follows the
// update status: failure actions pause, continue and rollback, completion
// (see progress). Global services have a slot per eligible node (see
// global). With a delay, batches are strict: the next starts delay after
// the previous one's tasks all serve (see waitDelay). Jobs run to
// completion (see replicatedJob, and global for a global job) and carry a
// job status (see jobStatus).
//
// A canary update (update_policy.canary N, state CANARY) first starts N
// tasks of the new spec in slots 1..N beside the old ones, which keep
// running; it waits for a promote (the API's, or auto_promote once the
// canaries have served through the monitor window), after which it rolls
// as any update. A canary that fails rolls the update back: the canaries
// are stopped, the old tasks are left as they are (see canary).
package orchestrator

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/schedloop"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Defaults for the unset fields of a restart policy and for Config.
const (
	DefaultTaskHistoryLimit = 5
	DefaultRestartDelay     = 100 * time.Millisecond
	DefaultRestartMaxDelay  = 10 * time.Second
	DefaultRestartWindow    = 10 * time.Second
)

// Config holds the orchestrator's cluster-wide settings.
type Config struct {
	// TaskHistoryLimit is how many finished tasks are kept per slot for
	// inspection. 0 means DefaultTaskHistoryLimit; a negative value keeps
	// none.
	TaskHistoryLimit int
}

func (c Config) historyLimit() int {
	switch {
	case c.TaskHistoryLimit == 0:
		return DefaultTaskHistoryLimit
	case c.TaskHistoryLimit < 0:
		return 0
	}
	return c.TaskHistoryLimit
}

// Input is everything Reconcile decides from.
type Input struct {
	// Service is the service to reconcile, or nil when it has been removed
	// (its tasks are then stopped and, once finished, removed).
	Service *apiv1.Service
	// Tasks are all the service's tasks, in any order. They are read, never
	// changed.
	Tasks []*apiv1.Task
	// Now is the time of the decision: new tasks' timestamps, restart
	// backoff and the restart window are based on it.
	Now    time.Time
	Config Config
	// NewID returns the ID of each new task; nil means api.NewID.
	NewID func() string
	// Node returns the node with that ID, and false when there is none (it
	// was removed). The unfinished tasks of a node that is DOWN or removed
	// are orphaned and replaced; the current tasks of a DRAIN node are
	// replaced, and stopped once their replacement runs. nil means every
	// node is ready and active.
	Node func(id string) (*apiv1.Node, bool)
	// Nodes returns every node, for a global service (one task on each
	// eligible node); nil means there are none.
	Nodes func() []*apiv1.Node
}

// Action is one change Reconcile asks for: a Create, a Shutdown, a Remove,
// an Orphan or a Note.
type Action interface {
	isAction()
	String() string
}

// Create asks for a new task to be written as it is.
type Create struct {
	Task *apiv1.Task
	// Restart: the task replaces one of its slot that ended, by the
	// service's restart policy (not a scale-up, an update or an orphan's
	// replacement).
	Restart bool
}

// Shutdown asks for a task's desired state to become SHUTDOWN (see
// ShutdownTask); Reason says why, for logs and, when the task never reached
// a node, its message.
type Shutdown struct {
	TaskID string
	Reason string
}

// Remove asks for a finished task to be deleted.
type Remove struct {
	TaskID string
}

// Orphan asks for a task lost with its node to be marked ORPHANED (see
// OrphanTask); Reason, such as "node edge-1 down", becomes its message.
type Orphan struct {
	TaskID string
	Reason string
}

// Note asks for a task the manager keeps running to carry Message, which
// says why (a draining node's task waiting for its replacement). It
// changes nothing else (see NoteTask).
type Note struct {
	TaskID  string
	Message string
}

// Recheck asks for the service to be reconciled again at At, when a
// decision waits for time to pass rather than for an event (the canaries'
// monitor window before an auto-promote).
type Recheck struct {
	ServiceID string
	At        time.Time
}

func (Recheck) isAction() {}

func (a Recheck) String() string {
	return fmt.Sprintf("recheck service %s at %s", a.ServiceID, a.At.Format(time.RFC3339Nano))
}

// SetUpdateStatus asks for the service's update status to become Status,
// and, with Rollback, for its spec to return to its previous spec (the
// current one becoming the previous). It applies to the service as it was
// at Version only: a service changed meanwhile is decided again.
type SetUpdateStatus struct {
	ServiceID string
	Version   uint64
	Status    *apiv1.UpdateStatus
	Rollback  bool
}

func (SetUpdateStatus) isAction() {}

func (a SetUpdateStatus) String() string {
	s := fmt.Sprintf("service %s update %s", a.ServiceID, a.Status.GetState())
	if a.Rollback {
		s += " (rollback)"
	}
	return s + ": " + a.Status.GetMessage()
}

// ApplyUpdateStatus returns a copy of svc changed as a SetUpdateStatus
// asks.
func ApplyUpdateStatus(svc *apiv1.Service, a SetUpdateStatus) *apiv1.Service {
	out := proto.CloneOf(svc)
	out.UpdateStatus = proto.CloneOf(a.Status)
	if a.Rollback && svc.GetPreviousSpec() != nil {
		out.Spec, out.PreviousSpec = proto.CloneOf(svc.GetPreviousSpec()), proto.CloneOf(svc.GetSpec())
		out.Spec.Replicas = svc.GetSpec().GetReplicas()
	}
	return out
}

func (Create) isAction()   {}
func (Shutdown) isAction() {}
func (Remove) isAction()   {}
func (Orphan) isAction()   {}
func (Note) isAction()     {}

func (a Create) String() string {
	t := a.Task
	s := fmt.Sprintf("create %s slot %d attempt %d version %d", t.GetId(), t.GetSlot(), t.GetAttempt(), t.GetServiceVersion())
	if t.GetNotBefore() != nil {
		s += " not before " + t.GetNotBefore().AsTime().Format(time.RFC3339Nano)
	}
	return s
}

func (a Shutdown) String() string { return fmt.Sprintf("shutdown %s (%s)", a.TaskID, a.Reason) }
func (a Remove) String() string   { return "remove " + a.TaskID }
func (a Orphan) String() string   { return fmt.Sprintf("orphan %s (%s)", a.TaskID, a.Reason) }
func (a Note) String() string     { return fmt.Sprintf("note %s (%s)", a.TaskID, a.Message) }

// Terminal reports whether a task state is final: COMPLETE, FAILED,
// SHUTDOWN, REJECTED or ORPHANED.
func Terminal(s apiv1.TaskState) bool { return state.Terminal(s) }

// current reports whether the manager wants t to run: such a task holds
// its slot.
func current(t *apiv1.Task) bool {
	return t.GetDesiredState() <= apiv1.TaskState_TASK_STATE_RUNNING
}

// unplaced reports whether t is on no node and not finished: no worker
// knows it, so stopping it needs nobody's help.
func unplaced(t *apiv1.Task) bool {
	return t.GetNodeId() == "" && !Terminal(t.GetState())
}

// ShutdownTask returns a copy of t changed as a Shutdown action asks:
// desired state SHUTDOWN and, for a task on no node yet (no worker will
// ever stop it or report on it), state SHUTDOWN right away with reason as
// its message. changed is false, and t is returned as it is, when t needs
// no change.
func ShutdownTask(t *apiv1.Task, reason string, now time.Time) (out *apiv1.Task, changed bool) {
	return endTask(t, unplaced(t), apiv1.TaskState_TASK_STATE_SHUTDOWN, reason, now)
}

// OrphanTask returns a copy of t changed as an Orphan action asks: desired
// state SHUTDOWN and, unless t has finished already (its own end is kept),
// state ORPHANED with reason as its message. ORPHANED is final and belongs
// to the manager: no worker report changes it, and the dispatcher no longer
// sends the task to its node, whose worker then stops it if it still runs
// it. changed is false, and t is returned as it is, when t needs no change.
func OrphanTask(t *apiv1.Task, reason string, now time.Time) (out *apiv1.Task, changed bool) {
	return endTask(t, !Terminal(t.GetState()), apiv1.TaskState_TASK_STATE_ORPHANED, reason, now)
}

// endTask returns a copy of t with desired state SHUTDOWN and, when
// setState, state with reason as its message; t itself, unchanged, when
// that changes nothing.
func endTask(t *apiv1.Task, setState bool, state apiv1.TaskState, reason string, now time.Time) (*apiv1.Task, bool) {
	if t.GetDesiredState() == apiv1.TaskState_TASK_STATE_SHUTDOWN && !setState {
		return t, false
	}
	out := proto.CloneOf(t)
	out.DesiredState = apiv1.TaskState_TASK_STATE_SHUTDOWN
	if setState {
		out.State = state
		out.Message = reason
	}
	out.UpdatedAt = timestamppb.New(now)
	return out, true
}

// NoteTask returns a copy of t with message as its message, as a Note
// action asks. Only a task the manager still wants running and that has
// not finished is noted; its state and update time stay as they are (the
// time says when its state last changed). changed is false, and t is
// returned as it is, when there is nothing to change.
func NoteTask(t *apiv1.Task, message string) (out *apiv1.Task, changed bool) {
	if !current(t) || Terminal(t.GetState()) || t.GetMessage() == message {
		return t, false
	}
	out = proto.CloneOf(t)
	out.Message = message
	return out, true
}

// Reconcile returns the actions that bring a service's tasks in line with
// its spec, following docs/task-lifecycle.md:
//
//   - an unfinished task on a node that is DOWN, or that was removed, is
//     orphaned (state ORPHANED, desired SHUTDOWN) and, when it held its
//     slot, replaced at once (attempt 1, no backoff: losing a node is not
//     the task's failure, so the restart policy does not apply);
//   - a current task on a DRAIN node is replaced first: it keeps running
//     until its replacement (placed on another node) is RUNNING, and only
//     then is shut down. While it waits it carries a note saying so, and
//     why when no node can take the replacement;
//   - each slot 1..replicas has one current task (desired RUNNING); a
//     missing one is created (state NEW, attempt 1); extra current tasks in
//     a slot are shut down, keeping the most advanced;
//   - tasks in slots beyond replicas, and all tasks of a removed service,
//     are shut down, and removed once finished (at once when on no node);
//   - a task whose spec differs from the service's (replicas and
//     update_policy aside, which change no task) is replaced, at most
//     update_policy.parallelism slots at a time (0: all), counting as busy
//     every slot whose up-to-date task is not RUNNING yet (or, with a
//     health check, not healthy yet: see state.Serving). stop-first
//     shuts the old task down and creates the new one once the old one
//     has finished; start-first creates the new one and shuts the old one
//     down once the new one is RUNNING. A finished or unplaced old task is
//     replaced at once;
//   - while a canary update waits for its promote (state CANARY), slots
//     1..canary run a task of the new spec beside their old one and no
//     other slot is replaced; a failed canary rolls the update back (see
//     canaryFailed, autoPromote);
//   - a current task that finished is handled by the restart policy (see
//     restartOf); when it is not replaced it stays current, holding its
//     slot, so the service shows it and no new task takes its place;
//   - finished tasks that are no longer current (including those this
//     round shuts down) are kept as history, the newest TaskHistoryLimit
//     per slot; older ones are removed.
//
// A task that is on no node and is to stop gets a Shutdown too, until the
// loop has marked it SHUTDOWN (see ShutdownTask). Applying the actions and
// reconciling again yields no new actions until something else changes.
func Reconcile(in Input) []Action {
	r := &reconciler{in: in, newID: in.NewID, upToDateByVersion: map[uint64]bool{}, history: map[string]bool{}, canarySlots: canaries(in.Service)}
	if r.newID == nil {
		r.newID = api.NewID
	}
	tasks := r.checkNodes(in.Tasks)
	if in.Service == nil {
		for _, t := range tasks {
			r.retire(t, "service removed")
		}
		return r.out
	}

	switch mode := in.Service.GetSpec().GetMode(); {
	case mode == apiv1.ServiceMode_SERVICE_MODE_REPLICATED_JOB:
		r.replicatedJob(tasks)
		return r.out
	case apiv1.IsGlobal(mode):
		r.global(tasks)
		return r.out
	}

	replicas := in.Service.GetSpec().GetReplicas()
	if r.canaryFailed(tasks) {
		return r.out // the rollback's round stops the canaries
	}
	slots := r.bySlot(tasks, replicas)

	var candidates []*apiv1.Task // outdated current tasks waiting for their update
	busy := 0
	for s := uint64(1); s <= replicas; s++ {
		_, cand, inflight := r.slot(s, slots[s])
		if cand != nil {
			candidates = append(candidates, cand)
		}
		if inflight {
			busy++
		}
	}
	if !r.progress(tasks, candidates) {
		r.update(tasks, candidates, busy)
	}

	limit := r.in.Config.historyLimit()
	for s := uint64(1); s <= replicas; s++ {
		r.collect(slots[s], limit)
	}
	return r.out
}

type reconciler struct {
	in    Input
	newID func() string
	out   []Action
	// key is the service spec's comparison key (see serviceKey); spec its
	// copy for new tasks.
	key               string
	keyDone           bool
	spec              *apiv1.ServiceSpec
	upToDateByVersion map[uint64]bool
	// history holds the tasks this round's shutdowns make history.
	history map[string]bool
	// draining holds the current tasks on a DRAIN node, with the node's
	// name.
	draining map[string]string
	// pin is the node new tasks are placed on (a global service's), ""
	// for the scheduler to place them.
	pin string
	// canarySlots is how many slots (1..canarySlots) hold a canary beside
	// their old task: the update's canary count while in state CANARY, 0
	// otherwise (see canaries).
	canarySlots uint64
}

// bySlot groups tasks by slot 1..n, retiring those of other slots (scaled
// down).
func (r *reconciler) bySlot(tasks []*apiv1.Task, n uint64) map[uint64][]*apiv1.Task {
	slots := map[uint64][]*apiv1.Task{}
	for _, t := range tasks {
		if s := t.GetSlot(); s >= 1 && s <= n {
			slots[s] = append(slots[s], t)
		} else {
			r.retire(t, "scaled down")
		}
	}
	return slots
}

// checkNodes orphans the unfinished tasks of nodes that are down or gone
// and finds the current tasks of draining nodes. It returns tasks as the
// rest of the round is to see them: orphaned ones as the Orphan action
// leaves them.
func (r *reconciler) checkNodes(tasks []*apiv1.Task) []*apiv1.Task {
	if r.in.Node == nil {
		return tasks
	}
	var out []*apiv1.Task
	for i, t := range tasks {
		reason := ""
		if id := t.GetNodeId(); id != "" && !Terminal(t.GetState()) {
			n, ok := r.in.Node(id)
			switch {
			case !ok:
				reason = fmt.Sprintf("node %s removed", id)
			case n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_DOWN:
				reason = fmt.Sprintf("node %s down", n.GetName())
				if m := n.GetMessage(); m != "" {
					reason += ": " + m
				}
			case n.GetAvailability() == apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN && current(t):
				if r.draining == nil {
					r.draining = map[string]string{}
				}
				r.draining[t.GetId()] = n.GetName()
			}
		}
		if reason == "" {
			if out != nil {
				out = append(out, t)
			}
			continue
		}
		if out == nil {
			out = append(make([]*apiv1.Task, 0, len(tasks)), tasks[:i]...)
		}
		r.out = append(r.out, Orphan{TaskID: t.GetId(), Reason: reason})
		o, _ := OrphanTask(t, reason, r.in.Now)
		out = append(out, o)
	}
	if out == nil {
		return tasks
	}
	return out
}

// shutdown asks for t to stop. A task that has finished, or is on no node
// (ShutdownTask finishes it), is history from this round on.
func (r *reconciler) shutdown(t *apiv1.Task, reason string) {
	r.out = append(r.out, Shutdown{TaskID: t.GetId(), Reason: reason})
	if Terminal(t.GetState()) || unplaced(t) {
		r.history[t.GetId()] = true
	}
}

// retire handles a task whose slot is gone: stop it, remove it once
// finished. A task on no node never ran: it is removed at once.
func (r *reconciler) retire(t *apiv1.Task, reason string) {
	switch {
	case Terminal(t.GetState()) || unplaced(t):
		r.out = append(r.out, Remove{TaskID: t.GetId()})
	case current(t):
		r.shutdown(t, reason)
	}
}

func (r *reconciler) create(slot uint64, attempt uint32, notBefore time.Time) *apiv1.Task {
	svc := r.in.Service
	if r.spec == nil {
		r.spec = proto.CloneOf(svc.GetSpec())
	}
	now := timestamppb.New(r.in.Now)
	t := &apiv1.Task{
		Id:             r.newID(),
		ServiceId:      svc.GetId(),
		ServiceName:    svc.GetSpec().GetName(),
		Slot:           slot,
		ServiceVersion: svc.GetVersion(),
		Spec:           r.spec,
		DesiredState:   apiv1.TaskState_TASK_STATE_RUNNING,
		State:          apiv1.TaskState_TASK_STATE_NEW,
		CreatedAt:      now,
		UpdatedAt:      now,
		Attempt:        attempt,
	}
	if !notBefore.IsZero() {
		t.NotBefore = timestamppb.New(notBefore)
	}
	if r.pin != "" {
		// A global service's task needs no placement: it is its node's.
		t.NodeId, t.State = r.pin, apiv1.TaskState_TASK_STATE_ASSIGNED
	}
	r.out = append(r.out, Create{Task: t})
	return t
}

// upToDate reports whether t runs the service's current spec.
func (r *reconciler) upToDate(t *apiv1.Task) bool {
	v := t.GetServiceVersion()
	if v != 0 && v == r.in.Service.GetVersion() {
		return true
	}
	if v == 0 {
		return specKey(t.GetSpec()) == r.serviceKey()
	}
	// Tasks made from the same service version share a spec: compare once.
	ok, seen := r.upToDateByVersion[v]
	if !seen {
		ok = specKey(t.GetSpec()) == r.serviceKey()
		r.upToDateByVersion[v] = ok
	}
	return ok
}

// serviceKey is the service spec's specKey, computed on first use: most
// rounds compare no spec (every task is of the current version, or there
// are none).
func (r *reconciler) serviceKey() string {
	if !r.keyDone {
		r.key, r.keyDone = specKey(r.in.Service.GetSpec()), true
	}
	return r.key
}

// startFirst reports whether updates start the new task before stopping
// the old one.
func (r *reconciler) startFirst() bool {
	return r.policy().GetOrder() == apiv1.UpdatePolicy_ORDER_START_FIRST
}

// policy is the policy tasks are replaced by now: the rollback policy
// while the service rolls back, its update policy otherwise.
func (r *reconciler) policy() *apiv1.UpdatePolicy {
	if r.in.Service.GetUpdateStatus().GetState() == apiv1.UpdateStatus_STATE_ROLLBACK_STARTED {
		return r.in.Service.GetSpec().GetRollbackPolicy()
	}
	return r.in.Service.GetSpec().GetUpdatePolicy()
}

// DefaultMonitor is how long after an update completed a failure of one of
// its tasks still counts as the update's, when the policy sets no monitor.
const DefaultMonitor = 5 * time.Second

// progress follows the service's update (or rollback) given all its tasks
// and the outdated ones still waiting (candidates). It reports whether the
// update holds: paused, so no further slot is replaced.
//
// A task of the new spec made since the update started that ends FAILED or
// REJECTED (an unhealthy task ends FAILED) is a failure of the update, while
// it is in progress and for the monitor window after it completed. Once the
// failures are more than max_failure_ratio × replicas, the failure action
// is taken: pause (PAUSED, or ROLLBACK_PAUSED during a rollback), rollback
// (the service returns to its previous spec: ROLLBACK_STARTED) or continue.
// An update whose every slot runs a serving task of the new spec and that
// waits for no old task is COMPLETED (ROLLBACK_COMPLETED).
func (r *reconciler) progress(tasks, candidates []*apiv1.Task) (hold bool) {
	svc := r.in.Service
	st := svc.GetUpdateStatus()
	rollingBack := false
	switch st.GetState() {
	case apiv1.UpdateStatus_STATE_PAUSED, apiv1.UpdateStatus_STATE_ROLLBACK_PAUSED:
		return true
	case apiv1.UpdateStatus_STATE_CANARY:
		r.autoPromote(tasks)
		return true
	case apiv1.UpdateStatus_STATE_ROLLBACK_STARTED:
		rollingBack = true
	case apiv1.UpdateStatus_STATE_UPDATING:
	case apiv1.UpdateStatus_STATE_COMPLETED:
		monitor := DefaultMonitor
		if m := svc.GetSpec().GetUpdatePolicy().GetMonitor(); m != nil {
			monitor = m.AsDuration()
		}
		if r.in.Now.Sub(st.GetCompletedAt().AsTime()) >= monitor {
			return false
		}
	default:
		return false
	}
	policy := r.policy()
	started := st.GetStartedAt().AsTime()
	var failed []*apiv1.Task
	done := len(candidates) == 0
	for _, t := range tasks {
		if !r.upToDate(t) {
			if !Terminal(t.GetState()) {
				done = false // an old task still runs
			}
			continue
		}
		if current(t) && !state.Serving(t) {
			done = false
		}
		if t.GetCreatedAt().AsTime().Before(started) {
			continue
		}
		if s := t.GetState(); s == apiv1.TaskState_TASK_STATE_FAILED || s == apiv1.TaskState_TASK_STATE_REJECTED {
			failed = append(failed, t)
		}
	}
	set := func(state apiv1.UpdateStatus_State, msg string, rollback bool) {
		out := &apiv1.UpdateStatus{State: state, Message: msg, StartedAt: st.GetStartedAt(), CompletedAt: st.GetCompletedAt()}
		switch state {
		case apiv1.UpdateStatus_STATE_ROLLBACK_STARTED:
			out.StartedAt, out.CompletedAt = timestamppb.New(r.in.Now), nil
		case apiv1.UpdateStatus_STATE_COMPLETED, apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED:
			out.CompletedAt = timestamppb.New(r.in.Now)
		}
		r.out = append(r.out, SetUpdateStatus{ServiceID: svc.GetId(), Version: svc.GetVersion(), Status: out, Rollback: rollback})
	}
	if n := len(failed); n > 0 && float64(n) > float64(policy.GetMaxFailureRatio())*float64(svc.GetSpec().GetReplicas()) &&
		policy.GetFailureAction() != apiv1.UpdatePolicy_FAILURE_ACTION_CONTINUE {
		f := slices.MaxFunc(failed, func(a, b *apiv1.Task) int { return a.GetUpdatedAt().AsTime().Compare(b.GetUpdatedAt().AsTime()) })
		why := fmt.Sprintf("task %s %s", f.GetId(), taskEnd(f))
		switch {
		case rollingBack:
			set(apiv1.UpdateStatus_STATE_ROLLBACK_PAUSED, "rollback paused: "+why, false)
		case policy.GetFailureAction() == apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK && svc.GetPreviousSpec() != nil:
			set(apiv1.UpdateStatus_STATE_ROLLBACK_STARTED, "update rolled back: "+why, true)
		default:
			set(apiv1.UpdateStatus_STATE_PAUSED, "update paused: "+why, false)
		}
		return true
	}
	if done && st.GetState() != apiv1.UpdateStatus_STATE_COMPLETED {
		if rollingBack {
			set(apiv1.UpdateStatus_STATE_ROLLBACK_COMPLETED, st.GetMessage()+"; rollback completed", false)
		} else {
			set(apiv1.UpdateStatus_STATE_COMPLETED, "update completed", false)
		}
	}
	return false
}

// canaries returns how many canaries svc's update runs beside its old
// tasks now: update_policy.canary (at most the replicas) while the update
// is in state CANARY, 0 otherwise and for a global service.
func canaries(svc *apiv1.Service) uint64 {
	spec := svc.GetSpec()
	if svc.GetUpdateStatus().GetState() != apiv1.UpdateStatus_STATE_CANARY || apiv1.IsGlobal(spec.GetMode()) || apiv1.IsJob(spec.GetMode()) {
		return 0
	}
	return min(uint64(spec.GetUpdatePolicy().GetCanary()), spec.GetReplicas())
}

// canaryFailed handles a canary update whose canary failed: a task of the
// new spec made since the update started that ended FAILED or REJECTED (an
// unhealthy one ends FAILED). Whatever the failure action, the update rolls
// back to the previous spec (or pauses, with none), and nothing else is
// decided this round: no canary is restarted, and the next round, under the
// old spec, stops the canaries while the old tasks, up to date again, keep
// running as they are. It reports whether it did so.
func (r *reconciler) canaryFailed(tasks []*apiv1.Task) bool {
	if r.canarySlots == 0 {
		return false
	}
	svc := r.in.Service
	st := svc.GetUpdateStatus()
	var failed *apiv1.Task
	for _, t := range tasks {
		s := t.GetState()
		if (s != apiv1.TaskState_TASK_STATE_FAILED && s != apiv1.TaskState_TASK_STATE_REJECTED) ||
			!r.upToDate(t) || t.GetCreatedAt().AsTime().Before(st.GetStartedAt().AsTime()) {
			continue
		}
		if failed == nil || t.GetUpdatedAt().AsTime().After(failed.GetUpdatedAt().AsTime()) {
			failed = t
		}
	}
	if failed == nil {
		return false
	}
	why := fmt.Sprintf("canary task %s %s", failed.GetId(), taskEnd(failed))
	out := &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_ROLLBACK_STARTED, Message: "update rolled back: " + why, StartedAt: timestamppb.New(r.in.Now)}
	rollback := svc.GetPreviousSpec() != nil
	if !rollback {
		out = &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_PAUSED, Message: "update paused: " + why, StartedAt: st.GetStartedAt()}
	}
	r.out = append(r.out, SetUpdateStatus{ServiceID: svc.GetId(), Version: svc.GetVersion(), Status: out, Rollback: rollback})
	return true
}

// autoPromote promotes a canary update with auto_promote once every canary
// slot's task of the new spec has served (RUNNING and, with a health check,
// healthy) through the monitor window, measured from its last change. When
// they serve but the window has not passed, it asks for a Recheck then.
func (r *reconciler) autoPromote(tasks []*apiv1.Task) {
	svc := r.in.Service
	policy := svc.GetSpec().GetUpdatePolicy()
	if !policy.GetAutoPromote() || r.canarySlots == 0 {
		return
	}
	monitor := DefaultMonitor
	if m := policy.GetMonitor(); m != nil {
		monitor = m.AsDuration()
	}
	serving := map[uint64]bool{}
	var since time.Time
	for _, t := range tasks {
		if s := t.GetSlot(); s >= 1 && s <= r.canarySlots && current(t) && r.upToDate(t) && state.Serving(t) {
			serving[s] = true
			if u := t.GetUpdatedAt().AsTime(); u.After(since) {
				since = u
			}
		}
	}
	if uint64(len(serving)) < r.canarySlots {
		return
	}
	if at := since.Add(monitor); r.in.Now.Before(at) {
		r.out = append(r.out, Recheck{ServiceID: svc.GetId(), At: at})
		return
	}
	st := svc.GetUpdateStatus()
	out := &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_UPDATING, StartedAt: st.GetStartedAt(),
		Message: fmt.Sprintf("canary promoted: %d task(s) served through the %s monitor window; update in progress", r.canarySlots, monitor)}
	r.out = append(r.out, SetUpdateStatus{ServiceID: svc.GetId(), Version: svc.GetVersion(), Status: out})
}

// taskEnd says how a finished task ended: its state, and its error if any
// ("failed: exited with code 1").
func taskEnd(t *apiv1.Task) string {
	why := strings.ToLower(strings.TrimPrefix(t.GetState().String(), "TASK_STATE_"))
	if e := t.GetError(); e != "" {
		why += ": " + e
	}
	return why
}

// slot reconciles slot s. It returns the slot's current task after this
// round (see slotTasks), its outdated task when it waits for a rolling
// update (nil otherwise), and whether the slot is busy: its
// up-to-date task is not RUNNING yet, or it waits for an old task to stop.
// The tasks of draining nodes stand aside: the slot is reconciled without
// them, then they are stopped once the slot's task runs (see drain).
func (r *reconciler) slot(s uint64, tasks []*apiv1.Task) (keeper, candidate *apiv1.Task, busy bool) {
	var draining []*apiv1.Task
	if len(r.draining) > 0 {
		rest := make([]*apiv1.Task, 0, len(tasks))
		for _, t := range tasks {
			if _, ok := r.draining[t.GetId()]; ok {
				draining = append(draining, t)
			} else {
				rest = append(rest, t)
			}
		}
		tasks = rest
	}
	keeper, candidate, busy = r.slotTasks(s, tasks)
	for _, d := range draining {
		r.drain(d, keeper)
	}
	return keeper, candidate, busy
}

// slotTasks reconciles slot s as slot does, with the tasks of draining
// nodes left out, and also returns the slot's current task after this
// round: nil while none is to run yet (stop-first waiting for an old task).
func (r *reconciler) slotTasks(s uint64, tasks []*apiv1.Task) (keeper, candidate *apiv1.Task, busy bool) {
	var fresh, outdated []*apiv1.Task
	oldStopping := false
	for _, t := range tasks {
		switch {
		case current(t):
			if r.upToDate(t) {
				fresh = append(fresh, t)
			} else {
				outdated = append(outdated, t)
			}
		case unplaced(t):
			r.shutdown(t, "no longer wanted")
		case !Terminal(t.GetState()) && !r.upToDate(t):
			oldStopping = true
		}
	}

	if len(fresh) > 0 {
		keeper = r.keepOne(s, fresh)
		if Terminal(keeper.GetState()) {
			if rep := r.restart(keeper); rep != nil {
				keeper = rep
			}
		}
	}
	canary := s >= 1 && s <= r.canarySlots
	if keeper != nil {
		// With a health check, a new task counts once it is healthy.
		running := state.Serving(keeper)
		for _, o := range outdated {
			if canary && !Terminal(o.GetState()) {
				continue // the old task runs beside its canary until the promote
			}
			if running || !r.startFirst() || Terminal(o.GetState()) {
				r.shutdown(o, "replaced by a task of the updated spec")
			}
		}
		return keeper, nil, !running
	}
	if len(outdated) > 0 {
		o := r.keepOne(s, outdated)
		if Terminal(o.GetState()) {
			// Nothing runs in this slot: no reason to wait for a turn.
			r.shutdown(o, "replaced by a task of the updated spec")
			return r.create(s, 1, time.Time{}), nil, true
		}
		if canary {
			return r.create(s, 1, time.Time{}), nil, true // the canary, beside o
		}
		return o, o, false
	}
	if oldStopping && !r.startFirst() {
		return nil, nil, true // stop-first: the new task waits for the old one to stop
	}
	return r.create(s, 1, time.Time{}), nil, true
}

// drain handles d, a current task on a draining node, given its slot's
// current task: d is shut down once that task is RUNNING; until then it
// keeps running, with a note saying what it waits for.
func (r *reconciler) drain(d, keeper *apiv1.Task) {
	node := r.draining[d.GetId()]
	var note string
	switch {
	case keeper == nil:
		note = fmt.Sprintf("node %s is draining; kept running until its replacement can start", node)
	case state.Serving(keeper):
		r.shutdown(d, fmt.Sprintf("node %s drained; replaced by task %s", node, keeper.GetId()))
		return
	case keeper.GetState() == apiv1.TaskState_TASK_STATE_PENDING:
		note = fmt.Sprintf("node %s is draining, but no node can take its replacement (%s); kept running", node, keeper.GetMessage())
	case Terminal(keeper.GetState()):
		state := strings.ToLower(strings.TrimPrefix(keeper.GetState().String(), "TASK_STATE_"))
		note = fmt.Sprintf("node %s is draining, but its replacement %s ended (%s); kept running", node, keeper.GetId(), state)
	default:
		note = fmt.Sprintf("node %s is draining; kept running until its replacement %s runs", node, keeper.GetId())
	}
	if d.GetMessage() != note {
		r.out = append(r.out, Note{TaskID: d.GetId(), Message: note})
	}
}

// keepOne returns the task of ts to keep in slot s, shutting down the rest:
// a live task before a finished one, then the most advanced state, then
// the newest.
func (r *reconciler) keepOne(s uint64, ts []*apiv1.Task) *apiv1.Task {
	best := ts[0]
	for _, t := range ts[1:] {
		if better(t, best) {
			best = t
		}
	}
	for _, t := range ts {
		if t != best {
			r.shutdown(t, fmt.Sprintf("duplicate task for slot %d", s))
		}
	}
	return best
}

func better(a, b *apiv1.Task) bool {
	at, bt := Terminal(a.GetState()), Terminal(b.GetState())
	if at != bt {
		return !at
	}
	if !at && a.GetState() != b.GetState() {
		return a.GetState() > b.GetState()
	}
	if c := a.GetCreatedAt().AsTime().Compare(b.GetCreatedAt().AsTime()); c != 0 {
		return c > 0
	}
	return a.GetId() > b.GetId()
}

// restart applies the restart policy to dead, a finished current task. When
// it is to be replaced, dead is shut down and the replacement returned.
func (r *reconciler) restart(dead *apiv1.Task) *apiv1.Task {
	attempt, notBefore, ok := restartOf(r.restartPolicy(), dead, r.in.Now)
	if !ok {
		return nil
	}
	state := strings.ToLower(strings.TrimPrefix(dead.GetState().String(), "TASK_STATE_"))
	r.shutdown(dead, fmt.Sprintf("task %s; replaced by attempt %d", state, attempt))
	rep := r.create(dead.GetSlot(), attempt, notBefore)
	rep.PreviousError = state
	if e := dead.GetError(); e != "" {
		rep.PreviousError = state + ": " + e
	}
	r.out[len(r.out)-1] = Create{Task: rep, Restart: true}
	return rep
}

// update starts the rolling update of the outdated tasks in candidates
// (one per slot, none finished), given busy slots already in progress.
func (r *reconciler) update(tasks, candidates []*apiv1.Task, busy int) {
	if len(candidates) == 0 || r.waitDelay(tasks, busy) {
		return
	}
	budget := len(candidates)
	if p := int(r.policy().GetParallelism()); p > 0 {
		budget = min(budget, p-busy)
	}
	// Tasks that serve nothing yet go first, then by slot.
	slices.SortFunc(candidates, func(a, b *apiv1.Task) int {
		ar := a.GetState() == apiv1.TaskState_TASK_STATE_RUNNING
		br := b.GetState() == apiv1.TaskState_TASK_STATE_RUNNING
		if ar != br {
			if ar {
				return 1
			}
			return -1
		}
		return cmp.Compare(a.GetSlot(), b.GetSlot())
	})
	defer func(pin string) { r.pin = pin }(r.pin)
	for _, o := range candidates[:max(budget, 0)] {
		if apiv1.IsGlobal(r.in.Service.GetSpec().GetMode()) {
			r.pin = o.GetNodeId()
		}
		// An unplaced task serves nothing and stops at once (ShutdownTask):
		// start-first gains nothing by keeping it.
		if r.startFirst() && !unplaced(o) {
			r.create(o.GetSlot(), 1, time.Time{})
			continue
		}
		r.shutdown(o, "replaced by a task of the updated spec")
		if unplaced(o) {
			r.create(o.GetSlot(), 1, time.Time{})
		}
	}
}

// waitDelay reports whether the next batch of an update must wait for the
// policy's delay. With a delay, batches are strict: none starts while a
// slot is busy; once the update's first batch serves and no slot is busy,
// the update status's next_batch_at is set to now + delay and the batch
// waits until then (a Recheck brings the round back); the batch that
// starts clears it. Without a delay, or before the update's first batch,
// nothing waits.
func (r *reconciler) waitDelay(tasks []*apiv1.Task, busy int) bool {
	svc := r.in.Service
	st := svc.GetUpdateStatus()
	delay := r.policy().GetDelay().AsDuration()
	if delay <= 0 || (st.GetState() != apiv1.UpdateStatus_STATE_UPDATING && st.GetState() != apiv1.UpdateStatus_STATE_ROLLBACK_STARTED) {
		return false
	}
	if busy > 0 {
		return true
	}
	started := st.GetStartedAt().AsTime()
	begun := slices.ContainsFunc(tasks, func(t *apiv1.Task) bool {
		return current(t) && r.upToDate(t) && !t.GetCreatedAt().AsTime().Before(started)
	})
	setNext := func(at *timestamppb.Timestamp) {
		out := proto.CloneOf(st)
		out.NextBatchAt = at
		r.out = append(r.out, SetUpdateStatus{ServiceID: svc.GetId(), Version: svc.GetVersion(), Status: out})
	}
	next := st.GetNextBatchAt()
	switch {
	case !begun:
		return false
	case next == nil:
		at := r.in.Now.Add(delay)
		setNext(timestamppb.New(at))
		r.out = append(r.out, Recheck{ServiceID: svc.GetId(), At: at})
		return true
	case r.in.Now.Before(next.AsTime()):
		r.out = append(r.out, Recheck{ServiceID: svc.GetId(), At: next.AsTime()})
		return true
	}
	setNext(nil)
	return false
}

// global reconciles a global service: each eligible node (see eligible)
// is a slot of its own (slot 0, keyed by node) with one current task, made
// on that node and reconciled, updated and restarted as a replicated slot
// is; the current tasks on nodes that are no longer eligible (drained,
// paused nodes keep theirs) are shut down; a DOWN node's task is orphaned
// (checkNodes) and not replaced elsewhere.
func (r *reconciler) global(tasks []*apiv1.Task) {
	byNode := map[string][]*apiv1.Task{}
	for _, t := range tasks {
		byNode[t.GetNodeId()] = append(byNode[t.GetNodeId()], t)
	}
	eligible := r.eligible()
	isJob := apiv1.IsJob(r.in.Service.GetSpec().GetMode())
	job := jobProgress{total: uint64(len(eligible))}
	var candidates []*apiv1.Task
	busy := 0
	for _, id := range eligible {
		r.pin = id
		keeper, cand, inflight := r.slot(0, byNode[id])
		if cand != nil {
			candidates = append(candidates, cand)
		}
		if inflight {
			busy++
		}
		job.count(keeper, cand != nil) // a finished keeper is done: inflight counts it busy
	}
	r.pin = ""
	for id, ts := range byNode {
		if slices.Contains(eligible, id) {
			continue
		}
		for _, t := range ts {
			if unplaced(t) || (current(t) && !Terminal(t.GetState())) {
				r.shutdown(t, "its node is no longer eligible for the global service")
			}
		}
	}
	// A job has no rolling update: an update re-runs it, every node at
	// once (no update policy: parallelism 0, stop-first).
	if isJob || !r.progress(tasks, candidates) {
		r.update(tasks, candidates, busy)
	}
	limit := r.in.Config.historyLimit()
	for _, ts := range byNode {
		r.collect(ts, limit)
	}
	if isJob {
		r.jobStatus(tasks, job)
	}
}

// eligible returns the IDs of the nodes a global service runs a task on,
// sorted: READY workers that are not draining or paused (a PAUSE node keeps
// the task it has) and satisfy the service's constraints.
func (r *reconciler) eligible() []string {
	if r.in.Nodes == nil {
		return nil
	}
	var cs []scheduler.Constraint
	for _, c := range r.in.Service.GetSpec().GetConstraints() {
		if pc, err := scheduler.ParseConstraint(c); err == nil {
			cs = append(cs, pc)
		}
	}
	var out []string
	for _, n := range r.in.Nodes() {
		if !n.GetWorker() || n.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY {
			continue
		}
		switch n.GetAvailability() {
		case apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN:
			continue
		case apiv1.NodeAvailability_NODE_AVAILABILITY_PAUSE:
			if !r.hasTaskOn(n.GetId()) {
				continue
			}
		}
		if scheduler.MatchesAll(schedloop.NodeView(n, nil, nil), cs) {
			out = append(out, n.GetId())
		}
	}
	slices.Sort(out)
	return out
}

// hasTaskOn reports whether the service has a current task on node id.
func (r *reconciler) hasTaskOn(id string) bool {
	for _, t := range r.in.Tasks {
		if t.GetNodeId() == id && current(t) && !Terminal(t.GetState()) {
			return true
		}
	}
	return false
}

// collect removes a slot's history beyond limit: finished tasks that are
// no longer current, newest kept.
func (r *reconciler) collect(tasks []*apiv1.Task, limit int) {
	var history []*apiv1.Task
	for _, t := range tasks {
		if (!current(t) && Terminal(t.GetState())) || r.history[t.GetId()] {
			history = append(history, t)
		}
	}
	if len(history) <= limit {
		return
	}
	slices.SortFunc(history, func(a, b *apiv1.Task) int {
		if c := b.GetCreatedAt().AsTime().Compare(a.GetCreatedAt().AsTime()); c != 0 {
			return c
		}
		return strings.Compare(b.GetId(), a.GetId())
	})
	for _, t := range history[limit:] {
		r.out = append(r.out, Remove{TaskID: t.GetId()})
	}
}

// restartOf applies a restart policy to dead, a current task that finished.
// ok is false when no replacement is to be made: condition none, condition
// on-failure after COMPLETE, or max_attempts reached. Otherwise the
// replacement's attempt is dead's attempt + 1 when dead ran for less than
// the window (default 10s; explicitly 0: always), else 1; from attempt 2 on
// it does not start before now + backoff(attempt).
//
// How long dead ran is measured from the later of its creation and its
// not_before to its last update (the report that it finished), or to now
// when that is not later.
func restartOf(p *apiv1.RestartPolicy, dead *apiv1.Task, now time.Time) (attempt uint32, notBefore time.Time, ok bool) {
	switch p.GetCondition() {
	case apiv1.RestartPolicy_CONDITION_NONE:
		return 0, time.Time{}, false
	case apiv1.RestartPolicy_CONDITION_ON_FAILURE:
		if dead.GetState() == apiv1.TaskState_TASK_STATE_COMPLETE {
			return 0, time.Time{}, false
		}
	}
	window := DefaultRestartWindow
	if p.GetWindow() != nil {
		window = p.GetWindow().AsDuration()
	}
	start := dead.GetCreatedAt().AsTime()
	if nb := dead.GetNotBefore(); nb != nil && nb.AsTime().After(start) {
		start = nb.AsTime()
	}
	end := now
	if u := dead.GetUpdatedAt(); u != nil && u.AsTime().After(start) {
		end = u.AsTime()
	}
	attempt = 1
	if window <= 0 || end.Sub(start) < window {
		attempt = max(dead.GetAttempt(), 1) + 1
	}
	if m := p.GetMaxAttempts(); m > 0 && attempt > m {
		return 0, time.Time{}, false
	}
	if d := backoff(p, attempt); attempt >= 2 && d > 0 {
		notBefore = now.Add(d)
	}
	return attempt, notBefore, true
}

// backoff is how long replacement attempt (≥ 2) waits: delay × 2^(attempt−2),
// capped at max_delay. delay defaults to 100ms (explicitly 0: no wait) and
// max_delay to 10s.
func backoff(p *apiv1.RestartPolicy, attempt uint32) time.Duration {
	delay := DefaultRestartDelay
	if p.GetDelay() != nil {
		delay = p.GetDelay().AsDuration()
	}
	ceiling := DefaultRestartMaxDelay
	if d := p.GetMaxDelay().AsDuration(); d > 0 {
		ceiling = d
	}
	if delay <= 0 {
		return 0
	}
	for i := uint32(2); i < attempt && delay < ceiling; i++ {
		delay *= 2
	}
	return min(delay, ceiling)
}

// specKey is state.SpecKey.
func specKey(s *apiv1.ServiceSpec) string { return state.SpecKey(s) }
