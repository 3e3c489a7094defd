package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

var (
	testNow = time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC)
	webID   = "3f2a9c1b7d4e5f60718293a4b5c6d7e8"
	apiID   = "a1b2c3d4e5f6a7b8c9d0"
)

func ts(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(testNow.Add(-d)) }

func testServices() []*apiv1.Service {
	return []*apiv1.Service{
		{
			Id: apiID, Version: 7,
			Spec: &apiv1.ServiceSpec{
				Name: "api", Image: "registry.local/api:2.1", Replicas: 2,
				Env:    map[string]string{"Z": "last", "A": "first"},
				Labels: map[string]string{"team": "edge"},
				Limits: &apiv1.Resources{NanoCpus: 1_500_000_000, MemoryBytes: 512 << 20},
				RestartPolicy: &apiv1.RestartPolicy{
					Condition: apiv1.RestartPolicy_CONDITION_ON_FAILURE,
					Delay:     durationpb.New(5 * time.Second),
				},
			},
			CreatedAt: ts(3 * time.Hour), UpdatedAt: ts(90 * time.Second),
		},
		{
			Id: webID, Version: 12,
			Spec:      &apiv1.ServiceSpec{Name: "web", Image: "nginx:1.27", Replicas: 3, Ports: []*apiv1.PortConfig{{Published: 8080, Target: 80}, {Published: 53, Target: 53, Protocol: apiv1.PortProtocol_PORT_PROTOCOL_UDP, Mode: apiv1.PublishMode_PUBLISH_MODE_HOST}}},
			CreatedAt: ts(72 * time.Hour), UpdatedAt: ts(72 * time.Hour),
		},
	}
}

func TestServiceTable(t *testing.T) {
	var buf bytes.Buffer
	run := func(svc string) *apiv1.Task {
		return &apiv1.Task{ServiceId: svc, State: apiv1.TaskState_TASK_STATE_RUNNING, DesiredState: apiv1.TaskState_TASK_STATE_RUNNING}
	}
	// api's second slot waits for its fourth attempt after its image was
	// refused; an old task's error is history and says nothing.
	waiting := &apiv1.Task{ServiceId: apiID, Slot: 2, Attempt: 4, State: apiv1.TaskState_TASK_STATE_ASSIGNED, DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
		PreviousError: `rejected: image "registry.local/api:2.1" not found`}
	history := &apiv1.Task{ServiceId: webID, State: apiv1.TaskState_TASK_STATE_FAILED, DesiredState: apiv1.TaskState_TASK_STATE_SHUTDOWN, Error: "exit code 1"}
	tasks := []*apiv1.Task{run(webID), run(webID), run(webID), run(apiID), waiting, history}
	if err := writeTable(&buf, serviceListHeader, serviceRows(testServices(), tasks, testNow)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID             NAME   IMAGE                    REPLICAS                                                  PORTS                            UPDATED\n" +
		"a1b2c3d4e5f6   api    registry.local/api:2.1   1/2: rejected: image \"registry.local/api:2.1\" not found   -                                1 minute ago\n" +
		"3f2a9c1b7d4e   web    nginx:1.27               3/3                                                       8080->80/tcp,53->53/udp (host)   3 days ago\n"
	checkGolden(t, buf.String(), want)
}

func TestServiceTableEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := writeTable(&buf, serviceListHeader, serviceRows(nil, nil, testNow)); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, buf.String(), "ID   NAME   IMAGE   REPLICAS   PORTS   UPDATED\n")
}

func TestServiceJSON(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSONList(&buf, testServices()[:1]); err != nil {
		t.Fatal(err)
	}
	want := `[
  {
    "id": "a1b2c3d4e5f6a7b8c9d0",
    "spec": {
      "name": "api",
      "image": "registry.local/api:2.1",
      "env": {
        "A": "first",
        "Z": "last"
      },
      "labels": {
        "team": "edge"
      },
      "replicas": "2",
      "limits": {
        "nano_cpus": "1500000000",
        "memory_bytes": "536870912"
      },
      "restart_policy": {
        "condition": "CONDITION_ON_FAILURE",
        "delay": "5s"
      }
    },
    "version": "7",
    "created_at": "2025-05-01T09:00:00Z",
    "updated_at": "2025-05-01T11:58:30Z"
  }
]
`
	checkGolden(t, buf.String(), want)

	// The same bytes every time, whatever protojson does with whitespace.
	for range 5 {
		var again bytes.Buffer
		if err := writeJSONList(&again, testServices()[:1]); err != nil {
			t.Fatal(err)
		}
		checkGolden(t, again.String(), want)
	}
}

func TestJSONEmptyList(t *testing.T) {
	var buf bytes.Buffer
	if err := writeJSONList(&buf, []*apiv1.Service{}); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, buf.String(), "[]\n")
}

func TestJSONObjectAndLine(t *testing.T) {
	info := &apiv1.ClusterInfoResponse{ClusterId: "c1", IsLeader: true, AppliedIndex: 42}
	var buf bytes.Buffer
	if err := writeJSON(&buf, info); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, buf.String(), "{\n  \"cluster_id\": \"c1\",\n  \"is_leader\": true,\n  \"applied_index\": \"42\"\n}\n")

	buf.Reset()
	ev := &apiv1.Event{Index: 3, Kind: "service", Action: apiv1.EventAction_EVENT_ACTION_DELETED, Id: webID, Name: "web"}
	if err := writeJSONLine(&buf, ev); err != nil {
		t.Fatal(err)
	}
	checkGolden(t, buf.String(), `{"index":"3","kind":"service","action":"EVENT_ACTION_DELETED","id":"3f2a9c1b7d4e5f60718293a4b5c6d7e8","name":"web"}`+"\n")
}

func TestServiceFields(t *testing.T) {
	var buf bytes.Buffer
	if err := writeFields(&buf, serviceFields(testServices()[0])); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID:            a1b2c3d4e5f6a7b8c9d0\n" +
		"Name:          api\n" +
		"Image:         registry.local/api:2.1\n" +
		"Command:       -\n" +
		"Args:          -\n" +
		"Replicas:      2\n" +
		"Env:           A=first, Z=last\n" +
		"Labels:        team=edge\n" +
		"Constraints:   -\n" +
		"Ports:         -\n" +
		"Limits:        1.5 CPUs, 512MiB\n" +
		"Reservations:  -\n" +
		"Restart:       condition on-failure, delay 5s\n" +
		"Stop:          -\n" +
		"Working dir:   -\n" +
		"User:          -\n" +
		"Version:       7\n" +
		"Created:       2025-05-01T09:00:00.000Z\n" +
		"Updated:       2025-05-01T11:58:30.000Z\n"
	checkGolden(t, buf.String(), want)
}

func TestNodeTable(t *testing.T) {
	nodes := []*apiv1.Node{
		{Id: "n1aaaaaaaaaaaaaaaa", Name: "edge-1", Role: apiv1.NodeRole_NODE_ROLE_MANAGER, Worker: true,
			Status: apiv1.NodeStatus_NODE_STATUS_READY, Addr: "10.0.0.1:7420"},
		{Id: "n2", Name: "edge-2", Role: apiv1.NodeRole_NODE_ROLE_WORKER,
			Status: apiv1.NodeStatus_NODE_STATUS_DOWN, Availability: apiv1.NodeAvailability_NODE_AVAILABILITY_DRAIN, Addr: "10.0.0.2:7420"},
		{Id: "n3", Name: "edge-3", Role: apiv1.NodeRole_NODE_ROLE_MANAGER},
		{Id: "n4", Name: "edge-4", Role: apiv1.NodeRole_NODE_ROLE_WORKER, Status: apiv1.NodeStatus_NODE_STATUS_READY,
			Conditions: []*apiv1.NodeCondition{{Type: "assignment", Message: "3 sessions in a row ended"}}},
	}
	var buf bytes.Buffer
	if err := writeTable(&buf, nodeListHeader, nodeRows(nodes)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID             NAME     ROLE             STATUS               AVAILABILITY   ADDR\n" +
		"n1aaaaaaaaaa   edge-1   manager+worker   ready                active         10.0.0.1:7420\n" +
		"n2             edge-2   worker           down                 drain          10.0.0.2:7420\n" +
		"n3             edge-3   manager          unknown              active         -\n" +
		"n4             edge-4   worker           ready (assignment)   active         -\n"
	checkGolden(t, buf.String(), want)
	if got := conditionsText(nodes[3]); got != "assignment: 3 sessions in a row ended (since -)" {
		t.Errorf("conditions of node inspect -o table: %q", got)
	}
}

func TestTaskTable(t *testing.T) {
	tasks := []*apiv1.Task{
		{Id: "t3", ServiceName: "web", Slot: 2, NodeId: "n2", DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
			State: apiv1.TaskState_TASK_STATE_RUNNING, CreatedAt: ts(5 * time.Second)},
		{Id: "t1old", ServiceName: "web", Slot: 1, NodeId: "n1", DesiredState: apiv1.TaskState_TASK_STATE_SHUTDOWN,
			State: apiv1.TaskState_TASK_STATE_FAILED, CreatedAt: ts(2 * time.Hour),
			Error: "exit status 1:\tcould not bind 0.0.0.0:80: address already in use by another process"},
		{Id: "t1new", ServiceName: "web", Slot: 1, NodeId: "n1", DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
			State: apiv1.TaskState_TASK_STATE_RUNNING, CreatedAt: ts(time.Hour)},
		{Id: "t0", ServiceId: "abcdefabcdefabcdef", Slot: 1, DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
			State: apiv1.TaskState_TASK_STATE_PENDING, Message: "no node has 4 CPUs free", CreatedAt: ts(0)},
	}
	sortTasks(tasks)
	var buf bytes.Buffer
	if err := writeTable(&buf, taskListHeader, taskRows(tasks, map[string]string{"n1": "edge-1"}, testNow)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID      SERVICE.SLOT     NODE     DESIRED    STATE     AGE                  ERROR\n" +
		"t0      abcdefabcdef.1   -        running    pending   less than a second   no node has 4 CPUs free\n" +
		"t1new   web.1            edge-1   running    running   1 hour               -\n" +
		"t1old   web.1            edge-1   shutdown   failed    2 hours              exit status 1: could not bind 0.0.0.0:80: address already i…\n" +
		"t3      web.2            n2       running    running   5 seconds            -\n"
	checkGolden(t, buf.String(), want)
}

// psTasks are tasks as `service ps` lists them (the BASIC view: the
// spec's image, not the spec).
func psTasks() []*apiv1.Task {
	const image = "nginx:1.27@sha256:0123456789abcdef"
	tasks := []*apiv1.Task{
		{Id: "t2aaaaaaaaaaaaaaaa", ServiceName: "web", Slot: 2, Image: image, DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
			State: apiv1.TaskState_TASK_STATE_PENDING, Message: "no node has 4 CPUs free", CreatedAt: ts(3 * time.Second)},
		{Id: "t1oldaaaaaaaaaaaaa", ServiceName: "web", Slot: 1, Image: image, NodeId: "n1", DesiredState: apiv1.TaskState_TASK_STATE_SHUTDOWN,
			State: apiv1.TaskState_TASK_STATE_FAILED, CreatedAt: ts(time.Hour), UpdatedAt: ts(2 * time.Minute),
			Error: "exit status 1: could not bind 0.0.0.0:80: address already in use by another process"},
		{Id: "t1newaaaaaaaaaaaaa", ServiceName: "web", Slot: 1, Image: image, NodeId: "n1", DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
			State: apiv1.TaskState_TASK_STATE_RUNNING, CreatedAt: ts(2 * time.Minute), UpdatedAt: ts(5 * time.Second)},
		{Id: "t1olderaaaaaaaaaaa", ServiceName: "web", Slot: 1, Image: image, NodeId: "n9", DesiredState: apiv1.TaskState_TASK_STATE_SHUTDOWN,
			State: apiv1.TaskState_TASK_STATE_REJECTED, CreatedAt: ts(2 * time.Hour), UpdatedAt: ts(2 * time.Hour),
			Error: "image nginx:1.27 not found"},
		// Slot 3's third attempt waits its turn after the second was
		// refused: its row says why the slot does not run.
		{Id: "t3aaaaaaaaaaaaaaaa", ServiceName: "web", Slot: 3, Image: image, NodeId: "n1", DesiredState: apiv1.TaskState_TASK_STATE_RUNNING,
			State: apiv1.TaskState_TASK_STATE_ASSIGNED, Attempt: 3, CreatedAt: ts(time.Second), PreviousError: "rejected: image nginx:1.27 not found"},
	}
	sortTasks(tasks)
	return tasks
}

func TestServicePsTable(t *testing.T) {
	var buf bytes.Buffer
	if err := writeTable(&buf, servicePsHeader, servicePsRows(psTasks(), map[string]string{"n1": "edge-1"}, testNow, false)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID             NAME       IMAGE        NODE     DESIRED STATE   CURRENT STATE           ERROR\n" +
		"t1newaaaaaaa   web.1      nginx:1.27   edge-1   Running         Running 5 seconds ago   -\n" +
		"t1oldaaaaaaa   \\_ web.1   nginx:1.27   edge-1   Shutdown        Failed 2 minutes ago    exit status 1: could not bind 0.0.0.0:80: address already i…\n" +
		"t1olderaaaaa   \\_ web.1   nginx:1.27   n9       Shutdown        Rejected 2 hours ago    image nginx:1.27 not found\n" +
		"t2aaaaaaaaaa   web.2      nginx:1.27   -        Running         Pending 3 seconds ago   no node has 4 CPUs free\n" +
		"t3aaaaaaaaaa   web.3      nginx:1.27   edge-1   Running         Assigned 1 second ago   attempt 3, after rejected: image nginx:1.27 not found\n"
	checkGolden(t, buf.String(), want)
}

func TestServicePsTableNoTrunc(t *testing.T) {
	var buf bytes.Buffer
	if err := writeTable(&buf, servicePsHeader, servicePsRows(psTasks()[:2], nil, testNow, true)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"ID                   NAME       IMAGE                                NODE   DESIRED STATE   CURRENT STATE           ERROR\n" +
		"t1newaaaaaaaaaaaaa   web.1      nginx:1.27@sha256:0123456789abcdef   n1     Running         Running 5 seconds ago   -\n" +
		"t1oldaaaaaaaaaaaaa   \\_ web.1   nginx:1.27@sha256:0123456789abcdef   n1     Shutdown        Failed 2 minutes ago    exit status 1: could not bind 0.0.0.0:80: address already in use by another process\n"
	checkGolden(t, buf.String(), want)
}

func TestImportTable(t *testing.T) {
	images := []*apiv1.ImportedImage{
		{Ref: "docker.io/library/busybox:1.36", Digest: "sha256:0123456789abcdef0123", Size: 4404019},
		{Ref: "registry.local/api:2.1", Digest: "sha256:fedcba9876543210", Size: 123 << 20},
	}
	var buf bytes.Buffer
	if err := writeTable(&buf, imageImportHeader, importedRows(images)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"REF                              DIGEST                SIZE\n" +
		"docker.io/library/busybox:1.36   sha256:0123456789ab   4.2MiB\n" +
		"registry.local/api:2.1           sha256:fedcba987654   123MiB\n"
	checkGolden(t, buf.String(), want)
	for in, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1KiB", 1536: "1.5KiB", 10 << 20: "10MiB", 10<<20 + 300<<10: "10.3MiB", 5 << 30: "5GiB"} {
		if got := humanSize(in); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestPluginTable(t *testing.T) {
	plugins := []*apiv1.PluginStatus{
		{Name: "store-bolt", Kind: "store", Version: "0.1.0", Pid: 4242, State: "running", Path: "/usr/lib/warren/plugins/store-bolt"},
		{Name: "scheduler-roundrobin", Kind: "scheduler", Version: "0.1.0", State: "crash-looping", Restarts: 3, Path: "/usr/lib/warren/plugins/scheduler-roundrobin", LastError: "exit status 2"},
	}
	var buf bytes.Buffer
	if err := writeTable(&buf, pluginListHeader, pluginRows(plugins)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"NAME                   KIND        VERSION   PID    STATE           RESTARTS   PATH                                           LAST ERROR\n" +
		"store-bolt             store       0.1.0     4242   running         0          /usr/lib/warren/plugins/store-bolt             -\n" +
		"scheduler-roundrobin   scheduler   0.1.0     -      crash-looping   3          /usr/lib/warren/plugins/scheduler-roundrobin   exit status 2\n"
	checkGolden(t, buf.String(), want)
}

func TestClusterFields(t *testing.T) {
	info := &apiv1.ClusterInfoResponse{
		ClusterId: "c0ffee", NodeId: "n1aaaaaaaaaaaaaaaa", NodeName: "edge-1", Leader: "edge-1", IsLeader: true,
		AppliedIndex: 41, LastIndex: 42, RaftState: "Leader", Version: "0.1.0", Services: 2, Tasks: 5, Nodes: 1,
	}
	var buf bytes.Buffer
	if err := writeFields(&buf, clusterFields(info)); err != nil {
		t.Fatal(err)
	}
	want := "" +
		"Cluster ID:     c0ffee\n" +
		"Node:           edge-1 (n1aaaaaaaaaa)\n" +
		"Leader:         edge-1 (this node)\n" +
		"Raft state:     Leader\n" +
		"Applied index:  41\n" +
		"Last index:     42\n" +
		"Agent version:  0.1.0\n" +
		"Services:       2\n" +
		"Tasks:          5\n" +
		"Nodes:          1\n"
	checkGolden(t, buf.String(), want)
}

func TestEventLine(t *testing.T) {
	tests := []struct {
		ev   *apiv1.Event
		want string
	}{
		{
			&apiv1.Event{Index: 42, Kind: "service", Action: apiv1.EventAction_EVENT_ACTION_CREATED, Id: webID, Name: "web",
				Time: timestamppb.New(time.Date(2025, 5, 1, 10, 0, 0, 123456789, time.UTC))},
			"2025-05-01T10:00:00.123Z service created web (id 3f2a9c1b7d4e) index=42",
		},
		{
			&apiv1.Event{Index: 43, Kind: "task", Action: apiv1.EventAction_EVENT_ACTION_UPDATED, Id: "t1",
				Time: timestamppb.New(time.Date(2025, 5, 1, 10, 0, 1, 0, time.FixedZone("CEST", 2*3600)))},
			"2025-05-01T08:00:01.000Z task updated t1 index=43",
		},
		{&apiv1.Event{Index: 1}, "- - - - index=1"},
	}
	for _, tt := range tests {
		if got := eventLine(tt.ev); got != tt.want {
			t.Errorf("eventLine = %q, want %q", got, tt.want)
		}
	}
}

func TestEnumText(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{enumText(apiv1.TaskState_TASK_STATE_RUNNING, "-"), "running"},
		{enumText(apiv1.TaskState_TASK_STATE_UNSPECIFIED, "-"), "-"},
		{enumText(apiv1.RestartPolicy_CONDITION_ON_FAILURE, "any"), "on-failure"},
		{enumText(apiv1.UpdatePolicy_ORDER_START_FIRST, ""), "start-first"},
		{enumText(apiv1.NodeAvailability(99), "active"), "99"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("enumText = %q, want %q", tt.got, tt.want)
		}
	}
}

func TestAge(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{-time.Minute, "less than a second"},
		{0, "less than a second"},
		{time.Second, "1 second"},
		{59 * time.Second, "59 seconds"},
		{time.Minute, "1 minute"},
		{119 * time.Second, "1 minute"},
		{59 * time.Minute, "59 minutes"},
		{time.Hour, "1 hour"},
		{47 * time.Hour, "47 hours"},
		{48 * time.Hour, "2 days"},
		{13 * 24 * time.Hour, "13 days"},
		{14 * 24 * time.Hour, "2 weeks"},
		{90 * 24 * time.Hour, "3 months"},
		{800 * 24 * time.Hour, "2 years"},
	}
	for _, tt := range tests {
		if got := age(ts(tt.d), testNow); got != tt.want {
			t.Errorf("age(%s) = %q, want %q", tt.d, got, tt.want)
		}
	}
	if got := ago(nil, testNow); got != "-" {
		t.Errorf("ago(nil) = %q", got)
	}
}

func TestSizeAndCPUText(t *testing.T) {
	for in, want := range map[int64]string{1000: "1000B", 1024: "1KiB", 512 << 20: "512MiB", 3 << 29: "1536MiB", 1 << 40: "1TiB"} {
		if got := sizeText(in); got != want {
			t.Errorf("sizeText(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[int64]string{1e9: "1", 1.5e9: "1.5", 250_000_000: "0.25", 1: "0.000000001"} {
		if got := cpusText(in); got != want {
			t.Errorf("cpusText(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestSuggestFlags(t *testing.T) {
	cmd := newServiceCreateCmd(&globalOptions{})
	got := strings.Join(suggestFlags(cmd.Flags(), "replica"), " ")
	if got != "--replicas" {
		t.Errorf("suggestFlags(replica) = %q", got)
	}
	got = strings.Join(suggestFlags(cmd.Flags(), "restart"), " ")
	if got != "--restart-condition --restart-delay --restart-max-attempts" {
		t.Errorf("suggestFlags(restart) = %q", got)
	}
}

// checkGolden compares output with the expected text, showing both whole.
func checkGolden(t *testing.T, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

// TestJobReplicas: a job's REPLICAS in `service ls` counts completions
// (with what runs and what failed), and inspect shows its mode and job
// status with its times.
func TestJobReplicas(t *testing.T) {
	job := func(st *apiv1.JobStatus) *apiv1.Service {
		return &apiv1.Service{Id: "j1", Spec: &apiv1.ServiceSpec{Name: "batch", Replicas: 3, MaxConcurrent: 2, Mode: apiv1.ServiceMode_SERVICE_MODE_REPLICATED_JOB}, JobStatus: st}
	}
	tests := []struct {
		name    string
		st      *apiv1.JobStatus
		running int
		want    string
	}{
		{"no status yet", nil, 0, "0/3 completed"},
		{"running", &apiv1.JobStatus{State: apiv1.JobStatus_STATE_RUNNING, Completed: 1, Total: 3}, 2, "1/3 completed, 2 running"},
		{"completed", &apiv1.JobStatus{State: apiv1.JobStatus_STATE_COMPLETED, Completed: 3, Total: 3}, 0, "3/3 completed"},
		{"failed", &apiv1.JobStatus{State: apiv1.JobStatus_STATE_FAILED, Completed: 2, Failed: 1, Total: 3}, 0, "2/3 completed, 1 failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var tasks []*apiv1.Task
			for range tt.running {
				tasks = append(tasks, &apiv1.Task{ServiceId: "j1", State: apiv1.TaskState_TASK_STATE_RUNNING, DesiredState: apiv1.TaskState_TASK_STATE_RUNNING})
			}
			rows := serviceRows([]*apiv1.Service{job(tt.st)}, tasks, testNow)
			if got := rows[0][3]; got != tt.want {
				t.Fatalf("REPLICAS %q, want %q", got, tt.want)
			}
		})
	}
	st := &apiv1.JobStatus{State: apiv1.JobStatus_STATE_COMPLETED, Message: "3/3 completed", Completed: 3, Total: 3,
		StartedAt: timestamppb.New(testNow.Add(-time.Minute)), CompletedAt: timestamppb.New(testNow)}
	fields := map[string]string{}
	for _, f := range serviceFields(job(st)) {
		fields[f[0]] = f[1]
	}
	want := "completed: 3/3 completed; started " + timeText(st.GetStartedAt()) + ", ended " + timeText(st.GetCompletedAt())
	if fields["Mode"] != "replicated-job" || fields["Max concurrent"] != "2" || fields["Job status"] != want {
		t.Fatalf("inspect fields %v; want mode replicated-job, max concurrent 2, job status %q", fields, want)
	}
}
