package integration

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// TestVolumeDataSurvives: a named volume keeps what one task wrote for
// its replacements, after a kill -9 of the container, of the agent, and
// across a service update; it lives on the node of its first task, and
// cannot be removed while a service mounts it. A tmpfs mount gets its size
// and mode.
func TestVolumeDataSurvives(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	ctx := context.Background()
	n.cli("volume", "create", "data")
	// Each start appends a line to /data/starts; the first writes a
	// marker that the later ones must find.
	script := `[ -f /data/marker ] || cat /proc/sys/kernel/random/uuid > /data/marker; echo start >> /data/starts; ` +
		`echo "scratch $(awk '$2 == "/scratch" {print $4}' /proc/mounts)"; sleep 3600`
	n.cli("service", "create", "vol", "--image", ctrtest.TestImage, quickStop, converge,
		"--mount", "type=volume,source=data,target=/data",
		"--mount", "type=tmpfs,target=/scratch,tmpfs-size=1MiB,tmpfs-mode=700",
		"--", "sh", "-c", script)
	n.waitConverged("vol", 1)

	dir := filepath.Join(n.a.DataDir, "volumes", "data")
	starts := func(want int) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, "the volume's starts file", func() bool {
			b, _ := os.ReadFile(filepath.Join(dir, "starts"))
			return strings.Count(string(b), "start\n") == want
		})
	}
	starts(1)
	marker, err := os.ReadFile(filepath.Join(dir, "marker"))
	if err != nil || len(marker) < 10 {
		t.Fatalf("the volume's marker on the node: %q, %v", marker, err)
	}
	logs := n.waitLog("vol", "scratch ")
	if !strings.Contains(logs, "mode=700") || !strings.Contains(logs, "size=1024k") {
		t.Errorf("the tmpfs mount lacks its size and mode: %s", logs)
	}

	// The volume is on the task's node now, and in use.
	info, err := n.c.ClusterInfo(ctx, &apiv1.ClusterInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := n.c.GetVolume(ctx, &apiv1.GetVolumeRequest{NameOrId: "data"})
	if err != nil {
		t.Fatal(err)
	}
	if v.GetVolume().GetNodeId() != info.GetNodeId() || strings.Join(v.GetUsers(), ",") != "vol" {
		t.Fatalf("volume after first use: node %q users %v; want node %q, users vol", v.GetVolume().GetNodeId(), v.GetUsers(), info.GetNodeId())
	}
	if out := n.cli("volume", "ls"); !strings.Contains(out, "data") || !strings.Contains(out, "vol") {
		t.Errorf("volume ls lacks the volume or its user:\n%s", out)
	}
	out, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, "volume", "rm", "data")
	if code == 0 || !strings.Contains(errOut, "service vol") {
		t.Fatalf("volume rm while used: exit %d %s%s; want a refusal naming service vol", code, out, errOut)
	}

	// kill -9 of the container: the replacement finds the data.
	n.killOne("vol", 1, "")
	starts(2)

	// kill -9 of the agent: the container is recovered, not replaced.
	n.a.Kill9()
	n.a.Start(ctx)
	n.c = n.a.Client()
	n.waitConverged("vol", 1)

	// A service update replaces the task; it finds the data too.
	n.cli("service", "update", "vol", "--env-add", "A=1", converge)
	n.waitConverged("vol", 1)
	starts(3)
	if again, _ := os.ReadFile(filepath.Join(dir, "marker")); string(again) != string(marker) {
		t.Fatalf("the marker changed from %q to %q: a task got an empty volume", marker, again)
	}

	n.cli("service", "rm", "vol")
	testutil.Eventually(t, 20*time.Second, "volume rm once the service is gone", func() bool {
		_, _, code := testutil.RunCLI(t, n.bin, n.a.Socket, "volume", "rm", "data")
		return code == 0
	})
	if _, err := os.Stat(filepath.Join(dir, "marker")); err != nil {
		t.Errorf("volume rm removed the data on the node: %v", err)
	}
}

func TestMountsBadInput(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	ctx := context.Background()
	n.cli("volume", "create", "vol")
	spec := func(m ...*apiv1.Mount) *apiv1.ServiceSpec {
		return &apiv1.ServiceSpec{Name: "web", Image: ctrtest.TestImage, Mounts: m}
	}
	api := []struct {
		name string
		spec *apiv1.ServiceSpec
		want error
		msg  string
	}{
		{"unknown volume", spec(&apiv1.Mount{Type: "volume", Source: "nope", Target: "/d"}), sdk.ErrNotFound, `volume "nope"`},
		{"volume name not a DNS label", spec(&apiv1.Mount{Type: "volume", Source: "No_Such", Target: "/d"}), sdk.ErrInvalidArgument, `"No_Such" is invalid`},
		{"relative target", spec(&apiv1.Mount{Type: "volume", Source: "vol", Target: "d"}), sdk.ErrInvalidArgument, "absolute path"},
		{"two mounts at one target", spec(&apiv1.Mount{Type: "volume", Source: "vol", Target: "/d"}, &apiv1.Mount{Type: "tmpfs", Target: "/d"}), sdk.ErrInvalidArgument, `two mounts target "/d"`},
		{"tmpfs size on a bind mount", spec(&apiv1.Mount{Type: "bind", Source: "/tmp", Target: "/d", TmpfsSizeBytes: 1}), sdk.ErrInvalidArgument, "tmpfs size"},
		{"bind source not absolute", spec(&apiv1.Mount{Type: "bind", Source: "tmp", Target: "/d"}), sdk.ErrInvalidArgument, "absolute path"},
	}
	for _, tt := range api {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: tt.spec})
			if !errors.Is(sdk.FromStatus(err), tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
	if svcs, err := n.c.ListServices(ctx, &apiv1.ListServicesRequest{}); err != nil || len(svcs.GetServices()) != 0 {
		t.Fatalf("services after the refusals: %v, %v; want none", svcs.GetServices(), err)
	}
	creates := []struct {
		name string
		req  *apiv1.CreateVolumeRequest
		want error
		msg  string
	}{
		{"volume name not a DNS label", &apiv1.CreateVolumeRequest{Name: "Bad_Vol"}, sdk.ErrInvalidArgument, `"Bad_Vol" is invalid`},
		{"volume on an unknown node", &apiv1.CreateVolumeRequest{Name: "elsewhere", Node: "no-such-node"}, sdk.ErrNotFound, `"no-such-node"`},
		{"duplicate volume", &apiv1.CreateVolumeRequest{Name: "vol"}, sdk.ErrAlreadyExists, `"vol"`},
	}
	for _, tt := range creates {
		t.Run(tt.name, func(t *testing.T) {
			_, err := n.c.CreateVolume(ctx, tt.req)
			if !errors.Is(sdk.FromStatus(err), tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v mentioning %q", err, tt.want, tt.msg)
			}
		})
	}
	if vs, err := n.c.ListVolumes(ctx, &apiv1.ListVolumesRequest{}); err != nil || len(vs.GetVolumes()) != 1 {
		t.Fatalf("volumes after the refusals: %v, %v; want only vol", vs.GetVolumes(), err)
	}
	t.Run("tmpfs size that does not parse", func(t *testing.T) {
		_, errOut, code := testutil.RunCLI(t, n.bin, n.a.Socket, "service", "create", "web", "--image", ctrtest.TestImage, "--mount", "type=tmpfs,target=/s,tmpfs-size=lots")
		if code == 0 || !strings.Contains(errOut, `tmpfs-size "lots"`) {
			t.Fatalf("exit %d, %s; want a usage error naming tmpfs-size", code, errOut)
		}
	})
	t.Run("bind source missing on the node", func(t *testing.T) {
		n.cli("service", "create", "bind", "--image", ctrtest.TestImage, "--detach", "--mount", "type=bind,source=/no/such/dir,target=/d")
		testutil.Eventually(t, 20*time.Second, "the task rejected for its bind source", func() bool {
			for _, tk := range n.tasks("bind", true) {
				if tk.GetState() == apiv1.TaskState_TASK_STATE_REJECTED && strings.Contains(tk.GetError(), "/no/such/dir") {
					return true
				}
			}
			return false
		})
	})
}

// TestVolumeLsSize: volume ls shows the space a volume's directory uses on
// its node once a task wrote a file of known size in it, and why there is
// no size for a volume on no node yet.
func TestVolumeLsSize(t *testing.T) {
	ctrtest.SkipWithoutContainerd(t)
	n := startNode(t)
	ctx := context.Background()
	n.cli("volume", "create", "sized")
	n.cli("volume", "create", "unused")
	const blob = 3 << 20
	n.cli("service", "create", "writer", "--image", ctrtest.TestImage, quickStop, converge,
		"--mount", "type=volume,source=sized,target=/data",
		"--", "sh", "-c", "dd if=/dev/zero of=/data/blob bs=1024 count=3072 && sync && touch /data/done; sleep 3600")
	n.waitConverged("writer", 1)
	testutil.Eventually(t, 20*time.Second, "the file written in the volume", func() bool {
		_, err := os.Stat(filepath.Join(n.a.DataDir, "volumes", "sized", "done"))
		return err == nil
	})
	resp, err := n.c.ListVolumes(ctx, &apiv1.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]*apiv1.VolumeResponse{}
	for _, v := range resp.GetVolumes() {
		sizes[v.GetVolume().GetName()] = v
	}
	if v := sizes["sized"]; v.GetSizeError() != "" || v.GetSizeBytes() < blob || v.GetSizeBytes() > blob+1<<20 {
		t.Fatalf("volume sized: %d bytes (%q), want about %d", v.GetSizeBytes(), v.GetSizeError(), blob)
	}
	if v := sizes["unused"]; v.GetSizeError() != "on no node yet" {
		t.Fatalf("volume unused: size %d, reason %q; want none, as it is on no node", v.GetSizeBytes(), v.GetSizeError())
	}
	out := n.cli("volume", "ls")
	for _, want := range []string{"SIZE", "MiB", "- (on no node yet)"} {
		if !strings.Contains(out, want) {
			t.Errorf("volume ls lacks %q:\n%s", want, out)
		}
	}
}
