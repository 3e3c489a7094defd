package containerdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The binaries a Registry runs, from Debian's docker-registry and skopeo
// packages.
const (
	registryBin = "docker-registry"
	skopeoBin   = "skopeo"
)

// registryStartTimeout bounds how long StartRegistry waits for the
// registry to answer, over all its tries.
const registryStartTimeout = 30 * time.Second

// RegistryUnavailable returns why the machine cannot run a Registry (a
// binary missing), or "" when it can.
func RegistryUnavailable() string {
	for _, bin := range []string{registryBin, skopeoBin} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not in PATH (install the docker-registry and skopeo packages)"
		}
	}
	return ""
}

// Registry is a real OCI distribution registry (Debian's docker-registry)
// serving plain HTTP on 127.0.0.1, with its config and storage in a temp
// dir of its own. Images get into it the way they get into any registry:
// pushed, here by skopeo with Add. Close stops it and removes the dir.
//
// Its access log is kept, so that tests can see what a client asked it
// (ManifestRequests).
type Registry struct {
	// Host is the registry's host:port, the first part of its refs.
	Host string

	dir    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // what Wait returned, set before exited is closed

	access *lineLog // the access log (the registry's stdout)
	stderr *lineLog // its own log, for error messages

	syncs int // sentinel requests sent by ManifestRequests
	mu    sync.Mutex
}

// StartRegistry starts a registry on a free port of 127.0.0.1 and returns
// once it answers GET /v2/. The caller must Close it.
func StartRegistry(ctx context.Context) (*Registry, error) {
	if why := RegistryUnavailable(); why != "" {
		return nil, errors.New(why)
	}
	ctx, cancel := context.WithTimeout(ctx, registryStartTimeout)
	defer cancel()
	// Another process may take the free port between our picking it and
	// the registry binding it; the registry then exits and we try again.
	var errs []error
	for try := 0; try < 3; try++ {
		r, err := startRegistry(ctx)
		if err == nil {
			return r, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("starting %s: %w", registryBin, errors.Join(errs...))
}

func startRegistry(ctx context.Context) (_ *Registry, err error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "warren-registry-*")
	if err != nil {
		return nil, err
	}
	r := &Registry{
		Host:   net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		dir:    dir,
		exited: make(chan struct{}),
		access: newLineLog(),
		stderr: newLineLog(),
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
		}
	}()
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, filepath.Join(dir, "storage"), r.Host)
	configPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return nil, err
	}

	r.cmd = exec.Command(registryBin, "serve", configPath)
	r.cmd.Dir = dir
	r.cmd.Env = registryEnv()
	r.cmd.Stdout = r.access
	r.cmd.Stderr = r.stderr
	// The registry dies with the test binary, even one killed outright.
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		close(r.exited)
		return nil, err
	}
	go func() {
		r.err = r.cmd.Wait()
		close(r.exited)
	}()

	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if r.get(ctx, client, "/v2/") == nil {
			return r, nil
		}
		select {
		case <-r.exited:
			return nil, fmt.Errorf("%s on %s exited: %v: %s", registryBin, r.Host, r.err, r.stderrTail())
		case <-ctx.Done():
			return nil, fmt.Errorf("%s on %s did not answer GET /v2/: %w: %s", registryBin, r.Host, ctx.Err(), r.stderrTail())
		case <-tick.C:
		}
	}
}

// get requests path and returns nil for a 200.
func (r *Registry) get(ctx context.Context, client *http.Client, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.Host+path, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return nil
}

// Close stops the registry (killing it and waiting for it) and removes its
// dir with everything pushed to it. It is safe to call more than once.
func (r *Registry) Close() error {
	if r.cmd != nil && r.cmd.Process != nil {
		select {
		case <-r.exited:
		default:
			_ = r.cmd.Process.Kill()
		}
		<-r.exited
	}
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("removing registry dir %s: %w", r.dir, err)
	}
	return nil
}

// Add pushes image b to the registry as repository name (without the host)
// and tag, with skopeo, from b's OCI archive. The manifest keeps its digest
// (b.ManifestDigest).
func (r *Registry) Add(ctx context.Context, name, tag string, b *Built) error {
	archive, err := b.OCIArchive()
	if err != nil {
		return fmt.Errorf("image %q: %w", b.Ref, err)
	}
	work, err := os.MkdirTemp(r.dir, "push-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	file := filepath.Join(work, "image.tar")
	if err := os.WriteFile(file, archive, 0o600); err != nil {
		return err
	}
	// Accept any image: the trust policy is not what these tests are about,
	// and the machine's /etc/containers/policy.json may not exist.
	policy := filepath.Join(work, "policy.json")
	if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o600); err != nil {
		return err
	}
	// The archive names its one manifest b.Ref
	// (org.opencontainers.image.ref.name), which oci-archive:FILE:REF
	// selects.
	src := "oci-archive:" + file
	if b.Ref != "" {
		src += ":" + b.Ref
	}
	dest := "docker://" + r.Host + "/" + name + ":" + tag
	cmd := exec.CommandContext(ctx, skopeoBin,
		"--policy", policy, "--tmpdir", work,
		"copy", "--quiet", "--preserve-digests", "--retry-times", "0",
		"--dest-tls-verify=false", "--dest-no-creds",
		src, dest)
	cmd.Env = append(registryEnv(), "TMPDIR="+work)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("skopeo copy %s %s: %w: %s", b.Ref, dest, err, bytes.TrimSpace(out))
	}
	return nil
}

// ManifestRequests returns how many GET or HEAD requests for the manifest
// of name:ref (a tag or a digest) the registry answered with 200 so far.
// A client resolving a tag asks for it once, so for a tag this counts the
// pulls that reached the registry; blobs a client already has are not
// fetched again.
//
// Every request a client saw answered before the call is counted: the
// registry logs a request before it finishes a (small) response, and the
// call sends a request of its own and waits for its line, which comes
// after those in the log.
func (r *Registry) ManifestRequests(ctx context.Context, name, ref string) (int, error) {
	r.mu.Lock()
	r.syncs++
	sentinel := fmt.Sprintf("/v2/?warren-sync=%d", r.syncs)
	r.mu.Unlock()
	if err := r.get(ctx, http.DefaultClient, sentinel); err != nil {
		return 0, fmt.Errorf("registry %s: %w", r.Host, err)
	}
	if err := r.access.waitFor(ctx, `"GET `+sentinel+` `); err != nil {
		return 0, fmt.Errorf("registry %s: waiting for the access log line of %s: %w", r.Host, sentinel, err)
	}
	path := "/v2/" + name + "/manifests/" + ref
	n := 0
	for _, l := range r.access.lines() {
		method, uri, status, ok := parseAccessLine(l)
		if ok && (method == http.MethodGet || method == http.MethodHead) && uri == path && status == http.StatusOK {
			n++
		}
	}
	return n, nil
}

// parseAccessLine reads a line of the combined log format the registry's
// access log uses:
//
//	127.0.0.1 - - [date] "HEAD /v2/x/manifests/1 HTTP/1.1" 200 0 "" "agent"
func parseAccessLine(l string) (method, uri string, status int, ok bool) {
	_, rest, found := strings.Cut(l, `"`)
	if !found {
		return "", "", 0, false
	}
	request, rest, found := strings.Cut(rest, `"`)
	if !found {
		return "", "", 0, false
	}
	f := strings.Fields(request)
	g := strings.Fields(rest)
	if len(f) < 2 || len(g) < 1 {
		return "", "", 0, false
	}
	status, err := strconv.Atoi(g[0])
	if err != nil {
		return "", "", 0, false
	}
	return f[0], f[1], status, true
}

func (r *Registry) stderrTail() string {
	s := strings.TrimSpace(strings.Join(r.stderr.lines(), "\n"))
	if len(s) > 2000 {
		s = "..." + s[len(s)-2000:]
	}
	return s
}

// registryEnv is the environment without REGISTRY_* variables, which
// would override the registry's config file.
func registryEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") {
			env = append(env, kv)
		}
	}
	return env
}

// freePort returns a TCP port of 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// lineLog is an io.Writer keeping the complete lines written to it, and
// telling waiters when new ones come.
type lineLog struct {
	mu      sync.Mutex
	partial []byte
	all     []string
	changed chan struct{} // closed and replaced on every new line
}

func newLineLog() *lineLog { return &lineLog{changed: make(chan struct{})} }

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	added := false
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.all = append(l.all, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
		added = true
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

func (l *lineLog) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.all...)
}

// waitFor waits until a line containing s has been written.
func (l *lineLog) waitFor(ctx context.Context, s string) error {
	for {
		l.mu.Lock()
		changed := l.changed
		for _, line := range l.all {
			if strings.Contains(line, s) {
				l.mu.Unlock()
				return nil
			}
		}
		l.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
