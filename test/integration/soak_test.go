package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// soakEnv sets how long TestSoakChurnWithPluginKills churns, as a Go
// duration; CI runs the default.
const soakEnv = "WARREN_SOAK"

// defaultSoak keeps the soak a bounded part of the suite.
const defaultSoak = 75 * time.Second

// TestSoakChurnWithPluginKills churns services on real containers (create,
// scale, update, remove, containers killed) while every plugin in turn is
// killed with SIGKILL, then checks that the cluster state, the worker's
// task handles on disk and containerd agree: every wanted replica runs in
// exactly one container, containerd holds nothing else, and the worker
// keeps a handle for each container and no other.
func TestSoakChurnWithPluginKills(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	if testing.Short() {
		t.Skip("soak: not in -short")
	}
	length := defaultSoak
	if v := os.Getenv(soakEnv); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", soakEnv, v, err)
		}
		length = d
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("soak: %s, seed %d", length, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))

	n := startNode(t)
	s := &soak{n: n, rng: rng, replicas: map[string]uint64{}}
	for i := range 3 {
		s.create(fmt.Sprintf("soak%d", i))
	}

	ops := 0
	killEvery := length / 5
	nextKill := time.Now().Add(killEvery / 2)
	kinds := []string{"runtime", "store", "scheduler"}
	pace := time.NewTicker(150 * time.Millisecond)
	defer pace.Stop()
	for end := time.Now().Add(length); time.Now().Before(end); <-pace.C {
		if time.Now().After(nextKill) {
			s.killPlugin(kinds[s.kills%len(kinds)])
			nextKill = time.Now().Add(killEvery)
		}
		s.step()
		ops++
	}
	t.Logf("soak: %d operations (%d refused while a plugin restarted), %d plugin kills, %d containers killed",
		ops, s.refused, s.kills, s.containersKilled)

	s.checkConsistent()
}

// soak is the churn's own view of what it asked for.
type soak struct {
	n                *node
	rng              *rand.Rand
	replicas         map[string]uint64 // service → replicas last acknowledged
	next             int               // the next service number
	kills            int
	containersKilled int
	refused          int
}

// accepted reports whether an API call took effect. A call refused because
// a plugin is restarting (Unavailable, or a deadline) changed nothing and
// is counted; anything else fails the test.
func (s *soak) accepted(what string, err error) bool {
	s.n.t.Helper()
	if err == nil {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Aborted:
		s.refused++
		return false
	}
	s.n.t.Fatalf("soak: %s: %v\nagent output:\n%s", what, err, tail(s.n.a.Output(), 60))
	return false
}

func (s *soak) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 20*time.Second)
}

func (s *soak) create(name string) {
	replicas := uint64(1 + s.rng.IntN(3))
	ctx, cancel := s.ctx()
	defer cancel()
	_, err := s.n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{
		Name: name, Image: ctrtest.TestImage, Replicas: replicas,
		Env:             map[string]string{"GEN": "0"},
		StopGracePeriod: durationpb.New(time.Second),
	}})
	if status.Code(err) == codes.AlreadyExists {
		// An earlier create whose answer was lost took effect.
		err = nil
	}
	if s.accepted("create "+name, err) {
		s.replicas[name] = replicas
	}
}

// step makes one random change.
func (s *soak) step() {
	names := slices.Sorted(maps.Keys(s.replicas))
	if len(names) == 0 {
		s.create(s.newName())
		return
	}
	name := names[s.rng.IntN(len(names))]
	ctx, cancel := s.ctx()
	defer cancel()
	switch op := s.rng.IntN(10); {
	case op < 4:
		replicas := uint64(s.rng.IntN(4))
		_, err := s.n.c.ScaleService(ctx, &apiv1.ScaleServiceRequest{NameOrId: name, Replicas: replicas})
		if s.accepted("scale "+name, err) {
			s.replicas[name] = replicas
		}
	case op < 6:
		got, err := s.n.c.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: name})
		if !s.accepted("get "+name, err) {
			return
		}
		spec := got.GetService().GetSpec()
		spec.Env["GEN"] = fmt.Sprint(s.rng.Uint32())
		_, err = s.n.c.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: name, Spec: spec, Version: got.GetService().GetVersion()})
		if status.Code(err) == codes.FailedPrecondition || status.Code(err) == codes.Aborted {
			return // raced with the orchestrator's own write: nothing changed
		}
		if s.accepted("update "+name, err) {
			s.replicas[name] = spec.GetReplicas()
		}
	case op < 8:
		s.killContainer()
	case op < 9 && len(names) < 5:
		s.create(s.newName())
	default:
		_, err := s.n.c.RemoveService(ctx, &apiv1.RemoveServiceRequest{NameOrId: name})
		if status.Code(err) == codes.NotFound {
			err = nil // an earlier remove whose answer was lost took effect
		}
		if s.accepted("remove "+name, err) {
			delete(s.replicas, name)
		}
	}
}

func (s *soak) newName() string {
	s.next++
	return fmt.Sprintf("soak-new%d", s.next)
}

// killContainer SIGKILLs the process of one running container, if any.
func (s *soak) killContainer() {
	run := s.n.running()
	if len(run) == 0 {
		return
	}
	ids := sortedKeys(run)
	if err := syscall.Kill(int(run[ids[s.rng.IntN(len(ids))]]), syscall.SIGKILL); err == nil {
		s.containersKilled++
	}
}

// killPlugin SIGKILLs the plugin of kind and waits until its restart is up.
func (s *soak) killPlugin(kind string) {
	s.n.t.Helper()
	pid, restarts, _ := s.n.plugin(kind)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		s.n.t.Fatalf("kill -9 the %s plugin (%d): %v", kind, pid, err)
	}
	s.kills++
	testutil.Eventually(s.n.t, 60*time.Second, "the "+kind+" plugin restarted", func() bool {
		ctx, cancel := s.ctx()
		defer cancel()
		resp, err := s.n.c.ListPlugins(ctx, &apiv1.ListPluginsRequest{})
		if err != nil {
			return false
		}
		for _, p := range resp.GetPlugins() {
			if p.GetKind() == kind {
				return int(p.GetPid()) != pid && p.GetRestarts() > restarts && p.GetState() == "running"
			}
		}
		return false
	})
}

// checkConsistent waits until the state, the worker's handles and
// containerd agree with what the churn asked for last, and fails the test
// with all three when they do not within the deadline.
func (s *soak) checkConsistent() {
	s.n.t.Helper()
	var want uint64
	for _, r := range s.replicas {
		want += r
	}
	var problem string
	deadline := time.Now().Add(90 * time.Second)
	for {
		problem = s.inconsistency(want)
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			s.n.t.Fatalf("soak: after the churn the node did not converge: %s\nagent output:\n%s", problem, tail(s.n.a.Output(), 80))
		}
		time.Sleep(100 * time.Millisecond) // polling containerd and the state with a deadline
	}
}

// inconsistency says what keeps the node from agreeing with the churn's
// last acknowledged changes, or "" when everything agrees.
func (s *soak) inconsistency(want uint64) string {
	ctx, cancel := s.ctx()
	defer cancel()
	resp, err := s.n.c.ListServices(ctx, &apiv1.ListServicesRequest{})
	if err != nil {
		return fmt.Sprintf("list services: %v", err)
	}
	services := map[string]uint64{}
	for _, svc := range resp.GetServices() {
		services[svc.GetSpec().GetName()] = svc.GetSpec().GetReplicas()
	}
	if !maps.Equal(services, s.replicas) {
		return fmt.Sprintf("services in the state %v, acknowledged %v", services, s.replicas)
	}

	var running []string
	for name, replicas := range s.replicas {
		ids := s.n.runningTasks(name)
		if uint64(len(ids)) != replicas {
			return fmt.Sprintf("service %s: %d RUNNING tasks %v, want %d", name, len(ids), ids, replicas)
		}
		running = append(running, ids...)
	}
	slices.Sort(running)

	containers := sortedKeys(s.n.running())
	ctrs, snaps := s.n.containers()
	if !slices.Equal(containers, running) || uint64(ctrs) != want || uint64(snaps) != want {
		return fmt.Sprintf("containerd runs %v (%d containers, %d active snapshots), RUNNING tasks %v", containers, ctrs, snaps, running)
	}

	handles, err := s.handles()
	if err != nil {
		return err.Error()
	}
	if !slices.Equal(handles, running) {
		return fmt.Sprintf("the worker keeps handles of %v, containerd runs %v", handles, containers)
	}
	return ""
}

// handles lists the task IDs whose handle the worker keeps on disk
// (data_dir/worker/tasks/<task>.json), sorted.
func (s *soak) handles() ([]string, error) {
	dir := filepath.Join(s.n.a.DataDir, "worker", "tasks")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("worker handles: %w", err)
	}
	var ids []string
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue // a write in progress
		}
		var rec struct {
			TaskID string `json:"task_id"`
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("worker handle %s: %w", e.Name(), err)
		}
		if err := json.Unmarshal(data, &rec); err != nil || rec.TaskID != name {
			return nil, fmt.Errorf("worker handle %s: task %q, decode error %v", e.Name(), rec.TaskID, err)
		}
		ids = append(ids, name)
	}
	slices.Sort(ids)
	return ids, nil
}
