package containerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/platforms"
	"github.com/distribution/reference"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/runtime"
)

// normalizeRef turns a ref into containerd's full form
// ("busybox" → "docker.io/library/busybox:latest").
func normalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image ref %q: %v: %w", ref, err, sdk.ErrInvalidArgument)
	}
	return named.String(), nil
}

// EnsureImage returns the image when it is present (and unpacked), and
// pulls and unpacks it otherwise or when alwaysPull is set.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, alwaysPull bool) (runtime.Image, error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return runtime.Image{}, err
	}
	name, err := normalizeRef(ref)
	if err != nil {
		return runtime.Image{}, err
	}
	if !alwaysPull {
		img, err := be.client.GetImage(ctx, name)
		switch {
		case err == nil:
			if err := unpack(ctx, img); err != nil {
				return runtime.Image{}, err
			}
			return describe(ctx, img)
		case !errdefs.IsNotFound(err):
			return runtime.Image{}, wrapErr(err, "image %q", ref)
		}
	}
	img, err := be.client.Pull(ctx, name,
		containerd.WithResolver(be.resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter),
		containerd.WithPlatformMatcher(platforms.Default()))
	if err != nil {
		if errdefs.IsNotFound(err) {
			return runtime.Image{}, wrapAs(sdk.ErrNotFound, err, "image %q", ref)
		}
		return runtime.Image{}, wrapErr(err, "pulling image %q", ref)
	}
	return describe(ctx, img)
}

// ImportImage stores the images of an OCI layout or docker-archive tarball
// under the refs the archive names, and unpacks them.
func (r *Runtime) ImportImage(ctx context.Context, rd io.Reader) ([]runtime.Image, error) {
	// An import streams a whole archive through the heap; hand the memory
	// back to the node once it is done.
	defer debug.FreeOSMemory()
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return nil, err
	}
	src := &readErrRecorder{r: rd}
	imported, err := be.client.Import(ctx, src,
		containerd.WithImageRefTranslator(refFromOCIName),
		containerd.WithImportPlatform(platforms.Default()))
	if src.err != nil {
		return nil, wrapErr(src.err, "import image: reading the archive")
	}
	if err != nil {
		if serverSide(err) {
			return nil, wrapErr(err, "import image")
		}
		return nil, wrapAs(sdk.ErrInvalidArgument, err, "import image: malformed archive")
	}

	is := be.client.ImageService()
	var out []runtime.Image
	seen := map[string]bool{}
	for _, rec := range imported {
		name, err := normalizeRef(rec.Name)
		if err != nil {
			// Not a ref we could run; leave it out.
			_ = is.Delete(ctx, rec.Name)
			continue
		}
		if name != rec.Name {
			if err := putImage(ctx, is, images.Image{Name: name, Target: rec.Target}); err != nil {
				return nil, wrapErr(err, "import image: storing %q", name)
			}
			_ = is.Delete(ctx, rec.Name)
			rec.Name = name
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		img := containerd.NewImageWithPlatform(be.client, rec, platforms.Default())
		if err := unpack(ctx, img); err != nil {
			return nil, err
		}
		desc, err := describe(ctx, img)
		if err != nil {
			return nil, err
		}
		out = append(out, desc)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("import image: the archive names no image (no io.containerd.image.name or org.opencontainers.image.ref.name annotation with a full ref, no RepoTags): %w", sdk.ErrInvalidArgument)
	}
	return out, nil
}

// refFromOCIName turns an OCI layout's org.opencontainers.image.ref.name
// into an image name when it is a full ref ("busybox:1.36",
// "registry/x/y:tag"); a bare tag ("1.36") names no image.
func refFromOCIName(name string) string {
	if !strings.ContainsAny(name, ":/@") {
		return ""
	}
	n, err := normalizeRef(name)
	if err != nil {
		return ""
	}
	return n
}

// putImage creates img or points an existing image of that name at its
// target.
func putImage(ctx context.Context, is images.Store, img images.Image) error {
	if _, err := is.Update(ctx, img, "target"); err == nil || !errdefs.IsNotFound(err) {
		return err
	}
	_, err := is.Create(ctx, img)
	return err
}

// unpack unpacks img into the snapshotter unless it is already.
func unpack(ctx context.Context, img containerd.Image) error {
	ok, err := img.IsUnpacked(ctx, snapshotter)
	if err == nil && ok {
		return nil
	}
	if err := img.Unpack(ctx, snapshotter); err != nil {
		if errdefs.IsNotFound(err) {
			// Content the image needs is missing: for an import, the
			// archive did not hold it (or not for this platform).
			return wrapAs(sdk.ErrInvalidArgument, err, "image %q: unpacking for %s", img.Name(), platforms.DefaultString())
		}
		return wrapErr(err, "image %q: unpacking", img.Name())
	}
	return nil
}

// describe returns what the sdk says about img.
func describe(ctx context.Context, img containerd.Image) (runtime.Image, error) {
	size, err := img.Size(ctx)
	if err != nil {
		return runtime.Image{}, wrapErr(err, "image %q: size", img.Name())
	}
	return runtime.Image{Ref: img.Name(), Digest: img.Target().Digest.String(), Size: size}, nil
}

// serverSide reports whether an import error came from containerd itself
// rather than from the archive's content.
func serverSide(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errdefs.IsUnavailable(err) || errdefs.IsInternal(err) || errdefs.IsResourceExhausted(err) ||
		errdefs.IsPermissionDenied(err) || errdefs.IsAborted(err)
}

// readErrRecorder remembers the first error other than io.EOF its reader
// returned, to tell a failing reader from a malformed archive.
type readErrRecorder struct {
	r   io.Reader
	err error
}

func (r *readErrRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}
