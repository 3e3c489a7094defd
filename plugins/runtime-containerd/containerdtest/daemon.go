package containerdtest

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	ctd "github.com/containerd/containerd"
	"github.com/containerd/containerd/namespaces"

	"github.com/warrenorch/warren/plugins/runtime-containerd/containerd"
)

// dirPattern names the data dirs of test daemons in os.TempDir(), so that
// a later run can find the ones a crashed run left.
const dirPattern = "warren-rtctd-*"

// Files in a test daemon's dir besides the managed containerd's.
const (
	ownerFile     = "owner.pid" // the test process that made the dir
	namespaceFile = "namespace"
)

// Unavailable returns why the machine cannot run the containerd tests
// (not root, a binary missing, busybox not static), or "" when it can.
func Unavailable() string {
	if os.Geteuid() != 0 {
		return "the containerd tests need root"
	}
	for _, bin := range []string{"containerd", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			return bin + " is not in PATH (install the containerd and runc packages)"
		}
	}
	f, err := elf.Open(BusyboxPath)
	if err != nil {
		return fmt.Sprintf("%s: %v (install busybox-static)", BusyboxPath, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return BusyboxPath + " is dynamically linked; the test images need a static one (install busybox-static)"
		}
	}
	return ""
}

// Daemon is a data dir for a managed containerd, in os.TempDir(), used by
// one test binary. The plugin starts the containerd in it (Start does it
// through the runtime); Stop tears everything down.
type Daemon struct {
	// Dir is the plugin's data_dir.
	Dir string
	// Namespace is the containerd namespace, unique to the test process.
	Namespace string
	// Insecure are the registry hosts the plugin may use over HTTP.
	Insecure []string
}

// NewDaemon makes a data dir (and removes what crashed earlier runs
// left). Nothing runs in it yet.
func NewDaemon(insecure ...string) (*Daemon, error) {
	reapStale()
	dir, err := os.MkdirTemp("", dirPattern)
	if err != nil {
		return nil, err
	}
	d := &Daemon{Dir: dir, Namespace: fmt.Sprintf("warrentest%d", os.Getpid()), Insecure: insecure}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, namespaceFile), []byte(d.Namespace), 0o600); err != nil {
		return nil, err
	}
	return d, nil
}

// Config is the plugin configuration for this daemon, as JSON.
func (d *Daemon) Config() []byte {
	b, _ := json.Marshal(containerd.Config{
		Managed:            true,
		DataDir:            d.Dir,
		Namespace:          d.Namespace,
		InsecureRegistries: d.Insecure,
	})
	return b
}

// Socket is the managed containerd's socket.
func (d *Daemon) Socket() string { return filepath.Join(d.Dir, "containerd.sock") }

// Start starts the managed containerd by configuring a runtime on it.
func (d *Daemon) Start(ctx context.Context) error {
	rt := containerd.New()
	if err := rt.Configure(ctx, d.Config()); err != nil {
		return err
	}
	return rt.Close()
}

// Client connects to the daemon's containerd, in its namespace.
func (d *Daemon) Client() (*ctd.Client, error) {
	return ctd.New(d.Socket(), ctd.WithDefaultNamespace(d.Namespace), ctd.WithTimeout(5*time.Second))
}

// Pid is the managed containerd's pid from its pid file, or 0.
func (d *Daemon) Pid() int { return ManagedPid(d.Dir) }

// ManagedPid is the pid of the managed containerd of a runtime-containerd
// plugin whose data_dir is dir, from its pid file, or 0.
func ManagedPid(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "containerd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// StopOnSignal stops the daemon and exits when the test binary gets SIGINT
// or SIGTERM, so that an interrupted run leaves nothing behind.
func (d *Daemon) StopOnSignal() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-ch
		fmt.Fprintf(os.Stderr, "containerdtest: %v: stopping the test containerd\n", s)
		_ = d.Stop()
		os.Exit(1)
	}()
}

// Stop removes every container of the namespace, stops containerd, kills
// any shim and container process still left, unmounts what is mounted
// under the dir and removes it.
func (d *Daemon) Stop() error {
	return cleanup(d.Dir, d.Namespace)
}

// Sweep removes what a runtime-containerd plugin with a managed containerd
// in dir (its data dir) left there: every container of namespace ns, the
// containerd, any shim and container process still running, the mounts
// under dir, and dir. Tests run it after stopping an agent, so that nothing
// outlives them even when the agent could not clean up (it was killed, or
// the test failed first).
func Sweep(dir, ns string) error {
	return cleanup(dir, ns)
}

func cleanup(dir, ns string) error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	socket := filepath.Join(dir, "containerd.sock")
	if _, err := os.Stat(socket); err == nil {
		if c, err := ctd.New(socket, ctd.WithDefaultNamespace(ns), ctd.WithTimeout(2*time.Second)); err == nil {
			errs = append(errs, removeAll(namespaces.WithNamespace(ctx, ns), c))
			c.Close()
		}
	}
	errs = append(errs, containerd.ShutdownManaged(ctx, dir))
	killShims(socket)
	errs = append(errs, unmountUnder(dir))
	removeCgroups(ns)
	// runc's state dir of the namespace when the plugin used the daemon as
	// an external containerd (runc's default root); empty by now.
	_ = syscall.Rmdir(filepath.Join("/run/containerd/runc", ns))
	errs = append(errs, os.RemoveAll(dir))
	return errors.Join(errs...)
}

// removeAll kills and removes every container of the client's namespace.
func removeAll(ctx context.Context, c *ctd.Client) error {
	cs, err := c.Containers(ctx)
	if err != nil {
		return fmt.Errorf("listing containers: %w", err)
	}
	var errs []error
	for _, ctr := range cs {
		if t, err := ctr.Task(ctx, nil); err == nil {
			if _, err := t.Delete(ctx, ctd.WithProcessKill); err != nil {
				errs = append(errs, fmt.Errorf("task %s: %w", ctr.ID(), err))
			}
		}
		if err := ctr.Delete(ctx, ctd.WithSnapshotCleanup); err != nil {
			errs = append(errs, fmt.Errorf("container %s: %w", ctr.ID(), err))
		}
	}
	return errors.Join(errs...)
}

// killShims kills the shims serving the containerd at socket, and their
// children (the tasks' processes).
func killShims(socket string) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var shims []int
	parent := map[int]int{}
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(p))
		if err != nil {
			continue
		}
		if stat, err := os.ReadFile(p + "/stat"); err == nil {
			if i := bytes.LastIndexByte(stat, ')'); i > 0 {
				if f := strings.Fields(string(stat[i+1:])); len(f) > 1 {
					parent[pid], _ = strconv.Atoi(f[1])
				}
			}
		}
		cmdline, err := os.ReadFile(p + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || !strings.Contains(filepath.Base(args[0]), "containerd-shim") {
			continue
		}
		if i := slices.Index(args, "-address"); i >= 0 && i+1 < len(args) && args[i+1] == socket {
			shims = append(shims, pid)
		}
	}
	for pid, ppid := range parent {
		if slices.Contains(shims, ppid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, pid := range shims {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// unmountUnder unmounts everything mounted below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// removeCgroups removes the (empty) cgroups runc made for namespace ns.
func removeCgroups(ns string) {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/" + ns)
	dirs = append(dirs, "/sys/fs/cgroup/"+ns)
	for _, d := range dirs {
		subs, _ := os.ReadDir(d)
		for _, s := range subs {
			if s.IsDir() {
				_ = syscall.Rmdir(filepath.Join(d, s.Name()))
			}
		}
		_ = syscall.Rmdir(d)
	}
}

// reapStale cleans up the test daemon dirs of test processes that died
// without doing it themselves.
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPattern))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || processAlive(owner) {
			continue
		}
		ns, _ := os.ReadFile(filepath.Join(dir, namespaceFile))
		if err := cleanup(dir, strings.TrimSpace(string(ns))); err != nil {
			fmt.Fprintf(os.Stderr, "containerdtest: cleaning up the stale %s: %v\n", dir, err)
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
