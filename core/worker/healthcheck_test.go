package worker

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/runtime"
)

// serverPort returns the port of a listener's 127.0.0.1 address.
func serverPort(t *testing.T, addr string) uint32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return uint32(n)
}

// closedPort returns a port of 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) uint32 {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := serverPort(t, l.Addr().String())
	l.Close()
	return p
}

func TestRunChecks(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte("fine"))
	}))
	defer ok.Close()
	okPort := serverPort(t, ok.Listener.Addr().String())
	closed := closedPort(t)
	ms := func(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * time.Millisecond) }

	tests := []struct {
		name  string
		check *apiv1.HealthCheck
		// want is the sequence of health states reported.
		want []apiv1.HealthState
		// output is in the last state's output.
		output string
	}{
		{"http passes", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_HTTP, Path: "/healthz", Port: okPort, Interval: ms(20)},
			[]apiv1.HealthState{healthStarting, healthHealthy}, "200 OK fine"},
		{"http 404 fails after retries", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_HTTP, Path: "/nope", Port: okPort, Interval: ms(20), Retries: 2},
			[]apiv1.HealthState{healthStarting, healthUnhealthy}, "404 Not Found"},
		{"tcp passes", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: okPort, Interval: ms(20)},
			[]apiv1.HealthState{healthStarting, healthHealthy}, "connected"},
		{"tcp to a closed port fails", &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: closed, Interval: ms(20), Retries: 1},
			[]apiv1.HealthState{healthStarting, healthUnhealthy}, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var got []healthResult
			done := make(chan struct{})
			go func() {
				defer close(done)
				runChecks(ctx, healthParamsOf(tt.check), "", time.Now(), func(r healthResult) {
					got = append(got, r)
					if len(got) == len(tt.want) {
						cancel()
					}
				})
			}()
			<-done
			if len(got) != len(tt.want) {
				t.Fatalf("reported %v, want states %v", got, tt.want)
			}
			for i, r := range got {
				if r.state != tt.want[i] {
					t.Fatalf("report %d: %v, want %v (all: %v)", i, r.state, tt.want[i], got)
				}
			}
			if out := got[len(got)-1].output; !strings.Contains(out, tt.output) {
				t.Fatalf("output %q, want it to contain %q", out, tt.output)
			}
		})
	}
}

// TestRunChecksStartPeriod: failures within the start period do not count,
// later ones do.
func TestRunChecksStartPeriod(t *testing.T) {
	closed := closedPort(t)
	p := healthParamsOf(&apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: closed, Interval: durationpb.New(20 * time.Millisecond),
		Retries: 1, StartPeriod: durationpb.New(400 * time.Millisecond)})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	var unhealthyAt time.Duration
	runChecks(ctx, p, "", start, func(r healthResult) {
		if r.state == healthUnhealthy {
			unhealthyAt = time.Since(start)
		}
	})
	if unhealthyAt < 400*time.Millisecond {
		t.Fatalf("unhealthy after %s, within the 400ms start period", unhealthyAt)
	}
}

// TestDialInNetns: a check in a task's namespace does not reach what listens
// on the worker's loopback.
func TestDialInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "ns")
	if err := createNetns(path); err != nil {
		t.Fatal(err)
	}
	defer deleteNetns(path)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialIn(ctx, "", l.Addr().String())
	if err != nil {
		t.Fatalf("dial in the worker's namespace: %v", err)
	}
	c.Close()
	if c, err := dialIn(ctx, path, l.Addr().String()); err == nil {
		c.Close()
		t.Fatal("a dial inside the new namespace reached the worker's loopback")
	}
	if _, err := dialIn(ctx, filepath.Join(dir, "missing"), l.Addr().String()); err == nil || !strings.Contains(err.Error(), "network namespace") {
		t.Fatalf("dial in a missing namespace: %v", err)
	}
}

// TestTailBuffer: a command check keeps only the end of its output.
func TestTailBuffer(t *testing.T) {
	tests := []struct {
		name   string
		writes []string
		want   string
	}{
		{"short", []string{"ab", "cd"}, "abcd"},
		{"cut to the last bytes", []string{"abc", "defg"}, "defg"},
		{"one long write", []string{"abcdefgh"}, "efgh"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &tailBuffer{max: 4}
			for _, w := range tt.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if got := b.String(); got != tt.want {
				t.Fatalf("kept %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTaskHealthCheck: a service's check replaces its image's; TYPE_NONE
// (--no-healthcheck) disables both; without either there is none; the
// image's becomes a command check with its settings, zero ones left to the
// defaults.
func TestTaskHealthCheck(t *testing.T) {
	tcp := &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80}
	img := &runtime.ImageHealthCheck{Command: []string{"/bin/sh", "-c", "test -f /tmp/ok"}, Interval: time.Second, Retries: 2}
	for _, tt := range []struct {
		name string
		spec *apiv1.ServiceSpec
		img  *runtime.ImageHealthCheck
		want *apiv1.HealthCheck
	}{
		{"none anywhere", &apiv1.ServiceSpec{}, nil, nil},
		{"the service's", &apiv1.ServiceSpec{HealthCheck: tcp}, nil, tcp},
		{"the service's replaces the image's", &apiv1.ServiceSpec{HealthCheck: tcp}, img, tcp},
		{"the image's", &apiv1.ServiceSpec{}, img, &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_CMD, Command: img.Command, Interval: durationpb.New(time.Second), Retries: 2}},
		{"the image's, all set", &apiv1.ServiceSpec{}, &runtime.ImageHealthCheck{Command: []string{"true"}, Interval: 1, Timeout: 2, StartPeriod: 3, Retries: 4},
			&apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_CMD, Command: []string{"true"}, Interval: durationpb.New(1), Timeout: durationpb.New(2), StartPeriod: durationpb.New(3), Retries: 4}},
		{"no-healthcheck disables the image's", &apiv1.ServiceSpec{HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}}, img, nil},
		{"an image's check without a command", &apiv1.ServiceSpec{}, &runtime.ImageHealthCheck{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := taskHealthCheck(tt.spec, tt.img); !proto.Equal(got, tt.want) {
				t.Fatalf("taskHealthCheck = %v, want %v", got, tt.want)
			}
		})
	}
}
