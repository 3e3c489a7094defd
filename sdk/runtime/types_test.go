package runtime

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk"
)

func TestValidateTaskID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"a", true},
		{"web-1", true},
		{"svc.web_1-abc", true},
		{"A9", true},
		{strings.Repeat("a", MaxTaskIDLen), true},
		{"", false},
		{strings.Repeat("a", MaxTaskIDLen+1), false},
		{"-a", false},
		{"a-", false},
		{"a--b", false},
		{"a/b", false},
		{"a b", false},
		{"ä", false},
	} {
		err := ValidateTaskID(tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateTaskID(%q) = %v, want ok %v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("ValidateTaskID(%q) = %v, want ErrInvalidArgument", tc.id, err)
		}
	}
}

func TestSpecValidate(t *testing.T) {
	valid := TaskSpec{TaskID: "t", Image: "busybox"}
	for _, tc := range []struct {
		name   string
		modify func(*TaskSpec)
		ok     bool
	}{
		{"minimal", func(*TaskSpec) {}, true},
		{"mounts", func(s *TaskSpec) {
			s.Mounts = []Mount{{Type: MountBind, Source: "/a", Target: "/b"}, {Type: MountTmpfs, Target: "/c"}}
		}, true},
		{"signal", func(s *TaskSpec) { s.StopSignal = "SIGRTMIN+3" }, true},
		{"bad ID", func(s *TaskSpec) { s.TaskID = "a/b" }, false},
		{"no image", func(s *TaskSpec) { s.Image = "" }, false},
		{"env name with =", func(s *TaskSpec) { s.Env = map[string]string{"A=B": "c"} }, false},
		{"empty env name", func(s *TaskSpec) { s.Env = map[string]string{"": "c"} }, false},
		{"negative memory", func(s *TaskSpec) { s.Limits.MemoryBytes = -1 }, false},
		{"unknown mount type", func(s *TaskSpec) { s.Mounts = []Mount{{Type: "nfs", Target: "/a"}} }, false},
		{"relative bind source", func(s *TaskSpec) { s.Mounts = []Mount{{Type: MountBind, Source: "a", Target: "/a"}} }, false},
		{"relative target", func(s *TaskSpec) { s.Mounts = []Mount{{Type: MountTmpfs, Target: "a"}} }, false},
		{"signal without SIG", func(s *TaskSpec) { s.StopSignal = "TERM" }, false},
		{"negative grace", func(s *TaskSpec) { s.StopGracePeriod = -time.Second }, false},
		{"relative netns", func(s *TaskSpec) { s.NetnsPath = "netns/a" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := valid
			tc.modify(&s)
			err := s.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if err != nil && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("Validate() = %v, want ErrInvalidArgument", err)
			}
		})
	}
}
