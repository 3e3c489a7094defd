package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// ctr is a service's task and its container's process, looked at from the
// host through /proc (the test runs as root beside the agent).
type ctr struct {
	service string
	task    *apiv1.Task
	pid     uint32
}

// proc is the path of name under the container process's /proc entry.
func (c ctr) proc(name string) string { return fmt.Sprintf("/proc/%d/%s", c.pid, name) }

// file reads path inside the container (through /proc/PID/root).
func (c ctr) file(path string) (string, error) {
	b, err := os.ReadFile(c.proc("root") + path)
	return string(b), err
}

// argv is the container process's command line.
func (c ctr) argv() ([]string, error) {
	b, err := os.ReadFile(c.proc("cmdline"))
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), err
}

// environ is the container process's environment.
func (c ctr) environ() ([]string, error) {
	b, err := os.ReadFile(c.proc("environ"))
	return strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00"), err
}

// cgroup reads file of the container's cgroup of controller (cgroup v1),
// or of its unified cgroup (v2, where controller is not in the list).
func (c ctr) cgroup(controller, file string) (string, error) {
	f, err := os.Open(c.proc("cgroup"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	path := ""
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[1] == "" {
			path = filepath.Join("/sys/fs/cgroup", parts[2], file)
		}
		if slices.Contains(strings.Split(parts[1], ","), controller) {
			path = filepath.Join("/sys/fs/cgroup", parts[1], parts[2], file)
			break
		}
	}
	b, err := os.ReadFile(path)
	return strings.TrimSpace(string(b)), err
}

// forTest is n for a subtest: its failures end t.
func (n *node) forTest(t *testing.T) *node {
	c := *n
	c.t = t
	return &c
}

// only waits until the service runs exactly one task, other than the task
// old ("" for any), whose container runs, and returns it.
func (n *node) only(service, old string) ctr {
	n.t.Helper()
	var c ctr
	n.waitTasks(service, "one running task other than "+old, func([]*apiv1.Task) bool {
		ids := n.runningTasks(service)
		if len(ids) != 1 || ids[0] == old {
			return false
		}
		pid, ok := n.running()[ids[0]]
		if !ok {
			return false
		}
		for _, tk := range n.tasks(service, false) {
			if tk.GetId() == ids[0] {
				c = ctr{service: service, task: tk, pid: pid}
				return true
			}
		}
		return false
	})
	return c
}

// updateStep is one `service update` of a row and what it must do.
type updateStep struct {
	args []string
	// keep: the update replaces no task (the old one keeps running, in the
	// same container process).
	keep bool
	// check looks at the task the update left running (the new one, or the
	// old one with keep) and says what is not as wanted yet; it is polled
	// until it returns nil.
	check func(n *node, c ctr) error
}

// want is an error saying what was wanted and what was found, or nil
// when ok.
func want(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf(format, args...)
}

// TestUpdateEveryField: each setting `service update` takes reaches the
// container it replaces the task with (read from the host in /proc, the
// cgroup and containerd), or, for the settings that only the cluster
// reads (replicas, restart, update and rollback policy), changes the spec
// and leaves the task running as it was. One service of one replica per
// row, the rows in parallel on one node. Bad input (an --X-rm of
// something the service lacks, an add and a rm of one key, --mode, values
// create would refuse) is refused, the service's version and task
// unchanged.
func TestUpdateEveryField(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	unmountFiles(t, n)
	ctx := context.Background()
	secret, config := "pw-"+strconv.FormatInt(time.Now().UnixNano(), 36), "listen 8080;\n"
	if _, err := n.c.CreateSecret(ctx, &apiv1.CreateSecretRequest{Name: "pw", Data: []byte(secret)}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.c.CreateConfig(ctx, &apiv1.CreateConfigRequest{Name: "app-conf", Data: []byte(config)}); err != nil {
		t.Fatal(err)
	}
	bindDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(bindDir, "f"), []byte("from-the-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostNet, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	gone := func(c ctr, path string) error {
		_, err := c.file(path)
		return want(errors.Is(err, os.ErrNotExist), "%s in the container: %v, want it gone", path, err)
	}
	sameFile := func(c ctr, path, content string) error {
		got, err := c.file(path)
		return want(err == nil && got == content, "%s in the container: %q, %v; want %q", path, got, err, content)
	}
	sleeper := []string{"--", "sleep", "3600"}
	shell := []string{"--", "sh", "-c", "sleep 3600; :"} // sh stays PID 1
	// The stop row's process says which signal it got in a file of its
	// own, then outlives the signal until the grace period ends.
	trapper := []string{"--", "sh", "-c", `trap 'touch /tmp/got-TERM; exit 0' TERM; trap 'touch /tmp/got-USR1; sleep 60' USR1; while :; do sleep 0.1; done`}
	stopped := false // the stop row has scaled its service to 0

	rows := []struct {
		name   string
		create []string
		steps  []updateStep
	}{
		{"env", append([]string{"--env", "OLD=1"}, sleeper...), []updateStep{{
			args: []string{"--env-add", "NEW=two words", "--env-rm", "OLD"},
			check: func(n *node, c ctr) error {
				env, err := c.environ()
				return want(err == nil && slices.Contains(env, "NEW=two words") && !slices.Contains(env, "OLD=1"), "environment %q (%v), want NEW and not OLD", env, err)
			}}}},
		{"labels", append([]string{"--label", "team=a"}, sleeper...), []updateStep{{
			args: []string{"--label-add", "tier=front", "--label-rm", "team"},
			check: func(n *node, c ctr) error {
				info, err := n.ctd.ContainerService().Get(n.cctx, c.task.GetId())
				return want(err == nil && info.Labels["tier"] == "front" && info.Labels["team"] == "", "container labels %v (%v), want tier=front and no team", info.Labels, err)
			}}}},
		{"user", sleeper, []updateStep{{
			args: []string{"--user", "1234:5678"},
			check: func(n *node, c ctr) error {
				status, err := os.ReadFile(c.proc("status"))
				return want(err == nil && bytes.Contains(status, []byte("\nUid:\t1234\t")) && bytes.Contains(status, []byte("\nGid:\t5678\t")),
					"process status lacks uid 1234 gid 5678 (%v):\n%s", err, status)
			}}}},
		{"workdir", sleeper, []updateStep{{
			args: []string{"--workdir", "/tmp"},
			check: func(n *node, c ctr) error {
				cwd, err1 := os.Stat(c.proc("cwd"))
				tmp, err2 := os.Stat(c.proc("root") + "/tmp")
				return want(err1 == nil && err2 == nil && os.SameFile(cwd, tmp), "the process's working directory is not the container's /tmp (%v, %v)", err1, err2)
			}}}},
		{"args", shell, []updateStep{{
			args: []string{"--args", "-c 'sleep 3601; :'"},
			check: func(n *node, c ctr) error {
				argv, err := c.argv()
				return want(err == nil && slices.Equal(argv, []string{"sh", "-c", "sleep 3601; :"}), "command line %q (%v)", argv, err)
			}}}},
		{"command", shell, []updateStep{{
			args: []string{"--command", "/bin/sh"},
			check: func(n *node, c ctr) error {
				argv, err := c.argv()
				return want(err == nil && slices.Equal(argv, []string{"/bin/sh", "-c", "sleep 3600; :"}), "command line %q (%v)", argv, err)
			}}, {
			// Back to what the image says: sleep 3600.
			args: []string{"--command", "", "--args", ""},
			check: func(n *node, c ctr) error {
				argv, err := c.argv()
				return want(err == nil && len(argv) == 2 && filepath.Base(argv[0]) == "sleep" && argv[1] == "3600" && c.task.GetSpec().GetCommand() == nil,
					"command line %q (%v), want the image's sleep 3600", argv, err)
			}}}},
		{"image", sleeper, []updateStep{{
			args: []string{"--image", ctrtest.NoCmdImage},
			check: func(n *node, c ctr) error {
				info, err := n.ctd.ContainerService().Get(n.cctx, c.task.GetId())
				return want(err == nil && strings.Contains(info.Image, "nocmd"), "container image %q (%v), want %s", info.Image, err, ctrtest.NoCmdImage)
			}}}},
		{"limits", sleeper, []updateStep{{
			args: []string{"--memory", "64MiB", "--cpus", "0.5"},
			check: func(n *node, c ctr) error {
				mem, err := c.cgroup("memory", "memory.limit_in_bytes")
				if errors.Is(err, os.ErrNotExist) {
					mem, err = c.cgroup("memory", "memory.max")
				}
				if err != nil || mem != strconv.Itoa(64<<20) {
					return fmt.Errorf("memory limit %q (%v), want %d", mem, err, 64<<20)
				}
				quota, err := c.cgroup("cpu", "cpu.cfs_quota_us")
				if errors.Is(err, os.ErrNotExist) {
					quota, err = c.cgroup("cpu", "cpu.max")
					quota, _, _ = strings.Cut(quota, " ")
				}
				return want(err == nil && quota == "50000", "CPU quota %q (%v), want 50000 of 100000", quota, err)
			}}, {
			args: []string{"--memory", "0"},
			check: func(n *node, c ctr) error {
				mem, err := c.cgroup("memory", "memory.limit_in_bytes")
				if errors.Is(err, os.ErrNotExist) {
					mem, err = c.cgroup("memory", "memory.max")
				}
				return want(err == nil && mem != strconv.Itoa(64<<20) && c.task.GetSpec().GetLimits().GetMemoryBytes() == 0, "memory limit %q (%v) after --memory 0", mem, err)
			}}}},
		{"placement", sleeper, []updateStep{{
			// Placement settings that this node still satisfies: the new
			// task carries them and runs here.
			args: []string{"--reserve-memory", "1MiB", "--reserve-cpus", "0.01", "--constraint-add", "node.platform.os==linux"},
			check: func(n *node, c ctr) error {
				s := c.task.GetSpec()
				return want(s.GetReservations().GetMemoryBytes() == 1<<20 && slices.Equal(s.GetConstraints(), []string{"node.platform.os==linux"}),
					"task spec reservations %v constraints %q", s.GetReservations(), s.GetConstraints())
			}}, {
			args: []string{"--constraint-rm", "node.platform.os==linux", "--reserve-memory", "0", "--reserve-cpus", "0"},
			check: func(n *node, c ctr) error {
				s := c.task.GetSpec()
				return want(s.GetReservations() == nil && s.GetConstraints() == nil, "task spec reservations %v constraints %q, want none", s.GetReservations(), s.GetConstraints())
			}}}},
		{"mount", sleeper, []updateStep{{
			args:  []string{"--mount-add", "type=bind,source=" + bindDir + ",target=/data,readonly"},
			check: func(n *node, c ctr) error { return sameFile(c, "/data/f", "from-the-host\n") },
		}, {
			args:  []string{"--mount-rm", "/data"},
			check: func(n *node, c ctr) error { return gone(c, "/data/f") },
		}}},
		{"secret", sleeper, []updateStep{{
			args:  []string{"--secret-add", "source=pw,mode=0400"},
			check: func(n *node, c ctr) error { return sameFile(c, "/run/secrets/pw", secret) },
		}, {
			args:  []string{"--secret-rm", "pw"},
			check: func(n *node, c ctr) error { return gone(c, "/run/secrets/pw") },
		}}},
		{"config", sleeper, []updateStep{{
			args:  []string{"--config-add", "src=app-conf,target=/etc/app.conf"},
			check: func(n *node, c ctr) error { return sameFile(c, "/etc/app.conf", config) },
		}, {
			args:  []string{"--config-rm", "app-conf"},
			check: func(n *node, c ctr) error { return gone(c, "/etc/app.conf") },
		}}},
		{"network", sleeper, []updateStep{{
			args: []string{"--network", "host"},
			check: func(n *node, c ctr) error {
				ns, err := os.Readlink(c.proc("ns/net"))
				return want(err == nil && ns == hostNet, "network namespace %s (%v), want the node's %s", ns, err, hostNet)
			}}}},
		{"health", sleeper, []updateStep{{
			args: []string{"--health-cmd", "echo check-from-inside", "--health-interval", "200ms", "--health-timeout", "2s"},
			check: func(n *node, c ctr) error {
				for _, tk := range n.tasks(c.service, false) {
					if tk.GetId() == c.task.GetId() {
						return want(tk.GetHealth() == apiv1.HealthState_HEALTH_STATE_HEALTHY && strings.Contains(tk.GetHealthOutput(), "check-from-inside"),
							"task health %v output %q, want healthy with the check's output", tk.GetHealth(), tk.GetHealthOutput())
					}
				}
				return errors.New("the task is gone")
			}}, {
			args: []string{"--no-healthcheck"},
			check: func(n *node, c ctr) error {
				// TYPE_NONE: no check, not even the image's; no health reported.
				return want(c.task.GetSpec().GetHealthCheck().GetType() == apiv1.HealthCheck_TYPE_NONE && c.task.GetHealth() == apiv1.HealthState_HEALTH_STATE_UNSPECIFIED,
					"task health check %v health %v, want TYPE_NONE and no health", c.task.GetSpec().GetHealthCheck(), c.task.GetHealth())
			}}}},
		{"stop", trapper, []updateStep{{
			args: []string{"--stop-signal", "USR1", "--stop-grace-period", "30s"},
			check: func(n *node, c ctr) error {
				// Stop the new task: it gets SIGUSR1, not SIGTERM, and
				// lives on in its trap (the grace period is not over).
				if !stopped {
					n.cli("service", "scale", c.service+"=0", "--detach")
					stopped = true
				}
				_, errTerm := c.file("/tmp/got-TERM")
				_, errUsr1 := c.file("/tmp/got-USR1")
				return want(errUsr1 == nil && errors.Is(errTerm, os.ErrNotExist), "after the stop: got-USR1 %v, got-TERM %v; want SIGUSR1 only", errUsr1, errTerm)
			}}}},
		// --force changes nothing but the force counter: the task is
		// replaced all the same (a new task, a new container).
		{"force", sleeper, []updateStep{{
			args: []string{"--force"},
			check: func(n *node, c ctr) error {
				return want(c.task.GetSpec().GetForceUpdate() == 1, "the new task's force_update %d, want 1", c.task.GetSpec().GetForceUpdate())
			}}}},
		{"replicas", sleeper, []updateStep{{
			args: []string{"--replicas", "2"}, keep: true,
			check: func(n *node, c ctr) error {
				ids := n.runningTasks(c.service)
				return want(len(ids) == 2, "running tasks %v, want 2", ids)
			}}}},
		{"restart policy", sleeper, []updateStep{{
			args: []string{"--restart-condition", "on-failure", "--restart-delay", "1s", "--restart-max-attempts", "2"}, keep: true,
			check: func(n *node, c ctr) error {
				rp := n.service(c.service).GetSpec().GetRestartPolicy()
				return want(rp.GetCondition() == apiv1.RestartPolicy_CONDITION_ON_FAILURE && rp.GetDelay().AsDuration() == time.Second && rp.GetMaxAttempts() == 2,
					"restart policy %v", rp)
			}}}},
		{"update policy", sleeper, []updateStep{{
			args: []string{"--update-parallelism", "2", "--update-order", "start-first", "--update-delay", "1s", "--update-monitor", "3s",
				"--update-failure-action", "rollback", "--update-max-failure-ratio", "0.5"}, keep: true,
			check: func(n *node, c ctr) error {
				p := n.service(c.service).GetSpec().GetUpdatePolicy()
				return want(p.GetParallelism() == 2 && p.GetOrder() == apiv1.UpdatePolicy_ORDER_START_FIRST && p.GetDelay().AsDuration() == time.Second &&
					p.GetMonitor().AsDuration() == 3*time.Second && p.GetFailureAction() == apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK && p.GetMaxFailureRatio() == 0.5,
					"update policy %v", p)
			}}}},
		{"rollback policy", sleeper, []updateStep{{
			args: []string{"--rollback-parallelism", "1", "--rollback-order", "start-first", "--rollback-failure-action", "continue", "--rollback-monitor", "2s"}, keep: true,
			check: func(n *node, c ctr) error {
				p := n.service(c.service).GetSpec().GetRollbackPolicy()
				return want(p.GetParallelism() == 1 && p.GetOrder() == apiv1.UpdatePolicy_ORDER_START_FIRST &&
					p.GetFailureAction() == apiv1.UpdatePolicy_FAILURE_ACTION_CONTINUE && p.GetMonitor().AsDuration() == 2*time.Second,
					"rollback policy %v", p)
			}}}},
	}
	t.Run("rows", func(t *testing.T) {
		for _, row := range rows {
			t.Run(row.name, func(t *testing.T) {
				t.Parallel()
				n := n.forTest(t)
				name := strings.ReplaceAll(row.name, " ", "-")
				n.cli(append([]string{"service", "create", name, "--image", ctrtest.TestImage, quickStop, converge}, row.create...)...)
				cur := n.only(name, "")
				for i, st := range row.steps {
					n.cli(append([]string{"service", "update", name, converge}, st.args...)...)
					next := cur
					if st.keep {
						n.oldTasksUntouched(name, map[string]uint32{cur.task.GetId(): cur.pid})
					} else {
						next = n.only(name, cur.task.GetId())
					}
					deadline := time.Now().Add(20 * time.Second)
					for err := st.check(n, next); err != nil; err = st.check(n, next) {
						if time.Now().After(deadline) {
							t.Fatalf("step %d (%s): %v", i+1, strings.Join(st.args, " "), err)
						}
						time.Sleep(50 * time.Millisecond) // polling the container with a deadline
					}
					cur = next
				}
				n.cli("service", "rm", name)
			})
		}
		t.Run("bad input", func(t *testing.T) {
			t.Parallel()
			n := n.forTest(t)
			n.cli("service", "create", "bad", "--image", ctrtest.TestImage, quickStop, converge, "--env", "A=1", "--label", "team=a",
				"--constraint", "node.platform.os==linux", "--mount", "type=tmpfs,target=/cache", "--secret", "pw", "--", "sleep", "3600")
			before := n.service("bad")
			c := n.only("bad", "")
			for _, tt := range []struct {
				args []string
				msg  string
			}{
				{[]string{"--env-rm", "B"}, `invalid --env-rm "B": service "bad" has no environment variable "B"`},
				{[]string{"--label-rm", "tier"}, `service "bad" has no label "tier"`},
				{[]string{"--constraint-rm", "node.platform.os==windows"}, `service "bad" has no constraint "node.platform.os==windows"`},
				{[]string{"--mount-rm", "/data"}, `invalid --mount-rm "/data": service "bad" has no mount at "/data"`},
				{[]string{"--secret-rm", "other"}, `service "bad" has no secret "other"`},
				{[]string{"--config-rm", "app-conf"}, `service "bad" has no config "app-conf"`},
				{[]string{"--publish-rm", "8080"}, `service "bad" has no published port "8080/tcp"`},
				// An unknown removal beside a good change: nothing changes.
				{[]string{"--env-add", "C=3", "--env-rm", "B"}, `has no environment variable "B"`},
				{[]string{"--env-add", "A=2", "--env-rm", "A"}, `--env-add and --env-rm both name "A": give only one`},
				{[]string{"--mount-add", "type=tmpfs,target=/cache", "--mount-rm", "/cache"}, `--mount-add and --mount-rm both name "/cache"`},
				{[]string{"--secret-add", "pw", "--secret-rm", "pw"}, `--secret-add and --secret-rm both name "pw"`},
				{[]string{"--mode", "global"}, "--mode cannot be used on update"},
				{[]string{"--mode", "replicated", "--env-add", "C=3"}, "--mode cannot be used on update"},
				{[]string{"--command", "'sh"}, "a ' quote is not closed"},
				{[]string{"--mount-add", "type=nfs,target=/x"}, `type "nfs" is not bind, volume or tmpfs`},
				{[]string{"--secret-add", "nope"}, `secret "nope"`},
				{[]string{"--config-add", "src=app-conf"}, "needs a target"},
			} {
				if msg := n.cliFails(append([]string{"service", "update", "bad", converge}, tt.args...)...); !strings.Contains(msg, tt.msg) {
					t.Errorf("update %s: %q, want an error with %q", strings.Join(tt.args, " "), msg, tt.msg)
				}
			}
			if after := n.service("bad"); after.GetVersion() != before.GetVersion() {
				t.Errorf("service version %d after the refused updates, want %d unchanged; spec now %v", after.GetVersion(), before.GetVersion(), after.GetSpec())
			}
			n.oldTasksUntouched("bad", map[string]uint32{c.task.GetId(): c.pid})
			n.cli("service", "rm", "bad")
		})
	})
}

// get sends GET / to port on the node's address, from inside its network
// namespace, and returns the answer.
func (n *node) get(port int) (string, error) {
	var out []byte
	err := n.host.Do(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", n.host.Addr(port))
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		out, err = io.ReadAll(c)
		return err
	})
	return string(out), err
}

// TestUpdatePublishedPorts: --publish-add makes a port answer on the node
// and --publish-rm (with another --publish-add) moves it, with the task
// left running as it was (the node publishes the ports).
func TestUpdatePublishedPorts(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startOverlayNode(t)
	n.cli("service", "create", "web", "--image", ctrtest.TestImage, quickStop, converge, "--",
		"sh", "-c", "mkdir -p /www && echo hello-through-the-port > /www/index.html && exec httpd -f -p 8080 -h /www")
	c := n.only("web", "")
	answers := func(port int) {
		t.Helper()
		var out string
		var err error
		testutil.Eventually(t, 30*time.Second, fmt.Sprintf("web answering on port %d", port), func() bool {
			out, err = n.get(port)
			return err == nil && strings.Contains(out, "hello-through-the-port")
		})
	}
	n.cli("service", "update", "web", converge, "--publish-add", "18080:8080")
	answers(18080)
	n.cli("service", "update", "web", converge, "--publish-add", "18081:8080", "--publish-rm", "18080")
	answers(18081)
	testutil.Eventually(t, 30*time.Second, "port 18080 closed", func() bool {
		_, err := n.get(18080)
		return err != nil
	})
	n.oldTasksUntouched("web", map[string]uint32{c.task.GetId(): c.pid})
	if ports := n.service("web").GetSpec().GetPorts(); len(ports) != 1 || ports[0].GetPublished() != 18081 {
		t.Errorf("ports %v, want 18081 only", ports)
	}
}
