package loadgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// StartManagers starts n throwaway managers (StartManagerWith) forming one
// cluster: the first bootstraps, the others join it with a manager join
// token. It returns once every one is a reachable voter.
func StartManagers(ctx context.Context, bin, dir string, n int, ttl time.Duration) ([]*Manager, error) {
	first, err := StartManagerWith(ctx, bin, dir, ManagerOptions{TTL: ttl, Name: "bench-manager-1"})
	if err != nil {
		return nil, err
	}
	ms := []*Manager{first}
	fail := func(err error) ([]*Manager, error) {
		for _, m := range ms {
			m.Stop()
		}
		return nil, err
	}
	tok, err := first.Cluster.JoinToken(ctx, &apiv1.JoinTokenRequest{Role: apiv1.NodeRole_NODE_ROLE_MANAGER})
	if err != nil {
		return fail(fmt.Errorf("loadgen: a manager join token: %w", err))
	}
	for i := 2; i <= n; i++ {
		m, err := StartManagerWith(ctx, bin, dir, ManagerOptions{TTL: ttl, Name: fmt.Sprintf("bench-manager-%d", i),
			JoinAddrs: []string{first.Addr}, Token: tok.GetToken()})
		if err != nil {
			return fail(err)
		}
		ms = append(ms, m)
	}
	if err := waitVoters(ctx, ms, n); err != nil {
		return fail(err)
	}
	return ms, nil
}

// waitVoters waits until some manager of ms leads n reachable voters.
func waitVoters(ctx context.Context, ms []*Manager, n int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for _, m := range ms {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			r, err := m.Cluster.Members(cctx, &apiv1.MembersRequest{})
			cancel()
			if err != nil {
				continue
			}
			voters := 0
			for _, mem := range r.GetMembers() {
				if mem.GetSuffrage() == "voter" && mem.GetReachable() {
					voters++
				}
			}
			if voters == n && r.GetLeaderId() != "" {
				return nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("loadgen: %d reachable voters not within 2 minutes", n)
		}
		time.Sleep(50 * time.Millisecond) // polling the members with a deadline
	}
}

// leaderOf returns the manager of ms that leads, or nil.
func leaderOf(ctx context.Context, ms []*Manager) *Manager {
	for _, m := range ms {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		info, err := m.API.ClusterInfo(cctx, &apiv1.ClusterInfoRequest{})
		cancel()
		if err == nil && info.GetIsLeader() {
			return m
		}
	}
	return nil
}

// RollingRestart restarts the managers ms one at a time, the followers
// first and then the leader, under the fleet's load: each is stopped
// (SIGTERM) and started again, and the next waits until every manager is
// a reachable voter again and the manager agrees with the fleet (Check).
// Throughout, and for the heartbeat TTL and 2 s after the last restart, it
// samples the fleet every 100 ms; it fails if a task that ran before
// stopped running (a task of a slot ended), if a slot ran two tasks, or if
// a task ran on two nodes; at the end every node must hold a session. It
// prints the time of each restart.
func (b *Bench) RollingRestart(ctx context.Context, ms []*Manager) error {
	before := b.Fleet.RunningOn()
	leader := leaderOf(ctx, ms)
	if leader == nil {
		return errors.New("loadgen: no manager leads")
	}
	order := slices.DeleteFunc(slices.Clone(ms), func(m *Manager) bool { return m == leader })
	order = append(order, leader)

	sampleCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var problem error
	wg.Go(func() { problem = b.sampleSteady(sampleCtx, before) })
	start := time.Now()
	var err error
	for i, m := range order {
		if err = b.restartOne(ctx, ms, m, i == len(order)-1); err != nil {
			break
		}
	}
	if err == nil {
		// A node that did not reach the new leader would be marked DOWN
		// a TTL after it took office and its tasks moved: keep sampling
		// past that, then every node must hold a session again.
		err = sleepCtx(ctx, b.TTL+2*time.Second)
		if n, sample := b.Fleet.Disconnected(3); err == nil && n > 0 {
			b.printf("%d nodes without a session a TTL + 2 s after the last restart, e.g. %v\n", n, sample)
		}
		if err == nil {
			err = b.Connect(ctx)
		}
		if err == nil {
			err = b.Check(ctx)
		}
	}
	stop()
	wg.Wait()
	if err != nil {
		return err
	}
	if problem != nil {
		return problem
	}
	b.printf("rolling restart of %d managers under %d tasks on %d nodes: %s in all; every task kept running, no slot ran twice\n",
		len(ms), len(before), len(b.Fleet.Nodes), time.Since(start).Round(time.Millisecond))
	return nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// restartOne restarts m (the leader when leader is set), with b's API
// moved to another manager meanwhile, and waits for the cluster.
func (b *Bench) restartOne(ctx context.Context, ms []*Manager, m *Manager, leader bool) error {
	for _, o := range ms {
		if o != m {
			b.API, b.Cluster = o.API, o.Cluster
			break
		}
	}
	role := "follower"
	if leader {
		role = "leader"
	}
	start := time.Now()
	if err := m.Restart(ctx); err != nil {
		return fmt.Errorf("loadgen: restart %s: %w", m.Addr, err)
	}
	up := time.Since(start)
	if err := waitVoters(ctx, ms, len(ms)); err != nil {
		return err
	}
	voters := time.Since(start)
	if l := leaderOf(ctx, ms); l != nil {
		b.API, b.Cluster, b.LeaderPID = l.API, l.Cluster, l.PID()
	}
	if err := b.Check(ctx); err != nil {
		return err
	}
	b.printf("restart of the %s %s: up (knows a leader) in %s, all voters reachable in %s, the manager agrees with the fleet in %s\n",
		role, m.Addr, up.Round(time.Millisecond), voters.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return nil
}

// sampleSteady samples the fleet until ctx ends: every task of before
// must keep running, on one node, and no task may run on two nodes.
func (b *Bench) sampleSteady(ctx context.Context, before map[string][]string) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		now := b.Fleet.RunningOn()
		for id := range before {
			if len(now[id]) == 0 {
				n, sample := b.Fleet.Disconnected(5)
				return fmt.Errorf("loadgen: task %s stopped running during the rolling restart (%d nodes without a session then, e.g. %v)", id, n, sample)
			}
		}
		for id, on := range now {
			if len(on) > 1 {
				return fmt.Errorf("loadgen: task %s runs on nodes %v during the rolling restart", id, on)
			}
		}
		if len(now) != len(before) {
			return fmt.Errorf("loadgen: %d tasks run during the rolling restart, %d before: a slot got a second task", len(now), len(before))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
