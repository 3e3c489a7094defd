package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/events"
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

// openStore starts a real store-bolt plugin process on a database in dir.
func openStore(t *testing.T, dir string) store.Store {
	t.Helper()
	bin := testutil.Build(t, "plugins/store-bolt")
	p := testutil.StartPlugin(t, bin)
	st := store.NewClient(p.Conn)
	cfg := fmt.Sprintf(`{"path": %q}`, filepath.Join(dir, "state.db"))
	if err := st.Configure(context.Background(), []byte(cfg)); err != nil {
		t.Fatalf("configure store: %v", err)
	}
	return st
}

type harness struct {
	fsm   *FSM
	state *state.State
	bus   *events.Broker
	store store.Store
	index uint64
}

func newHarness(t *testing.T, st store.Store) *harness {
	t.Helper()
	view := state.New()
	bus := events.NewBroker()
	f, err := New(context.Background(), st, view, bus, hclog.NewNullLogger())
	if err != nil {
		t.Fatalf("new fsm: %v", err)
	}
	t.Cleanup(f.Close)
	return &harness{fsm: f, state: view, bus: bus, store: st, index: f.AppliedIndex()}
}

func (h *harness) log(t *testing.T, cmd Command) *raft.Log {
	t.Helper()
	data, err := Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	h.index++
	return &raft.Log{Index: h.index, Term: 1, Type: raft.LogCommand, Data: data}
}

func (h *harness) apply(t *testing.T, cmd Command) any {
	t.Helper()
	return h.fsm.Apply(h.log(t, cmd))
}

func svc(id, name string) *apiv1.Service {
	return &apiv1.Service{Id: id, Spec: &apiv1.ServiceSpec{Name: name, Image: "busybox", Replicas: 1}}
}

// published is svc publishing ports ("8080/tcp" style keys, target 80).
func published(s *apiv1.Service, ports ...string) *apiv1.Service {
	for _, k := range ports {
		var n uint32
		var proto string
		fmt.Sscanf(k, "%d/%s", &n, &proto)
		p := &apiv1.PortConfig{Published: n, Target: 80}
		if proto == "udp" {
			p.Protocol = apiv1.PortProtocol_PORT_PROTOCOL_UDP
		}
		s.Spec.Ports = append(s.Spec.Ports, p)
	}
	return s
}

func withSecret(s *apiv1.Service, name string) *apiv1.Service {
	s.Spec.Secrets = append(s.Spec.Secrets, &apiv1.FileReference{Name: name, Target: "/run/secrets/" + name})
	return s
}

func withConfig(s *apiv1.Service, name string) *apiv1.Service {
	s.Spec.Configs = append(s.Spec.Configs, &apiv1.FileReference{Name: name, Target: "/etc/" + name})
	return s
}

// TestFileUpdatesRollServices: a service gets the current revision of its
// secrets and configs, moves to each new one (its version with it, so its
// tasks are replaced), and keeps them from being removed.
func TestFileUpdatesRollServices(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	mustApply := func(cmd Command) any {
		t.Helper()
		r := h.apply(t, cmd)
		if err, ok := r.(error); ok {
			t.Fatalf("%T: %v", cmd, err)
		}
		return r
	}
	mustApply(&fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec1", Name: "db", Data: []byte("sealed-1"), Revision: 1}})
	mustApply(&fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec1", Name: "db", Data: []byte("sealed-2"), Revision: 2}})
	mustApply(&fsmpb.UpsertConfig{Config: &apiv1.Config{Id: "c1", Name: "conf", Data: []byte("a"), Revision: 1}})
	created := mustApply(&fsmpb.CreateService{Service: withConfig(withSecret(svc("s1", "web"), "db"), "conf")}).(*apiv1.Service)
	if r := created.GetSpec().GetSecrets()[0].GetRevision(); r != 2 {
		t.Fatalf("created service uses secret revision %d, want the current 2", r)
	}
	mustApply(&fsmpb.CreateService{Service: svc("s2", "other")})

	kinds := []struct {
		name   string
		update Command
		remove Command
		rev    func(*apiv1.Service) uint64
	}{
		{"secret", &fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec1", Name: "db", Data: []byte("sealed-3"), Revision: 3}}, &fsmpb.RemoveSecret{Id: "sec1"},
			func(s *apiv1.Service) uint64 { return s.GetSpec().GetSecrets()[0].GetRevision() }},
		{"config", &fsmpb.UpsertConfig{Config: &apiv1.Config{Id: "c1", Name: "conf", Data: []byte("b"), Revision: 2}}, &fsmpb.RemoveConfig{Id: "c1"},
			func(s *apiv1.Service) uint64 { return s.GetSpec().GetConfigs()[0].GetRevision() }},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			before, _ := h.state.Service("s1")
			other, _ := h.state.Service("s2")
			mustApply(k.update)
			after, _ := h.state.Service("s1")
			if after.GetVersion() == before.GetVersion() || k.rev(after) != k.rev(before)+1 {
				t.Fatalf("after the update the service is at version %d (was %d) with revision %d (was %d)", after.GetVersion(), before.GetVersion(), k.rev(after), k.rev(before))
			}
			if o, _ := h.state.Service("s2"); o.GetVersion() != other.GetVersion() {
				t.Fatalf("a service not using the %s moved from version %d to %d", k.name, other.GetVersion(), o.GetVersion())
			}
			r := h.apply(t, k.remove)
			if err, _ := r.(error); !errors.Is(err, sdk.ErrConflict) || !strings.Contains(err.Error(), "web") {
				t.Fatalf("removing a used %s: %v, want a conflict naming web", k.name, r)
			}
		})
	}
	mustApply(&fsmpb.RemoveService{Id: "s1"})
	mustApply(&fsmpb.RemoveSecret{Id: "sec1"})
	mustApply(&fsmpb.RemoveConfig{Id: "c1"})
	if _, ok := h.state.SecretByName("db"); ok {
		t.Fatal("the secret is still there after its removal")
	}
}

func TestApplyCommands(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	if r := h.apply(t, &fsmpb.CreateService{Service: svc("s1", "web")}); isErr(r) {
		t.Fatalf("create: %v", r)
	}
	tests := []struct {
		name    string
		cmd     Command
		wantErr error
	}{
		{"duplicate name", &fsmpb.CreateService{Service: svc("s2", "web")}, sdk.ErrAlreadyExists},
		{"duplicate id", &fsmpb.CreateService{Service: svc("s1", "other")}, sdk.ErrAlreadyExists},
		{"missing id", &fsmpb.CreateService{Service: svc("", "x")}, sdk.ErrInvalidArgument},
		{"update missing", &fsmpb.UpdateService{Service: svc("nope", "nope")}, sdk.ErrNotFound},
		{"update stale version", &fsmpb.UpdateService{Service: svc("s1", "web"), ExpectedVersion: 999}, sdk.ErrConflict},
		{"remove missing", &fsmpb.RemoveService{Id: "nope"}, sdk.ErrNotFound},
		{"node without name", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n1"}}, sdk.ErrInvalidArgument},
		{"task without service", &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{{Id: "t1"}}}, sdk.ErrInvalidArgument},
		{"remove missing secret", &fsmpb.RemoveSecret{Id: "x"}, sdk.ErrNotFound},
		{"create other", &fsmpb.CreateService{Service: svc("s3", "api")}, nil},
		{"update current version", &fsmpb.UpdateService{Service: svc("s3", "api"), ExpectedVersion: 0}, nil},
		{"upsert node", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n1", Name: "node-1"}}, nil},
		{"node name taken", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n2", Name: "node-1"}}, sdk.ErrAlreadyExists},
		{"secret", &fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec1", Name: "db", Data: []byte("x"), Revision: 1}}, nil},
		{"secret name taken", &fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec2", Name: "db", Data: []byte("x"), Revision: 1}}, sdk.ErrAlreadyExists},
		{"secret without data", &fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec3", Name: "other", Revision: 1}}, sdk.ErrInvalidArgument},
		{"new secret not at revision 1", &fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec3", Name: "other", Data: []byte("x"), Revision: 2}}, sdk.ErrInvalidArgument},
		{"secret update skipping a revision", &fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec1", Name: "db", Data: []byte("y"), Revision: 3}}, sdk.ErrConflict},
		{"secret renamed", &fsmpb.UpsertSecret{Secret: &apiv1.Secret{Id: "sec1", Name: "db2", Data: []byte("y"), Revision: 2}}, sdk.ErrInvalidArgument},
		{"service with an unknown secret", &fsmpb.CreateService{Service: withSecret(svc("s4", "x"), "nope")}, sdk.ErrNotFound},
		{"config with an unknown name on a service", &fsmpb.UpdateService{Service: withConfig(svc("s3", "api"), "nope")}, sdk.ErrNotFound},
		{"volume", &fsmpb.UpsertVolume{Volume: &apiv1.Volume{Id: "v1", Name: "data"}}, nil},
		{"node subnet outside the overlay", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n3", Name: "node-3", Network: &apiv1.NodeNetwork{Subnet: "10.99.0.0/24"}}}, sdk.ErrInvalidArgument},
		{"node subnet of the wrong size", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n3", Name: "node-3", Network: &apiv1.NodeNetwork{Subnet: "10.88.0.0/23"}}}, sdk.ErrInvalidArgument},
		{"node subnet", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n3", Name: "node-3", Network: &apiv1.NodeNetwork{Subnet: "10.88.7.0/24"}}}, nil},
		{"node subnet held by another node", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n4", Name: "node-4", Network: &apiv1.NodeNetwork{Subnet: "10.88.7.0/24"}}}, sdk.ErrConflict},
		{"publish a port", &fsmpb.CreateService{Service: published(svc("p1", "pub"), "8080/tcp")}, nil},
		{"a port another service publishes", &fsmpb.CreateService{Service: published(svc("p2", "pub2"), "9090/tcp", "8080/tcp")}, sdk.ErrAlreadyExists},
		{"the same number over udp", &fsmpb.CreateService{Service: published(svc("p3", "pub3"), "8080/udp")}, nil},
		{"an update taking a published port", &fsmpb.UpdateService{Service: published(svc("s3", "api"), "8080/udp")}, sdk.ErrAlreadyExists},
		{"an update keeping its own port", &fsmpb.UpdateService{Service: published(svc("p1", "pub"), "8080/tcp", "8081/tcp")}, nil},
		{"the same subnet again", &fsmpb.UpsertNode{Node: &apiv1.Node{Id: "n3", Name: "node-3", Network: &apiv1.NodeNetwork{Subnet: "10.88.7.0/24", PublicKey: "k"}}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.state.Services()
			r := h.apply(t, tt.cmd)
			err, _ := r.(error)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", r, tt.wantErr)
			}
			if after := h.state.Services(); len(after) != len(before) {
				t.Fatalf("failed command changed services: %d → %d", len(before), len(after))
			}
		})
	}
	// The store holds what the view holds, and the index of the last entry.
	h.fsm.Flush()
	idx, err := h.store.AppliedIndex(context.Background())
	if err != nil || idx != h.index {
		t.Fatalf("store index = %d, %v; want %d", idx, err, h.index)
	}
	recs, err := h.store.List(context.Background(), state.BucketServices, "")
	if err != nil || len(recs) != 4 {
		t.Fatalf("stored services = %d, %v; want 4 (web, api, pub, pub3)", len(recs), err)
	}
	if api, _ := h.state.Service("s3"); len(api.GetSpec().GetPorts()) != 0 {
		t.Errorf("the refused update of api stored its ports: %v", api.GetSpec().GetPorts())
	}
}

func isErr(r any) bool { _, ok := r.(error); return ok }

func TestVersionIsRaftIndex(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	r := h.apply(t, &fsmpb.CreateService{Service: svc("s1", "web")})
	created := r.(*apiv1.Service)
	if created.GetVersion() != h.index {
		t.Fatalf("version %d, want index %d", created.GetVersion(), h.index)
	}
	upd := svc("s1", "web")
	upd.Spec.Replicas = 5
	r = h.apply(t, &fsmpb.UpdateService{Service: upd, ExpectedVersion: created.GetVersion()})
	if isErr(r) {
		t.Fatal(r)
	}
	got, _ := h.state.Service("s1")
	if got.GetSpec().GetReplicas() != 5 || got.GetVersion() != h.index {
		t.Fatalf("got replicas %d version %d", got.GetSpec().GetReplicas(), got.GetVersion())
	}
	// A second update with the first version is a lost update: refused.
	if r := h.apply(t, &fsmpb.UpdateService{Service: upd, ExpectedVersion: created.GetVersion()}); !errors.Is(r.(error), sdk.ErrConflict) {
		t.Fatalf("stale update: %v", r)
	}
}

func TestRemoveServiceShutsTasksDown(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.apply(t, &fsmpb.CreateService{Service: svc("s1", "web")})
	h.apply(t, &fsmpb.UpsertTasks{Tasks: []*apiv1.Task{
		{Id: "t1", ServiceId: "s1", ServiceName: "web", DesiredState: apiv1.TaskState_TASK_STATE_RUNNING},
		{Id: "t2", ServiceId: "s1", ServiceName: "web", DesiredState: apiv1.TaskState_TASK_STATE_RUNNING},
	}})
	h.apply(t, &fsmpb.RemoveService{Id: "s1"})
	for _, tk := range h.state.Tasks(state.TaskFilter{ServiceID: "s1"}) {
		if tk.GetDesiredState() != apiv1.TaskState_TASK_STATE_SHUTDOWN {
			t.Fatalf("task %s desired %v after service removal", tk.GetId(), tk.GetDesiredState())
		}
	}
}

func TestApplyBatchStoresWithLastIndex(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	sub := h.bus.Subscribe(nil, 16)
	defer sub.Close()
	logs := []*raft.Log{
		h.log(t, &fsmpb.CreateService{Service: svc("a", "a")}),
		h.log(t, &fsmpb.CreateService{Service: svc("b", "b")}),
		{Index: h.index + 1, Term: 1, Type: raft.LogNoop},
		h.log(t, &fsmpb.CreateService{Service: svc("c", "a")}), // duplicate name: error result
	}
	h.index++ // the noop took an index too; keep the harness in step
	logs[3].Index = h.index
	res := h.fsm.ApplyBatch(logs)
	if isErr(res[0]) || isErr(res[1]) || !isErr(res[3]) {
		t.Fatalf("results = %v", res)
	}
	h.fsm.Flush()
	idx, _ := h.store.AppliedIndex(context.Background())
	if idx != logs[3].Index {
		t.Fatalf("store index %d, want %d", idx, logs[3].Index)
	}
	for _, want := range []string{"a", "b"} {
		ev := <-sub.C
		if ev.GetName() != want || ev.GetAction() != apiv1.EventAction_EVENT_ACTION_CREATED {
			t.Fatalf("event = %v, want created %s", ev, want)
		}
	}
}

// TestApplyBatchPublishesEachEntry: the events of an entry of a batch go
// out once that entry is in the view, not after the whole batch: a
// subscriber (its filter runs inside Publish) sees the first entry's
// event while the second entry's service is not in the state yet.
func TestApplyBatchPublishesEachEntry(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	var secondThere []bool
	sub := h.bus.Subscribe(func(ev *apiv1.Event) bool {
		if ev.GetKind() == "service" {
			_, ok := h.state.Service("b")
			secondThere = append(secondThere, ok)
		}
		return true
	}, 16)
	defer sub.Close()
	h.fsm.ApplyBatch([]*raft.Log{
		h.log(t, &fsmpb.CreateService{Service: svc("a", "a")}),
		h.log(t, &fsmpb.CreateService{Service: svc("b", "b")}),
	})
	if !slices.Equal(secondThere, []bool{false, true}) {
		t.Fatalf("at the events of a and b, b in the state = %v; want [false true]", secondThere)
	}
}

func TestRestartSkipsAppliedEntries(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	h := newHarness(t, st)
	first := h.log(t, &fsmpb.CreateService{Service: svc("s1", "web")})
	h.fsm.Apply(first)
	h.fsm.Flush()

	// A new FSM over the same store resumes after the stored index: the
	// replayed entry is skipped, not applied twice (which would fail as a
	// duplicate and, worse, bump versions).
	h2 := newHarness(t, st)
	if h2.fsm.AppliedIndex() != first.Index {
		t.Fatalf("applied index %d, want %d", h2.fsm.AppliedIndex(), first.Index)
	}
	if got, ok := h2.state.Service("s1"); !ok || got.GetVersion() != first.Index {
		t.Fatalf("reloaded service = %v", got)
	}
	// Nobody waits for a replayed entry; were one to, it would learn that
	// the entry was not applied.
	if r, ok := h2.fsm.Apply(first).(error); !ok || !errors.Is(r, sdk.ErrDataLoss) {
		t.Fatalf("replayed entry: result %v, want the not-applied error", r)
	}
	if got, _ := h2.state.Service("s1"); got.GetVersion() != first.Index {
		t.Fatalf("replayed entry applied again: %v", got)
	}
}

func TestUnknownCommands(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.index++
	r := h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: []byte{99}})
	if !isErr(r) {
		t.Fatalf("unknown type: got %v, want error", r)
	}
	h.index++
	r = h.fsm.Apply(&raft.Log{Index: h.index, Type: raft.LogCommand, Data: []byte{99 | byte(IgnoreUnknownTypeFlag)}})
	if r != nil {
		t.Fatalf("ignorable unknown type: got %v, want nil", r)
	}
	h.fsm.Flush()
	if idx, _ := h.store.AppliedIndex(context.Background()); idx != h.index {
		t.Fatalf("index not advanced past skipped entries: %d", idx)
	}
}

func TestEncodeDecode(t *testing.T) {
	cmds := []Command{
		&fsmpb.CreateService{Service: svc("a", "b")},
		&fsmpb.UpsertTasks{Tasks: []*apiv1.Task{{Id: "t", ServiceId: "s"}}},
		&fsmpb.SetClusterInfo{ClusterId: "c"},
		&fsmpb.RemoveVolume{Id: "v"},
	}
	for _, c := range cmds {
		data, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		typ, got, ok, err := Decode(data)
		want, _ := TypeOf(c)
		if err != nil || !ok || typ != want || !proto.Equal(got, c) {
			t.Fatalf("round trip of %T: %v %v %v %v", c, typ, got, ok, err)
		}
	}
	if _, err := Encode(&apiv1.Service{}); err == nil {
		t.Fatal("encoding a non-command succeeded")
	}
	if _, _, _, err := Decode(nil); err == nil {
		t.Fatal("decoding empty data succeeded")
	}
}

// memSink is a raft.SnapshotSink writing to memory.
type memSink struct {
	bytes.Buffer
	cancelled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { return nil }

func TestSnapshotRestoreRoundTrip(t *testing.T) {
	src := newHarness(t, openStore(t, t.TempDir()))
	for i := range 50 {
		src.apply(t, &fsmpb.CreateService{Service: svc(fmt.Sprintf("id%02d", i), fmt.Sprintf("svc-%02d", i))})
	}
	src.apply(t, &fsmpb.SetClusterInfo{ClusterId: "cluster-1"})
	snap, err := src.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Entries applied after the snapshot must not show up in it.
	src.apply(t, &fsmpb.CreateService{Service: svc("late", "late")})
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()

	dst := newHarness(t, openStore(t, t.TempDir()))
	sub := dst.bus.Subscribe(nil, 4)
	defer sub.Close()
	if err := dst.fsm.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if ev := <-sub.C; ev.GetKind() != "cluster" || ev.GetName() != "restored-from-snapshot" {
		t.Fatalf("restore published %v, want a cluster restored-from-snapshot event", ev)
	}
	if n := len(dst.state.Services()); n != 50 {
		t.Fatalf("restored %d services, want 50", n)
	}
	if _, ok := dst.state.ServiceByName("late"); ok {
		t.Fatal("snapshot holds an entry applied after it was taken")
	}
	if dst.state.ClusterID() != "cluster-1" {
		t.Fatalf("cluster id %q", dst.state.ClusterID())
	}
	if dst.fsm.AppliedIndex() != src.index-1 {
		t.Fatalf("restored index %d, want %d", dst.fsm.AppliedIndex(), src.index-1)
	}
	// Restoring an older snapshot onto a store that is already past it keeps
	// the store (what Raft does at start with its latest snapshot).
	if err := src.fsm.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if _, ok := src.state.ServiceByName("late"); !ok {
		t.Fatal("restoring an older snapshot dropped newer state")
	}
}

func TestRestoreRejectsGarbage(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.apply(t, &fsmpb.CreateService{Service: svc("s1", "web")})
	for name, data := range map[string][]byte{
		"empty":     nil,
		"bad magic": []byte("NOTASNAPSHOT"),
		"truncated": append([]byte(snapshotMagic), 0x64, 0x05, 0x01),
	} {
		t.Run(name, func(t *testing.T) {
			if err := h.fsm.Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
				t.Fatal("restore succeeded")
			}
			if _, ok := h.state.ServiceByName("web"); !ok {
				t.Fatal("failed restore lost state")
			}
		})
	}
}

// encoded returns cmd as Encode writes it.
func encoded(t *testing.T, cmd Command) []byte {
	t.Helper()
	data, err := Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestBatchCommandAppliesEachWithItsOwnResult(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	sub := h.bus.Subscribe(nil, 16)
	defer sub.Close()
	inner, err := EncodeBatch([][]byte{encoded(t, &fsmpb.CreateService{Service: svc("x", "x")})})
	if err != nil {
		t.Fatal(err)
	}
	index := h.index + 1
	entry, err := EncodeBatch([][]byte{
		encoded(t, &fsmpb.CreateService{Service: svc("a", "web")}),
		encoded(t, &fsmpb.CreateService{Service: svc("b", "web")}), // name taken by the first
		// The create's version is the entry's index: an update expecting
		// it applies, one expecting anything else conflicts.
		encoded(t, &fsmpb.UpdateService{Service: svc("a", "web"), ExpectedVersion: index}),
		encoded(t, &fsmpb.UpdateService{Service: svc("a", "web"), ExpectedVersion: index + 1}),
		inner, // batches do not nest
		{99},  // an unknown command type
		encoded(t, &fsmpb.CreateService{Service: svc("c", "api")}),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.index = index
	res := h.fsm.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: entry})
	results, ok := res.([]any)
	if !ok || len(results) != 7 {
		t.Fatalf("response = %#v, want 7 results", res)
	}
	wantErr := []error{nil, sdk.ErrAlreadyExists, nil, sdk.ErrConflict, sdk.ErrInvalidArgument, nil, nil}
	for i, want := range wantErr {
		err, _ := results[i].(error)
		switch {
		case i == 5:
			if err == nil || !strings.Contains(err.Error(), "unknown command type 99") {
				t.Errorf("result %d = %v, want the unknown type refused", i, results[i])
			}
		case want == nil && err != nil, want != nil && !errors.Is(err, want):
			t.Errorf("result %d = %v, want %v", i, results[i], want)
		}
	}
	if s, ok := results[0].(*apiv1.Service); !ok || s.GetVersion() != index {
		t.Errorf("created service = %v, want version %d", results[0], index)
	}
	if _, ok := h.state.Service("b"); ok {
		t.Error("the refused create changed the state")
	}
	if _, ok := h.state.ServiceByName("api"); !ok {
		t.Error("the command after the refused ones was not applied")
	}
	h.fsm.Flush()
	if idx, _ := h.store.AppliedIndex(context.Background()); idx != h.index {
		t.Fatalf("store index %d, want %d", idx, h.index)
	}
	if _, err := h.store.Get(context.Background(), state.BucketServices, "c"); err != nil {
		t.Errorf("service c not stored: %v", err)
	}
	for _, want := range []string{"web", "web", "api"} {
		ev := <-sub.C
		if ev.GetName() != want || ev.GetIndex() != index {
			t.Fatalf("event = %v, want one for %s at index %d", ev, want, index)
		}
	}
}

// TestEntryAtOrBelowAppliedIndexIsAnError: an entry Raft hands out at an
// index the store has applied is not applied, and says so, instead of
// returning nil (which a proposer took for success: an acknowledged write
// dropped).
func TestEntryAtOrBelowAppliedIndexIsAnError(t *testing.T) {
	h := newHarness(t, openStore(t, t.TempDir()))
	h.apply(t, &fsmpb.CreateService{Service: &apiv1.Service{Id: "s1", Spec: &apiv1.ServiceSpec{Name: "web", Image: "busybox"}}})
	h.index-- // the next entry reuses index 1
	res := h.apply(t, &fsmpb.CreateService{Service: &apiv1.Service{Id: "s2", Spec: &apiv1.ServiceSpec{Name: "db", Image: "busybox"}}})
	if err, ok := res.(error); !ok || !errors.Is(err, sdk.ErrDataLoss) {
		t.Fatalf("entry at the applied index: result %v, want an error wrapping sdk.ErrDataLoss", res)
	}
	if _, ok := h.state.ServiceByName("db"); ok {
		t.Fatal("the entry at the applied index was applied")
	}
}
