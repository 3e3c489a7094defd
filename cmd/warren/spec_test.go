package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func TestCreateSpec(t *testing.T) {
	tests := []struct {
		name    string
		args    string
		want    *apiv1.ServiceSpec
		wantErr string
	}{
		{
			name: "minimal",
			args: "web --image nginx",
			want: &apiv1.ServiceSpec{Name: "web", Image: "nginx", Replicas: 1},
		},
		{
			name: "everything",
			args: "api --image reg/api:2 --replicas 3 --env A=1 -e B= --label team=edge -l tier=back " +
				"--constraint node.labels.zone==edge-1 --constraint node.platform.arch!=arm64 " +
				"--cpus 1.5 --memory 512MiB --reserve-cpus .25 --reserve-memory 1g " +
				"--workdir /srv -u 1000:1000 --restart-condition on-failure --restart-delay 5s " +
				"--restart-max-attempts 4 --stop-signal quit --stop-grace-period 1m " +
				"--update-parallelism 2 --update-order start-first --detach -- /bin/api serve --port 80",
			want: &apiv1.ServiceSpec{
				Name:        "api",
				Image:       "reg/api:2",
				Command:     []string{"/bin/api"},
				Args:        []string{"serve", "--port", "80"},
				Env:         map[string]string{"A": "1", "B": ""},
				Labels:      map[string]string{"team": "edge", "tier": "back"},
				Replicas:    3,
				Constraints: []string{"node.labels.zone==edge-1", "node.platform.arch!=arm64"},
				WorkingDir:  "/srv",
				User:        "1000:1000",
				Limits:      &apiv1.Resources{NanoCpus: 1_500_000_000, MemoryBytes: 512 << 20},
				Reservations: &apiv1.Resources{
					NanoCpus: 250_000_000, MemoryBytes: 1 << 30,
				},
				RestartPolicy: &apiv1.RestartPolicy{
					Condition:   apiv1.RestartPolicy_CONDITION_ON_FAILURE,
					Delay:       durationpb.New(5 * time.Second),
					MaxAttempts: 4,
				},
				UpdatePolicy: &apiv1.UpdatePolicy{
					Parallelism: 2,
					Order:       apiv1.UpdatePolicy_ORDER_START_FIRST,
				},
				StopSignal:      "SIGQUIT",
				StopGracePeriod: durationpb.New(time.Minute),
			},
		},
		{
			name: "command without args",
			args: "sleeper --image busybox -- sleep",
			want: &apiv1.ServiceSpec{Name: "sleeper", Image: "busybox", Replicas: 1, Command: []string{"sleep"}},
		},
		{
			name: "zero replicas and zero limits",
			args: "idle --image busybox --replicas 0 --cpus 0 --memory 0",
			want: &apiv1.ServiceSpec{Name: "idle", Image: "busybox"},
		},
		{
			name: "only a memory limit",
			args: "m --image busybox --memory 100M",
			want: &apiv1.ServiceSpec{Name: "m", Image: "busybox", Replicas: 1, Limits: &apiv1.Resources{MemoryBytes: 100 << 20}},
		},
		{
			name: "restart condition alone",
			args: "r --image busybox --restart-condition none",
			want: &apiv1.ServiceSpec{Name: "r", Image: "busybox", Replicas: 1,
				RestartPolicy: &apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_NONE}},
		},
		{
			name: "update order alone",
			args: "u --image busybox --update-order stop-first",
			want: &apiv1.ServiceSpec{Name: "u", Image: "busybox", Replicas: 1,
				UpdatePolicy: &apiv1.UpdatePolicy{Order: apiv1.UpdatePolicy_ORDER_STOP_FIRST}},
		},
		{
			name: "network",
			args: "n --image busybox --network host",
			want: &apiv1.ServiceSpec{Name: "n", Image: "busybox", Replicas: 1, NetworkMode: apiv1.NetworkMode_NETWORK_MODE_HOST},
		},
		{
			name: "http health check",
			args: "h --image busybox --health-http /healthz:8080 --health-interval 2s --health-timeout 1s --health-retries 5 --health-start-period 10s",
			want: &apiv1.ServiceSpec{Name: "h", Image: "busybox", Replicas: 1, HealthCheck: &apiv1.HealthCheck{
				Type: apiv1.HealthCheck_TYPE_HTTP, Path: "/healthz", Port: 8080, Interval: durationpb.New(2 * time.Second),
				Timeout: durationpb.New(time.Second), Retries: 5, StartPeriod: durationpb.New(10 * time.Second)}},
		},
		{
			name: "tcp health check",
			args: "h --image busybox --health-tcp 6379",
			want: &apiv1.ServiceSpec{Name: "h", Image: "busybox", Replicas: 1, HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 6379}},
		},
		{
			name: "http health check without a port",
			args: "h --image busybox --health-http /",
			want: &apiv1.ServiceSpec{Name: "h", Image: "busybox", Replicas: 1, HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_HTTP, Path: "/"}},
		},
		{
			name: "command health check runs under sh -c",
			args: "h --image busybox --health-cmd true",
			want: &apiv1.ServiceSpec{Name: "h", Image: "busybox", Replicas: 1, HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_CMD, Command: []string{"/bin/sh", "-c", "true"}}},
		},
		{name: "no-healthcheck on create disables the image's too", args: "h --image busybox --no-healthcheck",
			want: &apiv1.ServiceSpec{Name: "h", Image: "busybox", Replicas: 1, HealthCheck: &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}}},
		{name: "no-healthcheck with a setting", args: "h --image busybox --no-healthcheck --health-interval 5s", wantErr: "--no-healthcheck cannot be combined"},
		{name: "two health checks", args: "h --image busybox --health-http / --health-tcp 80", wantErr: "give one of --health-http, --health-tcp and --health-cmd"},
		{name: "health path without slash", args: "h --image busybox --health-http healthz", wantErr: `the path must start with "/"`},
		{name: "health port out of range", args: "h --image busybox --health-http /:70000", wantErr: "the port after ':' must be 1-65535"},
		{name: "health tcp port zero", args: "h --image busybox --health-tcp 0", wantErr: "invalid --health-tcp 0"},
		{name: "zero health interval", args: "h --image busybox --health-tcp 80 --health-interval 0s", wantErr: "invalid --health-interval 0s: must be positive"},
		{name: "negative health timeout", args: "h --image busybox --health-tcp 80 --health-timeout -1s", wantErr: "invalid --health-timeout -1s: must be positive"},
		{name: "zero health retries", args: "h --image busybox --health-tcp 80 --health-retries 0", wantErr: "invalid --health-retries 0"},
		{name: "health settings without a check", args: "h --image busybox --health-interval 5s", wantErr: "need a check"},
		{name: "no-healthcheck with a check", args: "h --image busybox --no-healthcheck --health-tcp 80", wantErr: "--no-healthcheck cannot be combined"},
		{name: "bad network", args: "web --image nginx --network bridge", wantErr: "use overlay, host or none"},
		{name: "no image", args: "web", wantErr: "--image is required"},
		{name: "no name", args: "--image nginx", wantErr: "needs a service NAME"},
		{name: "no name before dash", args: "--image nginx -- sh", wantErr: "needs a service NAME"},
		{name: "command without dash", args: "web --image nginx nginx daemon", wantErr: `unexpected argument "nginx": the container command goes after --`},
		{name: "empty command", args: "web --image nginx --", wantErr: "nothing after --"},
		{name: "bad env", args: "web --image nginx --env A", wantErr: `invalid --env "A": expected KEY=VALUE`},
		{name: "empty env key", args: "web --image nginx --env =1", wantErr: "the key before '=' is empty"},
		{name: "bad label", args: "web --image nginx --label team", wantErr: `invalid --label "team"`},
		{name: "bad constraint", args: "web --image nginx --constraint zone=edge", wantErr: `invalid --constraint "zone=edge"`},
		{name: "negative delay", args: "web --image nginx --restart-delay -5s", wantErr: "--restart-delay -5s: cannot be negative"},
		{name: "negative grace", args: "web --image nginx --stop-grace-period -1s", wantErr: "--stop-grace-period -1s: cannot be negative"},
		{name: "bad signal", args: "web --image nginx --stop-signal SIGNOPE", wantErr: `invalid --stop-signal "SIGNOPE": not a signal name`},
		{name: "negative replicas", args: "web --image nginx --replicas -1", wantErr: `invalid argument "-1" for "--replicas" flag: cannot be negative`},
		{name: "bad size", args: "web --image nginx --memory lots", wantErr: `invalid argument "lots" for "--memory" flag: not a size`},
		{name: "negative size", args: "web --image nginx --reserve-memory -1", wantErr: "cannot be negative"},
		{name: "bad cpus", args: "web --image nginx --cpus 1,5", wantErr: `invalid argument "1,5" for "--cpus" flag: not a number of CPUs`},
		{name: "bad restart condition", args: "web --image nginx --restart-condition always", wantErr: "use any, on-failure or none"},
		{name: "bad update order", args: "web --image nginx --update-order random", wantErr: "use stop-first or start-first"},
		{name: "bad duration", args: "web --image nginx --restart-delay 5", wantErr: `invalid argument "5" for "--restart-delay" flag`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := createSpecFromArgs(strings.Fields(tt.args))
			if !errMatches(err, tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if err == nil && !proto.Equal(spec, tt.want) {
				t.Errorf("spec =\n%s\nwant\n%s", protojson.Format(spec), protojson.Format(tt.want))
			}
		})
	}
}

// createSpecFromArgs parses args with create's flags and builds the spec as
// create does.
func createSpecFromArgs(args []string) (*apiv1.ServiceSpec, error) {
	o := &serviceCreateOptions{}
	fs := pflag.NewFlagSet("create", pflag.ContinueOnError)
	fs.SetOutput(discard{})
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	name, command, err := createArgs("warren service create", fs.Args(), fs.ArgsLenAtDash())
	if err != nil {
		return nil, err
	}
	return o.spec(fs, name, command)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestServiceChanges(t *testing.T) {
	base := func() *apiv1.ServiceSpec {
		return &apiv1.ServiceSpec{
			Name: "web", Image: "nginx:1", Replicas: 2,
			Command: []string{"nginx"}, Args: []string{"-g", "daemon off;"},
			Env:         map[string]string{"A": "1", "B": "2"},
			Labels:      map[string]string{"team": "edge"},
			Constraints: []string{"node.labels.zone==a"},
		}
	}
	tests := []struct {
		name    string
		args    string
		want    func(*apiv1.ServiceSpec)
		wantErr string
	}{
		{name: "image", args: "--image nginx:2", want: func(s *apiv1.ServiceSpec) { s.Image = "nginx:2" }},
		{name: "replicas to zero", args: "--replicas 0", want: func(s *apiv1.ServiceSpec) { s.Replicas = 0 }},
		{name: "env add and change", args: "--env-add C=3 --env-add A=10", want: func(s *apiv1.ServiceSpec) {
			s.Env = map[string]string{"A": "10", "B": "2", "C": "3"}
		}},
		{name: "env remove all", args: "--env-rm A --env-rm B --env-rm missing", want: func(s *apiv1.ServiceSpec) { s.Env = nil }},
		{name: "remove then add", args: "--env-rm A --env-add A=new", want: func(s *apiv1.ServiceSpec) {
			s.Env = map[string]string{"A": "new", "B": "2"}
		}},
		{name: "labels", args: "--label-add tier=front --label-rm team", want: func(s *apiv1.ServiceSpec) {
			s.Labels = map[string]string{"tier": "front"}
		}},
		{name: "args", args: `--args "-g 'daemon on;'"`, want: func(s *apiv1.ServiceSpec) { s.Args = []string{"-g", "daemon on;"} }},
		{name: "clear args", args: "--args=", want: func(s *apiv1.ServiceSpec) { s.Args = nil }},
		{name: "network", args: "--network overlay", want: func(s *apiv1.ServiceSpec) { s.NetworkMode = apiv1.NetworkMode_NETWORK_MODE_OVERLAY }},
		{name: "add a health check", args: "--health-tcp 80 --health-interval 1s", want: func(s *apiv1.ServiceSpec) {
			s.HealthCheck = &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_TCP, Port: 80, Interval: durationpb.New(time.Second)}
		}},
		{name: "health settings need a check", args: "--health-retries 2", wantErr: "need a check"},
		{name: "constraints add and rm", args: "--constraint-add node.labels.zone==b --constraint-rm node.labels.zone==a", want: func(s *apiv1.ServiceSpec) {
			s.Constraints = []string{"node.labels.zone==b"}
		}},
		{name: "workdir user stop", args: "--workdir /srv --user 1000 --stop-signal quit --stop-grace-period 3s", want: func(s *apiv1.ServiceSpec) {
			s.WorkingDir, s.User, s.StopSignal, s.StopGracePeriod = "/srv", "1000", "SIGQUIT", durationpb.New(3*time.Second)
		}},
		{name: "limits and reservations", args: "--cpus 0.5 --memory 64MiB --reserve-memory 32MiB", want: func(s *apiv1.ServiceSpec) {
			s.Limits = &apiv1.Resources{NanoCpus: 500_000_000, MemoryBytes: 64 << 20}
			s.Reservations = &apiv1.Resources{MemoryBytes: 32 << 20}
		}},
		{name: "restart policy", args: "--restart-condition on-failure --restart-max-attempts 2", want: func(s *apiv1.ServiceSpec) {
			s.RestartPolicy = &apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_ON_FAILURE, MaxAttempts: 2}
		}},
		{name: "update policy only", args: "--update-failure-action rollback --update-monitor 10s", want: func(s *apiv1.ServiceSpec) {
			s.UpdatePolicy = &apiv1.UpdatePolicy{FailureAction: apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK, Monitor: durationpb.New(10 * time.Second)}
		}},
		{name: "bad constraint-add", args: "--constraint-add zone=b", wantErr: `invalid --constraint "zone=b"`},
		{name: "bad failure ratio", args: "--update-max-failure-ratio 2", wantErr: "must be between 0 and 1"},
		{name: "no-healthcheck disables the image's", args: "--no-healthcheck", want: func(s *apiv1.ServiceSpec) {
			s.HealthCheck = &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}
		}},
		{name: "no-healthcheck with a check", args: "--no-healthcheck --health-cmd true", wantErr: "--no-healthcheck cannot be combined"},
		{name: "nothing", args: "", wantErr: "nothing to update: give at least one of --image, --replicas, --env-add, --env-rm, --label-add, --label-rm, --args, --network, --publish-add, --publish-rm, --health-http"},
		{name: "empty image", args: "--image=", wantErr: "--image cannot be empty"},
		{name: "bad env", args: "--env-add A", wantErr: `invalid --env-add "A": expected KEY=VALUE`},
		{name: "bad label", args: "--label-add =x", wantErr: `invalid --label-add "=x"`},
		{name: "empty env-rm", args: "--env-rm=", wantErr: "invalid --env-rm: the KEY is empty"},
		{name: "bad args", args: `--args "'x"`, wantErr: "quote is not closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &serviceUpdateOptions{}
			fs := pflag.NewFlagSet("update", pflag.ContinueOnError)
			o.addFlags(fs)
			args, err := splitWords(tt.args)
			if err != nil {
				t.Fatal(err)
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			got, want := base(), base()
			ch, err := o.changes(fs)
			if err == nil {
				err = ch.apply(got)
			}
			if !errMatches(err, tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			tt.want(want)
			if !proto.Equal(got, want) {
				t.Errorf("spec =\n%s\nwant\n%s", protojson.Format(got), protojson.Format(want))
			}
		})
	}
}
