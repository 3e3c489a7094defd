package containerdtest

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
)

// Registry is a read-only OCI distribution registry over plain HTTP,
// holding the images pushed to it with Add. Everything else is 404, as a
// real registry answers for an image it does not have.
type Registry struct {
	srv *httptest.Server
	// Host is the registry's host:port, the first part of its refs.
	Host string

	mu        sync.Mutex
	manifests map[string][]byte // "name:tag" and "name@digest" → manifest
	blobs     map[string][]byte // digest → blob
	pulls     int               // tags resolved
}

// NewRegistry starts a registry on 127.0.0.1. Close stops it.
func NewRegistry() *Registry {
	r := &Registry{manifests: map[string][]byte{}, blobs: map[string][]byte{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// Close stops the registry.
func (r *Registry) Close() { r.srv.Close() }

// Add serves image b as repository name (without the host) and tag.
func (r *Registry) Add(name, tag string, b *Built) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.manifests[name+":"+tag] = b.Manifest
	r.manifests[name+"@"+b.ManifestDigest] = b.Manifest
	r.blobs[b.ConfigDigest] = b.Config
	r.blobs[b.LayerDigest] = b.Layer
}

// Pulls returns how many times a tag was resolved (a pull starts so; the
// blobs it already has are not fetched again).
func (r *Registry) Pulls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pulls
}

func (r *Registry) serve(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		http.Error(w, "read-only", http.StatusMethodNotAllowed)
		return
	}
	p := strings.TrimPrefix(req.URL.Path, "/v2/")
	if p == "" {
		w.WriteHeader(http.StatusOK)
		return
	}
	var (
		body      []byte
		mediaType string
		ok        bool
	)
	r.mu.Lock()
	if i := strings.LastIndex(p, "/manifests/"); i > 0 {
		name, ref := p[:i], p[i+len("/manifests/"):]
		sep := ":"
		if strings.HasPrefix(ref, "sha256:") {
			sep = "@"
		}
		body, ok = r.manifests[name+sep+ref]
		mediaType = mediaManifest
		if ok && sep == ":" {
			r.pulls++
		}
	} else if i := strings.LastIndex(p, "/blobs/"); i > 0 {
		body, ok = r.blobs[p[i+len("/blobs/"):]]
		mediaType = "application/octet-stream"
	}
	r.mu.Unlock()
	if !ok {
		http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"not found"}]}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Docker-Content-Digest", digestOf(body))
	if req.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
}
