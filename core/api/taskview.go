package api

import (
	"fmt"
	"sync"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/state"
)

// ListedTask returns t as ListTasks lists it in view (BASIC or FULL; an
// unspecified view is BASIC), without the server's cache: for tests and
// fakes that stand in for the server.
func ListedTask(t *apiv1.Task, view apiv1.TaskView) *apiv1.Task {
	return taskView(t, view, summarize(t.GetSpec()))
}

// specSummary is what of a task's spec its views carry in every view.
type specSummary struct {
	image         string
	digest        string
	healthChecked bool
}

func summarize(spec *apiv1.ServiceSpec) specSummary {
	return specSummary{image: spec.GetImage(), digest: state.SpecDigest(spec), healthChecked: state.HasHealthCheck(spec)}
}

// taskView returns t as ListTasks returns it in view (BASIC or FULL): a
// copy with the output-only fields filled in from sum, the summary of its
// spec (image, spec_digest, health_checked), with the spec in FULL and
// without it in BASIC. The copy shares t's timestamps and spec, which are
// not to be modified (t is a record of the state).
func taskView(t *apiv1.Task, view apiv1.TaskView, sum specSummary) *apiv1.Task {
	v := &apiv1.Task{
		Id:             t.GetId(),
		ServiceId:      t.GetServiceId(),
		ServiceName:    t.GetServiceName(),
		Slot:           t.GetSlot(),
		ServiceVersion: t.GetServiceVersion(),
		NodeId:         t.GetNodeId(),
		DesiredState:   t.GetDesiredState(),
		State:          t.GetState(),
		Message:        t.GetMessage(),
		Error:          t.GetError(),
		ExitCode:       t.GetExitCode(),
		CreatedAt:      t.GetCreatedAt(),
		UpdatedAt:      t.GetUpdatedAt(),
		Version:        t.GetVersion(),
		Attempt:        t.GetAttempt(),
		NotBefore:      t.GetNotBefore(),
		Address:        t.GetAddress(),
		PreviousError:  t.GetPreviousError(),
		Health:         t.GetHealth(),
		HealthOutput:   t.GetHealthOutput(),
		Image:          sum.image,
		SpecDigest:     sum.digest,
		HealthChecked:  sum.healthChecked,
	}
	if view == apiv1.TaskView_TASK_VIEW_FULL {
		v.Spec = t.GetSpec()
	}
	return v
}

// taskViews caches taskView's copies of the state's task records and their
// wire form, so that listing a service's 10,000 tasks again (and each of its
// pages) copies and encodes no task twice: a record is never modified (a
// write puts a new one), so its views stay right for as long as it lives.
// Records that are gone are dropped in generations: the views made or used
// since the last turn are in cur, the others in prev; a turn (when cur
// holds more than twice the state's tasks) drops prev, so a record not
// listed for a whole generation loses its views. The summaries of specs are
// kept by service version (tasks made from one version of a service share
// its spec, as the orchestrator makes them; version 0 is summarized each
// time), so a spec is digested once per version, not once per task or per
// write of a task.
type taskViews struct {
	// live is the number of tasks in the state.
	live func() int

	mu        sync.Mutex
	cur, prev map[*apiv1.Task]*[2]*listedTask // BASIC, FULL
	summaries map[serviceVersion]specSummary
}

// listedTask is a task's view and its wire form.
type listedTask struct {
	task *apiv1.Task
	wire []byte
}

type serviceVersion struct {
	service string
	version uint64
}

// minViewGeneration is the least number of records cur holds before a turn.
const minViewGeneration = 1024

func newTaskViews(live func() int) *taskViews {
	return &taskViews{live: live, cur: map[*apiv1.Task]*[2]*listedTask{}, summaries: map[serviceVersion]specSummary{}}
}

// get returns record t in view (BASIC or FULL) and its wire form, from the
// cache when it has them.
func (c *taskViews) get(t *apiv1.Task, view apiv1.TaskView) (*listedTask, error) {
	i := 0
	if view == apiv1.TaskView_TASK_VIEW_FULL {
		i = 1
	}
	key := serviceVersion{t.GetServiceId(), t.GetServiceVersion()}
	c.mu.Lock()
	e := c.cur[t]
	if e == nil {
		if e = c.prev[t]; e != nil {
			delete(c.prev, t)
		} else {
			e = &[2]*listedTask{}
		}
		if len(c.cur) >= max(minViewGeneration, 2*c.live()) {
			c.prev, c.cur = c.cur, map[*apiv1.Task]*[2]*listedTask{}
			clear(c.summaries)
		}
		c.cur[t] = e
	}
	l := e[i]
	sum, summarized := c.summaries[key]
	c.mu.Unlock()
	if l != nil {
		return l, nil
	}
	// Made outside the lock; two readers of one record may both make it,
	// and either copy is right.
	if !summarized || key.version == 0 {
		sum = summarize(t.GetSpec())
	}
	v := taskView(t, view, sum)
	wire, err := proto.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode task %s: %w", t.GetId(), err)
	}
	l = &listedTask{task: v, wire: wire}
	c.mu.Lock()
	e[i] = l
	if key.version != 0 {
		c.summaries[key] = sum
	}
	c.mu.Unlock()
	return l, nil
}
