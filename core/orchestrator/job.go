package orchestrator

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// SetJobStatus asks for a job service's job status to become Status. It
// applies to the service as it was at Version only: a service changed
// meanwhile is decided again.
type SetJobStatus struct {
	ServiceID string
	Version   uint64
	Status    *apiv1.JobStatus
}

func (SetJobStatus) isAction() {}

func (a SetJobStatus) String() string {
	return fmt.Sprintf("service %s job %s: %s", a.ServiceID, a.Status.GetState(), a.Status.GetMessage())
}

// serviceStatus is an action that changes a service's status fields, not
// its tasks: the loop writes it as an UpdateService of the service as it
// was at the version the decision saw.
type serviceStatus interface {
	Action
	service() (id string, version uint64)
	applyTo(svc *apiv1.Service) *apiv1.Service
}

func (a SetUpdateStatus) service() (string, uint64)                 { return a.ServiceID, a.Version }
func (a SetUpdateStatus) applyTo(svc *apiv1.Service) *apiv1.Service { return ApplyUpdateStatus(svc, a) }
func (a SetJobStatus) service() (string, uint64)                    { return a.ServiceID, a.Version }
func (a SetJobStatus) applyTo(svc *apiv1.Service) *apiv1.Service    { return ApplyJobStatus(svc, a) }

// ApplyJobStatus returns a copy of svc changed as a SetJobStatus asks.
func ApplyJobStatus(svc *apiv1.Service, a SetJobStatus) *apiv1.Service {
	out := proto.CloneOf(svc)
	out.JobStatus = proto.CloneOf(a.Status)
	return out
}

// restartPolicy is the restart policy the service's finished tasks are
// handled by: its own, except that a job's condition is on-failure unless
// it is none (a task that completed is done; condition any is refused for
// a job, see api.ValidateServiceSpec).
func (r *reconciler) restartPolicy() *apiv1.RestartPolicy {
	spec := r.in.Service.GetSpec()
	p := spec.GetRestartPolicy()
	if !apiv1.IsJob(spec.GetMode()) || p.GetCondition() == apiv1.RestartPolicy_CONDITION_ON_FAILURE || p.GetCondition() == apiv1.RestartPolicy_CONDITION_NONE {
		return p
	}
	out := &apiv1.RestartPolicy{}
	if p != nil {
		out = proto.CloneOf(p)
	}
	out.Condition = apiv1.RestartPolicy_CONDITION_ON_FAILURE
	return out
}

// jobProgress counts a job's slots (a global job's eligible nodes) by how
// far they are.
type jobProgress struct {
	total, completed, failed uint64
	// lastFailed is the slot task that failed for good last.
	lastFailed *apiv1.Task
}

// count adds a slot given its current task after the round (nil: none
// yet) and whether it still has work in flight (an old task stopping, an
// outdated one waiting for its re-run). A slot whose task completed counts
// as completed; one whose task failed and is not retried (restart
// condition none, max_attempts reached) as failed; any other as running.
func (p *jobProgress) count(keeper *apiv1.Task, pending bool) {
	switch {
	case pending || keeper == nil || !Terminal(keeper.GetState()):
	case keeper.GetState() == apiv1.TaskState_TASK_STATE_COMPLETE:
		p.completed++
	default:
		p.failed++
		if p.lastFailed == nil || keeper.GetUpdatedAt().AsTime().After(p.lastFailed.GetUpdatedAt().AsTime()) {
			p.lastFailed = keeper
		}
	}
}

// replicatedJob reconciles a replicated job: slots 1..replicas are its
// completions, each done once its current task has COMPLETE (exit 0).
// Tasks are created and restarted only while fewer than max_concurrent
// (0: replicas) slots have a task in flight (not finished, or an old one
// still stopping), lowest slot first, restarts of failed tasks before new
// slots. A failed task is retried under the restart policy (condition
// on-failure unless none, see restartPolicy); one that is not is the
// slot's failure. A completed slot's task is never run again: once every
// slot completed or failed, the job is done and nothing is started.
//
// An update that changes the tasks re-runs the job: the tasks of the old
// spec, running or finished, are shut down (kept as history), and each
// slot runs again once its old task has stopped, under max_concurrent. A
// task on a draining node is shut down and its slot runs again elsewhere
// once it has stopped.
func (r *reconciler) replicatedJob(tasks []*apiv1.Task) {
	spec := r.in.Service.GetSpec()
	total := spec.GetReplicas()
	limit := spec.GetMaxConcurrent()
	if limit == 0 || limit > total {
		limit = total
	}
	slots := r.bySlot(tasks, total)

	type waiting struct {
		slot uint64
		dead *apiv1.Task // the failed task to retry; nil: the slot has none
	}
	var (
		progress = jobProgress{total: total}
		inflight uint64
		queue    []waiting
	)
	policy := r.restartPolicy()
	for s := uint64(1); s <= total; s++ {
		keeper, busy := r.jobSlot(s, slots[s])
		switch {
		case busy:
			inflight++
		case keeper == nil:
			queue = append(queue, waiting{slot: s})
		case keeper.GetState() == apiv1.TaskState_TASK_STATE_COMPLETE:
			progress.count(keeper, false)
		default:
			if _, _, ok := restartOf(policy, keeper, r.in.Now); ok {
				queue = append(queue, waiting{slot: s, dead: keeper})
			} else {
				progress.count(keeper, false)
			}
		}
	}
	// Retries first: a slot that ran is further on than one that did not.
	var retries, fresh []waiting
	for _, w := range queue {
		if w.dead != nil {
			retries = append(retries, w)
		} else {
			fresh = append(fresh, w)
		}
	}
	for _, w := range append(retries, fresh...) {
		if inflight >= limit {
			break
		}
		if w.dead != nil {
			r.restart(w.dead)
		} else {
			r.create(w.slot, 1, time.Time{})
		}
		inflight++
	}

	limitH := r.in.Config.historyLimit()
	for s := uint64(1); s <= total; s++ {
		r.collect(slots[s], limitH)
	}
	r.jobStatus(tasks, progress)
}

// jobSlot reconciles the tasks of a replicated job's slot s, creating
// none: it shuts down the tasks of an old spec (the job is re-run), those
// on a draining node and duplicates, and returns the slot's current task
// of the current spec (nil: none) and whether the slot is busy: a task of
// it has not finished yet, or is still stopping.
func (r *reconciler) jobSlot(s uint64, tasks []*apiv1.Task) (keeper *apiv1.Task, busy bool) {
	var fresh []*apiv1.Task
	for _, t := range tasks {
		node, draining := r.draining[t.GetId()]
		switch {
		case current(t) && r.upToDate(t) && !draining:
			fresh = append(fresh, t)
			continue
		case draining:
			r.shutdown(t, fmt.Sprintf("node %s drained; the job's task runs again elsewhere", node))
		case current(t):
			r.shutdown(t, "the job's spec changed: it runs again")
		case unplaced(t):
			r.shutdown(t, "no longer wanted")
			continue
		}
		if !Terminal(t.GetState()) && !unplaced(t) {
			busy = true // stop-first: the slot waits for it to stop
		}
	}
	if len(fresh) > 0 {
		keeper = r.keepOne(s, fresh)
		for _, t := range fresh {
			if t != keeper && !Terminal(t.GetState()) && !unplaced(t) {
				busy = true
			}
		}
		if !Terminal(keeper.GetState()) {
			busy = true
		}
	}
	return keeper, busy
}

// jobStatus asks for the job status that progress says, when it differs
// from the service's: RUNNING while a slot (an eligible node) is still to
// complete, then COMPLETED, or FAILED when some slot failed for good.
// started_at is when the run began: kept while the service's status says
// the same run, now when a new run starts (a finished job that runs again:
// an update, a node that joins a global job); for a job found finished
// with no status (one written before, or cleared by an update that
// changed no task), its oldest task of the current spec. completed_at is
// when it ended.
func (r *reconciler) jobStatus(tasks []*apiv1.Task, p jobProgress) {
	svc := r.in.Service
	old := svc.GetJobStatus()
	st := &apiv1.JobStatus{State: apiv1.JobStatus_STATE_COMPLETED, Completed: p.completed, Failed: p.failed, Total: p.total,
		Message: fmt.Sprintf("%d/%d completed", p.completed, p.total)}
	switch {
	case p.completed+p.failed < p.total:
		st.State = apiv1.JobStatus_STATE_RUNNING
	case p.failed > 0:
		st.State = apiv1.JobStatus_STATE_FAILED
	}
	if f := p.lastFailed; f != nil {
		st.Message += fmt.Sprintf("; %d failed (task %s %s)", p.failed, f.GetId(), taskEnd(f))
	}
	running := st.State == apiv1.JobStatus_STATE_RUNNING
	now := timestamppb.New(r.in.Now)
	switch {
	case old == nil && !running:
		st.StartedAt = now
		for _, t := range tasks {
			if r.upToDate(t) && t.GetCreatedAt() != nil && t.GetCreatedAt().AsTime().Before(st.StartedAt.AsTime()) {
				st.StartedAt = t.GetCreatedAt()
			}
		}
	case old == nil, running && old.GetState() != apiv1.JobStatus_STATE_RUNNING:
		st.StartedAt = now
	default:
		st.StartedAt = old.GetStartedAt()
	}
	if !running {
		st.CompletedAt = now
		if old.GetState() == st.State && old.GetCompletedAt() != nil {
			st.CompletedAt = old.GetCompletedAt()
		}
	}
	if proto.Equal(old, st) {
		return
	}
	r.out = append(r.out, SetJobStatus{ServiceID: svc.GetId(), Version: svc.GetVersion(), Status: st})
}
