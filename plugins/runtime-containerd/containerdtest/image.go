// Package containerdtest holds what the runtime-containerd plugin's tests
// share: small busybox images built in memory (as OCI layout and
// docker-archive tarballs, or pushed to a real registry (see StartRegistry)), the check
// for what the tests need on the machine, and a managed containerd per test
// binary that is torn down, with every task and shim it ran, when the tests
// end.
package containerdtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path"
	goruntime "runtime"
	"time"
)

// BusyboxPath is the static busybox every test image holds.
const BusyboxPath = "/bin/busybox"

// Applets are the busybox commands linked in an image's /bin.
var Applets = []string{
	"sh", "sleep", "env", "echo", "cat", "true", "false", "id", "pwd", "dd",
	"tail", "ls", "kill", "readlink", "touch", "wc",
}

// Media types and annotations of the archives.
const (
	mediaManifest  = "application/vnd.oci.image.manifest.v1+json"
	mediaIndex     = "application/vnd.oci.image.index.v1+json"
	mediaConfig    = "application/vnd.oci.image.config.v1+json"
	mediaLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	annotationName = "io.containerd.image.name"
	annotationRef  = "org.opencontainers.image.ref.name"
)

// User 1234 ("warren", group "warren") exists in every test image.
const (
	TestUser = "warren"
	TestUID  = 1234
)

// Image describes a test image: busybox plus an image config.
type Image struct {
	// Ref names the image in archives ("warren.test/busybox:1").
	Ref        string
	Entrypoint []string
	Cmd        []string
	Env        []string
	WorkingDir string
	// Healthcheck, when set, is written to the config as Docker does
	// (config.Healthcheck, durations in nanoseconds).
	Healthcheck *Healthcheck
}

// Healthcheck is Docker's HEALTHCHECK of an image config: Test is
// ["CMD", arg...], ["CMD-SHELL", "script"] or ["NONE"]; zero means the
// default.
type Healthcheck struct {
	Test        []string
	Interval    time.Duration `json:",omitempty"`
	Timeout     time.Duration `json:",omitempty"`
	StartPeriod time.Duration `json:",omitempty"`
	Retries     int           `json:",omitempty"`
}

// Built is an image's content: its blobs and how they fit together.
type Built struct {
	Ref            string
	Manifest       []byte
	ManifestDigest string
	Config         []byte
	ConfigDigest   string
	Layer          []byte // gzipped tar
	LayerDigest    string
	LayerTar       []byte // the same layer, uncompressed
	DiffID         string
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// hexOf is the hex part of a sha256 digest.
func hexOf(d string) string { return d[len("sha256:"):] }

// Build puts the image together.
func (img Image) Build() (*Built, error) {
	layerTar, err := busyboxLayer()
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(layerTar); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := &Built{Ref: img.Ref, LayerTar: layerTar, DiffID: digestOf(layerTar), Layer: gz.Bytes()}
	b.LayerDigest = digestOf(b.Layer)

	cfg := map[string]any{
		"architecture": goruntime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config": map[string]any{
			"Entrypoint":  img.Entrypoint,
			"Cmd":         img.Cmd,
			"Env":         img.Env,
			"WorkingDir":  img.WorkingDir,
			"Healthcheck": img.Healthcheck,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{b.DiffID}},
	}
	if b.Config, err = json.Marshal(cfg); err != nil {
		return nil, err
	}
	b.ConfigDigest = digestOf(b.Config)
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaManifest,
		"config":        map[string]any{"mediaType": mediaConfig, "digest": b.ConfigDigest, "size": len(b.Config)},
		"layers":        []any{map[string]any{"mediaType": mediaLayerGzip, "digest": b.LayerDigest, "size": len(b.Layer)}},
	}
	if b.Manifest, err = json.Marshal(manifest); err != nil {
		return nil, err
	}
	b.ManifestDigest = digestOf(b.Manifest)
	return b, nil
}

// OCIArchive is the image as an OCI image layout tarball, named by both
// io.containerd.image.name and org.opencontainers.image.ref.name.
func (b *Built) OCIArchive() ([]byte, error) {
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaIndex,
		"manifests": []any{map[string]any{
			"mediaType":   mediaManifest,
			"digest":      b.ManifestDigest,
			"size":        len(b.Manifest),
			"annotations": map[string]string{annotationName: b.Ref, annotationRef: b.Ref},
		}},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return nil, err
	}
	return tarOf([]tarEntry{
		{name: "oci-layout", data: []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{name: "index.json", data: indexJSON},
		{name: "blobs/", dir: true},
		{name: "blobs/sha256/", dir: true},
		{name: "blobs/sha256/" + hexOf(b.ConfigDigest), data: b.Config},
		{name: "blobs/sha256/" + hexOf(b.LayerDigest), data: b.Layer},
		{name: "blobs/sha256/" + hexOf(b.ManifestDigest), data: b.Manifest},
	})
}

// DockerArchive is the image as `docker save` writes it, tagged b.Ref.
func (b *Built) DockerArchive() ([]byte, error) {
	configName := hexOf(b.ConfigDigest) + ".json"
	layerName := hexOf(b.DiffID) + "/layer.tar"
	manifest, err := json.Marshal([]any{map[string]any{
		"Config":   configName,
		"RepoTags": []string{b.Ref},
		"Layers":   []string{layerName},
	}})
	if err != nil {
		return nil, err
	}
	return tarOf([]tarEntry{
		{name: configName, data: b.Config},
		{name: hexOf(b.DiffID) + "/", dir: true},
		{name: layerName, data: b.LayerTar},
		{name: "manifest.json", data: manifest},
	})
}

type tarEntry struct {
	name string
	data []byte
	dir  bool
	link string // symlink target
	mode int64
}

func tarOf(entries []tarEntry) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, ModTime: epoch, Mode: e.mode, Format: tar.FormatPAX}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
			if h.Mode == 0 {
				h.Mode = 0o755
			}
		case e.link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, e.link, 0o777
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.data))
			if h.Mode == 0 {
				h.Mode = 0o644
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// busyboxLayer is the uncompressed layer every test image shares.
func busyboxLayer() ([]byte, error) {
	bb, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s (install busybox-static): %w", BusyboxPath, err)
	}
	entries := []tarEntry{
		{name: "bin/", dir: true},
		{name: "bin/busybox", data: bb, mode: 0o755},
	}
	for _, a := range Applets {
		entries = append(entries, tarEntry{name: path.Join("bin", a), link: "busybox"})
	}
	entries = append(entries,
		tarEntry{name: "etc/", dir: true},
		tarEntry{name: "etc/passwd", data: []byte(fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\n%s:x:%d:%d:%s:/home/%s:/bin/sh\n", TestUser, TestUID, TestUID, TestUser, TestUser))},
		tarEntry{name: "etc/group", data: []byte(fmt.Sprintf("root:x:0:\n%s:x:%d:\n", TestUser, TestUID))},
		tarEntry{name: "root/", dir: true, mode: 0o700},
		tarEntry{name: "tmp/", dir: true, mode: 0o1777},
		tarEntry{name: "home/", dir: true},
		tarEntry{name: "home/" + TestUser + "/", dir: true},
	)
	return tarOf(entries)
}
