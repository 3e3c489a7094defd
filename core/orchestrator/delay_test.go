package orchestrator

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// describeWaits renders what an update's delay adds to a round: the next
// batch time it records and when it asks to be rechecked (relative to t0).
func describeWaits(actions []Action) []string {
	var out []string
	for _, a := range actions {
		switch a := a.(type) {
		case SetUpdateStatus:
			if nb := a.Status.GetNextBatchAt(); nb != nil {
				out = append(out, "next batch at +"+nb.AsTime().Sub(t0).String())
			} else {
				out = append(out, "next batch now")
			}
		case Recheck:
			out = append(out, "recheck at +"+a.At.Sub(t0).String())
		}
	}
	return out
}

func TestUpdateDelaySteps(t *testing.T) {
	const delay = 10 * time.Second
	withDelay := func(next time.Duration, set bool) *apiv1.Service {
		svc := service(2, 3, updatePolicy(1, 0))
		svc.Spec.UpdatePolicy.Delay = durationpb.New(delay)
		svc.UpdateStatus = &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_UPDATING, StartedAt: timestamppb.New(t0.Add(-30 * time.Second))}
		if set {
			svc.UpdateStatus.NextBatchAt = timestamppb.New(t0.Add(next))
		}
		return svc
	}
	firstDone := []*apiv1.Task{
		task("a", 1, wantStop, tsShutdown), task("n1", 1, wantRunning, tsRunning, v(2), createdAgo(20*time.Second)),
		task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
	}
	tests := []struct {
		name      string
		svc       *apiv1.Service
		tasks     []*apiv1.Task
		now       time.Duration
		want      []string
		wantWaits []string
	}{
		{"the first batch does not wait", withDelay(0, false), []*apiv1.Task{
			task("a", 1, wantRunning, tsRunning), task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, 0, []string{"shutdown a"}, nil},
		{"no batch while one is on its way", withDelay(0, false), []*apiv1.Task{
			task("a", 1, wantStop, tsShutdown), task("n1", 1, wantRunning, tsStarting, v(2), createdAgo(20*time.Second)),
			task("b", 2, wantRunning, tsRunning), task("c", 3, wantRunning, tsRunning),
		}, 0, nil, nil},
		{"a batch served: the next waits the delay", withDelay(0, false), firstDone, 0, nil,
			[]string{"next batch at +10s", "recheck at +10s"}},
		{"within the delay: still waiting", withDelay(delay, true), firstDone, 5 * time.Second, nil,
			[]string{"recheck at +10s"}},
		{"the delay is over: the next batch starts", withDelay(delay, true), firstDone, delay, []string{"shutdown b"},
			[]string{"next batch now"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Reconcile(Input{Service: tt.svc, Tasks: tt.tasks, Now: t0.Add(tt.now), NewID: ids()})
			if d := diff(describe(got), tt.want); d != "" {
				t.Errorf("actions:\n%s", d)
			}
			if d := diff(describeWaits(got), tt.wantWaits); d != "" {
				t.Errorf("waits:\n%s", d)
			}
		})
	}
	// Without a delay the same state goes on at once.
	svc := service(2, 3, updatePolicy(1, 0))
	svc.UpdateStatus = &apiv1.UpdateStatus{State: apiv1.UpdateStatus_STATE_UPDATING, StartedAt: timestamppb.New(t0.Add(-30 * time.Second))}
	got := Reconcile(Input{Service: svc, Tasks: firstDone, Now: t0, NewID: ids()})
	if d := diff(describe(got), []string{"shutdown b"}); d != "" || len(describeWaits(got)) != 0 {
		t.Errorf("no delay: %s %v", d, fmt.Sprint(describeWaits(got)))
	}
}
