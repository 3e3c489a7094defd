package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/testutil"
)

// mountTmpfs mounts a tmpfs of size bytes at dir. Cleanup stops the agent
// first (it holds files there) and then unmounts, also when the test fails.
func mountTmpfs(t *testing.T, dir string, size int64, a *testutil.Agent) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount a %d-byte tmpfs on %s: %v", size, dir, err)
	}
	t.Cleanup(func() {
		a.Kill()
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
}

// fillDisk writes zeros to path until the file system holding it is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			break
		}
	}
	// The last, partial megabyte: byte by byte is too slow, so halve.
	for n := len(buf) / 2; n > 0; n /= 2 {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

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
	mountTmpfs(t, a.DataDir, 48<<20, a)
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
	fillDisk(t, filler)

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
	a.Stop()
	a.Start(context.Background())
	c = a.Client()
	check("after a restart")
}
