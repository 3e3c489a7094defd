package containerd

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/sdk/runtime"
)

func TestParseImageHealthcheck(t *testing.T) {
	tests := []struct {
		name    string
		blob    string
		want    *runtime.ImageHealthCheck
		wantErr string
	}{
		{name: "no healthcheck", blob: `{"config":{"Cmd":["sh"]}}`},
		{name: "no config", blob: `{}`},
		{name: "empty test inherits nothing", blob: `{"config":{"Healthcheck":{"Test":[]}}}`},
		{name: "none", blob: `{"config":{"Healthcheck":{"Test":["NONE"]}}}`},
		{name: "cmd-shell", blob: `{"config":{"Healthcheck":{"Test":["CMD-SHELL","test -f /tmp/ok"],"Interval":1000000000,"Timeout":2000000000,"StartPeriod":3000000000,"Retries":2}}}`,
			want: &runtime.ImageHealthCheck{Command: []string{"/bin/sh", "-c", "test -f /tmp/ok"}, Interval: time.Second, Timeout: 2 * time.Second, StartPeriod: 3 * time.Second, Retries: 2}},
		{name: "cmd with defaults", blob: `{"config":{"Healthcheck":{"Test":["CMD","/bin/check","-q"]}}}`,
			want: &runtime.ImageHealthCheck{Command: []string{"/bin/check", "-q"}}},
		{name: "cmd without command", blob: `{"config":{"Healthcheck":{"Test":["CMD"]}}}`, wantErr: `needs a command`},
		{name: "cmd-shell with two", blob: `{"config":{"Healthcheck":{"Test":["CMD-SHELL","a","b"]}}}`, wantErr: `needs one shell command`},
		{name: "unknown kind", blob: `{"config":{"Healthcheck":{"Test":["EXEC","x"]}}}`, wantErr: `unknown Test kind "EXEC"`},
		{name: "negative interval", blob: `{"config":{"Healthcheck":{"Test":["CMD","x"],"Interval":-1}}}`, wantErr: `negative`},
		{name: "not json", blob: `{`, wantErr: `image config`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseImageHealthcheck([]byte(tt.blob))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
