package bench

import (
	"context"
	"fmt"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// BenchmarkCluster3Create64: 64 clients creating services through the
// leader of a 3-manager cluster, each manager a real agent in its own
// network namespace, every write committed by a majority over mutual TLS.
func BenchmarkCluster3Create64(b *testing.B) {
	bin := testutil.Install(b, clustertest.Plugins...)
	c := clustertest.New(b, bin)
	c.Form([]string{"m1", "m2", "m3"}, nil)
	createConcurrently(b, clientsOwnConn(func() apiv1.WarrenClient { return c.Leader().Agent.Client() }))
}

// BenchmarkLeaderKill: per iteration, kill -9 the leader of a 3-manager
// cluster and time until a write through a surviving manager is accepted
// again; then, untimed, restart the killed manager and wait for 3 members.
func BenchmarkLeaderKill(b *testing.B) {
	bin := testutil.Install(b, clustertest.Plugins...)
	c := clustertest.New(b, bin)
	c.Form([]string{"m1", "m2", "m3"}, nil)
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		leader := c.Leader()
		var survivor *clustertest.Node
		for _, n := range c.Nodes {
			if n != leader {
				survivor = n
				break
			}
		}
		cl := survivor.Client()
		killed := time.Now()
		leader.Kill9()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := cl.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{
				Name: fmt.Sprintf("after-kill-%d", i), Image: ctrtest.TestImage,
			}})
			cancel()
			if err == nil {
				break
			}
			if time.Since(killed) > time.Minute {
				b.Fatalf("no write accepted a minute after the leader's death: %v", err)
			}
			time.Sleep(10 * time.Millisecond) // retry period of the probing client
		}
		lat = append(lat, time.Since(killed))
		b.StopTimer()
		leader.Start(context.Background())
		c.WaitMembers(survivor, 3)
		b.StartTimer()
	}
	reportLatency(b, lat)
}

// BenchmarkNodeLoss: per iteration, cut the worker that runs a task off
// the network and time until its replacement runs on the other worker;
// then, untimed, heal it and wait until the duplicate is stopped.
func BenchmarkNodeLoss(b *testing.B) {
	bin := testutil.Install(b, clustertest.Plugins...)
	c := clustertest.New(b, bin)
	c.Form([]string{"m1"}, []string{"w1", "w2"})
	m1 := c.Node("m1")
	workers := []*clustertest.Node{c.Node("w1"), c.Node("w2")}
	m1.CLI(0, "service", "create", "app", "--image", ctrtest.TestImage, "--replicas", "2")
	running := func() (int, int) { return len(workers[0].RunningOn()), len(workers[1].RunningOn()) }
	testutil.Eventually(b, time.Minute, "2 containers", func() bool { a, c := running(); return a+c == 2 })
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		lost, other := workers[i%2], workers[(i+1)%2]
		if len(lost.RunningOn()) == 0 {
			lost, other = other, lost
		}
		cut := time.Now()
		lost.Host.Partition(b)
		testutil.Eventually(b, time.Minute, "replacements running", func() bool { return len(other.RunningOn()) == 2 })
		lat = append(lat, time.Since(cut))
		b.StopTimer()
		lost.Host.Heal(b)
		testutil.Eventually(b, time.Minute, "the duplicate stopped", func() bool { return len(lost.RunningOn()) == 0 })
		c.WaitReady(m1, 3)
		b.StartTimer()
	}
	reportLatency(b, lat)
	b.ReportMetric(c.HeartbeatTTL.Seconds()*1000, "ttl-ms")
}
