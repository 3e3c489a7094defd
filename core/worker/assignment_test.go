package worker_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/worker"
)

// upsertBig commits count tasks, each with a spec of its own holding an
// env value of size bytes, ten per Raft entry, and returns their IDs.
func (e *env) upsertBig(count, size int) []string {
	var ids []string
	var batch []*apiv1.Task
	for i := range count {
		tk := newTask(fmt.Sprintf("big-%03d", i), uint64(i+1), "sleep", "3600")
		tk.Spec.Env = map[string]string{"BIG": strings.Repeat("x", size), "I": fmt.Sprint(i)}
		batch = append(batch, tk)
		ids = append(ids, tk.GetId())
		if len(batch) == 10 || i == count-1 {
			e.upsert(batch...)
			batch = nil
		}
	}
	return ids
}

// assignmentCondition returns the message of the node's "assignment"
// condition, "" when it has none.
func (e *env) assignmentCondition() string {
	n, _ := e.m.State.Node(nodeID)
	for _, c := range n.GetConditions() {
		if c.GetType() == dispatcher.ConditionAssignment {
			return c.GetMessage()
		}
	}
	return ""
}

// TestWorkerTakesAChunkedFullSet: a node whose tasks add up to more than
// gRPC's 4 MiB receive limit (100 tasks with a 45 KB env value, each spec
// different, so that even sent once each they need several messages) keeps its
// session across a worker restart, takes the whole set (sent in bounded
// messages) without stopping any task of it, stops the one task the set
// lacks, and applies a scale-down.
func TestWorkerTakesAChunkedFullSet(t *testing.T) {
	e := newEnv(t, dispatchertest.Options{})
	w := e.startWorker(t, nil)
	ids := e.upsertBig(100, 45_000)
	for _, id := range ids {
		e.waitState(t, id, running)
	}
	w.stop()
	// While the worker is away, one task goes.
	e.m.Apply(&fsmpb.RemoveTasks{Ids: []string{ids[0]}})
	ids = ids[1:]
	startsBefore := e.rt.starts.Load()

	var ended atomic.Int64
	w2 := e.startWorker(t, func(o *worker.Options) {
		o.OnSessionEnd = func(error) { ended.Add(1) }
	})
	dispatchertest.Eventually(t, "the removed task destroyed", func() bool { return !e.inRuntime("big-000") && !e.handleStored("big-000") })
	dispatchertest.Eventually(t, "the whole set recovered", func() bool {
		n := 0
		for _, lt := range w2.LocalTasks() {
			if lt.State == running && lt.HasHandle {
				n++
			}
		}
		return n == len(ids)
	})

	// Scale down: 60 tasks wanted SHUTDOWN in one Raft entry.
	var down []*apiv1.Task
	for _, id := range ids[:60] {
		cur, _ := e.m.State.Task(id)
		tk := proto.CloneOf(cur)
		tk.DesiredState = shutdown
		down = append(down, tk)
	}
	e.upsert(down...)
	for _, id := range ids[:60] {
		e.waitState(t, id, shutdown)
	}
	for _, id := range ids[60:] {
		if !e.inRuntime(id) {
			t.Fatalf("task %s was stopped: it is in the full set", id)
		}
	}
	if n := e.rt.starts.Load() - startsBefore; n != 0 {
		t.Fatalf("%d starts after the restart, want none: every task of the set was recovered", n)
	}
	if n := ended.Load(); n != 0 || !w2.Connected() {
		t.Fatalf("%d sessions ended after the restart (connected %v), want one session that holds", n, w2.Connected())
	}
	if c := e.assignmentCondition(); c != "" {
		t.Fatalf("assignment condition %q on a node that took its assignment", c)
	}
}

// TestWorkerThatCannotTakeItsAssignment: a worker whose every session
// fails right after it is established (its full set is larger than it
// receives: here a 256-byte limit) reconnects with growing waits, the
// node shows an "assignment" condition, and the failing sessions write
// nothing to Raft; once the worker can take its set, the condition goes.
func TestWorkerThatCannotTakeItsAssignment(t *testing.T) {
	const (
		minBackoff = 20 * time.Millisecond
		maxBackoff = 400 * time.Millisecond
	)
	e := newEnv(t, dispatchertest.Options{HeartbeatPeriod: 100 * time.Millisecond, HeartbeatTTL: time.Second})
	tk := newTask("t1", 1, "sleep", "3600")
	tk.Spec.Env = map[string]string{"BIG": strings.Repeat("x", 1024)}
	e.upsert(tk)

	small, err := grpc.NewClient("unix://"+e.m.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { small.Close() })
	var limited atomic.Bool
	limited.Store(true)
	ends := make(chan time.Time, 1000)
	e.startWorker(t, func(o *worker.Options) {
		o.MinBackoff, o.MaxBackoff = minBackoff, maxBackoff
		o.Dial = func(ctx context.Context) (apiv1.DispatcherClient, error) {
			if limited.Load() {
				return apiv1.NewDispatcherClient(small), nil
			}
			return e.m.Dial(ctx)
		}
		o.OnSessionEnd = func(error) {
			select {
			case ends <- time.Now():
			default:
			}
		}
	})
	dispatchertest.Eventually(t, "the node's assignment condition", func() bool { return e.assignmentCondition() != "" })
	if c := e.assignmentCondition(); !strings.Contains(c, "sessions in a row ended") {
		t.Fatalf("assignment condition %q", c)
	}

	// The next sessions fail as well: no Raft write, and the waits between
	// them have grown to at least half of MaxBackoff (the jitter).
	next := func() time.Time {
		t.Helper()
		select {
		case at := <-ends:
			return at
		case <-time.After(20 * time.Second):
			t.Fatal("no session ended within 20s")
		}
		return time.Time{}
	}
	for len(ends) > 1 {
		<-ends
	}
	index := e.m.Raft.LastIndex()
	prev := next()
	for i := range 6 {
		at := next()
		if gap := at.Sub(prev); i >= 3 && gap < maxBackoff/2 {
			t.Errorf("session %d after the condition ended %v after the previous one, want at least %v", i, gap, maxBackoff/2)
		}
		prev = at
	}
	if got := e.m.Raft.LastIndex(); got != index {
		t.Fatalf("6 failing sessions wrote %d Raft entries, want none", got-index)
	}
	if e.nodeStatus() != ready {
		t.Fatalf("node status %v, want READY (its condition says what is wrong)", e.nodeStatus())
	}

	limited.Store(false)
	e.waitState(t, "t1", running)
	dispatchertest.Eventually(t, "the assignment condition to clear", func() bool { return e.assignmentCondition() == "" })
}
