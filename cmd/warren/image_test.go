package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestImageImport(t *testing.T) {
	f, sock := startFake(t)
	archive := make([]byte, 2*importChunkSize+importChunkSize/2)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range archive {
		archive[i] = byte(rng.Uint32())
	}
	file := filepath.Join(t.TempDir(), "busybox.tar")
	if err := os.WriteFile(file, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	received := func() ([]byte, []int, int) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.imported, f.chunks, f.imports
	}

	r := warren(t, sock, "image", "import", file).mustSucceed(t)
	checkGolden(t, r.stdout, ""+
		"REF                              DIGEST                SIZE\n"+
		"docker.io/library/busybox:1.36   sha256:0123456789ab   4.2MiB\n"+
		"Imported on edge-1, edge-2\n")
	// Each node's progress comes on stderr as the archive goes.
	progress := fmt.Sprintf("edge-1: %s sent\nedge-1: %s sent\nedge-1: %s sent\nedge-2: failed: no space left on device\nedge-1: done, %s\n",
		humanSize(importChunkSize), humanSize(2*importChunkSize), humanSize(int64(len(archive))), humanSize(int64(len(archive))))
	if r.stderr != progress {
		t.Errorf("import progress on stderr:\n%s\nwant\n%s", r.stderr, progress)
	}
	got, chunks, _ := received()
	if !bytes.Equal(got, archive) {
		t.Errorf("the agent received %d bytes, not the %d of the file (or not the same)", len(got), len(archive))
	}
	if want := []int{importChunkSize, importChunkSize, importChunkSize / 2}; !slices.Equal(chunks, want) {
		t.Errorf("chunks of %v bytes, want %v", chunks, want)
	}

	// From standard input, with -o json.
	root := newRootCmd()
	root.SetIn(bytes.NewReader(archive[:1000]))
	var stdout, stderr bytes.Buffer
	if code := execute(context.Background(), root, []string{"--socket", sock, "image", "import", "-", "-o", "json"}, &stdout, &stderr); code != 0 {
		t.Fatalf("import -: status %d, stderr %q", code, stderr.String())
	}
	if got, chunks, _ := received(); !bytes.Equal(got, archive[:1000]) || !slices.Equal(chunks, []int{1000}) {
		t.Errorf("import - sent %d bytes in chunks %v", len(got), chunks)
	}
	if !strings.Contains(stdout.String(), `"nodes": [`) || !strings.Contains(stdout.String(), `"ref": "docker.io/library/busybox:1.36"`) {
		t.Errorf("import -o json printed:\n%s", stdout.String())
	}

	// Files that cannot be imported are refused before any call.
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.tar")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.tar")
	tests := []struct {
		file, want string
	}{
		{missing, "Error: image archive: open " + missing + ": no such file or directory\n"},
		{empty, "Error: " + empty + " is empty: nothing to import\n"},
		{dir, "Error: image archive " + dir + " is a directory: give the tarball (docker save -o FILE IMAGE makes one)\n"},
	}
	for _, tt := range tests {
		r := warren(t, sock, "image", "import", tt.file)
		if r.code != 1 || r.stderr != tt.want || r.stdout != "" {
			t.Errorf("import %s: status %d, stdout %q, stderr %q\nwant stderr %q", tt.file, r.code, r.stdout, r.stderr, tt.want)
		}
	}
	if _, _, calls := received(); calls != 2 {
		t.Errorf("the agent got %d imports, want the 2 that succeeded", calls)
	}

	// Even without an agent, a missing file is what is reported.
	r = warren(t, filepath.Join(dir, "no.sock"), "image", "import", missing)
	if r.code != 1 || r.stderr != tests[0].want {
		t.Errorf("import without an agent: status %d, stderr %q", r.code, r.stderr)
	}
}
