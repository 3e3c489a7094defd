package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	ctd "github.com/containerd/containerd"
	"github.com/containerd/containerd/api/types/runc/options"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/oci"

	"github.com/warrenorch/warren/test/ctrtest"
)

// startFloor starts containers with the bare containerd Go client against
// the agent's own managed containerd: the floor that Warren's start paths
// are measured against, in the same run and on the same daemon.
type startFloor struct {
	c    *ctd.Client
	ctx  context.Context
	img  ctd.Image
	opts *options.Options // the runc shim's options, as the runtime plugin sets them
	logs string
	n    int
}

// newStartFloor prepares bare starts of the test image on r's containerd.
func newStartFloor(b *testing.B, r *runningAgent) *startFloor {
	b.Helper()
	c, ctx := ctrtest.Containerd(b, r.a)
	img, err := c.GetImage(ctx, ctrtest.TestImage) // a ref with a domain: stored as written
	if err != nil {
		b.Fatalf("floor: image %s: %v", ctrtest.TestImage, err)
	}
	runc := filepath.Join(r.a.DataDir, "runtime-containerd", "state", "runc")
	return &startFloor{c: c, ctx: ctx, img: img, opts: &options.Options{Root: runc}, logs: b.TempDir()}
}

// start starts n containers in parallel the way the runtime plugin does at
// its core (a new overlayfs snapshot of the image, the image's config as the
// OCI spec, the runc shim, output to a log file): NewContainer, NewTask and
// Start each, nothing else. It returns the time until the last Start
// returned; the containers are removed afterwards, untimed.
func (f *startFloor) start(b *testing.B, n int) time.Duration {
	b.Helper()
	ids := make([]string, n)
	for i := range ids {
		f.n++
		ids[i] = fmt.Sprintf("floor-%d-%d", os.Getpid(), f.n)
	}
	tasks := make([]ctd.Task, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	begin := time.Now()
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctr, err := f.c.NewContainer(f.ctx, id,
				ctd.WithImage(f.img),
				ctd.WithSnapshotter("overlayfs"),
				ctd.WithNewSnapshot(id, f.img),
				ctd.WithRuntime("io.containerd.runc.v2", f.opts),
				ctd.WithNewSpec(oci.WithImageConfig(f.img), oci.WithHostname(id)))
			if err != nil {
				errs[i] = fmt.Errorf("new container: %w", err)
				return
			}
			t, err := ctr.NewTask(f.ctx, cio.LogFile(filepath.Join(f.logs, id+".log")))
			if err != nil {
				errs[i] = fmt.Errorf("new task: %w", err)
				return
			}
			tasks[i] = t
			if err := t.Start(f.ctx); err != nil {
				errs[i] = fmt.Errorf("start: %w", err)
			}
		}()
	}
	wg.Wait()
	took := time.Since(begin)
	b.StopTimer()
	defer b.StartTimer()
	for i, id := range ids {
		if t := tasks[i]; t != nil {
			if _, err := t.Delete(f.ctx, ctd.WithProcessKill); err != nil {
				b.Errorf("floor: delete task %s: %v", id, err)
			}
		}
		if ctr, err := f.c.LoadContainer(f.ctx, id); err == nil {
			if err := ctr.Delete(f.ctx, ctd.WithSnapshotCleanup); err != nil {
				b.Errorf("floor: delete container %s: %v", id, err)
			}
		}
		if errs[i] != nil {
			b.Fatalf("floor: container %s: %v", id, errs[i])
		}
	}
	return took
}
