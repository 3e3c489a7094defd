// Command testplugin-memstore is a test plugin for package pluginhost: a
// tiny in-memory store that can be told to misbehave.
//
// Environment:
//
//	TESTPLUGIN_KIND           kind to report in Info (default store)
//	TESTPLUGIN_API_VERSIONS   comma-separated API versions to report (default 1)
//	TESTPLUGIN_SCHEMA=invalid report a config schema the host must refuse
//	TESTPLUGIN_PID_FILE       write the process ID there first thing
//	TESTPLUGIN_FAIL_FILE      exit at once, before the handshake, while this file exists
//	TESTPLUGIN_EXIT_AFTER=N   exit with status 3 on the Nth Get
//	TESTPLUGIN_ORPHAN_FILE    start a child that inherits stdout and stderr
//	TESTPLUGIN_CLOSE_FILE     on a clean stop, take TESTPLUGIN_CLOSE_DELAY
//	                          (a Go duration) to close, then write this file
//	                          and outlives the plugin, as a daemon would; it
//	                          appends its process ID to this file, then
//	                          writes a line to stderr and bumps a counter in
//	                          <file>.<pid> every 20ms for at most a minute
//
// Get on bucket "_test" reads test hooks rather than data:
//
//	config     the JSON the host passed to Configure
//	pid        the process ID
//	env/NAME   the value of environment variable NAME
//	hang       stop the whole process (SIGSTOP): the call never returns and
//	           health checks go unanswered
//	exit       exit with status 3 in the middle of the call
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/store"
)

const name = "testplugin-memstore"

func main() {
	if f := os.Getenv("TESTPLUGIN_ORPHAN_MODE"); f != "" {
		runOrphan(f)
		return
	}
	if f := os.Getenv("TESTPLUGIN_PID_FILE"); f != "" {
		if err := os.WriteFile(f, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	if f := os.Getenv("TESTPLUGIN_FAIL_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			fmt.Fprintln(os.Stderr, "testplugin: fail file present, exiting")
			os.Exit(1)
		}
	}
	if f := os.Getenv("TESTPLUGIN_ORPHAN_FILE"); f != "" {
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), "TESTPLUGIN_ORPHAN_MODE="+f)
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	m := &memStore{
		kind: sdk.KindStore,
		data: make(map[string]map[string][]byte),
		log:  sdk.NewLogger(name),
	}
	if k := os.Getenv("TESTPLUGIN_KIND"); k != "" {
		m.kind = sdk.Kind(k)
	}
	m.apiVersions = []uint32{sdk.APIVersion}
	if v := os.Getenv("TESTPLUGIN_API_VERSIONS"); v != "" {
		m.apiVersions = nil
		for _, s := range strings.Split(v, ",") {
			n, err := strconv.ParseUint(s, 10, 32)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			m.apiVersions = append(m.apiVersions, uint32(n))
		}
	}
	if n := os.Getenv("TESTPLUGIN_EXIT_AFTER"); n != "" {
		v, err := strconv.ParseInt(n, 10, 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		m.exitAfter = v
	}
	m.closeFile = os.Getenv("TESTPLUGIN_CLOSE_FILE")
	if d := os.Getenv("TESTPLUGIN_CLOSE_DELAY"); d != "" {
		delay, err := time.ParseDuration(d)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		m.closeDelay = delay
	}
	if m.kind == sdk.KindStore {
		store.Serve(m)
		return
	}
	// A plugin that lies about its kind, serving the store service anyway.
	sdk.Serve(m.kind, m, store.Register(m))
}

// runOrphan is the child TESTPLUGIN_ORPHAN_FILE asks for.
func runOrphan(file string) {
	f, err := os.OpenFile(file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		os.Exit(1)
	}
	fmt.Fprintln(f, os.Getpid())
	f.Close()
	ticks := file + "." + strconv.Itoa(os.Getpid())
	for n := 1; n <= 3000; n++ {
		// Go exits with SIGPIPE here once nobody reads stderr any more.
		fmt.Fprintln(os.Stderr, "orphan tick", n)
		_ = os.WriteFile(ticks, []byte(strconv.Itoa(n)), 0o644)
		time.Sleep(20 * time.Millisecond)
	}
}

type memStore struct {
	closeFile  string
	closeDelay time.Duration

	kind        sdk.Kind
	apiVersions []uint32
	exitAfter   int64
	gets        atomic.Int64
	log         interface{ Info(string, ...any) }

	mu     sync.RWMutex
	config []byte
	index  uint64
	data   map[string]map[string][]byte
}

var _ store.Store = (*memStore)(nil)

func (m *memStore) Info(context.Context) (sdk.Info, error) {
	return sdk.Info{Kind: m.kind, Name: name, Version: "0.0.1-test", APIVersions: m.apiVersions, Description: "in-memory store for pluginhost tests"}, nil
}

func (m *memStore) ConfigSchema(context.Context) (sdk.Schema, error) {
	if os.Getenv("TESTPLUGIN_SCHEMA") == "invalid" {
		return sdk.Schema{Attributes: []sdk.Attribute{
			{Name: "path", Type: "int"},
			{Name: "path", Type: sdk.TypeString},
		}}, nil
	}
	return sdk.Schema{Attributes: []sdk.Attribute{
		{Name: "path", Type: sdk.TypeString, Required: true, Description: "where the data would live"},
		{Name: "sync", Type: sdk.TypeBool},
		{Name: "tags", Type: sdk.TypeListString},
		{Name: "retries", Type: sdk.TypeNumber},
		{Name: "labels", Type: sdk.TypeMapString},
	}}, nil
}

type config struct {
	Path    string            `json:"path"`
	Sync    *bool             `json:"sync"`
	Tags    []string          `json:"tags"`
	Retries *float64          `json:"retries"`
	Labels  map[string]string `json:"labels"`
}

func (m *memStore) Configure(_ context.Context, js []byte) error {
	var c config
	if err := sdk.DecodeConfig(js, &c); err != nil {
		return err
	}
	if c.Path == "/refuse" {
		return fmt.Errorf("path %q does not exist: %w", c.Path, sdk.ErrInvalidArgument)
	}
	m.mu.Lock()
	m.config = append([]byte(nil), js...)
	m.mu.Unlock()
	m.log.Info("configured", "path", c.Path)
	return nil
}

func (m *memStore) Apply(_ context.Context, b store.Batch) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b.Index <= m.index {
		return false, nil
	}
	for _, op := range b.Ops {
		if op.Bucket == "" || op.Key == "" {
			return false, fmt.Errorf("empty bucket or key: %w", sdk.ErrInvalidArgument)
		}
	}
	for _, op := range b.Ops {
		switch op.Type {
		case store.OpPut:
			if m.data[op.Bucket] == nil {
				m.data[op.Bucket] = make(map[string][]byte)
			}
			m.data[op.Bucket][op.Key] = append([]byte(nil), op.Value...)
		case store.OpDelete:
			delete(m.data[op.Bucket], op.Key)
		}
	}
	m.index = b.Index
	return true, nil
}

func (m *memStore) Get(_ context.Context, bucket, key string) ([]byte, error) {
	if m.exitAfter > 0 && m.gets.Add(1) >= m.exitAfter {
		os.Exit(3)
	}
	if bucket == "_test" {
		return m.hook(key)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	v, ok := m.data[bucket][key]
	if !ok {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, sdk.ErrNotFound)
	}
	return append([]byte(nil), v...), nil
}

func (m *memStore) hook(key string) ([]byte, error) {
	switch {
	case key == "config":
		m.mu.RLock()
		defer m.mu.RUnlock()
		return append([]byte(nil), m.config...), nil
	case key == "pid":
		return []byte(strconv.Itoa(os.Getpid())), nil
	case strings.HasPrefix(key, "env/"):
		return []byte(os.Getenv(strings.TrimPrefix(key, "env/"))), nil
	case key == "hang":
		_ = syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		select {}
	case key == "exit":
		os.Exit(3)
	}
	return nil, fmt.Errorf("test hook %q: %w", key, sdk.ErrNotFound)
}

func (m *memStore) List(_ context.Context, bucket, prefix string) ([]store.Record, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []store.Record
	for k, v := range m.data[bucket] {
		if strings.HasPrefix(k, prefix) {
			out = append(out, store.Record{Bucket: bucket, Key: k, Value: append([]byte(nil), v...)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func (m *memStore) AppliedIndex(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.index, nil
}

func (m *memStore) Snapshot(context.Context) (store.Snapshot, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var recs []store.Record
	for b, kv := range m.data {
		for k, v := range kv {
			recs = append(recs, store.Record{Bucket: b, Key: k, Value: append([]byte(nil), v...)})
		}
	}
	return &snapshot{SliceReader: store.SliceReader{Records: recs}, index: m.index}, nil
}

func (m *memStore) Restore(_ context.Context, index uint64, src store.RecordReader) error {
	recs, err := store.ReadAll(src)
	if err != nil {
		return err
	}
	data := make(map[string]map[string][]byte)
	for _, r := range recs {
		if data[r.Bucket] == nil {
			data[r.Bucket] = make(map[string][]byte)
		}
		data[r.Bucket][r.Key] = r.Value
	}
	m.mu.Lock()
	m.data, m.index = data, index
	m.mu.Unlock()
	return nil
}

type snapshot struct {
	store.SliceReader
	index uint64
}

func (s *snapshot) Index() uint64 { return s.index }
func (s *snapshot) Close() error  { return nil }

// Close is what sdk.Serve runs after a clean stop: with TESTPLUGIN_CLOSE_FILE
// it takes its time, like a runtime stopping its containers, then says it
// finished.
func (m *memStore) Close() error {
	if m.closeFile == "" {
		return nil
	}
	time.Sleep(m.closeDelay) // stands for slow clean-up work
	return os.WriteFile(m.closeFile, []byte("closed\n"), 0o600)
}
