// Package wireguard is Warren's default network plugin: every node gets a
// WireGuard interface, one WireGuard peer per other node (allowed IPs: that
// node's subnet) and a bridge for its tasks holding the gateway address of
// its subnet. Traffic between nodes is routed at L3 over WireGuard; traffic
// from tasks to anything outside the overlay is masqueraded by the node.
//
// WireGuard is the kernel's where the kernel has it and otherwise
// wireguard-go on a TUN device, run by a detached process of its own (this
// binary, started with DeviceEnv set) that outlives the plugin process and
// that a new plugin process adopts through its UAPI socket.
package wireguard

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
)

// Name and Version identify the plugin in Info.
const (
	Name    = "network-wireguard"
	Version = "0.1.0"
)

// DataDirEnv is the agent's data directory, which the host passes to every
// plugin; state_dir defaults to $WARREN_DATA_DIR/network-wireguard.
const DataDirEnv = "WARREN_DATA_DIR"

// Defaults of the config attributes.
const (
	// DefaultStateDir is state_dir's default without DataDirEnv.
	DefaultStateDir   = "/var/lib/warren/network-wireguard"
	DefaultListenPort = 51820
)

// DefaultNames are the WireGuard interface and bridge names of a plugin
// whose config sets none: "wrn-wg-" and "wrn-br-" with the first 8 hex
// digits of the SHA-256 of its state dir. Two agents on one host (data
// dirs apart) thus never share a device, a UAPI socket in
// /var/run/wireguard or an nftables table; one agent keeps its names
// across restarts.
func DefaultNames(stateDir string) (iface, bridge string) {
	sum := sha256.Sum256([]byte(filepath.Clean(stateDir)))
	h := hex.EncodeToString(sum[:])[:8]
	return "wrn-wg-" + h, "wrn-br-" + h
}

// deviceLog is the userspace device process's output, in the state dir.
const deviceLog = "device.log"

// Config is the plugin's config block.
type Config struct {
	// StateDir holds the node's private key and the task addresses.
	StateDir string `json:"state_dir"`
	// Interface is the WireGuard interface's name.
	Interface string `json:"interface"`
	// Bridge is the task bridge's name.
	Bridge string `json:"bridge"`
	// MTU of the overlay (WireGuard, bridge, task interfaces); 0 derives it
	// from the underlay interface holding the advertise address, minus 80.
	MTU int `json:"mtu"`
	// ListenPort is WireGuard's UDP port; 0 takes the advertise address's.
	ListenPort int `json:"listen_port"`
	// Datapath is "auto" (the default), "kernel" or "userspace".
	Datapath Datapath `json:"datapath"`
	// TeardownOnExit makes a clean stop of the plugin process remove
	// everything it built (Teardown): for throwaway nodes such as
	// `warren agent -dev`. A crash or kill -9 keeps it all, as always.
	TeardownOnExit bool `json:"teardown_on_exit"`
}

// Plugin implements network.Network with WireGuard. Its zero value is not
// usable: call New, then Configure.
type Plugin struct {
	mu      sync.Mutex
	cfg     Config
	st      *state // nil: not set up
	loadErr error  // why the state on disk could not be read
}

var _ network.Network = (*Plugin)(nil)

// New returns an unconfigured plugin.
func New() *Plugin { return &Plugin{} }

// Info reports the plugin and, once a node is set up, its datapath.
func (p *Plugin) Info(context.Context) (sdk.Info, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	dp := "kernel WireGuard where the kernel has it, else userspace (wireguard-go)"
	if p.st != nil {
		dp = string(p.st.Datapath)
	}
	return sdk.Info{
		Kind:        sdk.KindNetwork,
		Name:        Name,
		Version:     Version,
		APIVersions: []uint32{sdk.APIVersion},
		Description: "WireGuard mesh between nodes, routed at L3; datapath: " + dp,
	}, nil
}

// ConfigSchema describes Config.
func (p *Plugin) ConfigSchema(context.Context) (sdk.Schema, error) {
	return sdk.Schema{Attributes: []sdk.Attribute{
		{Name: "state_dir", Type: sdk.TypeString, Description: "directory for the node's private key and task addresses (default $WARREN_DATA_DIR/network-wireguard, else " + DefaultStateDir + ")"},
		{Name: "interface", Type: sdk.TypeString, Description: "WireGuard interface name (default wrn-wg- and 8 hex digits of a hash of state_dir)"},
		{Name: "bridge", Type: sdk.TypeString, Description: "task bridge name (default wrn-br- and the same 8 hex digits)"},
		{Name: "mtu", Type: sdk.TypeNumber, Description: "overlay MTU; 0 or unset: the underlay interface's MTU minus 80"},
		{Name: "listen_port", Type: sdk.TypeNumber, Description: "WireGuard UDP port; unset: the advertise address's port, else 51820"},
		{Name: "datapath", Type: sdk.TypeString, Description: `"auto" (default), "kernel" or "userspace"`},
		{Name: "teardown_on_exit", Type: sdk.TypeBool, Description: "a clean stop of the plugin removes everything it built (default false: it outlives the plugin)"},
	}}, nil
}

// Configure decodes and checks the config block and reads the state an
// earlier plugin process left.
func (p *Plugin) Configure(_ context.Context, configJSON []byte) error {
	var c Config
	if err := sdk.DecodeConfig(configJSON, &c); err != nil {
		return err
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
		if d := os.Getenv(DataDirEnv); d != "" {
			c.StateDir = filepath.Join(d, Name)
		}
	}
	iface, bridge := DefaultNames(c.StateDir)
	if c.Interface == "" {
		c.Interface = iface
	}
	if c.Bridge == "" {
		c.Bridge = bridge
	}
	if c.Datapath == "" {
		c.Datapath = DatapathAuto
	}
	if err := c.validate(); err != nil {
		return err
	}
	if err := hostCanRun(c.Datapath); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cfg = c
	p.st, p.loadErr = loadState(c.StateDir)
	return nil
}

func (c Config) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("config: %s: %w", fmt.Sprintf(format, args...), sdk.ErrInvalidArgument)
	}
	for _, n := range []struct{ attr, name string }{{"interface", c.Interface}, {"bridge", c.Bridge}} {
		if len(n.name) > 15 || strings.ContainsAny(n.name, "/ \t\n:") {
			return bad("%s %q: want at most 15 characters, no '/', ':' or spaces", n.attr, n.name)
		}
	}
	if c.Interface == c.Bridge {
		return bad("interface and bridge are both %q", c.Bridge)
	}
	if c.MTU != 0 && (c.MTU < 1280 || c.MTU > 65535) {
		return bad("mtu %d: want 1280 to 65535, or 0 to derive it", c.MTU)
	}
	if c.ListenPort < 0 || c.ListenPort > 65535 {
		return bad("listen_port %d: want 1 to 65535", c.ListenPort)
	}
	if !filepath.IsAbs(c.StateDir) {
		return bad("state_dir %q is not an absolute path", c.StateDir)
	}
	if _, err := chooseDatapath(c.Datapath, "", nil); err != nil {
		return bad("%v", err)
	}
	return nil
}

// setUp returns the node's state, or why there is none usable.
func (p *Plugin) setUp() (*state, error) {
	if p.loadErr != nil {
		return nil, p.loadErr
	}
	if p.st == nil {
		return nil, fmt.Errorf("network not set up on this node (SetupNode first): %w", sdk.ErrFailedPrecondition)
	}
	return p.st, nil
}

// loadOrCreateKey reads the node's private key, creating it (0600) on the
// first setup.
func loadOrCreateKey(dir string) (wgtypes.Key, error) {
	path := filepath.Join(dir, keyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		key, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			return wgtypes.Key{}, fmt.Errorf("generate WireGuard key: %w", err)
		}
		if err := writeFileAtomic(path, []byte(key.String()+"\n"), 0o600); err != nil {
			return wgtypes.Key{}, fmt.Errorf("store WireGuard key: %w", err)
		}
		return key, nil
	}
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("read WireGuard key %s: %w", path, err)
	}
	key, err := wgtypes.ParseKey(strings.TrimSpace(string(b)))
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("WireGuard key %s: %v (restore the node's key, or remove the file to give the node a new identity): %w", path, err, sdk.ErrFailedPrecondition)
	}
	return key, nil
}

// listenPort is WireGuard's port for cfg.
func (p *Plugin) listenPort(cfg network.NodeConfig) int {
	if p.cfg.ListenPort != 0 {
		return p.cfg.ListenPort
	}
	if ap, err := netip.ParseAddrPort(cfg.AdvertiseAddr); err == nil && ap.Port() != 0 {
		return int(ap.Port())
	}
	return DefaultListenPort
}

// SetupNode builds (or adopts) the node's WireGuard device, bridge, route
// and masquerade rule and returns the node's Peer.
func (p *Plugin) SetupNode(ctx context.Context, cfg network.NodeConfig) (network.Peer, error) {
	if err := cfg.Validate(); err != nil {
		return network.Peer{}, err
	}
	if !cfg.Subnet.Addr().Is4() || !cfg.OverlayCIDR.Addr().Is4() {
		return network.Peer{}, fmt.Errorf("node %q: subnet %s: only IPv4 overlays are supported: %w", cfg.NodeID, cfg.Subnet, sdk.ErrUnsupported)
	}
	if hostCount(cfg.Subnet) < 1 {
		return network.Peer{}, fmt.Errorf("node %q: subnet %s holds no task address: %w", cfg.NodeID, cfg.Subnet, sdk.ErrInvalidArgument)
	}
	var advertise netip.Addr
	if cfg.AdvertiseAddr != "" {
		ap, err := netip.ParseAddrPort(cfg.AdvertiseAddr)
		if err != nil {
			return network.Peer{}, fmt.Errorf("node %q: advertise address %q: want IP:port: %w", cfg.NodeID, cfg.AdvertiseAddr, sdk.ErrInvalidArgument)
		}
		advertise = ap.Addr()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Interface == "" {
		return network.Peer{}, fmt.Errorf("node %q: plugin not configured (Configure first): %w", cfg.NodeID, sdk.ErrFailedPrecondition)
	}
	if p.loadErr != nil {
		return network.Peer{}, p.loadErr
	}
	old := p.st
	renumber := old == nil || old.Node.Subnet != cfg.Subnet || old.Node.OverlayCIDR != cfg.OverlayCIDR
	if old != nil && renumber && len(old.Tasks) > 0 {
		return network.Peer{}, fmt.Errorf("node %q: subnet %s / overlay %s to %s / %s while %d tasks are attached (detach them first): %w",
			cfg.NodeID, old.Node.Subnet, old.Node.OverlayCIDR, cfg.Subnet, cfg.OverlayCIDR, len(old.Tasks), sdk.ErrFailedPrecondition)
	}
	if err := os.MkdirAll(p.cfg.StateDir, 0o700); err != nil {
		return network.Peer{}, fmt.Errorf("state dir %s: %w", p.cfg.StateDir, err)
	}
	key, err := loadOrCreateKey(p.cfg.StateDir)
	if err != nil {
		return network.Peer{}, err
	}
	mtu := overlayMTU(p.cfg.MTU, underlayMTU(advertise))
	dp, err := p.ensureDevice(ctx, mtu)
	if err != nil {
		return network.Peer{}, err
	}
	wg, err := wgctrl.New()
	if err != nil {
		return network.Peer{}, fmt.Errorf("wgctrl: %w", err)
	}
	defer wg.Close()
	if err := configureDevice(wg, p.cfg.Interface, key, p.listenPort(cfg)); err != nil {
		return network.Peer{}, err
	}
	wgLink, err := linkUp(p.cfg.Interface, mtu)
	if err != nil {
		return network.Peer{}, err
	}
	gw := netip.PrefixFrom(gatewayOf(cfg.Subnet), cfg.Subnet.Bits())
	if err := ensureBridge(p.cfg.Bridge, mtu, gw); err != nil {
		return network.Peer{}, err
	}
	if err := enableForwarding(); err != nil {
		return network.Peer{}, err
	}
	if err := ensureOverlayRoute(wgLink, cfg.OverlayCIDR, gw.Addr()); err != nil {
		return network.Peer{}, err
	}
	if err := ensureMasquerade(nftTableOf(p.cfg.Interface), cfg.Subnet, cfg.OverlayCIDR); err != nil {
		return network.Peer{}, err
	}
	next := &state{Node: cfg, Datapath: dp, Tasks: map[string]task{}, Addrs: newAllocator(cfg.Subnet)}
	if !renumber {
		next = old.clone()
		next.Node, next.Datapath = cfg, dp
	}
	if err := next.save(p.cfg.StateDir); err != nil {
		return network.Peer{}, err
	}
	p.st = next
	return network.Peer{
		NodeID:    cfg.NodeID,
		PublicKey: key.PublicKey().String(),
		Endpoint:  endpoint(advertise, p.listenPort(cfg)),
		Subnets:   []netip.Prefix{cfg.Subnet},
	}, nil
}

// endpoint is the node's WireGuard endpoint: the advertise address's host
// and the port WireGuard listens on (listen_port, which may differ from the
// port the agent suggested); "" without an advertise address.
func endpoint(advertise netip.Addr, port int) string {
	if !advertise.IsValid() {
		return ""
	}
	return netip.AddrPortFrom(advertise, uint16(port)).String()
}

// ensureDevice creates the WireGuard device, or adopts the one an earlier
// plugin process created, and returns its datapath.
func (p *Plugin) ensureDevice(ctx context.Context, mtu int) (Datapath, error) {
	name := p.cfg.Interface
	existing := linkType(name)
	if existing == "tuntap" && devicePID(name) == 0 {
		// A TUN device nobody serves: its process died and took WireGuard
		// with it. Start over.
		if err := stopDevice(ctx, name); err != nil {
			return "", err
		}
		existing = ""
	}
	var kernelErr error
	if existing == "" && p.cfg.Datapath != DatapathUserspace {
		kernelErr = addKernelDevice(name, mtu)
	}
	dp, err := chooseDatapath(p.cfg.Datapath, existing, kernelErr)
	if err != nil {
		return "", fmt.Errorf("WireGuard device %s: %w", name, err)
	}
	switch {
	case dp == DatapathKernel && kernelErr != nil && kernelUnsupported(kernelErr):
		return "", fmt.Errorf("WireGuard device %s: datapath %q, but the kernel has no WireGuard (%v); set datapath to %q or %q: %w",
			name, DatapathKernel, kernelErr, DatapathAuto, DatapathUserspace, sdk.ErrUnsupported)
	case dp == DatapathKernel && kernelErr != nil:
		return "", fmt.Errorf("WireGuard device %s: create kernel device: %w", name, kernelErr)
	case dp == DatapathKernel && existing == "tuntap":
		return "", fmt.Errorf("WireGuard device %s is a userspace device, config asks for kernel: %w", name, sdk.ErrConflict)
	case dp == DatapathUserspace && existing == "wireguard":
		return "", fmt.Errorf("WireGuard device %s is a kernel device, config asks for userspace: %w", name, sdk.ErrConflict)
	case dp == DatapathUserspace && existing == "":
		if err := os.Remove(socketPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("WireGuard device %s: stale socket: %w", name, err)
		}
		if err := startDevice(ctx, name, mtu, filepath.Join(p.cfg.StateDir, deviceLog)); err != nil {
			return "", err
		}
	}
	return dp, nil
}

// SetPeers makes peers the node's WireGuard peers, changing only the ones
// that differ.
func (p *Plugin) SetPeers(_ context.Context, peers []network.Peer) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.setUp()
	if err != nil {
		return err
	}
	others, err := network.CheckPeers(st.Node, peers)
	if err != nil {
		return err
	}
	wg, err := wgctrl.New()
	if err != nil {
		return fmt.Errorf("wgctrl: %w", err)
	}
	defer wg.Close()
	d, err := wg.Device(p.cfg.Interface)
	if err != nil {
		return fmt.Errorf("WireGuard device %s: %w", p.cfg.Interface, err)
	}
	changes, err := peerChanges(d.PublicKey, d.Peers, others)
	if err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	if err := wg.ConfigureDevice(p.cfg.Interface, wgtypes.Config{Peers: changes}); err != nil {
		return fmt.Errorf("WireGuard device %s: set %d peers: %w", p.cfg.Interface, len(others), err)
	}
	return nil
}

// hostLinkName is the host end of a task's veth pair: a hash of the task
// ID, which fits Linux's 15 bytes.
func hostLinkName(taskID string) string {
	sum := sha256.Sum256([]byte(taskID))
	return "wv" + hex.EncodeToString(sum[:])[:11]
}

func (p *Plugin) taskLink(st *state, t task) taskLink {
	l, _ := linkMTU(p.cfg.Bridge)
	return taskLink{
		hostName: t.Link,
		netns:    t.Netns,
		addr:     netip.PrefixFrom(t.Address, st.Node.Subnet.Bits()),
		gateway:  gatewayOf(st.Node.Subnet),
		mtu:      l,
		bridge:   p.cfg.Bridge,
	}
}

func attachmentOf(st *state, t task) network.Attachment {
	return network.Attachment{Address: netip.PrefixFrom(t.Address, st.Node.Subnet.Bits()), Gateway: gatewayOf(st.Node.Subnet)}
}

// Attach gives the task a veth on the bridge with an address of the node's
// subnet. The address is recorded on disk before anything is built, so a
// crash half-way leaves a record that a repeated Attach or a Detach
// finishes.
func (p *Plugin) Attach(_ context.Context, taskID, netnsPath string) (network.Attachment, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.setUp()
	if err != nil {
		return network.Attachment{}, err
	}
	if taskID == "" {
		return network.Attachment{}, fmt.Errorf("attach: empty task ID: %w", sdk.ErrInvalidArgument)
	}
	if t, ok := st.Tasks[taskID]; ok {
		if t.Netns != netnsPath {
			return network.Attachment{}, fmt.Errorf("task %q is attached to %s, not %s (detach first): %w", taskID, t.Netns, netnsPath, sdk.ErrConflict)
		}
		if tl := p.taskLink(st, t); !tl.ready() {
			if err := tl.build(); err != nil {
				return network.Attachment{}, fmt.Errorf("task %q: %w", taskID, err)
			}
		}
		return attachmentOf(st, t), nil
	}
	for id, t := range st.Tasks {
		if t.Netns == netnsPath {
			return network.Attachment{}, fmt.Errorf("task %q: network namespace %s is task %q's: %w", taskID, netnsPath, id, sdk.ErrConflict)
		}
	}
	if _, err := os.Stat(netnsPath); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return network.Attachment{}, fmt.Errorf("task %q: network namespace %s: %w", taskID, netnsPath, sdk.ErrNotFound)
		}
		return network.Attachment{}, fmt.Errorf("task %q: network namespace %s: %w", taskID, netnsPath, err)
	}
	next := st.clone()
	addr, err := next.Addrs.take(st.Node.Subnet)
	if err != nil {
		return network.Attachment{}, fmt.Errorf("task %q: %w", taskID, err)
	}
	t := task{Netns: netnsPath, Address: addr, Link: hostLinkName(taskID)}
	next.Tasks[taskID] = t
	if err := next.save(p.cfg.StateDir); err != nil {
		return network.Attachment{}, fmt.Errorf("task %q: %w", taskID, err)
	}
	p.st = next
	if err := p.taskLink(next, t).build(); err != nil {
		// Nothing half-configured: build removed its veth; drop the record.
		if uerr := p.forget(taskID); uerr != nil {
			err = errors.Join(err, uerr)
		}
		return network.Attachment{}, fmt.Errorf("task %q: %w", taskID, err)
	}
	return attachmentOf(next, t), nil
}

// forget drops the task's record and releases its address.
func (p *Plugin) forget(taskID string) error {
	t, ok := p.st.Tasks[taskID]
	if !ok {
		return nil
	}
	next := p.st.clone()
	delete(next.Tasks, taskID)
	next.Addrs.release(t.Address)
	if err := next.save(p.cfg.StateDir); err != nil {
		return fmt.Errorf("task %q: %w", taskID, err)
	}
	p.st = next
	return nil
}

// Detach deletes the task's veth pair and releases its address.
func (p *Plugin) Detach(_ context.Context, taskID, _ string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.st == nil {
		return nil
	}
	t, ok := p.st.Tasks[taskID]
	if !ok {
		return nil
	}
	if err := deleteLink(t.Link); err != nil {
		return fmt.Errorf("task %q: %w", taskID, err)
	}
	return p.forget(taskID)
}

// Close is called after a clean stop of the plugin process: with
// teardown_on_exit it removes everything the plugin built.
func (p *Plugin) Close() error {
	p.mu.Lock()
	teardown := p.cfg.TeardownOnExit
	p.mu.Unlock()
	if !teardown {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.Teardown(ctx)
}

// Teardown removes everything the plugin built on the node and its state,
// the key included. It works from the configured names, so it also cleans
// up after a state file that could not be read.
func (p *Plugin) Teardown(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cfg.Interface == "" {
		return nil // never configured: nothing of ours is known
	}
	var errs []error
	if p.st != nil {
		for _, t := range p.st.Tasks {
			errs = append(errs, deleteLink(t.Link))
		}
	}
	errs = append(errs, deleteLink(p.cfg.Bridge))
	if linkType(p.cfg.Interface) == "wireguard" {
		errs = append(errs, deleteLink(p.cfg.Interface))
	} else {
		errs = append(errs, stopDevice(ctx, p.cfg.Interface))
	}
	errs = append(errs, deleteMasquerade(nftTableOf(p.cfg.Interface)), deletePorts())
	for _, f := range []string{stateFile, keyFile, deviceLog} {
		if err := os.Remove(filepath.Join(p.cfg.StateDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("teardown: %w", err)
	}
	p.st, p.loadErr = nil, nil
	return nil
}
