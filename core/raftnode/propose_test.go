package raftnode

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
	"github.com/warrenorch/warren/core/fsm"
	"github.com/warrenorch/warren/core/fsm/fsmpb"
	"github.com/warrenorch/warren/core/state"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
	"github.com/warrenorch/warren/test/testutil"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testutil.Cleanup()
	os.Exit(code)
}

// openNode starts a single-node Raft with Warren's FSM on a real store-bolt
// process, and waits until it leads.
func openNode(t *testing.T) (*Node, *state.State) {
	t.Helper()
	m, err := openAt(t, t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	return m.node, m.view
}

// manager is a Node on a data directory and the parts under it.
type manager struct {
	node  *Node
	view  *state.State
	fsm   *fsm.FSM
	store store.Store
	stop  func()
}

// openAt starts a single-node Raft with Warren's FSM on a real store-bolt
// process in dir (dir/state.db, dir/raft), and waits until it leads. The
// caller stops it; what openAt started is also stopped when it fails.
func openAt(t *testing.T, dir string, forceNewCluster bool) (*manager, error) {
	t.Helper()
	ctx := t.Context()
	p := testutil.StartPlugin(t, testutil.Build(t, "plugins/store-bolt"))
	st := store.NewClient(p.Conn)
	if err := st.Configure(ctx, []byte(fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "state.db")))); err != nil {
		p.Client.Kill()
		return nil, err
	}
	view := state.New()
	bus := events.NewBroker()
	f, err := fsm.New(ctx, st, view, bus, hclog.NewNullLogger())
	if err != nil {
		p.Client.Kill()
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	n, err := Open(Config{ID: "n1", Dir: filepath.Join(dir, "raft"), BindAddr: addr, Advertise: addr, FSM: f, ForceNewCluster: forceNewCluster, Logger: hclog.NewNullLogger()})
	if err != nil {
		f.Close()
		bus.Close()
		p.Client.Kill()
		return nil, err
	}
	m := &manager{node: n, view: view, fsm: f, store: st}
	var once sync.Once
	m.stop = func() {
		once.Do(func() {
			_ = n.Shutdown()
			f.Close()
			bus.Close()
			p.Client.Kill()
		})
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := n.WaitLeader(wctx); err != nil {
		m.stop()
		t.Fatal(err)
	}
	// The new leader's own first entries are in the log once its barrier is
	// through: log indexes move only with the test's writes from here.
	if err := n.Raft.Barrier(20 * time.Second).Error(); err != nil {
		m.stop()
		t.Fatal(err)
	}
	return m, nil
}

func create(name string) *fsmpb.CreateService {
	return &fsmpb.CreateService{Service: &apiv1.Service{Id: "id-" + name, Spec: &apiv1.ServiceSpec{Name: name, Image: "busybox"}}}
}

// holdRaft takes every in-flight slot, as entries stuck in Raft would: the
// proposer then queues what comes. The returned function gives them back.
func holdRaft(n *Node) (release func()) {
	for range maxInFlight {
		n.proposer.inFlight <- struct{}{}
	}
	return func() {
		for range maxInFlight {
			<-n.proposer.inFlight
		}
	}
}

// waitQueued waits until k proposals wait in the proposer's queue.
func waitQueued(t *testing.T, n *Node, k int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(n.proposer.queue) < k {
		if time.Now().After(deadline) {
			t.Fatalf("%d proposals queued, want %d", len(n.proposer.queue), k)
		}
		time.Sleep(time.Millisecond) // polling the queue's length
	}
}

type outcome struct {
	name string
	resp any
	err  error
}

func applyAll(n *Node, cmds []*fsmpb.CreateService) chan outcome {
	out := make(chan outcome, len(cmds))
	for _, c := range cmds {
		go func() {
			resp, err := n.Apply(context.Background(), c)
			out <- outcome{c.GetService().GetSpec().GetName(), resp, err}
		}()
	}
	return out
}

func TestProposalsQueuedWhileRaftIsBusyShareOneEntry(t *testing.T) {
	n, view := openNode(t)
	release := holdRaft(n)
	var cmds []*fsmpb.CreateService
	for i := range 10 {
		cmds = append(cmds, create(fmt.Sprintf("s%d", i)))
	}
	dup := create("s3")
	dup.Service.Id = "id-dup"
	cmds = append(cmds, dup)
	out := applyAll(n, cmds)
	// One proposal is the proposer's next entry's first, waiting for room;
	// the other ten queue behind it.
	waitQueued(t, n, len(cmds)-1)
	before := n.Raft.LastIndex()
	release()

	var refused int
	versions := map[uint64]bool{}
	for range cmds {
		o := <-out
		if errors.Is(o.err, sdk.ErrAlreadyExists) && o.name == "s3" {
			refused++
			continue
		}
		if o.err != nil {
			t.Fatalf("create %s: %v", o.name, o.err)
		}
		svc, ok := o.resp.(*apiv1.Service)
		if !ok || svc.GetSpec().GetName() != o.name {
			t.Fatalf("create %s answered with %v", o.name, o.resp)
		}
		versions[svc.GetVersion()] = true
	}
	if refused != 1 {
		t.Errorf("%d of the two creates of s3 refused, want 1", refused)
	}
	if got := n.Raft.LastIndex() - before; got != 1 {
		t.Errorf("%d commands took %d log entries, want 1", len(cmds), got)
	}
	if len(versions) != 1 {
		t.Errorf("the services of one entry have versions %v, want one", versions)
	}
	if got := len(view.Services()); got != 10 {
		t.Errorf("%d services in the state, want 10", got)
	}
}

func TestConcurrentProposalsGetTheirOwnResults(t *testing.T) {
	n, view := openNode(t)
	const writers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				name := fmt.Sprintf("w%d-%d", w, i)
				resp, err := n.Apply(context.Background(), create(name))
				if err != nil {
					errs <- fmt.Errorf("create %s: %w", name, err)
					return
				}
				if svc, ok := resp.(*apiv1.Service); !ok || svc.GetSpec().GetName() != name {
					errs <- fmt.Errorf("create %s answered with %v", name, resp)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(view.Services()); got != writers*each {
		t.Errorf("%d services in the state, want %d", got, writers*each)
	}
}

func TestShutdownAnswersQueuedProposals(t *testing.T) {
	n, _ := openNode(t)
	holdRaft(n) // never given back: nothing queued reaches Raft
	cmds := []*fsmpb.CreateService{create("a"), create("b"), create("c")}
	out := applyAll(n, cmds)
	waitQueued(t, n, len(cmds)-1)
	if err := n.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range cmds {
		select {
		case o := <-out:
			if o.err == nil {
				t.Errorf("create %s succeeded after shutdown: %v", o.name, o.resp)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a proposal queued at shutdown was never answered")
		}
	}
}
