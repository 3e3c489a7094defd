package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/platforms"
	"github.com/containerd/containerd/remotes"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

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
// pulls and unpacks it otherwise or when alwaysPull is set. The local
// lookup is one call (call_timeout); a pull is bounded by its progress: it
// fails once no bytes came from the registry for call_timeout.
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
		if img, found, err := be.localImage(ctx, name, ref); err != nil || found {
			return img, err
		}
	}
	pctx, guard, stop := be.guardStalls(ctx, fmt.Sprintf("pulling image %q", ref))
	defer stop()
	img, err := be.pull(pctx, guard, name)
	if err != nil {
		if st := stalled(pctx); st != nil {
			return runtime.Image{}, st
		}
		if errdefs.IsNotFound(err) {
			return runtime.Image{}, wrapAs(sdk.ErrNotFound, err, "image %q", ref)
		}
		return runtime.Image{}, wrapErr(err, "pulling image %q", ref)
	}
	dctx, cancel := be.call(ctx, 0)
	defer cancel()
	desc, err := be.describeToRun(dctx, img)
	return desc, be.noAnswer(dctx, err)
}

// localImage describes image name (ref as the caller gave it) when it is
// present, unpacking it if it is not yet, within call_timeout.
func (be *backend) localImage(ctx context.Context, name, ref string) (_ runtime.Image, found bool, err error) {
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	img, err := be.client.GetImage(ctx, name)
	switch {
	case errdefs.IsNotFound(err):
		return runtime.Image{}, false, nil
	case err != nil:
		return runtime.Image{}, false, wrapErr(err, "image %q", ref)
	}
	if _, err := be.prepareImage(ctx, img); err != nil {
		return runtime.Image{}, false, err
	}
	desc, err := be.describeToRun(ctx, img)
	return desc, err == nil, err
}

// pull pulls and unpacks name, marking progress on guard with every chunk
// that comes from the registry.
func (be *backend) pull(ctx context.Context, guard *stallGuard, name string) (containerd.Image, error) {
	return be.client.Pull(ctx, name,
		containerd.WithResolver(progressResolver{Resolver: be.resolver, mark: guard.mark}),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(snapshotter),
		containerd.WithPlatformMatcher(platforms.Default()))
}

// ImportImage stores the images of an OCI layout or docker-archive tarball
// under the refs the archive names, and unpacks them.
// Reading the archive into containerd is bounded by its progress: the
// import fails once containerd has taken no bytes for call_timeout. Each
// image's unpack afterwards is one call (call_timeout).
func (r *Runtime) ImportImage(ctx context.Context, rd io.Reader) ([]runtime.Image, error) {
	// An import streams a whole archive through the heap; hand the memory
	// back to the node once it is done.
	defer debug.FreeOSMemory()
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return nil, err
	}
	ictx, guard, stop := be.guardStalls(ctx, "import image")
	src := &readErrRecorder{r: rd, mark: guard.mark}
	imported, err := be.client.Import(ictx, src,
		containerd.WithImageRefTranslator(refFromOCIName),
		containerd.WithImportPlatform(platforms.Default()))
	st := stalled(ictx)
	stop()
	if st != nil {
		return nil, st
	}
	if src.err != nil {
		return nil, wrapErr(src.err, "import image: reading the archive")
	}
	if err != nil {
		if serverSide(err) {
			return nil, be.noAnswer(ictx, wrapErr(err, "import image"))
		}
		return nil, wrapAs(sdk.ErrInvalidArgument, err, "import image: malformed archive")
	}

	var out []runtime.Image
	seen := map[string]bool{}
	for _, rec := range imported {
		desc, ok, err := be.storeImage(ctx, rec, seen)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, desc)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("import image: the archive names no image (no io.containerd.image.name or org.opencontainers.image.ref.name annotation with a full ref, no RepoTags): %w", sdk.ErrInvalidArgument)
	}
	return out, nil
}

// storeImage names an imported image by its normalized ref, unpacks and
// describes it, within call_timeout. ok is false for an image left out: not
// a ref tasks could use, or one of seen already (which it adds to).
func (be *backend) storeImage(ctx context.Context, rec images.Image, seen map[string]bool) (_ runtime.Image, ok bool, err error) {
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	is := be.client.ImageService()
	name, err := normalizeRef(rec.Name)
	if err != nil {
		// Not a ref we could run; leave it out.
		_ = is.Delete(ctx, rec.Name)
		return runtime.Image{}, false, nil
	}
	if name != rec.Name {
		if err := putImage(ctx, is, images.Image{Name: name, Target: rec.Target}); err != nil {
			return runtime.Image{}, false, wrapErr(err, "import image: storing %q", name)
		}
		_ = is.Delete(ctx, rec.Name)
		rec.Name = name
	}
	if seen[name] {
		return runtime.Image{}, false, nil
	}
	seen[name] = true
	img := containerd.NewImageWithPlatform(be.client, rec, platforms.Default())
	if err := unpack(ctx, img); err != nil {
		return runtime.Image{}, false, err
	}
	desc, err := be.describe(ctx, img)
	return desc, err == nil, err
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

// imageFacts is what the plugin reads about an image from containerd's
// content store to describe, unpack and run it. Content is addressed by
// digest, so the facts of an image's target digest never change: the
// backend keeps them (imageFactsOf), and a warm start costs one image
// lookup and one snapshot Stat instead of re-reading the manifest and
// config blobs on every call.
type imageFacts struct {
	config  ocispec.Image // the image's config blob, for this platform
	chainID string        // the snapshot of its unpacked root file system
	size    int64         // img.Size: the manifest, config and layers
	// health is the config's Healthcheck (nil: none); healthErr says why
	// it cannot be honoured, when the config's Healthcheck is malformed.
	health    *runtime.ImageHealthCheck
	healthErr error
}

// maxImageFacts bounds the backend's facts; past it they are read afresh.
const maxImageFacts = 256

// imageFactsOf returns img's facts, read once per target digest.
func (be *backend) imageFactsOf(ctx context.Context, img containerd.Image) (imageFacts, error) {
	key := img.Target().Digest
	be.factsMu.Lock()
	f, ok := be.facts[key]
	be.factsMu.Unlock()
	if ok {
		return f, nil
	}
	// The config blob is read whole (img.Spec would drop the Docker
	// extensions ocispec.Image does not know, such as Healthcheck).
	cd, err := img.Config(ctx)
	if err != nil {
		return imageFacts{}, wrapErr(err, "image %q: config", img.Name())
	}
	blob, err := content.ReadBlob(ctx, img.ContentStore(), cd)
	if err != nil {
		return imageFacts{}, wrapErr(err, "image %q: config", img.Name())
	}
	var ic ocispec.Image
	if err := json.Unmarshal(blob, &ic); err != nil {
		return imageFacts{}, wrapAs(sdk.ErrInvalidArgument, err, "image %q: config", img.Name())
	}
	health, herr := parseImageHealthcheck(blob)
	if herr != nil {
		herr = wrapAs(sdk.ErrInvalidArgument, herr, "image %q: malformed HEALTHCHECK", img.Name())
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return imageFacts{}, wrapErr(err, "image %q: layers", img.Name())
	}
	size, err := img.Size(ctx)
	if err != nil {
		return imageFacts{}, wrapErr(err, "image %q: size", img.Name())
	}
	f = imageFacts{config: ic, chainID: identity.ChainID(diffIDs).String(), size: size, health: health, healthErr: herr}
	be.factsMu.Lock()
	if be.facts == nil || len(be.facts) >= maxImageFacts {
		be.facts = map[digest.Digest]imageFacts{}
	}
	be.facts[key] = f
	be.factsMu.Unlock()
	return f, nil
}

// prepareImage returns the facts of img, unpacking it into the snapshotter
// unless it is already (one Stat of its snapshot when its facts are known).
func (be *backend) prepareImage(ctx context.Context, img containerd.Image) (imageFacts, error) {
	f, err := be.imageFactsOf(ctx, img)
	if err == nil {
		if _, serr := be.client.SnapshotService(snapshotter).Stat(ctx, f.chainID); serr == nil {
			return f, nil
		}
	}
	if err := unpack(ctx, img); err != nil {
		return imageFacts{}, err
	}
	return be.imageFactsOf(ctx, img)
}

// describe returns what the sdk says about img.
func (be *backend) describe(ctx context.Context, img containerd.Image) (runtime.Image, error) {
	f, err := be.imageFactsOf(ctx, img)
	if err != nil {
		return runtime.Image{}, err
	}
	return imageOf(img, f), nil
}

// describeToRun is describe for EnsureImage, whose image is about to run:
// one whose HEALTHCHECK is malformed cannot run as it asks, and is refused
// (it is stored, imported and listed all the same).
func (be *backend) describeToRun(ctx context.Context, img containerd.Image) (runtime.Image, error) {
	f, err := be.imageFactsOf(ctx, img)
	if err != nil {
		return runtime.Image{}, err
	}
	if f.healthErr != nil {
		return runtime.Image{}, f.healthErr
	}
	return imageOf(img, f), nil
}

func imageOf(img containerd.Image, f imageFacts) runtime.Image {
	return runtime.Image{Ref: img.Name(), Digest: img.Target().Digest.String(), Size: f.size, HealthCheck: f.health}
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

// serverSide reports whether an import error came from containerd itself
// rather than from the archive's content.
func serverSide(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) ||
		errdefs.IsUnavailable(err) || errdefs.IsInternal(err) || errdefs.IsResourceExhausted(err) ||
		errdefs.IsPermissionDenied(err) || errdefs.IsAborted(err)
}

// readErrRecorder remembers the first error other than io.EOF its reader
// returned, to tell a failing reader from a malformed archive, and calls
// mark whenever bytes come through.
type readErrRecorder struct {
	r    io.Reader
	err  error
	mark func()
}

func (r *readErrRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 && r.mark != nil {
		r.mark()
	}
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// progressResolver is a resolver whose fetches call mark whenever bytes
// come from the registry, for a stallGuard.
type progressResolver struct {
	remotes.Resolver
	mark func()
}

func (p progressResolver) Fetcher(ctx context.Context, ref string) (remotes.Fetcher, error) {
	f, err := p.Resolver.Fetcher(ctx, ref)
	if err != nil {
		return nil, err
	}
	return progressFetcher{f: f, mark: p.mark}, nil
}

func (p progressResolver) Resolve(ctx context.Context, ref string) (string, ocispec.Descriptor, error) {
	name, desc, err := p.Resolver.Resolve(ctx, ref)
	if err == nil {
		p.mark()
	}
	return name, desc, err
}

type progressFetcher struct {
	f    remotes.Fetcher
	mark func()
}

func (p progressFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := p.f.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	p.mark()
	return progressReader{ReadCloser: rc, mark: p.mark}, nil
}

type progressReader struct {
	io.ReadCloser
	mark func()
}

func (p progressReader) Read(b []byte) (int, error) {
	n, err := p.ReadCloser.Read(b)
	if n > 0 {
		p.mark()
	}
	return n, err
}

// ListImages lists the images of Warren's namespace, sorted by ref; an
// image whose content cannot be read (an interrupted pull) is listed
// without its size.
func (r *Runtime) ListImages(ctx context.Context) (_ []runtime.Image, err error) {
	be, ctx, err := r.backend(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := be.call(ctx, 0)
	defer cancel()
	defer func() { err = be.noAnswer(ctx, err) }()
	recs, err := be.client.ImageService().List(ctx)
	if err != nil {
		return nil, wrapErr(err, "list images")
	}
	out := make([]runtime.Image, 0, len(recs))
	for _, rec := range recs {
		desc, err := be.describe(ctx, containerd.NewImageWithPlatform(be.client, rec, platforms.Default()))
		if err != nil {
			desc = runtime.Image{Ref: rec.Name, Digest: rec.Target.Digest.String()}
		}
		out = append(out, desc)
	}
	slices.SortFunc(out, func(a, b runtime.Image) int { return strings.Compare(a.Ref, b.Ref) })
	return out, nil
}
