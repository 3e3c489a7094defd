package cluster

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// regInput is one operation on a register: a service whose label "v" the
// clients write (UpdateService) and read (GetService).
type regInput struct {
	key   string
	write bool
	value string
}

// registerModel is a map of registers, checked key by key.
var registerModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := op.Input.(regInput).key
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.write {
			return true, in.value
		}
		return output.(string) == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(regInput)
		if in.write {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %s", in.key, output)
	},
}

// TestLinearizability runs concurrent clients that write and read
// services through every manager while the leader is killed and managers
// are partitioned, then checks the recorded history with porcupine and
// that every acknowledged create is still there.
func TestLinearizability(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Form([]string{"m1", "m2", "m3"}, nil)
	var managers []*clustertest.Node
	for _, n := range c.Nodes {
		managers = append(managers, n)
	}
	keys := []string{"k0", "k1", "k2"}
	for _, k := range keys {
		if err := createService(managers[0], k); err != nil {
			t.Fatal(err)
		}
	}
	clients := make([]apiv1.WarrenClient, len(managers))
	for i, m := range managers {
		clients[i] = m.Client()
	}

	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var (
		mu      sync.Mutex
		history []porcupine.Operation
		created []string
		stop    atomic.Bool
		counter atomic.Int64
		wg      sync.WaitGroup
		stats   struct{ ok, failed, unknown atomic.Int64 }
		errs    sync.Map // distinct error messages, for the log
	)
	const nClients = 6
	for id := 0; id < nClients; id++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(id), 7))
			for seq := 0; !stop.Load(); seq++ {
				cl := clients[(id+seq)%len(clients)]
				key := keys[rng.IntN(len(keys))]
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				switch r := rng.IntN(10); {
				case r < 4: // write
					v := fmt.Sprint(counter.Add(1))
					call := now()
					_, err := cl.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: key, Spec: &apiv1.ServiceSpec{
						Name: key, Image: ctrtest.TestImage, Labels: map[string]string{"v": v},
					}})
					ret := now()
					if err != nil {
						errs.Store(err.Error(), true)
					}
					switch {
					case err == nil:
						stats.ok.Add(1)
					case refusedBeforeRaft(err):
						// Never proposed: no effect, left out.
						stats.failed.Add(1)
						cancel()
						pause(&stop)
						continue
					default:
						// Unknown outcome: it may still take effect at any later time.
						ret = math.MaxInt64
						stats.unknown.Add(1)
					}
					mu.Lock()
					history = append(history, porcupine.Operation{ClientId: id, Input: regInput{key: key, write: true, value: v}, Call: call, Return: ret})
					mu.Unlock()
					if err != nil {
						cancel()
						pause(&stop)
						continue
					}
				case r < 9: // read
					call := now()
					resp, err := cl.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: key})
					ret := now()
					if err != nil {
						errs.Store(err.Error(), true)
						stats.failed.Add(1) // a failed read has no effect: left out
						cancel()
						pause(&stop)
						continue
					} else {
						stats.ok.Add(1)
						mu.Lock()
						history = append(history, porcupine.Operation{ClientId: id, Input: regInput{key: key}, Output: resp.GetService().GetSpec().GetLabels()["v"], Call: call, Return: ret})
						mu.Unlock()
					}
				default: // create: acknowledged creates must survive
					name := fmt.Sprintf("c%d-%d", id, seq)
					if _, err := cl.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: name, Image: ctrtest.TestImage}}); err == nil {
						mu.Lock()
						created = append(created, name)
						mu.Unlock()
					}
				}
				cancel()
			}
		}()
	}

	// The nemesis: kill the leader, then partition the leader, twice.
	for round := 0; round < 2; round++ {
		leader := c.Leader()
		t.Logf("round %d: kill -9 %s", round, leader.Name)
		leader.Kill9()
		c.Leader(leader)
		leader.Start(context.Background())
		c.WaitMembers(c.Leader(), 3)

		leader = c.Leader()
		t.Logf("round %d: partition %s", round, leader.Name)
		leader.Host.Partition(t)
		c.Leader(leader)
		leader.Host.Heal(t)
		c.WaitMembers(c.Leader(), 3)
	}
	// A quiet phase, so that some operations follow the last heal.
	time.Sleep(3 * time.Second) // the clients keep running meanwhile: it is workload, not settling
	stop.Store(true)
	wg.Wait()
	t.Logf("operations: %d acknowledged, %d failed reads, %d writes with unknown outcome", stats.ok.Load(), stats.failed.Load(), stats.unknown.Load())
	n := 0
	errs.Range(func(k, _ any) bool {
		if n++; n <= 8 {
			t.Logf("error seen: %s", k)
		}
		return true
	})
	if stats.ok.Load() < 50 {
		t.Fatalf("only %d operations were acknowledged: the history proves little", stats.ok.Load())
	}

	res, info := porcupine.CheckOperationsVerbose(registerModel, history, 60*time.Second)
	switch res {
	case porcupine.Illegal:
		path := t.TempDir() + "/history.html"
		if err := porcupine.VisualizePath(registerModel, info, path); err == nil {
			t.Logf("visualization: %s", path)
		}
		t.Fatal("the history is not linearizable")
	case porcupine.Unknown:
		t.Fatal("the linearizability check timed out")
	}

	leader := c.Leader()
	got := services(t, leader)
	for _, name := range created {
		if !got[name] {
			t.Errorf("acknowledged create of %s is missing", name)
		}
	}
	t.Logf("%d acknowledged creates all present", len(created))
}

// refusedBeforeRaft reports whether a failed write was refused before it
// could reach the Raft log: the manager's socket was gone, or there was
// no leader to forward it to, or the forward met a non-leader.
func refusedBeforeRaft(err error) bool {
	msg := err.Error()
	for _, s := range []string{"no quorum", "connect: connection refused", "connect: no such file", "leadership changed while the call was forwarded", "catching up", "cannot be reached"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// pause is a client's back-off after a failed operation, cut short when
// the run ends.
func pause(stop *atomic.Bool) {
	for i := 0; i < 5 && !stop.Load(); i++ {
		time.Sleep(20 * time.Millisecond) // client back-off, not waiting for a state
	}
}
