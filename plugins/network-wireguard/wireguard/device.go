package wireguard

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
)

// Datapath is the WireGuard implementation a node uses.
type Datapath string

// The datapaths. DatapathAuto, in the config, picks the kernel's where the
// kernel has WireGuard and the userspace one otherwise.
const (
	DatapathAuto      Datapath = "auto"
	DatapathKernel    Datapath = "kernel"
	DatapathUserspace Datapath = "userspace"
)

// DeviceEnv names the environment variable that makes the plugin binary run
// a userspace WireGuard device (wireguard-go on a TUN device) named by its
// value instead of serving the plugin; DeviceMTUEnv carries the MTU.
const (
	DeviceEnv    = "WARREN_WG_DEVICE"
	DeviceMTUEnv = "WARREN_WG_MTU"
)

// wireguardOverhead is what WireGuard adds to each packet over IPv4 or IPv6
// (the larger, IPv6, figure): outer IP, UDP, WireGuard header and tag.
const wireguardOverhead = 80

// deviceStartTimeout bounds how long a new device process may take to open
// its UAPI socket, and a stopped one to go away.
const deviceStartTimeout = 5 * time.Second

// socketDir is where userspace WireGuard devices keep their UAPI sockets
// (wireguard-go's and wgctrl's convention). It is shared by all network
// namespaces.
const socketDir = "/var/run/wireguard"

// RunDeviceIfAsked runs a userspace WireGuard device and exits when the
// process was started as one (DeviceEnv is set); otherwise it returns at
// once. The plugin's main calls it first.
func RunDeviceIfAsked() {
	name := os.Getenv(DeviceEnv)
	if name == "" {
		return
	}
	mtu, err := strconv.Atoi(os.Getenv(DeviceMTUEnv))
	if err != nil {
		mtu = device.DefaultMTU
	}
	if err := runDevice(name, mtu); err != nil {
		fmt.Fprintf(os.Stderr, "wireguard device %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runDevice is the userspace device process: wireguard-go on a TUN device,
// configured by whoever talks to its UAPI socket, until SIGTERM or SIGINT.
// Stopping it removes the TUN device and the socket.
func runDevice(name string, mtu int) error {
	tdev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return fmt.Errorf("create TUN device: %w", err)
	}
	uapiFile, err := ipc.UAPIOpen(name)
	if err != nil {
		tdev.Close()
		return fmt.Errorf("open UAPI socket: %w", err)
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelError, "("+name+") "))
	uapi, err := ipc.UAPIListen(name, uapiFile)
	if err != nil {
		dev.Close()
		return fmt.Errorf("listen on UAPI socket: %w", err)
	}
	go func() {
		for {
			c, err := uapi.Accept()
			if err != nil {
				return
			}
			go dev.IpcHandle(c)
		}
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case <-sig:
	case <-dev.Wait():
	}
	uapi.Close()
	dev.Close()
	return nil
}

// socketPath is the UAPI socket of the userspace device name.
func socketPath(name string) string { return filepath.Join(socketDir, name+".sock") }

// devicePID returns the process that serves the UAPI socket of the
// userspace device name, from the socket's peer credentials, or 0 when no
// process answers on it.
func devicePID(name string) int {
	c, err := net.DialTimeout("unix", socketPath(name), time.Second)
	if err != nil {
		return 0
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return 0
	}
	return int(cred.Pid)
}

// startDevice starts a detached userspace device process (its own session,
// so it outlives the plugin process) and waits until its UAPI socket
// answers. Its output goes to logPath.
func startDevice(ctx context.Context, name string, mtu int, logPath string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("userspace device %s: find own binary: %w", name, err)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("userspace device %s: open log: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(exe)
	cmd.Env = []string{DeviceEnv + "=" + name, DeviceMTUEnv + "=" + strconv.Itoa(mtu), "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("userspace device %s: start %s: %w", name, exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }() // reaps it if it stops while this process lives
	ctx, cancel := context.WithTimeout(ctx, deviceStartTimeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for devicePID(name) != cmd.Process.Pid {
		select {
		case err := <-exited:
			b, _ := os.ReadFile(logPath)
			return fmt.Errorf("userspace device %s exited: %v (log %s: %s): %w", name, err, logPath, lastLine(b), sdk.ErrInternal)
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return fmt.Errorf("userspace device %s: no UAPI socket at %s after %v: %w", name, socketPath(name), deviceStartTimeout, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// stopDevice stops the userspace device name, if a process serves it, and
// waits until its socket and link are gone.
func stopDevice(ctx context.Context, name string) error {
	pid := devicePID(name)
	if pid != 0 {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		ctx, cancel := context.WithTimeout(ctx, deviceStartTimeout)
		defer cancel()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for syscall.Kill(pid, 0) == nil && !isZombie(pid) {
			select {
			case <-ctx.Done():
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return fmt.Errorf("userspace device %s: process %d still running %v after SIGTERM: %w", name, pid, deviceStartTimeout, ctx.Err())
			case <-tick.C:
			}
		}
	}
	if err := os.Remove(socketPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("userspace device %s: %w", name, err)
	}
	return deleteLink(name)
}

// isZombie reports whether pid has exited and waits to be reaped.
func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	for i := len(b) - 1; i > 0; i-- { // the state follows the last ')'
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] == 'Z'
		}
	}
	return false
}

func lastLine(b []byte) string {
	s := string(b)
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '\n' {
			return s[i+1:]
		}
	}
	return s
}

// kernelUnsupported reports whether err, from creating a wireguard link,
// means the kernel has no WireGuard.
func kernelUnsupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT)
}

// chooseDatapath decides which datapath a node uses: the configured one
// unless it is auto; for auto, the one an existing device of that name
// already has (existing is "" when there is none), else the kernel's unless
// creating a kernel device failed with kernelErr because the kernel has no
// WireGuard.
func chooseDatapath(configured Datapath, existing string, kernelErr error) (Datapath, error) {
	switch configured {
	case DatapathKernel, DatapathUserspace:
		return configured, nil
	case DatapathAuto, "":
	default:
		return "", fmt.Errorf("datapath %q: want %q, %q or %q: %w", configured, DatapathAuto, DatapathKernel, DatapathUserspace, sdk.ErrInvalidArgument)
	}
	switch existing {
	case "wireguard":
		return DatapathKernel, nil
	case "tuntap", "tun":
		return DatapathUserspace, nil
	}
	if kernelErr != nil && kernelUnsupported(kernelErr) {
		return DatapathUserspace, nil
	}
	if kernelErr != nil {
		return "", fmt.Errorf("create kernel WireGuard device: %w", kernelErr)
	}
	return DatapathKernel, nil
}

// addKernelDevice creates the kernel WireGuard link name, if missing.
func addKernelDevice(name string, mtu int) error {
	if l, err := netlink.LinkByName(name); err == nil {
		if l.Type() != "wireguard" {
			return fmt.Errorf("link %s exists with type %s, not wireguard: %w", name, l.Type(), sdk.ErrConflict)
		}
		return nil
	}
	return netlink.LinkAdd(&netlink.Wireguard{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}})
}

// deleteLink deletes the link name; a missing link is no error.
func deleteLink(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// persistentKeepalive keeps NAT mappings and handshakes fresh.
const persistentKeepalive = 25 * time.Second

// parsePeer turns a peer into the WireGuard peer config that makes it
// match; errors wrap sdk.ErrInvalidArgument and name the peer.
func parsePeer(p network.Peer) (wgtypes.PeerConfig, error) {
	key, err := wgtypes.ParseKey(p.PublicKey)
	if err != nil {
		return wgtypes.PeerConfig{}, fmt.Errorf("peer %q: public key %q: %v: %w", p.NodeID, p.PublicKey, err, sdk.ErrInvalidArgument)
	}
	ep, err := netip.ParseAddrPort(p.Endpoint)
	if err != nil || ep.Port() == 0 {
		return wgtypes.PeerConfig{}, fmt.Errorf("peer %q: endpoint %q: want IP:port: %w", p.NodeID, p.Endpoint, sdk.ErrInvalidArgument)
	}
	if len(p.Subnets) == 0 {
		return wgtypes.PeerConfig{}, fmt.Errorf("peer %q: no subnets: %w", p.NodeID, sdk.ErrInvalidArgument)
	}
	allowed := make([]net.IPNet, 0, len(p.Subnets))
	for _, s := range p.Subnets {
		allowed = append(allowed, net.IPNet{IP: s.Addr().AsSlice(), Mask: net.CIDRMask(s.Bits(), s.Addr().BitLen())})
	}
	keepalive := persistentKeepalive
	return wgtypes.PeerConfig{
		PublicKey:                   key,
		Endpoint:                    net.UDPAddrFromAddrPort(ep),
		ReplaceAllowedIPs:           true,
		AllowedIPs:                  allowed,
		PersistentKeepaliveInterval: &keepalive,
	}, nil
}

// peerChanges returns the WireGuard peer configs that turn the device's
// current peers into want: removals of peers not wanted, and the wanted
// peers that are new or differ in endpoint or allowed IPs. Unchanged peers
// are left out, so their sessions are not disturbed. A wanted peer with the
// node's own key is an error.
func peerChanges(own wgtypes.Key, current []wgtypes.Peer, want []network.Peer) ([]wgtypes.PeerConfig, error) {
	cur := make(map[wgtypes.Key]wgtypes.Peer, len(current))
	for _, p := range current {
		cur[p.PublicKey] = p
	}
	var out []wgtypes.PeerConfig
	wanted := map[wgtypes.Key]string{}
	for _, p := range want {
		pc, err := parsePeer(p)
		if err != nil {
			return nil, err
		}
		if pc.PublicKey == own {
			return nil, fmt.Errorf("peer %q: public key %s is this node's own: %w", p.NodeID, p.PublicKey, sdk.ErrInvalidArgument)
		}
		if other, dup := wanted[pc.PublicKey]; dup {
			return nil, fmt.Errorf("peer %q: public key also used by peer %q: %w", p.NodeID, other, sdk.ErrInvalidArgument)
		}
		wanted[pc.PublicKey] = p.NodeID
		if c, ok := cur[pc.PublicKey]; ok && samePeerConfig(c, pc) {
			continue
		}
		out = append(out, pc)
	}
	for _, p := range current {
		if _, ok := wanted[p.PublicKey]; !ok {
			out = append(out, wgtypes.PeerConfig{PublicKey: p.PublicKey, Remove: true})
		}
	}
	return out, nil
}

func samePeerConfig(c wgtypes.Peer, pc wgtypes.PeerConfig) bool {
	if c.Endpoint == nil || c.Endpoint.AddrPort() != pc.Endpoint.AddrPort() || len(c.AllowedIPs) != len(pc.AllowedIPs) {
		return false
	}
	if c.PersistentKeepaliveInterval != *pc.PersistentKeepaliveInterval {
		return false
	}
	have := map[string]bool{}
	for _, n := range c.AllowedIPs {
		have[n.String()] = true
	}
	for _, n := range pc.AllowedIPs {
		if !have[n.String()] {
			return false
		}
	}
	return true
}

// configureDevice sets the device's key and listen port, unless they are
// set already, so an adopted device's sessions are left alone.
func configureDevice(wg *wgctrl.Client, name string, key wgtypes.Key, port int) error {
	d, err := wg.Device(name)
	if err != nil {
		return fmt.Errorf("WireGuard device %s: %w", name, err)
	}
	if d.PrivateKey == key && d.ListenPort == port {
		return nil
	}
	if err := wg.ConfigureDevice(name, wgtypes.Config{PrivateKey: &key, ListenPort: &port}); err != nil {
		return fmt.Errorf("configure WireGuard device %s: %w", name, err)
	}
	return nil
}

// DevicePID returns the process serving the userspace WireGuard device
// name (found through its UAPI socket's peer credentials), or 0 when none
// does. Tests use it to check that a device was adopted, not rebuilt.
func DevicePID(name string) int { return devicePID(name) }

// SocketPath is the UAPI socket of the userspace WireGuard device name.
func SocketPath(name string) string { return socketPath(name) }

// tunDevice is the TUN clone device the userspace datapath needs.
const tunDevice = "/dev/net/tun"

// kernelModuleDir exists while the kernel's WireGuard module is loaded.
const kernelModuleDir = "/sys/module/wireguard"

// hostCanRun says, as an sdk.ErrUnsupported error naming what is missing,
// why this host cannot run the plugin with datapath dp: not root, or no way
// to make a WireGuard device (no TUN device for the userspace datapath and,
// for "auto", no kernel module either). Nil when it can.
func hostCanRun(dp Datapath) error {
	return hostProblem(os.Geteuid(), dp, canOpen(tunDevice), exists(kernelModuleDir))
}

// hostProblem is hostCanRun on what was found on the host.
func hostProblem(euid int, dp Datapath, tun, kernel bool) error {
	const optOut = `; or run the worker without an overlay: worker { network = "none" }`
	switch {
	case euid != 0:
		return fmt.Errorf("%s cannot run on this host: it runs as uid %d, and building WireGuard devices, bridges and nftables rules needs root (run the agent as root%s): %w", Name, euid, optOut, sdk.ErrUnsupported)
	case dp == DatapathUserspace && !tun:
		return fmt.Errorf("%s cannot run on this host: datapath %q needs %s, which cannot be opened (load the tun module, or give a container --device /dev/net/tun%s): %w", Name, dp, tunDevice, optOut, sdk.ErrUnsupported)
	case dp == DatapathAuto && !tun && !kernel:
		return fmt.Errorf("%s cannot run on this host: no kernel WireGuard (%s missing: modprobe wireguard) and no %s for the userspace datapath%s: %w", Name, kernelModuleDir, tunDevice, optOut, sdk.ErrUnsupported)
	}
	return nil
}

func canOpen(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	return true
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
