package wireguard

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
)

// stateFile and keyFile are kept in the plugin's state directory.
const (
	stateFile = "state.json"
	keyFile   = "private.key"
)

// state is what the plugin keeps on disk besides the key: the node it set
// up and the address of every attached task. It is written whole, through a
// temporary file and a rename, before the change it records is made on the
// host, so a crash leaves a record of everything that may exist.
type state struct {
	// Node is the config of the last successful SetupNode.
	Node network.NodeConfig `json:"node"`
	// Datapath is the WireGuard implementation in use.
	Datapath Datapath `json:"datapath"`
	// Tasks are the attached tasks by task ID.
	Tasks map[string]task `json:"tasks"`
	// Addrs hands out the task addresses of Node.Subnet.
	Addrs allocator `json:"addrs"`
}

// task is one attached task.
type task struct {
	Netns   string     `json:"netns"`
	Address netip.Addr `json:"address"`
	// Link is the host side of the task's veth pair, on the bridge.
	Link string `json:"link"`
}

// allocator hands out the addresses of a subnet: never-used ones first, in
// order, then the least recently released.
type allocator struct {
	// Next is the lowest address never handed out; invalid once all were.
	Next netip.Addr `json:"next"`
	// Released are released addresses, least recently released first.
	Released []netip.Addr `json:"released,omitempty"`
}

// gatewayOf returns the gateway address of subnet: its first host address.
func gatewayOf(subnet netip.Prefix) netip.Addr { return subnet.Addr().Next() }

// lastAddr returns the last address of p (the broadcast address in IPv4).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := range b {
		hostBits := max(0, min(8, (i+1)*8-p.Bits()))
		b[i] |= byte(1<<hostBits - 1)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// newAllocator returns the allocator of a subnet nothing was taken from.
func newAllocator(subnet netip.Prefix) allocator {
	return allocator{Next: gatewayOf(subnet).Next()}
}

// take returns a free address of subnet and records it as taken.
func (a *allocator) take(subnet netip.Prefix) (netip.Addr, error) {
	if a.Next.IsValid() && subnet.Contains(a.Next) && a.Next != lastAddr(subnet) {
		addr := a.Next
		a.Next = addr.Next()
		return addr, nil
	}
	a.Next = netip.Addr{}
	if len(a.Released) == 0 {
		return netip.Addr{}, fmt.Errorf("subnet %s: no free address (%d in use): %w",
			subnet, hostCount(subnet), sdk.ErrFailedPrecondition)
	}
	addr := a.Released[0]
	a.Released = slices.Delete(a.Released, 0, 1)
	return addr, nil
}

// release returns addr to the allocator as the most recently released.
func (a *allocator) release(addr netip.Addr) {
	if !slices.Contains(a.Released, addr) {
		a.Released = append(a.Released, addr)
	}
}

// hostCount is the number of task addresses subnet holds: all but the
// network, gateway and broadcast addresses.
func hostCount(subnet netip.Prefix) int {
	bits := subnet.Addr().BitLen() - subnet.Bits()
	if bits >= 31 {
		return 1<<31 - 1
	}
	return max(0, 1<<bits-3)
}

// loadState reads the state in dir; no file is the state of a node never
// set up (nil, nil).
func loadState(dir string) (*state, error) {
	path := filepath.Join(dir, stateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state %s: %w", path, err)
	}
	var s state
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("state %s is corrupt (remove it with the plugin's devices, or run Teardown): %v: %w", path, err, sdk.ErrFailedPrecondition)
	}
	if s.Tasks == nil {
		s.Tasks = map[string]task{}
	}
	return &s, nil
}

// save writes s to dir atomically and durably.
func (s *state) save(dir string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, stateFile), b, 0o600)
}

// clone returns a deep copy of s, so a failed change can be dropped.
func (s *state) clone() *state {
	c := *s
	c.Tasks = make(map[string]task, len(s.Tasks))
	for k, v := range s.Tasks {
		c.Tasks[k] = v
	}
	c.Addrs.Released = slices.Clone(s.Addrs.Released)
	return &c
}

// writeFileAtomic writes b to path through a synced temporary file renamed
// over it, then syncs the directory.
func writeFileAtomic(path string, b []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op once renamed
	if err := f.Chmod(perm); err == nil {
		_, err = f.Write(b)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	} else {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
