package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// fakeWarren is an in-memory apiv1.WarrenServer for testing the CLI's wiring
// (flags → requests, responses → output, errors → exit codes) over a real
// gRPC connection on a unix socket. It knows nothing of scheduling: the
// agent's own behaviour is tested end to end elsewhere.
type fakeWarren struct {
	apiv1.UnimplementedWarrenServer

	mu       sync.Mutex
	index    uint64
	services map[string]*apiv1.Service // by ID
	tasks    []*apiv1.Task
	nodes    []*apiv1.Node
	// conflicts is how many UpdateService calls still fail with Aborted.
	conflicts int
	// updates counts UpdateService calls.
	updates int
	// block makes ClusterInfo wait for the caller to give up; blocked gets
	// a value when it starts waiting.
	block   bool
	blocked chan struct{}
	subs    map[chan *apiv1.Event]bool

	// subscribed gets a value each time an Events stream starts.
	subscribed chan struct{}

	// onCreate, when set, gives the tasks a new service starts with.
	onCreate func(*apiv1.Service) []*apiv1.Task

	// logs is what TaskLogs sends; logsReq the last request it got.
	logs    []*apiv1.LogChunk
	logsReq *apiv1.TaskLogsRequest

	// imported is what ImportImage received, chunks the size of each
	// message; imports counts the calls.
	imported []byte
	chunks   []int
	imports  int
}

func newFakeWarren() *fakeWarren {
	return &fakeWarren{
		services:   map[string]*apiv1.Service{},
		subs:       map[chan *apiv1.Event]bool{},
		subscribed: make(chan struct{}, 10),
		blocked:    make(chan struct{}, 10),
		nodes: []*apiv1.Node{{
			Id: fakeID("node", "edge-1"), Name: "edge-1", Role: apiv1.NodeRole_NODE_ROLE_MANAGER, Worker: true,
			Status: apiv1.NodeStatus_NODE_STATUS_READY, Addr: "10.0.0.1:7420",
		}},
	}
}

func fakeID(kind, name string) string {
	sum := sha256.Sum256([]byte(kind + "/" + name))
	return hex.EncodeToString(sum[:16])
}

// find returns the service called nameOrID, with that ID or a unique ID
// prefix. f.mu is held.
func (f *fakeWarren) find(nameOrID string) (*apiv1.Service, error) {
	var match *apiv1.Service
	for _, s := range f.services {
		switch {
		case s.Spec.Name == nameOrID || s.Id == nameOrID:
			return s, nil
		case strings.HasPrefix(s.Id, nameOrID):
			if match != nil {
				return nil, status.Errorf(codes.InvalidArgument, "service ID prefix %q is ambiguous", nameOrID)
			}
			match = s
		}
	}
	if match == nil {
		return nil, status.Errorf(codes.NotFound, "service %q not found", nameOrID)
	}
	return match, nil
}

// publish sends an event about s to every Events stream. f.mu is held.
func (f *fakeWarren) publish(action apiv1.EventAction, s *apiv1.Service) {
	ev := &apiv1.Event{
		Index: f.index, Kind: "service", Action: action, Id: s.Id, Name: s.Spec.Name,
		Time: timestamppb.Now(), Object: &apiv1.Event_Service{Service: proto.Clone(s).(*apiv1.Service)},
	}
	for ch := range f.subs {
		ch <- ev // buffered enough for these tests
	}
}

func (f *fakeWarren) CreateService(_ context.Context, req *apiv1.CreateServiceRequest) (*apiv1.CreateServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	name := req.GetSpec().GetName()
	if _, err := f.find(name); err == nil {
		return nil, status.Errorf(codes.AlreadyExists, "service %q already exists", name)
	}
	f.index++
	now := timestamppb.Now()
	s := &apiv1.Service{Id: fakeID("service", name), Spec: req.GetSpec(), Version: f.index, CreatedAt: now, UpdatedAt: now}
	f.services[s.Id] = s
	f.publish(apiv1.EventAction_EVENT_ACTION_CREATED, s)
	if f.onCreate != nil {
		f.upsertLocked(f.onCreate(s)...)
	}
	return &apiv1.CreateServiceResponse{Service: s}, nil
}

func (f *fakeWarren) GetService(_ context.Context, req *apiv1.GetServiceRequest) (*apiv1.GetServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.find(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	return &apiv1.GetServiceResponse{Service: s}, nil
}

func (f *fakeWarren) ListServices(context.Context, *apiv1.ListServicesRequest) (*apiv1.ListServicesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &apiv1.ListServicesResponse{}
	for _, s := range f.services {
		resp.Services = append(resp.Services, s)
	}
	return resp, nil
}

func (f *fakeWarren) UpdateService(_ context.Context, req *apiv1.UpdateServiceRequest) (*apiv1.UpdateServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates++
	s, err := f.find(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	if f.conflicts > 0 {
		f.conflicts--
		f.index++
		s.Version = f.index // someone else changed it
	}
	if req.GetVersion() != 0 && req.GetVersion() != s.Version {
		return nil, status.Errorf(codes.Aborted, "service %q changed: version %d, not %d", s.Spec.Name, s.Version, req.GetVersion())
	}
	f.index++
	s.Spec, s.Version, s.UpdatedAt = req.GetSpec(), f.index, timestamppb.Now()
	f.publish(apiv1.EventAction_EVENT_ACTION_UPDATED, s)
	return &apiv1.UpdateServiceResponse{Service: s}, nil
}

func (f *fakeWarren) ScaleService(_ context.Context, req *apiv1.ScaleServiceRequest) (*apiv1.ScaleServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.find(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	f.index++
	s.Spec.Replicas, s.Version = req.GetReplicas(), f.index
	f.publish(apiv1.EventAction_EVENT_ACTION_UPDATED, s)
	return &apiv1.ScaleServiceResponse{Service: s}, nil
}

func (f *fakeWarren) RemoveService(_ context.Context, req *apiv1.RemoveServiceRequest) (*apiv1.RemoveServiceResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, err := f.find(req.GetNameOrId())
	if err != nil {
		return nil, err
	}
	f.index++
	delete(f.services, s.Id)
	f.publish(apiv1.EventAction_EVENT_ACTION_DELETED, s)
	return &apiv1.RemoveServiceResponse{}, nil
}

func (f *fakeWarren) ListNodes(context.Context, *apiv1.ListNodesRequest) (*apiv1.ListNodesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &apiv1.ListNodesResponse{Nodes: f.nodes}, nil
}

func (f *fakeWarren) GetNode(_ context.Context, req *apiv1.GetNodeRequest) (*apiv1.GetNodeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.nodes {
		if n.Name == req.GetNameOrId() || n.Id == req.GetNameOrId() {
			return &apiv1.GetNodeResponse{Node: n}, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "node %q not found", req.GetNameOrId())
}

func (f *fakeWarren) ListTasks(_ context.Context, req *apiv1.ListTasksRequest) (*apiv1.ListTasksResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &apiv1.ListTasksResponse{}
	for _, t := range f.tasks {
		if s := req.GetService(); s != "" && t.ServiceName != s && t.ServiceId != s {
			continue
		}
		// As the agent: without all, the tasks wanted or still running.
		if !req.GetAll() && t.DesiredState > apiv1.TaskState_TASK_STATE_RUNNING && t.State > apiv1.TaskState_TASK_STATE_RUNNING {
			continue
		}
		resp.Tasks = append(resp.Tasks, api.ListedTask(proto.CloneOf(t), req.GetView()))
		// As the agent: the names of the page's nodes.
		for _, n := range f.nodes {
			if n.Id == t.NodeId {
				if resp.NodeNames == nil {
					resp.NodeNames = map[string]string{}
				}
				resp.NodeNames[n.Id] = n.Name
			}
		}
	}
	return resp, nil
}

// upsert adds or replaces tasks (by ID) as one change, publishing a task
// event for each, as the agent's loops do when they commit a batch.
func (f *fakeWarren) upsert(tasks ...*apiv1.Task) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upsertLocked(tasks...)
}

func (f *fakeWarren) upsertLocked(tasks ...*apiv1.Task) {
	f.index++
	for _, t := range tasks {
		t = proto.Clone(t).(*apiv1.Task)
		action := apiv1.EventAction_EVENT_ACTION_CREATED
		if i := slices.IndexFunc(f.tasks, func(x *apiv1.Task) bool { return x.Id == t.Id }); i >= 0 {
			f.tasks[i] = t
			action = apiv1.EventAction_EVENT_ACTION_UPDATED
		} else {
			f.tasks = append(f.tasks, t)
		}
		ev := &apiv1.Event{
			Index: f.index, Kind: "task", Action: action, Id: t.Id, Time: timestamppb.Now(),
			Object: &apiv1.Event_Task{Task: proto.Clone(t).(*apiv1.Task)},
		}
		for ch := range f.subs {
			ch <- ev
		}
	}
}

func (f *fakeWarren) TaskLogs(req *apiv1.TaskLogsRequest, stream apiv1.Warren_TaskLogsServer) error {
	f.mu.Lock()
	f.logsReq = proto.Clone(req).(*apiv1.TaskLogsRequest)
	chunks := f.logs
	f.mu.Unlock()
	for _, c := range chunks {
		if err := stream.Send(c); err != nil {
			return err
		}
	}
	if req.GetFollow() {
		<-stream.Context().Done()
	}
	return nil
}

func (f *fakeWarren) ImportImage(stream apiv1.Warren_ImportImageServer) error {
	f.mu.Lock()
	f.imports++
	f.imported, f.chunks = nil, nil
	f.mu.Unlock()
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.imported = append(f.imported, chunk.GetData()...)
		f.chunks = append(f.chunks, len(chunk.GetData()))
		total := int64(len(f.imported))
		f.mu.Unlock()
		// Progress as the archive goes: edge-1 takes it all, edge-2
		// fails after its first chunk.
		if err := stream.Send(&apiv1.ImportImageProgress{Node: &apiv1.NodeImport{Node: "edge-1", BytesSent: total}}); err != nil {
			return err
		}
	}
	for _, p := range []*apiv1.NodeImport{
		{Node: "edge-2", Error: "no space left on device"},
		{Node: "edge-1", BytesSent: int64(len(f.imported)), Done: true},
	} {
		if err := stream.Send(&apiv1.ImportImageProgress{Node: p}); err != nil {
			return err
		}
	}
	return stream.Send(&apiv1.ImportImageProgress{Result: &apiv1.ImportImageResponse{
		Images: []*apiv1.ImportedImage{{
			Ref:    "docker.io/library/busybox:1.36",
			Digest: "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
			Size:   4404019,
		}},
		Nodes: []string{"edge-1", "edge-2"},
	}})
}

func (f *fakeWarren) Events(req *apiv1.EventsRequest, stream apiv1.Warren_EventsServer) error {
	ch := make(chan *apiv1.Event, 100)
	f.mu.Lock()
	f.subs[ch] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.subs, ch)
		f.mu.Unlock()
	}()
	// As the agent: headers once subscribed.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	f.subscribed <- struct{}{}
	for {
		select {
		case <-stream.Context().Done():
			return nil
		case ev := <-ch:
			if len(req.GetKinds()) > 0 && !containsString(req.GetKinds(), ev.Kind) {
				continue
			}
			if err := stream.Send(ev); err != nil {
				return err
			}
		}
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (f *fakeWarren) ListPlugins(context.Context, *apiv1.ListPluginsRequest) (*apiv1.ListPluginsResponse, error) {
	return &apiv1.ListPluginsResponse{Plugins: []*apiv1.PluginStatus{
		{Name: "store-bolt", Kind: "store", Version: "0.1.0", Pid: 99, State: "running", Path: "/p/store-bolt"},
	}}, nil
}

func (f *fakeWarren) ClusterInfo(ctx context.Context, _ *apiv1.ClusterInfoRequest) (*apiv1.ClusterInfoResponse, error) {
	f.mu.Lock()
	block := f.block
	f.mu.Unlock()
	if block {
		f.blocked <- struct{}{}
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &apiv1.ClusterInfoResponse{ClusterId: "c1", NodeName: "edge-1", Leader: "edge-1", IsLeader: true, RaftState: "Leader"}, nil
}

// startFake serves a fakeWarren on a unix socket in a fresh directory and
// returns it with the socket's path. Everything stops when the test ends.
func startFake(t *testing.T) (*fakeWarren, string) {
	t.Helper()
	// Not t.TempDir: a unix socket path must stay under 108 bytes, and test
	// names make those long.
	dir, err := os.MkdirTemp("", "warren-cli-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "warren.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	f := newFakeWarren()
	// As the agent: requests up to api.MaxRequestBytes.
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(api.MaxRequestBytes))
	apiv1.RegisterWarrenServer(srv, f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return f, sock
}

// result is what a command line printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// warren runs the command line args against the agent at sock.
func warren(t *testing.T, sock string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"-socket", sock}, args...), &stdout, &stderr)
	return result{stdout.String(), stderr.String(), code}
}

func (r result) mustSucceed(t *testing.T) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit status %d, stderr:\n%s", r.code, r.stderr)
	}
	return r
}

func TestCommandsAgainstAgent(t *testing.T) {
	f, sock := startFake(t)
	webID := fakeID("service", "web")

	// create
	r := warren(t, sock, "service", "create", "web", "-d", "--image", "nginx:1.27", "--replicas", "3",
		"--env", "A=1", "--memory", "512MiB", "--", "nginx", "-g", "daemon off;").mustSucceed(t)
	if r.stdout != webID+"\n" {
		t.Errorf("create printed %q, want the ID", r.stdout)
	}
	want := &apiv1.ServiceSpec{
		Name: "web", Image: "nginx:1.27", Replicas: 3, Env: map[string]string{"A": "1"},
		Command: []string{"nginx"}, Args: []string{"-g", "daemon off;"},
		Limits: &apiv1.Resources{MemoryBytes: 512 << 20},
	}
	f.mu.Lock()
	got := proto.Clone(f.services[webID].Spec)
	f.mu.Unlock()
	if !proto.Equal(got, want) {
		t.Errorf("agent got spec\n%s\nwant\n%s", protojson.Format(got), protojson.Format(want))
	}

	r = warren(t, sock, "service", "create", "web", "--image", "nginx")
	if r.code != 1 || r.stderr != "Error: service \"web\" already exists\n" {
		t.Errorf("second create: status %d, stderr %q", r.code, r.stderr)
	}
	warren(t, sock, "service", "create", "api", "--image", "api:2", "--detach").mustSucceed(t)

	// ls
	f.mu.Lock()
	f.tasks = []*apiv1.Task{{Id: "t1", ServiceId: webID, ServiceName: "web", Slot: 1, NodeId: f.nodes[0].Id,
		DesiredState: apiv1.TaskState_TASK_STATE_RUNNING, State: apiv1.TaskState_TASK_STATE_RUNNING, CreatedAt: timestamppb.Now()}}
	f.mu.Unlock()
	r = warren(t, sock, "service", "ls").mustSucceed(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") ||
		!strings.Contains(lines[1], " api ") || !strings.Contains(lines[2], webID[:12]+"   web    nginx:1.27   1/3 ") {
		t.Errorf("service ls printed:\n%s", r.stdout)
	}
	r = warren(t, sock, "service", "ls", "-o", "json").mustSucceed(t)
	var listed []struct {
		ID   string `json:"id"`
		Spec struct {
			Name string `json:"name"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 2 || listed[1].ID != webID || listed[1].Spec.Name != "web" {
		t.Errorf("service ls -o json printed (%v):\n%s", err, r.stdout)
	}

	// inspect, by name and by ID prefix, with one missing
	r = warren(t, sock, "service", "inspect", "web", webID[:8], "nope")
	if r.code != 1 || r.stderr != "Error: service \"nope\" not found\n" {
		t.Errorf("inspect with a missing service: status %d, stderr %q", r.code, r.stderr)
	}
	var inspected []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &inspected); err != nil || len(inspected) != 2 || inspected[0]["id"] != webID {
		t.Errorf("inspect printed (%v):\n%s", err, r.stdout)
	}
	r = warren(t, sock, "service", "inspect", "web", "-o", "table").mustSucceed(t)
	if !strings.Contains(r.stdout, "Command:       nginx\n") || !strings.Contains(r.stdout, "Limits:        512MiB\n") {
		t.Errorf("inspect -o table printed:\n%s", r.stdout)
	}

	// scale: all arguments are checked first
	r = warren(t, sock, "service", "scale", "web=5", "api=x")
	if r.code != 1 || !strings.Contains(r.stderr, `invalid replicas in "api=x": not a whole number`) {
		t.Errorf("scale with a bad argument: status %d, stderr %q", r.code, r.stderr)
	}
	r = warren(t, sock, "service", "scale", "web=5", "api=0", "-d").mustSucceed(t)
	if r.stdout != "web scaled to 5\napi scaled to 0\n" {
		t.Errorf("scale printed %q", r.stdout)
	}

	// update, retried once after a version conflict
	f.mu.Lock()
	f.conflicts, f.updates = 1, 0
	f.mu.Unlock()
	r = warren(t, sock, "service", "update", "web", "-d", "--image", "nginx:1.28", "--env-add", "B=2", "--env-rm", "A", "--args", "-g 'daemon on;'").mustSucceed(t)
	f.mu.Lock()
	got, updates := proto.Clone(f.services[webID].Spec), f.updates
	f.mu.Unlock()
	want = &apiv1.ServiceSpec{
		Name: "web", Image: "nginx:1.28", Replicas: 5, Env: map[string]string{"B": "2"},
		Command: []string{"nginx"}, Args: []string{"-g", "daemon on;"},
		Limits: &apiv1.Resources{MemoryBytes: 512 << 20},
	}
	if r.stdout != "web\n" || updates != 2 || !proto.Equal(got, want) {
		t.Errorf("update printed %q after %d calls; spec\n%s\nwant\n%s", r.stdout, updates, protojson.Format(got), protojson.Format(want))
	}
	f.mu.Lock()
	f.conflicts, f.updates = 2, 0
	f.mu.Unlock()
	r = warren(t, sock, "service", "update", "web", "--replicas", "1")
	f.mu.Lock()
	updates = f.updates
	f.mu.Unlock()
	if r.code != 1 || updates != 2 || !strings.Contains(r.stderr, `Error: service "web" kept changing while updating it: try again`) {
		t.Errorf("update with two conflicts: status %d after %d calls, stderr %q", r.code, updates, r.stderr)
	}

	// rm: one failure does not stop the others
	r = warren(t, sock, "service", "rm", "gone", "web")
	if r.code != 1 || r.stdout != "web\n" || r.stderr != "Error: service \"gone\" not found\n" {
		t.Errorf("rm: status %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = warren(t, sock, "service", "inspect", "web")
	if r.code != 1 || r.stderr != "Error: service \"web\" not found\n" {
		t.Errorf("inspect after rm: status %d, stderr %q", r.code, r.stderr)
	}
}

// refusal is a command line the CLI must refuse: exit status 1, nothing
// on stdout, and exactly wantStderr.
type refusal struct {
	name       string
	args       []string
	wantStderr string
}

// checkRefusals runs each refusal against the agent at sock.
func checkRefusals(t *testing.T, sock string, tests []refusal) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := warren(t, sock, tt.args...)
			if r.code != 1 || r.stderr != tt.wantStderr || r.stdout != "" {
				t.Errorf("status %d\nstdout %q\nstderr %q\nwant stderr %q", r.code, r.stdout, r.stderr, tt.wantStderr)
			}
		})
	}
}

func TestErrorPaths(t *testing.T) {
	_, sock := startFake(t)
	tests := []refusal{
		{"not found", []string{"service", "inspect", "x"}, "Error: service \"x\" not found\n"},
		{"rm not found", []string{"service", "rm", "x"}, "Error: service \"x\" not found\n"},
		{"node not found", []string{"node", "inspect", "x"}, "Error: node \"x\" not found\n"},
		{"bad output", []string{"-o", "yaml", "service", "ls"},
			"Error: invalid argument \"yaml\" for \"-o, --output\" flag: use table or json\nRun 'warren service ls --help' for usage.\n"},
		{"negative replicas", []string{"service", "create", "web", "--image", "x", "--replicas", "-1"},
			"Error: invalid argument \"-1\" for \"--replicas\" flag: cannot be negative\nRun 'warren service create --help' for usage.\n"},
		{"missing name", []string{"service", "inspect"},
			"Error: \"warren service inspect\" needs at least one service NAME or ID\nRun 'warren service inspect --help' for usage.\n"},
		{"extra argument", []string{"service", "ls", "web"},
			"Error: \"warren service ls\" takes no arguments, but got \"web\"\nRun 'warren service ls --help' for usage.\n"},
		{"unknown command", []string{"service", "lss"},
			"Error: unknown command \"lss\" for \"warren service\"\n\nDid you mean this?\n\tlogs\n\tls\n\tps\nRun 'warren service --help' for usage.\n"},
		{"unknown flag", []string{"task", "ls", "--servce", "web"},
			"Error: unknown flag: --servce\n\nDid you mean this?\n\t--service\nRun 'warren task ls --help' for usage.\n"},
		{"negative timeout", []string{"service", "ls", "--timeout", "-1s"},
			"Error: invalid --timeout -1s: cannot be negative (0 means no limit)\nRun 'warren service ls --help' for usage.\n"},
		{"bad kind", []string{"events", "--kind", "pods"},
			"Error: invalid --kind \"pods\": use service, task, node, secret, volume or network\nRun 'warren events --help' for usage.\n"},
	}
	checkRefusals(t, sock, tests)
}

func TestOtherCommands(t *testing.T) {
	f, sock := startFake(t)
	nodeID := f.nodes[0].Id
	warren(t, sock, "service", "create", "web", "--image", "nginx", "-d").mustSucceed(t)
	f.mu.Lock()
	f.tasks = []*apiv1.Task{
		{Id: "task-running", ServiceName: "web", Slot: 1, NodeId: nodeID, CreatedAt: timestamppb.Now(),
			DesiredState: apiv1.TaskState_TASK_STATE_RUNNING, State: apiv1.TaskState_TASK_STATE_RUNNING},
		{Id: "task-failed", ServiceName: "web", Slot: 1, NodeId: nodeID, CreatedAt: timestamppb.Now(), Error: "exit status 2",
			DesiredState: apiv1.TaskState_TASK_STATE_SHUTDOWN, State: apiv1.TaskState_TASK_STATE_FAILED},
	}
	f.mu.Unlock()

	tests := []struct {
		args []string
		want []string // substrings of stdout
	}{
		{[]string{"node", "ls"}, []string{"ID ", nodeID[:12] + "   edge-1   manager+worker   ready    active         10.0.0.1:7420\n"}},
		{[]string{"node", "inspect", "edge-1"}, []string{`"name": "edge-1"`, `"status": "NODE_STATUS_READY"`}},
		{[]string{"node", "inspect", "edge-1", "-o", "table"}, []string{"Role:          manager+worker\n"}},
		{[]string{"task", "ls"}, []string{"task-running   web.1          edge-1   running   running"}},
		{[]string{"task", "ls", "--all", "--service", "web"}, []string{"task-failed    web.1          edge-1   shutdown   failed    less than a second   exit status 2\n"}},
		{[]string{"task", "ls", "-o", "json"}, []string{`"id": "task-running"`}},
		{[]string{"plugin", "ls"}, []string{"store-bolt   store   0.1.0     99    running   0          /p/store-bolt   -\n"}},
		{[]string{"cluster", "info"}, []string{"Leader:         edge-1 (this node)\n"}},
		{[]string{"cluster", "info", "-o", "json"}, []string{`"cluster_id": "c1"`}},
		{[]string{"version"}, []string{"warren "}},
		{[]string{"completion", "bash"}, []string{"bash completion"}},
		{[]string{"service", "create", "--help"}, []string{"Usage:\n  warren service create NAME --image IMAGE", "Examples:\n"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := warren(t, sock, tt.args...).mustSucceed(t)
			for _, w := range tt.want {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
				}
			}
		})
	}
}

func TestEvents(t *testing.T) {
	f, sock := startFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	run1 := func(args ...string) (*syncBuffer, chan int) {
		out := newSyncBuffer()
		code := make(chan int, 1)
		go func() {
			var stderr bytes.Buffer
			code <- run(ctx, append([]string{"--socket", sock, "events"}, args...), out, &stderr)
		}()
		return out, code
	}
	text, textCode := run1("--kind", "service")
	jsonOut, jsonCode := run1("-o", "json")
	for range 2 {
		select {
		case <-f.subscribed:
		case <-time.After(10 * time.Second):
			t.Fatal("the events commands did not subscribe")
		}
	}

	warren(t, sock, "service", "create", "web", "--image", "nginx", "-d").mustSucceed(t)
	warren(t, sock, "service", "rm", "web").mustSucceed(t)

	id := fakeID("service", "web")
	text.waitFor(t, "service deleted web (id "+id[:12]+") index=2\n")
	if lines := strings.Split(text.String(), "\n"); len(lines) != 3 ||
		!strings.HasSuffix(lines[0], "Z service created web (id "+id[:12]+") index=1") {
		t.Errorf("events printed:\n%s", text.String())
	}
	jsonOut.waitFor(t, `"action":"EVENT_ACTION_DELETED"`)
	first, _, _ := strings.Cut(jsonOut.String(), "\n")
	var ev map[string]any
	if err := json.Unmarshal([]byte(first), &ev); err != nil || ev["action"] != "EVENT_ACTION_CREATED" || ev["name"] != "web" {
		t.Errorf("first JSON line %q (%v)", first, err)
	}

	// Ctrl-C is how events ends: not an error.
	cancel()
	for _, code := range []chan int{textCode, jsonCode} {
		select {
		case c := <-code:
			if c != 0 {
				t.Errorf("events exited with %d after an interrupt, want 0", c)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("events did not stop after its context ended")
		}
	}
}

func TestAgentUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"service", "ls", "--socket", sock}, &stdout, &stderr)
	want := fmt.Sprintf("Error: cannot reach the warren agent at %s: is it running? (dial unix %s: connect: no such file or directory)\n", sock, sock)
	if code != 1 || stderr.String() != want {
		t.Errorf("status %d, stderr %q\nwant %q", code, stderr.String(), want)
	}
}

func TestSocketFromEnvironment(t *testing.T) {
	_, sock := startFake(t)
	t.Setenv(socketEnv, sock)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"cluster", "info"}, &stdout, &stderr); code != 0 {
		t.Fatalf("status %d, stderr %q", code, stderr.String())
	}
	// --socket wins over the environment.
	stderr.Reset()
	code := run(context.Background(), []string{"cluster", "info", "--socket", sock + ".nope"}, &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "cannot reach the warren agent at "+sock+".nope") {
		t.Errorf("status %d, stderr %q", code, stderr.String())
	}
}

func TestTimeout(t *testing.T) {
	f, sock := startFake(t)
	f.mu.Lock()
	f.block = true
	f.mu.Unlock()
	r := warren(t, sock, "cluster", "info", "--timeout", "200ms")
	if r.code != 1 || r.stderr != "Error: the agent did not answer within 200ms (see --timeout)\n" {
		t.Errorf("status %d, stderr %q", r.code, r.stderr)
	}
}

func TestInterrupted(t *testing.T) {
	f, sock := startFake(t)
	f.mu.Lock()
	f.block = true
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"--socket", sock, "cluster", "info", "--timeout", "0"}, &stdout, &stderr)
		done <- result{stdout.String(), stderr.String(), code}
	}()
	select {
	case <-f.blocked: // the call is in flight
	case <-time.After(10 * time.Second):
		t.Fatal("the call never reached the agent")
	}
	cancel()
	select {
	case r := <-done:
		if r.code != 130 || r.stderr != "Error: interrupted\n" {
			t.Errorf("status %d, stderr %q", r.code, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not stop after its context ended")
	}
}

// syncBuffer is an output buffer a command writes to from another goroutine
// while the test waits for text to appear in it.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer contains s.
func (b *syncBuffer) waitFor(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.changed:
		case <-deadline:
			t.Fatalf("output never contained %q; it is:\n%s", s, b.String())
		}
	}
}
