package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
)

// TestRunHugeAssignmentRestart: a node whose tasks add up to
// more than gRPC's 4 MiB message limit (25 replicas with 180 KB of env
// each, about 4.5 MB) keeps its session across an agent restart: the
// containers are recovered, the node stays READY without an "assignment"
// condition, nothing is written to Raft while it is idle, and a scale-down
// is applied.
func TestRunHugeAssignmentRestart(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	const heartbeatTTL = 2 * time.Second // heartbeats every TTL/5
	n := startNodeWith(t, `heartbeat_ttl = "2s"`)
	// Listing these tasks takes more than 4 MiB too.
	bigClient := func() apiv1.WarrenClient {
		return n.a.Client(grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64 << 20)))
	}
	n.c = bigClient()
	ctx := context.Background()
	// Two values: one env string may not exceed 128 KiB (execve).
	value := strings.Repeat("x", 90_000)
	if _, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{
		Name: "big", Image: ctrtest.TestImage, Replicas: 25,
		Env:             map[string]string{"BIG1": value, "BIG2": value},
		StopGracePeriod: durationpb.New(time.Second),
	}}); err != nil {
		t.Fatal(err)
	}
	before := n.waitConverged("big", 25)

	n.a.Kill9()
	n.a.Start(ctx)
	n.c = bigClient()
	if got := n.waitConverged("big", 25); len(got) != len(before) {
		t.Fatalf("after the restart containerd runs %d containers, want the %d from before", len(got), len(before))
	}

	// Idle for five heartbeat periods: the node's session holds, so its
	// events stream shows no node or task change and Raft's last index
	// stays where it is.
	events, err := n.c.Events(ctx, &apiv1.EventsRequest{Kinds: []string{"node", "task"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := events.Header(); err != nil { // subscribed once headers arrive
		t.Fatal(err)
	}
	info := func() *apiv1.ClusterInfoResponse {
		t.Helper()
		resp, err := n.c.ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	index := info().GetLastIndex()
	got := make(chan *apiv1.Event, 100)
	go func() {
		for {
			ev, err := events.Recv()
			if err != nil {
				close(got)
				return
			}
			got <- ev
		}
	}()
	window := time.NewTimer(heartbeatTTL) // five heartbeat periods
	defer window.Stop()
	for idle := true; idle; {
		select {
		case ev := <-got:
			t.Fatalf("a %s %s event (Raft index %d) while the node was idle", ev.GetKind(), ev.GetAction(), ev.GetIndex())
		case <-window.C:
			idle = false
		}
	}
	if now := info().GetLastIndex(); now != index {
		t.Fatalf("Raft's last index went from %d to %d while the node was idle", index, now)
	}

	nodes, err := n.c.ListNodes(ctx, &apiv1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes.GetNodes() {
		if nd.GetStatus() != apiv1.NodeStatus_NODE_STATUS_READY || len(nd.GetConditions()) != 0 {
			t.Fatalf("node %s: status %v, conditions %v; want READY without conditions", nd.GetName(), nd.GetStatus(), nd.GetConditions())
		}
	}
	if out := n.a.Output(); strings.Contains(out, "received message larger than max") || strings.Count(out, "connected to the dispatcher") != 1 {
		t.Fatalf("the worker did not hold one session after the restart:\n%s", tail(out, 60))
	}

	// The CLI's wait for convergence lists the tasks: it cannot here.
	n.cli("service", "scale", "big=5", "--detach")
	n.waitConverged("big", 5)
}
