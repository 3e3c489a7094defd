package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/testutil"
)

// bigSpec is a service spec of about 60 KB (two 30 KB arguments), large
// enough that each write needs new pages in the BoltDB files.
func bigSpec(name string) *apiv1.ServiceSpec {
	arg := strings.Repeat("x", 30<<10)
	return &apiv1.ServiceSpec{Name: name, Image: "busybox", Command: []string{"true"}, Args: []string{arg, arg}}
}

// TestFullDiskNamesTheDiskAndKeepsReads fills the tmpfs that is the agent's
// data dir: writes must fail naming the disk and the file (not "no quorum",
// never advising force-new-cluster on a single manager), reads must still
// be served, and once space is freed writes work again with every
// acknowledged write kept, also across a restart.
func TestFullDiskNamesTheDiskAndKeepsReads(t *testing.T) {
	bin := testutil.Install(t, managerPlugins...)
	a := testutil.NewAgent(t, bin, "")
	testutil.MountTmpfs(t, a.DataDir, 48<<20)
	t.Cleanup(a.Kill) // before the unmount
	a.Start(context.Background())
	c := a.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	var acked []string
	create := func(name string) error {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		defer ccancel()
		_, err := c.CreateService(cctx, &apiv1.CreateServiceRequest{Spec: bigSpec(name)})
		if err == nil {
			acked = append(acked, name)
		}
		return err
	}
	for i := range 3 {
		if err := create(fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatalf("create before the disk is full: %v", err)
		}
	}

	filler := filepath.Join(a.DataDir, "filler")
	testutil.FillDisk(t, filler)

	// Writes fail once the BoltDB files cannot grow; free pages inside
	// them may take a few writes first.
	var werr error
	for i := 0; i < 200 && werr == nil; i++ {
		werr = create(fmt.Sprintf("full-%d", i))
	}
	if werr == nil {
		t.Fatalf("200 writes of 60 KB succeeded on a full disk")
	}
	checkDiskFull := func(err error) {
		t.Helper()
		msg := status.Convert(err).Message()
		if code := status.Code(err); code != codes.ResourceExhausted {
			t.Errorf("write on a full disk: code %v, want ResourceExhausted: %v", code, err)
		}
		for _, want := range []string{"disk full", "no space left on device", a.DataDir} {
			if !strings.Contains(msg, want) {
				t.Errorf("write on a full disk: error %q does not say %q", msg, want)
			}
		}
		for _, bad := range []string{"force-new-cluster", "no quorum"} {
			if strings.Contains(msg, bad) {
				t.Errorf("write on a full disk: error %q says %q", msg, bad)
			}
		}
	}
	checkDiskFull(werr)
	t.Logf("write on the full disk: %v", werr)

	// Raft keeps trying to lead; every read and write in that time must
	// answer the same way.
	for i := range 20 {
		// A write may still find a free page inside the files: fine.
		if err := create(fmt.Sprintf("still-full-%d", i)); err != nil {
			checkDiskFull(err)
		}
		names := serviceNames(t, c)
		for _, n := range acked {
			if names[n] == nil {
				t.Fatalf("service ls on the full disk misses acknowledged %q", n)
			}
		}
		if _, err := c.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: acked[0]}); err != nil {
			t.Fatalf("service get on the full disk: %v", err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "a write after space is freed", func() bool {
		return create(fmt.Sprintf("after-%d", len(acked))) == nil
	})
	check := func(when string) {
		t.Helper()
		names := serviceNames(t, c)
		for _, n := range acked {
			if names[n] == nil {
				t.Fatalf("%s: acknowledged service %q is gone", when, n)
			}
		}
	}
	check("after space is freed")
	for _, want := range []string{"Raft storage write failed", "Raft storage writes succeed again"} {
		if !strings.Contains(a.Output(), want) {
			t.Errorf("agent log does not say %q", want)
		}
	}
	a.Stop()
	a.Start(context.Background())
	c = a.Client()
	check("after a restart")
}
