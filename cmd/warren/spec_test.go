package main

import (
	"slices"
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
		{
			name: "replicated job",
			args: "batch --image busybox --mode replicated-job --replicas 3 --max-concurrent 2 --restart-max-attempts 2",
			want: &apiv1.ServiceSpec{Name: "batch", Image: "busybox", Replicas: 3, Mode: apiv1.ServiceMode_SERVICE_MODE_REPLICATED_JOB, MaxConcurrent: 2,
				RestartPolicy: &apiv1.RestartPolicy{MaxAttempts: 2}},
		},
		{
			name: "global job",
			args: "prep --image busybox --mode global-job --restart-condition none",
			want: &apiv1.ServiceSpec{Name: "prep", Image: "busybox", Mode: apiv1.ServiceMode_SERVICE_MODE_GLOBAL_JOB,
				RestartPolicy: &apiv1.RestartPolicy{Condition: apiv1.RestartPolicy_CONDITION_NONE}},
		},
		{name: "max-concurrent without a job", args: "w --image busybox --max-concurrent 2", wantErr: "--max-concurrent is for --mode replicated-job"},
		{name: "max-concurrent with global", args: "w --image busybox --mode global --max-concurrent 2", wantErr: "--max-concurrent is for --mode replicated-job"},
		{name: "max-concurrent with global-job", args: "w --image busybox --mode global-job --max-concurrent 2", wantErr: "--max-concurrent cannot be used with --mode global-job"},
		{name: "replicas with global-job", args: "w --image busybox --mode global-job --replicas 2", wantErr: "--replicas cannot be used with --mode global-job"},
		{name: "update flag with a job", args: "w --image busybox --mode replicated-job --update-parallelism 1", wantErr: "--update-parallelism cannot be used with --mode replicated-job"},
		{name: "rollback flag with a job", args: "w --image busybox --mode global-job --rollback-order start-first", wantErr: "--rollback-order cannot be used with --mode global-job"},
		{name: "restart any with a job", args: "w --image busybox --mode replicated-job --restart-condition any", wantErr: "--restart-condition any cannot be used with --mode replicated-job"},
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
			Mounts:      []*apiv1.Mount{{Type: "volume", Source: "data", Target: "/data"}},
			Secrets:     []*apiv1.FileReference{{Name: "old", Target: "/etc/old", Revision: 3}},
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
		{name: "max concurrent", args: "--max-concurrent 2", want: func(s *apiv1.ServiceSpec) { s.MaxConcurrent = 2 }},
		{name: "env add and change", args: "--env-add C=3 --env-add A=10", want: func(s *apiv1.ServiceSpec) {
			s.Env = map[string]string{"A": "10", "B": "2", "C": "3"}
		}},
		{name: "env remove all", args: "--env-rm A --env-rm B", want: func(s *apiv1.ServiceSpec) { s.Env = nil }},
		{name: "env-rm of a missing variable", args: "--env-rm A --env-rm missing", wantErr: `invalid --env-rm "missing": service "web" has no environment variable "missing"`},
		{name: "env add and rm of one key", args: "--env-rm A --env-add A=new", wantErr: `--env-add and --env-rm both name "A": give only one`},
		{name: "label-rm of a missing label", args: "--label-rm nope", wantErr: `service "web" has no label "nope"`},
		{name: "label add and rm of one key", args: "--label-add team=x --label-rm team", wantErr: `--label-add and --label-rm both name "team"`},
		{name: "labels", args: "--label-add tier=front --label-rm team", want: func(s *apiv1.ServiceSpec) {
			s.Labels = map[string]string{"tier": "front"}
		}},
		{name: "command", args: `--command "/bin/sh -c"`, want: func(s *apiv1.ServiceSpec) { s.Command = []string{"/bin/sh", "-c"} }},
		{name: "command back to the image's", args: "--command=", want: func(s *apiv1.ServiceSpec) { s.Command = nil }},
		{name: "command and args", args: `--command sh --args "-c 'sleep 1'"`, want: func(s *apiv1.ServiceSpec) {
			s.Command, s.Args = []string{"sh"}, []string{"-c", "sleep 1"}
		}},
		{name: "bad command", args: `--command "'x"`, wantErr: `invalid --command "'x": a ' quote is not closed`},
		{name: "mode", args: "--mode global", wantErr: "--mode cannot be used on update: a service's mode is set when it is created"},
		{name: "mount add", args: "--mount-add type=tmpfs,target=/cache,tmpfs-size=1MiB", want: func(s *apiv1.ServiceSpec) {
			s.Mounts = append(s.Mounts, &apiv1.Mount{Type: "tmpfs", Target: "/cache", TmpfsSizeBytes: 1 << 20})
		}},
		{name: "mount add replaces the same target", args: "--mount-add type=bind,source=/srv,target=/data,ro", want: func(s *apiv1.ServiceSpec) {
			s.Mounts = []*apiv1.Mount{{Type: "bind", Source: "/srv", Target: "/data", ReadOnly: true}}
		}},
		{name: "mount rm", args: "--mount-rm /data", want: func(s *apiv1.ServiceSpec) { s.Mounts = nil }},
		{name: "mount rm of a missing target", args: "--mount-rm /nope", wantErr: `invalid --mount-rm "/nope": service "web" has no mount at "/nope"`},
		{name: "mount add and rm of one target", args: "--mount-add type=tmpfs,target=/data --mount-rm /data", wantErr: `--mount-add and --mount-rm both name "/data"`},
		{name: "mount added twice", args: "--mount-add type=tmpfs,target=/x --mount-add type=tmpfs,target=/x", wantErr: `invalid --mount-add: "/x" is given twice`},
		{name: "bad mount", args: "--mount-add type=nfs,target=/x", wantErr: `invalid --mount-add "type=nfs,target=/x": type "nfs" is not bind, volume or tmpfs`},
		{name: "secret add and rm", args: "--secret-add source=pw,target=/etc/pw,mode=0400 --secret-rm old", want: func(s *apiv1.ServiceSpec) {
			s.Secrets = []*apiv1.FileReference{{Name: "pw", Target: "/etc/pw", Mode: 0o400}}
		}},
		{name: "secret add replaces the same secret", args: "--secret-add old", want: func(s *apiv1.ServiceSpec) {
			s.Secrets = []*apiv1.FileReference{{Name: "old"}}
		}},
		{name: "secret rm of a missing secret", args: "--secret-rm pw", wantErr: `invalid --secret-rm "pw": service "web" has no secret "pw"`},
		{name: "bad secret", args: "--secret-add source=pw,mode=rw", wantErr: `invalid --secret-add "source=pw,mode=rw": mode="rw" is not a number`},
		{name: "config add", args: "--config-add src=conf,target=/etc/app.conf", want: func(s *apiv1.ServiceSpec) {
			s.Configs = []*apiv1.FileReference{{Name: "conf", Target: "/etc/app.conf"}}
		}},
		{name: "config rm of a missing config", args: "--config-rm conf", wantErr: `service "web" has no config "conf"`},
		{name: "config add and rm", args: "--config-add src=conf,target=/x --config-rm conf", wantErr: `--config-add and --config-rm both name "conf"`},
		{name: "publish rm of a missing port", args: "--publish-rm 8080", wantErr: `invalid --publish-rm "8080/tcp": service "web" has no published port "8080/tcp"`},
		{name: "publish add and rm", args: "--publish-add 8080:80 --publish-rm 8080", wantErr: `--publish-add and --publish-rm both name "8080/tcp"`},
		{name: "constraint rm of a missing one", args: "--constraint-rm node.labels.zone==b", wantErr: `service "web" has no constraint "node.labels.zone==b"`},
		{name: "constraint add and rm", args: "--constraint-add node.labels.zone==a --constraint-rm node.labels.zone==a", wantErr: "--constraint-add and --constraint-rm both name"},
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
		{name: "force", args: "--force", want: func(s *apiv1.ServiceSpec) { s.ForceUpdate++ }},
		{name: "update policy only", args: "--update-failure-action rollback --update-monitor 10s", want: func(s *apiv1.ServiceSpec) {
			s.UpdatePolicy = &apiv1.UpdatePolicy{FailureAction: apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK, Monitor: durationpb.New(10 * time.Second)}
		}},
		{name: "negative restart delay", args: "--restart-delay -1s", wantErr: "invalid --restart-delay -1s: cannot be negative"},
		{name: "negative grace period", args: "--stop-grace-period -1s", wantErr: "invalid --stop-grace-period -1s: cannot be negative"},
		{name: "restart delay alone", args: "--restart-delay 2s", want: func(s *apiv1.ServiceSpec) {
			s.RestartPolicy = &apiv1.RestartPolicy{Delay: durationpb.New(2 * time.Second)}
		}},
		{name: "bad constraint-add", args: "--constraint-add zone=b", wantErr: `invalid --constraint "zone=b"`},
		{name: "bad failure ratio", args: "--update-max-failure-ratio 2", wantErr: "must be between 0 and 1"},
		{name: "no-healthcheck disables the image's", args: "--no-healthcheck", want: func(s *apiv1.ServiceSpec) {
			s.HealthCheck = &apiv1.HealthCheck{Type: apiv1.HealthCheck_TYPE_NONE}
		}},
		{name: "no-healthcheck with a check", args: "--no-healthcheck --health-cmd true", wantErr: "--no-healthcheck cannot be combined"},
		{name: "nothing", args: "", wantErr: "nothing to update: give at least one flag that changes the service"},
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

// notUpdatable are the flags of `service create` with no counterpart on
// `service update`, each with the reason. Every other create flag must
// have one: the same flag for a setting, --X-add and --X-rm for a list.
var notUpdatable = map[string]string{
	// A service's mode is set when it is created; update refuses --mode.
	"mode": "the mode cannot change",
}

// TestUpdateTakesEveryCreateFlag walks create's flags: each settable one
// has its update counterpart (same name and value type for a setting,
// --X-add and --X-rm for a repeatable list), or is listed in notUpdatable.
// The container command, create's positional COMMAND [ARG...] after "--",
// is update's --command and --args (checked below too).
func TestUpdateTakesEveryCreateFlag(t *testing.T) {
	create := newServiceCreateCmd(&globalOptions{}).Flags()
	update := newServiceUpdateCmd(&globalOptions{}).Flags()
	lists := 0
	create.VisitAll(func(cf *pflag.Flag) {
		if reason, ok := notUpdatable[cf.Name]; ok {
			if update.Lookup(cf.Name) != nil && !update.Lookup(cf.Name).Hidden {
				t.Errorf("--%s is listed as not updatable (%s) but update offers it", cf.Name, reason)
			}
			return
		}
		if uf := update.Lookup(cf.Name); uf != nil {
			if uf.Value.Type() != cf.Value.Type() {
				t.Errorf("--%s is a %s on create but a %s on update: they should share the parser", cf.Name, cf.Value.Type(), uf.Value.Type())
			}
			if cf.Value.Type() == "stringArray" {
				t.Errorf("--%s is a list: update should take --%[1]s-add and --%[1]s-rm, not the create flag", cf.Name)
			}
			return
		}
		add, rm := update.Lookup(cf.Name+"-add"), update.Lookup(cf.Name+"-rm")
		if cf.Value.Type() != "stringArray" || add == nil || rm == nil {
			t.Errorf("create's --%s has no counterpart on update (neither --%[1]s nor --%[1]s-add/--%[1]s-rm); add one or list it in notUpdatable with the reason", cf.Name)
			return
		}
		if add.Value.Type() != "stringArray" || rm.Value.Type() != "stringArray" {
			t.Errorf("--%s-add and --%[1]s-rm should be repeatable", cf.Name)
		}
		lists++
	})
	for _, n := range []string{"command", "args"} {
		if update.Lookup(n) == nil {
			t.Errorf("update has no --%s for create's positional command", n)
		}
	}
	if lists < 7 { // env, label, constraint, publish, mount, secret, config
		t.Errorf("only %d list flags found: the walk does not see create's flags", lists)
	}
	for _, n := range updateFlags {
		if update.Lookup(n) == nil {
			t.Errorf("updateFlags names --%s, which update does not have", n)
		}
	}
	update.VisitAll(func(uf *pflag.Flag) {
		if !slices.Contains(updateFlags, uf.Name) && !slices.Contains([]string{"mode", "detach", "quiet", "timeout-converge", "help"}, uf.Name) {
			t.Errorf("update's --%s is not in updateFlags: alone it would be refused as changing nothing", uf.Name)
		}
	})
}
