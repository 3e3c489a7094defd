package containerdtest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"testing"
	"time"
)

func TestRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("runs docker-registry and skopeo; skipped in -short mode")
	}
	if why := RegistryUnavailable(); why != "" {
		t.Skip(why)
	}
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skip(BusyboxPath + " is missing (install busybox-static)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := StartRegistry(ctx)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = r.Close()
		}
	})
	built, err := Image{Ref: "warren.test/registry:1", Cmd: []string{"sh"}}.Build()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(ctx, "warren/reg", "v1", built); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		method, path string
		status       int
		body         []byte // for a GET with 200
	}{
		{http.MethodGet, "/v2/warren/reg/manifests/v1", http.StatusOK, built.Manifest},
		{http.MethodHead, "/v2/warren/reg/manifests/v1", http.StatusOK, nil},
		{http.MethodGet, "/v2/warren/reg/manifests/" + built.ManifestDigest, http.StatusOK, built.Manifest},
		{http.MethodGet, "/v2/warren/reg/blobs/" + built.ConfigDigest, http.StatusOK, built.Config},
		{http.MethodGet, "/v2/warren/reg/blobs/" + built.LayerDigest, http.StatusOK, built.Layer},
		{http.MethodGet, "/v2/warren/reg/manifests/v2", http.StatusNotFound, nil},
		{http.MethodGet, "/v2/warren/other/manifests/v1", http.StatusNotFound, nil},
	}
	for _, tt := range tests {
		req, err := http.NewRequestWithContext(ctx, tt.method, "http://"+r.Host+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", mediaManifest)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %s, want %d", tt.method, tt.path, resp.Status, tt.status)
			continue
		}
		if tt.body != nil && !bytes.Equal(body, tt.body) {
			t.Errorf("%s %s: the registry serves other bytes than were pushed", tt.method, tt.path)
		}
		if tt.status == http.StatusOK && tt.method == http.MethodHead {
			if d := resp.Header.Get("Docker-Content-Digest"); d != built.ManifestDigest {
				t.Errorf("%s %s: digest %s, want %s", tt.method, tt.path, d, built.ManifestDigest)
			}
		}
	}

	// The GET and the HEAD of the tag; not the 404 of tag v2.
	counts := []struct {
		name, ref string
		want      int
	}{
		{"warren/reg", "v1", 2},
		{"warren/reg", built.ManifestDigest, 1},
		{"warren/reg", "v2", 0},
	}
	for _, c := range counts {
		got, err := r.ManifestRequests(ctx, c.name, c.ref)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("ManifestRequests(%s, %s) = %d, want %d", c.name, c.ref, got, c.want)
		}
	}

	pid := r.cmd.Process.Pid
	closed = true
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := os.Stat(r.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the registry dir is still there after Close: %v", err)
	}
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the registry process %d still exists after Close", pid)
	}
	if err := r.Close(); err != nil {
		t.Errorf("Close again: %v", err)
	}
}
