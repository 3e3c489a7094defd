package runtime

import (
	"reflect"
	"testing"
	"time"

	runtimev1 "github.com/warrenorch/warren/sdk/proto/runtime/v1"
)

// Times built with time.Date in UTC carry no monotonic reading or zone, so
// they compare with DeepEqual after a trip through the protocol.
var (
	t0 = time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)
	t1 = t0.Add(90 * time.Second)
)

func TestSpecRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec TaskSpec
	}{
		{"minimal", TaskSpec{TaskID: "t1", Image: "busybox"}},
		{"full", TaskSpec{
			TaskID:          "web-1",
			Image:           "docker.io/library/nginx:1.27",
			Command:         []string{"/bin/sh", "-c"},
			Args:            []string{"exec nginx", "-g", "daemon off;"},
			Env:             map[string]string{"A": "1", "B": "two words"},
			WorkingDir:      "/srv",
			User:            "1000:1000",
			Labels:          map[string]string{"warren.service": "web"},
			Limits:          Resources{NanoCPUs: 1_500_000_000, MemoryBytes: 256 << 20},
			Mounts:          []Mount{{Type: MountBind, Source: "/data", Target: "/data", ReadOnly: true}, {Type: MountTmpfs, Target: "/run/secrets"}},
			StopSignal:      "SIGQUIT",
			StopGracePeriod: 1500 * time.Millisecond,
			NetnsPath:       "/var/run/netns/web-1",
			Hostname:        "web-1",
		}},
		{"memory limit only", TaskSpec{TaskID: "t2", Image: "x", Limits: Resources{MemoryBytes: 1}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := specFromPB(specToPB(tc.spec)); !reflect.DeepEqual(got, tc.spec) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.spec)
			}
		})
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status TaskStatus
	}{
		{"zero", TaskStatus{}},
		{"created", TaskStatus{TaskID: "a", State: StateCreated}},
		{"running", TaskStatus{TaskID: "a", State: StateRunning, PID: 4242, StartedAt: t0}},
		{"exited", TaskStatus{TaskID: "a", State: StateExited, ExitCode: 137, OOMKilled: true, StartedAt: t0, FinishedAt: t1}},
		{"unknown", TaskStatus{TaskID: "a", State: StateUnknown, Error: "shim does not answer"}},
		{"negative exit code", TaskStatus{TaskID: "a", State: StateExited, ExitCode: -1, FinishedAt: t1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusFromPB(statusToPB(tc.status)); !reflect.DeepEqual(got, tc.status) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.status)
			}
		})
	}
}

func TestOtherRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   any
		trip func(any) any
	}{
		{"handle", TaskHandle{Version: 3, TaskID: "a", Runtime: "containerd", State: []byte{0, 1, 2}},
			func(v any) any { return handleFromPB(handleToPB(v.(TaskHandle))) }},
		{"empty handle", TaskHandle{},
			func(v any) any { return handleFromPB(handleToPB(v.(TaskHandle))) }},
		{"exit event", TaskEvent{TaskID: "a", Type: EventExited, ExitCode: 2, Time: t1, Message: "exited"},
			func(v any) any { return eventFromPB(eventToPB(v.(TaskEvent))) }},
		{"oom event", TaskEvent{TaskID: "a", Type: EventOOM, Time: t0},
			func(v any) any { return eventFromPB(eventToPB(v.(TaskEvent))) }},
		{"fingerprint", Fingerprint{NanoCPUs: 4e9, MemoryBytes: 8 << 30, OS: "linux", Arch: "arm64", RuntimeName: "containerd", RuntimeVersion: "2.0.4", Attributes: map[string]string{"containerd.snapshotter": "overlayfs"}},
			func(v any) any { return fingerprintFromPB(fingerprintToPB(v.(Fingerprint))) }},
		{"image", Image{Ref: "docker.io/library/busybox:1.36", Digest: "sha256:abc", Size: 4 << 20},
			func(v any) any { return imageFromPB(imageToPB(v.(Image))) }},
		{"image with health check", Image{Ref: "warren.test/health:1", Digest: "sha256:abc", HealthCheck: &ImageHealthCheck{
			Command: []string{"/bin/sh", "-c", "test -f /tmp/ok"}, Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: 3 * time.Second, Retries: 4}},
			func(v any) any { return imageFromPB(imageToPB(v.(Image))) }},
		{"duration", 1500 * time.Millisecond,
			func(v any) any { return durationFromPB(durationToPB(v.(time.Duration))) }},
		{"zero duration", time.Duration(0),
			func(v any) any { return durationFromPB(durationToPB(v.(time.Duration))) }},
		{"zero time", time.Time{},
			func(v any) any { return timeFromPB(timeToPB(v.(time.Time))) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.trip(tc.in); !reflect.DeepEqual(got, tc.in) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, tc.in)
			}
		})
	}
}

// TestEnumsMatchProtocol checks that the Go enums convert to the protocol's
// by value, as the glue assumes.
func TestEnumsMatchProtocol(t *testing.T) {
	for _, tc := range []struct {
		got  int32
		want int32
	}{
		{int32(StateCreated), int32(runtimev1.TaskStatus_STATE_CREATED)},
		{int32(StateRunning), int32(runtimev1.TaskStatus_STATE_RUNNING)},
		{int32(StateExited), int32(runtimev1.TaskStatus_STATE_EXITED)},
		{int32(StateUnknown), int32(runtimev1.TaskStatus_STATE_UNKNOWN)},
		{int32(EventStarted), int32(runtimev1.TaskEvent_TYPE_STARTED)},
		{int32(EventExited), int32(runtimev1.TaskEvent_TYPE_EXITED)},
		{int32(EventOOM), int32(runtimev1.TaskEvent_TYPE_OOM)},
		{int32(StreamStdout), int32(runtimev1.LogChunk_STREAM_STDOUT)},
		{int32(StreamStderr), int32(runtimev1.LogChunk_STREAM_STDERR)},
	} {
		if tc.got != tc.want {
			t.Errorf("Go value %d, protocol value %d", tc.got, tc.want)
		}
	}
}
