package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/testutil"
)

func startAgent(t *testing.T, managerExtra string) (*testutil.Agent, string) {
	t.Helper()
	bin := testutil.Install(t, managerPlugins...)
	a := testutil.NewAgent(t, bin, managerExtra)
	a.Start(context.Background())
	return a, bin
}

func serviceNames(t *testing.T, c apiv1.WarrenClient) map[string]*apiv1.Service {
	t.Helper()
	resp, err := c.ListServices(context.Background(), &apiv1.ListServicesRequest{})
	if err != nil {
		t.Fatalf("list services: %v", err)
	}
	out := map[string]*apiv1.Service{}
	for _, s := range resp.GetServices() {
		out[s.GetSpec().GetName()] = s
	}
	return out
}

func TestServiceLifecycleThroughCLI(t *testing.T) {
	a, bin := startAgent(t, "")
	cli := func(args ...string) string {
		t.Helper()
		out, errOut, code := testutil.RunCLI(t, bin, a.Socket, args...)
		if code != 0 {
			t.Fatalf("warren %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	cli("service", "create", "web", "--detach", "--image", "busybox:latest", "--replicas", "3", "--env", "A=1", "--label", "tier=front", "--memory", "64MiB", "--", "httpd", "-f")
	out := cli("service", "ls")
	if !strings.Contains(out, "web") || !strings.Contains(out, "busybox:latest") {
		t.Fatalf("service ls:\n%s", out)
	}
	var inspected []map[string]any
	if err := json.Unmarshal([]byte(cli("service", "inspect", "web")), &inspected); err != nil || len(inspected) != 1 {
		t.Fatalf("service inspect is not a JSON array of one: %v", err)
	}

	c := a.Client()
	svc := serviceNames(t, c)["web"]
	spec := svc.GetSpec()
	if spec.GetReplicas() != 3 || spec.GetEnv()["A"] != "1" || spec.GetLabels()["tier"] != "front" ||
		spec.GetLimits().GetMemoryBytes() != 64<<20 || strings.Join(spec.GetCommand(), " ")+strings.Join(spec.GetArgs(), " ") == "" {
		t.Fatalf("created spec = %v", spec)
	}

	cli("service", "scale", "web=5", "--detach")
	if got := serviceNames(t, c)["web"].GetSpec().GetReplicas(); got != 5 {
		t.Fatalf("replicas after scale = %d", got)
	}
	cli("service", "update", "web", "--detach", "--image", "busybox:1.36", "--env-add", "B=2")
	spec = serviceNames(t, c)["web"].GetSpec()
	if spec.GetImage() != "busybox:1.36" || spec.GetEnv()["B"] != "2" || spec.GetEnv()["A"] != "1" {
		t.Fatalf("spec after update = %v", spec)
	}
	cli("service", "rm", "web")
	if _, ok := serviceNames(t, c)["web"]; ok {
		t.Fatal("service still listed after rm")
	}
	// The CLI's view of errors: a clear message and exit code 1.
	_, errOut, code := testutil.RunCLI(t, bin, a.Socket, "service", "inspect", "web")
	if code != 1 || !strings.Contains(errOut, `"web"`) || !strings.Contains(errOut, "not found") {
		t.Fatalf("inspect of a removed service: exit %d, stderr %q", code, errOut)
	}
}

func TestInvalidRequestsChangeNothing(t *testing.T) {
	a, _ := startAgent(t, "")
	c := a.Client()
	ctx := context.Background()
	if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: "taken", Image: "busybox"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: "everywhere", Image: "busybox", Mode: apiv1.ServiceMode_SERVICE_MODE_GLOBAL}}); err != nil {
		t.Fatal(err)
	}
	before := serviceNames(t, c)
	huge := strings.Repeat("x", 2<<20)
	tests := []struct {
		name string
		spec *apiv1.ServiceSpec
		code codes.Code
		msg  string
	}{
		{"missing spec", nil, codes.InvalidArgument, "spec is required"},
		{"empty name", &apiv1.ServiceSpec{Image: "busybox"}, codes.InvalidArgument, "name is required"},
		{"upper-case name", &apiv1.ServiceSpec{Name: "Web", Image: "busybox"}, codes.InvalidArgument, `"Web" is invalid`},
		{"name too long", &apiv1.ServiceSpec{Name: strings.Repeat("a", 64), Image: "busybox"}, codes.InvalidArgument, "is invalid"},
		{"no image", &apiv1.ServiceSpec{Name: "web"}, codes.InvalidArgument, "image is required"},
		{"image with spaces", &apiv1.ServiceSpec{Name: "web", Image: "bad image"}, codes.InvalidArgument, "whitespace"},
		{"too many replicas", &apiv1.ServiceSpec{Name: "web", Image: "busybox", Replicas: 1 << 40}, codes.InvalidArgument, "replicas"},
		{"negative memory", &apiv1.ServiceSpec{Name: "web", Image: "busybox", Limits: &apiv1.Resources{MemoryBytes: -1}}, codes.InvalidArgument, "negative"},
		{"bad env", &apiv1.ServiceSpec{Name: "web", Image: "busybox", Env: map[string]string{"A=B": "x"}}, codes.InvalidArgument, "env name"},
		{"bad constraint", &apiv1.ServiceSpec{Name: "web", Image: "busybox", Constraints: []string{"zone=edge"}}, codes.InvalidArgument, "constraint"},
		{"relative mount", &apiv1.ServiceSpec{Name: "web", Image: "busybox", Mounts: []*apiv1.Mount{{Type: "bind", Source: "data", Target: "/data"}}}, codes.InvalidArgument, "absolute"},
		{"duplicate name", &apiv1.ServiceSpec{Name: "taken", Image: "busybox"}, codes.AlreadyExists, `"taken"`},
		{"oversized payload", &apiv1.ServiceSpec{Name: "web", Image: "busybox", Args: []string{huge}}, codes.ResourceExhausted, "larger than max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: tt.spec})
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want %v containing %q", err, tt.code, tt.msg)
			}
		})
	}
	for name, call := range map[string]func() error{
		"scale missing": func() error {
			_, err := c.ScaleService(ctx, &apiv1.ScaleServiceRequest{NameOrId: "nope", Replicas: 1})
			return err
		},
		"scale global": func() error {
			_, err := c.ScaleService(ctx, &apiv1.ScaleServiceRequest{NameOrId: "everywhere", Replicas: 3})
			if err != nil && !strings.Contains(status.Convert(err).Message(), "global") {
				return fmt.Errorf("refused without naming the global mode: %s", status.Convert(err).Message()) // no status code: fails the check below
			}
			return err
		},
		"rm missing": func() error {
			_, err := c.RemoveService(ctx, &apiv1.RemoveServiceRequest{NameOrId: "nope"})
			return err
		},
		"rename": func() error {
			_, err := c.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: "taken", Spec: &apiv1.ServiceSpec{Name: "other", Image: "busybox"}})
			return err
		},
		"mode change": func() error {
			_, err := c.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: "everywhere", Spec: &apiv1.ServiceSpec{Name: "everywhere", Image: "busybox", Replicas: 2}})
			if err != nil && !strings.Contains(status.Convert(err).Message(), "an update cannot make it replicated") {
				return fmt.Errorf("refused without naming the modes: %s", status.Convert(err).Message())
			}
			return err
		},
		"stale version": func() error {
			_, err := c.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: "taken", Spec: &apiv1.ServiceSpec{Name: "taken", Image: "busybox:2"}, Version: 1})
			return err
		},
	} {
		if err := call(); err == nil || status.Code(err) == codes.Unknown || status.Code(err) == codes.Internal {
			t.Errorf("%s: got %v, want a specific error code", name, err)
		}
	}
	after := serviceNames(t, c)
	if len(after) != len(before) || after["taken"].GetVersion() != before["taken"].GetVersion() || after["everywhere"].GetVersion() != before["everywhere"].GetVersion() {
		t.Fatalf("rejected requests changed state: before %v, after %v", before, after)
	}
}

func TestInvalidConfigIsRejectedWithPosition(t *testing.T) {
	bin := testutil.Install(t, managerPlugins...)
	tests := []struct {
		name string
		hcl  string
		want []string
	}{
		{"syntax", "data_dir = \"/tmp/x\"\nmanager {\n", []string{"agent.hcl:2"}},
		{"unknown attribute", "data_dir = \"/tmp/x\"\nmanager {\n  bogus = 1\n}\n", []string{"agent.hcl:3:3", "bogus"}},
		{"plugin config unknown attribute", fmt.Sprintf("data_dir = %q\napi_socket = %q\nbind_addr = \"127.0.0.1:%d\"\nmanager {}\nplugin \"store-bolt\" {\n  config {\n    colour = \"blue\"\n  }\n}\n",
			filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "s.sock"), testutil.FreePort(t)), []string{"agent.hcl:7:5", "colour"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "agent.hcl")
			if err := os.WriteFile(cfg, []byte(tt.hcl), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, errOut, code := runWithContext(ctx, t, bin, "agent", "-config", cfg)
			if code == 0 {
				t.Fatalf("agent accepted a bad config:\n%s%s", out, errOut)
			}
			for _, w := range tt.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errOut)
				}
			}
		})
	}
	if pids := testutil.PluginPIDs(bin); len(pids) != 0 {
		t.Fatalf("plugin processes left behind: %v", pids)
	}
}

func TestKill9StorePluginLosesNoAcknowledgedWrite(t *testing.T) {
	a, _ := startAgent(t, "")
	c := a.Client()
	ctx := context.Background()
	storePID := func() (int, uint32, string) {
		resp, err := c.ListPlugins(ctx, &apiv1.ListPluginsRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range resp.GetPlugins() {
			if p.GetKind() == "store" {
				return int(p.GetPid()), p.GetRestarts(), p.GetState()
			}
		}
		t.Fatal("no store plugin listed")
		return 0, 0, ""
	}
	pid, _, _ := storePID()

	// Writers keep creating services while the store plugin is killed.
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
	)
	stop := make(chan struct{})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := fmt.Sprintf("w%d-s%d", w, i)
				cctx, cancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := c.CreateService(cctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: name, Image: "busybox"}})
				cancel()
				if err == nil {
					mu.Lock()
					acked = append(acked, name)
					mu.Unlock()
				}
			}
		}()
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	testutil.Eventually(t, 30*time.Second, "some writes before the kill", func() bool { return ackedCount() >= 20 })
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 60*time.Second, "store plugin restarted", func() bool {
		newPID, restarts, state := storePID()
		return newPID != pid && restarts >= 1 && state == "running"
	})
	n := ackedCount()
	testutil.Eventually(t, 30*time.Second, "writes after the restart", func() bool { return ackedCount() >= n+20 })
	close(stop)
	wg.Wait()

	check := func(when string) {
		have := serviceNames(t, c)
		for _, name := range acked {
			if _, ok := have[name]; !ok {
				t.Fatalf("%s: acknowledged service %q is missing", when, name)
			}
		}
	}
	check("after plugin restart")
	// And it is in the store, not only in memory: restart the agent.
	a.Stop()
	a.Start(ctx)
	c = a.Client()
	check("after agent restart")
	t.Logf("%d acknowledged writes survived a kill -9 of the store plugin", len(acked))
}

func TestKill9AgentRestartKeepsState(t *testing.T) {
	a, bin := startAgent(t, "")
	c := a.Client()
	ctx := context.Background()
	var created []*apiv1.Service
	for i := range 30 {
		resp, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: fmt.Sprintf("svc-%d", i), Image: "busybox", Replicas: uint64(i)}})
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, resp.GetService())
	}
	info, err := c.ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	plugins := testutil.PluginPIDs(bin)
	a.Kill9()
	// The plugins die with the agent (no orphans), without being told.
	testutil.Eventually(t, 10*time.Second, "plugins to exit after the agent's kill -9", func() bool {
		for _, pid := range plugins {
			if testutil.Alive(pid) {
				return false
			}
		}
		return true
	})

	a.Start(ctx)
	c = a.Client()
	have := serviceNames(t, c)
	for _, s := range created {
		got, ok := have[s.GetSpec().GetName()]
		if !ok || got.GetId() != s.GetId() || got.GetVersion() != s.GetVersion() || got.GetSpec().GetReplicas() != s.GetSpec().GetReplicas() {
			t.Fatalf("after restart %s = %v, want %v", s.GetSpec().GetName(), got, s)
		}
	}
	info2, err := c.ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if info2.GetClusterId() != info.GetClusterId() || info2.GetNodeId() != info.GetNodeId() {
		t.Fatalf("identity changed across restart: %v → %v", info, info2)
	}
	if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: "after", Image: "busybox"}}); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
	nodes, err := c.ListNodes(ctx, &apiv1.ListNodesRequest{})
	if err != nil || len(nodes.GetNodes()) != 1 || nodes.GetNodes()[0].GetName() != "test-manager" {
		t.Fatalf("nodes after restart = %v, %v", nodes, err)
	}
}

// TestRaftSnapshotRestore makes Raft snapshot and compact its log, then
// throws the store's database away: on restart Raft restores its snapshot
// into the (empty) store plugin and replays the entries after it.
func TestRaftSnapshotRestore(t *testing.T) {
	a, _ := startAgent(t, "snapshot_threshold = 32\n  snapshot_interval = \"1s\"\n  trailing_logs = 8")
	c := a.Client()
	ctx := context.Background()
	for i := range 120 {
		if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: fmt.Sprintf("svc-%d", i), Image: "busybox"}}); err != nil {
			t.Fatal(err)
		}
	}
	snapDir := filepath.Join(a.DataDir, "raft", "snapshots")
	testutil.Eventually(t, 30*time.Second, "a raft snapshot on disk", func() bool {
		entries, _ := os.ReadDir(snapDir)
		for _, e := range entries {
			if _, err := os.Stat(filepath.Join(snapDir, e.Name(), "state.bin")); err == nil {
				return true
			}
		}
		return false
	})
	// A few more after the snapshot, so the restart replays log entries too.
	for i := range 5 {
		if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: fmt.Sprintf("late-%d", i), Image: "busybox"}}); err != nil {
			t.Fatal(err)
		}
	}
	want := serviceNames(t, c)
	a.Stop()
	storeDir := filepath.Join(a.DataDir, "store-bolt")
	if err := os.RemoveAll(storeDir); err != nil {
		t.Fatal(err)
	}
	a.Start(ctx)
	c = a.Client()
	got := serviceNames(t, c)
	if len(got) != len(want) {
		t.Fatalf("after restore: %d services, want %d", len(got), len(want))
	}
	for name, s := range want {
		if got[name].GetId() != s.GetId() || got[name].GetVersion() != s.GetVersion() {
			t.Fatalf("after restore %s = %v, want %v", name, got[name], s)
		}
	}
	if !strings.Contains(a.Output(), "restored snapshot") {
		t.Fatalf("the agent did not restore a snapshot:\n%s", a.Output())
	}
}

func TestEventsStream(t *testing.T) {
	a, _ := startAgent(t, "")
	c := a.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := c.Events(ctx, &apiv1.EventsRequest{Kinds: []string{"service"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Header(); err != nil { // subscribed once headers arrive
		t.Fatal(err)
	}
	if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{Name: "evt", Image: "busybox"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ScaleService(ctx, &apiv1.ScaleServiceRequest{NameOrId: "evt", Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	want := []apiv1.EventAction{apiv1.EventAction_EVENT_ACTION_CREATED, apiv1.EventAction_EVENT_ACTION_UPDATED}
	for _, action := range want {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if ev.GetKind() != "service" || ev.GetName() != "evt" || ev.GetAction() != action || ev.GetIndex() == 0 {
			t.Fatalf("event = %v, want %v of evt", ev, action)
		}
	}
}

func TestPluginList(t *testing.T) {
	a, bin := startAgent(t, "")
	out, errOut, code := testutil.RunCLI(t, bin, a.Socket, "plugin", "ls", "-o", "json")
	if code != 0 {
		t.Fatalf("plugin ls: %d %s", code, errOut)
	}
	var ps []map[string]any
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("plugin ls -o json: %v\n%s", err, out)
	}
	kinds := map[string]bool{}
	for _, p := range ps {
		kinds[fmt.Sprint(p["kind"])] = true
		if p["state"] != "running" || p["pid"] == nil {
			t.Errorf("plugin %v", p)
		}
	}
	if !kinds["store"] || !kinds["scheduler"] {
		t.Fatalf("plugin ls = %v", ps)
	}
}

func runWithContext(ctx context.Context, t *testing.T, bin string, args ...string) (string, string, int) {
	t.Helper()
	done := make(chan struct{})
	var o, e string
	var code int
	go func() {
		defer close(done)
		o, e, code = testutil.Run(t, bin, args...)
	}()
	select {
	case <-done:
		return o, e, code
	case <-ctx.Done():
		t.Fatal(errors.New("command did not finish"))
		return "", "", 0
	}
}
