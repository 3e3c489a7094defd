package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func chunk(task string, slot uint64, node, data string) *apiv1.LogChunk {
	return &apiv1.LogChunk{TaskId: task, Slot: slot, NodeId: node, Data: []byte(data)}
}

func TestLogWriter(t *testing.T) {
	label := func(c *apiv1.LogChunk) string {
		return map[string]string{"t1": "web.1@edge-1", "t2": "web.2@edge-22"}[c.GetTaskId()]
	}
	tests := []struct {
		name   string
		raw    bool
		chunks []*apiv1.LogChunk
		want   string
	}{
		{
			name: "lines cut across chunks, tasks interleaved",
			chunks: []*apiv1.LogChunk{
				chunk("t1", 1, "n1", "hel"),
				chunk("t2", 2, "n2", "one\ntw"),
				chunk("t1", 1, "n1", "lo\nwor"),
				chunk("t2", 2, "n2", "o\n"),
				chunk("t1", 1, "n1", "ld\n\nlast"),
			},
			want: "" +
				"web.2@edge-22 | one\n" +
				"web.1@edge-1  | hello\n" +
				"web.2@edge-22 | two\n" +
				"web.1@edge-1  | world\n" +
				"web.1@edge-1  | \n" +
				"web.1@edge-1  | last\n", // the end of the output ends the line
		},
		{
			name: "raw",
			raw:  true,
			chunks: []*apiv1.LogChunk{
				chunk("t1", 1, "n1", "hel"),
				chunk("t2", 2, "n2", "one\ntw"),
				chunk("t1", 1, "n1", "lo\n"),
				chunk("t2", 2, "n2", "o"),
			},
			want: "one\nhello\ntwo", // as it came, whole lines kept whole
		},
		{
			name:   "a line too long to hold",
			chunks: []*apiv1.LogChunk{chunk("t1", 1, "n1", strings.Repeat("x", maxPartialLine+1)), chunk("t1", 1, "n1", "y\n")},
			want:   "web.1@edge-1 | " + strings.Repeat("x", maxPartialLine+1) + "\nweb.1@edge-1 | y\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w := &logWriter{out: &buf, raw: tt.raw, prefix: label}
			for _, c := range tt.chunks {
				if err := w.write(c); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.flush(); err != nil {
				t.Fatal(err)
			}
			checkGolden(t, buf.String(), tt.want)
		})
	}
}

func TestTailFlag(t *testing.T) {
	var n int64
	v := &tailValue{p: &n}
	for in, want := range map[string]int64{"all": 0, "ALL": 0, "20": 20} {
		if err := v.Set(in); err != nil || n != want {
			t.Errorf("--tail %s: %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "x"} {
		if err := v.Set(in); err == nil {
			t.Errorf("--tail %s accepted", in)
		}
	}
}

func TestSinceFlag(t *testing.T) {
	now := time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Time
	}{
		{"10m", now.Add(-10 * time.Minute)},
		{"1h30m", now.Add(-90 * time.Minute)},
		{"2026-12-02T19:00:00Z", now.Add(-time.Hour)},
		{"2026-12-02T21:00:00.5+02:00", time.Date(2026, 12, 2, 19, 0, 0, 5e8, time.UTC)},
	}
	for _, tt := range tests {
		var n int64
		v := &sinceValue{p: &n, now: func() time.Time { return now }}
		if err := v.Set(tt.in); err != nil || n != tt.want.UnixNano() {
			t.Errorf("--since %s: %v, %v; want %v", tt.in, time.Unix(0, n).UTC(), err, tt.want)
		}
	}
	for _, in := range []string{"yesterday", "-5m", "0s", "2026-12-02"} {
		var n int64
		v := &sinceValue{p: &n, now: time.Now}
		if err := v.Set(in); err == nil || n != 0 {
			t.Errorf("--since %s accepted", in)
		}
	}
}

func TestLogsCommands(t *testing.T) {
	f, sock := startFake(t)
	warren(t, sock, "service", "create", "web", "--image", "nginx", "-d").mustSucceed(t)
	webID, nodeID := fakeID("service", "web"), fakeID("node", "edge-1")
	f.mu.Lock()
	f.tasks = []*apiv1.Task{
		{Id: "t1aaaaaaaaaaaaaaaa", ServiceId: webID, ServiceName: "web", Slot: 1, NodeId: nodeID, CreatedAt: timestamppb.Now(),
			DesiredState: apiv1.TaskState_TASK_STATE_RUNNING, State: apiv1.TaskState_TASK_STATE_RUNNING},
		{Id: "t2aaaaaaaaaaaaaaaa", ServiceId: webID, ServiceName: "web", Slot: 2, NodeId: "n9", CreatedAt: timestamppb.Now(),
			DesiredState: apiv1.TaskState_TASK_STATE_RUNNING, State: apiv1.TaskState_TASK_STATE_RUNNING},
	}
	f.logs = []*apiv1.LogChunk{
		chunk("t1aaaaaaaaaaaaaaaa", 1, nodeID, "hel"),
		chunk("t2aaaaaaaaaaaaaaaa", 2, "n9", "a\nb"),
		chunk("t1aaaaaaaaaaaaaaaa", 1, nodeID, "lo\nwor"),
		chunk("t1aaaaaaaaaaaaaaaa", 1, nodeID, "ld\n"),
	}
	f.mu.Unlock()

	lastRequest := func() *apiv1.TaskLogsRequest {
		f.mu.Lock()
		defer f.mu.Unlock()
		return proto.Clone(f.logsReq).(*apiv1.TaskLogsRequest)
	}

	r := warren(t, sock, "service", "logs", "web", "--tail", "5").mustSucceed(t)
	checkGolden(t, r.stdout, ""+
		"web.2@n9     | a\n"+
		"web.1@edge-1 | hello\n"+
		"web.1@edge-1 | world\n"+
		"web.2@n9     | b\n")
	if req := lastRequest(); !proto.Equal(req, &apiv1.TaskLogsRequest{Service: webID, Tail: 5}) {
		t.Errorf("service logs asked for %v", req)
	}

	r = warren(t, sock, "service", "logs", "web", "--since", "2026-12-02T20:00:00Z", "--timestamps").mustSucceed(t)
	since := time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC).UnixNano()
	if req := lastRequest(); !proto.Equal(req, &apiv1.TaskLogsRequest{Service: webID, SinceUnixNano: since, Timestamps: true}) {
		t.Errorf("service logs --since --timestamps asked for %v", req)
	}

	r = warren(t, sock, "service", "logs", "web", "--raw").mustSucceed(t)
	checkGolden(t, r.stdout, "a\nhello\nworld\nb")

	// task logs finds the task's service for the prefix (the fake sends the
	// same chunks whatever the request).
	r = warren(t, sock, "task", "logs", "t1aaa").mustSucceed(t)
	checkGolden(t, r.stdout, ""+
		"web.2@n9     | a\n"+
		"web.1@edge-1 | hello\n"+
		"web.1@edge-1 | world\n"+
		"web.2@n9     | b\n")
	if req := lastRequest(); !proto.Equal(req, &apiv1.TaskLogsRequest{Task: "t1aaa"}) {
		t.Errorf("task logs asked for %v", req)
	}

	// --follow ends with Ctrl-C, status 0, the held partial line printed.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out, _, done := background(ctx, sock, "service", "logs", "web", "-f")
	out.waitFor(t, "web.1@edge-1 | world\n")
	cancel()
	r = waitResult(t, done)
	if r.code != 0 || !strings.HasSuffix(r.stdout, "web.1@edge-1 | world\nweb.2@n9     | b\n") {
		t.Errorf("logs -f: status %d, stderr %q, stdout:\n%s", r.code, r.stderr, r.stdout)
	}
	if req := lastRequest(); !req.GetFollow() {
		t.Errorf("logs -f asked for %v", req)
	}

	r = warren(t, sock, "service", "logs", "nope")
	if r.code != 1 || r.stderr != "Error: service \"nope\" not found\n" {
		t.Errorf("logs of a missing service: status %d, stderr %q", r.code, r.stderr)
	}
}

func TestServicePsCommand(t *testing.T) {
	f, sock := startFake(t)
	warren(t, sock, "service", "create", "web", "--image", "nginx", "-d").mustSucceed(t)
	webID, nodeID := fakeID("service", "web"), fakeID("node", "edge-1")
	spec := &apiv1.ServiceSpec{Name: "web", Image: "nginx"}
	f.mu.Lock()
	f.tasks = []*apiv1.Task{
		{Id: "t1new", ServiceId: webID, ServiceName: "web", Slot: 1, NodeId: nodeID, Spec: spec, CreatedAt: timestamppb.Now(),
			DesiredState: apiv1.TaskState_TASK_STATE_RUNNING, State: apiv1.TaskState_TASK_STATE_RUNNING},
		{Id: "t1old", ServiceId: webID, ServiceName: "web", Slot: 1, NodeId: nodeID, Spec: spec, CreatedAt: timestamppb.New(time.Now().Add(-time.Hour)),
			DesiredState: apiv1.TaskState_TASK_STATE_SHUTDOWN, State: apiv1.TaskState_TASK_STATE_FAILED, Error: "exit status 2"},
	}
	f.mu.Unlock()

	r := warren(t, sock, "service", "ps", "web").mustSucceed(t)
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 ||
		!strings.HasPrefix(lines[1], "t1new   web.1   nginx   edge-1   Running         Running less than a second ago   -") {
		t.Errorf("service ps printed:\n%s", r.stdout)
	}
	r = warren(t, sock, "service", "ps", "web", "--all").mustSucceed(t)
	if !strings.Contains(r.stdout, "t1old   \\_ web.1   nginx   edge-1   Shutdown        Failed ") ||
		!strings.HasSuffix(r.stdout, "Failed 1 hour ago                exit status 2\n") {
		t.Errorf("service ps --all printed:\n%s", r.stdout)
	}
	r = warren(t, sock, "service", "ps", "nope")
	if r.code != 1 || r.stderr != "Error: service \"nope\" not found\n" {
		t.Errorf("ps of a missing service: status %d, stderr %q", r.code, r.stderr)
	}
}
