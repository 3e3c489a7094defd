package wireguard

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/warrenorch/warren/sdk"
	"github.com/warrenorch/warren/sdk/network"
	"github.com/warrenorch/warren/test/netns"
)

func TestChooseDatapath(t *testing.T) {
	unsupported := unix.EOPNOTSUPP
	for _, tc := range []struct {
		name       string
		configured Datapath
		existing   string
		kernelErr  error
		want       Datapath
		wantErr    error
	}{
		{"auto, kernel device created", DatapathAuto, "", nil, DatapathKernel, nil},
		{"auto, kernel without WireGuard", DatapathAuto, "", unsupported, DatapathUserspace, nil},
		{"auto, no module to load", DatapathAuto, "", unix.ENOENT, DatapathUserspace, nil},
		{"auto, adopts a kernel device", DatapathAuto, "wireguard", nil, DatapathKernel, nil},
		{"auto, adopts a userspace device", DatapathAuto, "tuntap", nil, DatapathUserspace, nil},
		{"unset is auto", "", "", unsupported, DatapathUserspace, nil},
		{"kernel asked for", DatapathKernel, "", unsupported, DatapathKernel, nil},
		{"userspace asked for", DatapathUserspace, "", nil, DatapathUserspace, nil},
		{"auto, another kernel error", DatapathAuto, "", unix.EPERM, "", unix.EPERM},
		{"unknown datapath", "ebpf", "", nil, "", sdk.ErrInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := chooseDatapath(tc.configured, tc.existing, tc.kernelErr)
			if got != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("chooseDatapath(%q, %q, %v) = %q, %v; want %q, %v", tc.configured, tc.existing, tc.kernelErr, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

// TestKernelDeviceUnsupported creates a kernel WireGuard link as the
// kernel datapath does: where the kernel has WireGuard the link appears,
// where it has not the error is one chooseDatapath falls back on.
func TestKernelDeviceUnsupported(t *testing.T) {
	h := netns.New(t).AddHost(t, "kernel")
	err := h.Do(func() error {
		err := addKernelDevice("wgk0", 1420)
		if err == nil {
			if typ := linkType("wgk0"); typ != "wireguard" {
				t.Errorf("kernel device has type %q", typ)
			}
			if err := addKernelDevice("wgk0", 1420); err != nil {
				t.Errorf("adding the kernel device again: %v", err)
			}
			return deleteLink("wgk0")
		}
		if !kernelUnsupported(err) {
			t.Errorf("kernel without WireGuard: error %v is not recognised as such", err)
		}
		t.Logf("no kernel WireGuard here (%v): userspace fallback", err)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustKey(t *testing.T) wgtypes.Key {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestPeerChanges(t *testing.T) {
	own, k1, k2, k3 := mustKey(t), mustKey(t), mustKey(t), mustKey(t)
	peer := func(k wgtypes.Key, id, ep, sub string) network.Peer {
		return network.Peer{NodeID: id, PublicKey: k.String(), Endpoint: ep, Subnets: []netip.Prefix{netip.MustParsePrefix(sub)}}
	}
	keepalive := persistentKeepalive
	device := func(k wgtypes.Key, ep, sub string) wgtypes.Peer {
		_, n, _ := net.ParseCIDR(sub)
		return wgtypes.Peer{PublicKey: k, Endpoint: net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ep)), AllowedIPs: []net.IPNet{*n}, PersistentKeepaliveInterval: keepalive}
	}
	p1, p2 := peer(k1, "n1", "192.0.2.1:51820", "10.1.1.0/24"), peer(k2, "n2", "192.0.2.2:51820", "10.1.2.0/24")
	d1, d2 := device(k1, "192.0.2.1:51820", "10.1.1.0/24"), device(k2, "192.0.2.2:51820", "10.1.2.0/24")
	type change struct {
		key    wgtypes.Key
		remove bool
	}
	for _, tc := range []struct {
		name    string
		current []wgtypes.Peer
		want    []network.Peer
		changes []change
		wantErr bool
	}{
		{"all new", nil, []network.Peer{p1, p2}, []change{{k1, false}, {k2, false}}, false},
		{"unchanged", []wgtypes.Peer{d1, d2}, []network.Peer{p1, p2}, nil, false},
		{"one removed", []wgtypes.Peer{d1, d2}, []network.Peer{p1}, []change{{k2, true}}, false},
		{"endpoint moved", []wgtypes.Peer{d1, d2}, []network.Peer{p1, peer(k2, "n2", "192.0.2.9:51821", "10.1.2.0/24")}, []change{{k2, false}}, false},
		{"subnet changed", []wgtypes.Peer{d1}, []network.Peer{peer(k1, "n1", "192.0.2.1:51820", "10.1.7.0/24")}, []change{{k1, false}}, false},
		{"replaced", []wgtypes.Peer{d1}, []network.Peer{peer(k3, "n3", "192.0.2.3:51820", "10.1.3.0/24")}, []change{{k3, false}, {k1, true}}, false},
		{"none", []wgtypes.Peer{d1, d2}, nil, []change{{k1, true}, {k2, true}}, false},
		{"two nodes, one key", nil, []network.Peer{p1, peer(k1, "n2", "192.0.2.2:51820", "10.1.2.0/24")}, nil, true},
		{"own key", nil, []network.Peer{peer(own, "n1", "192.0.2.1:51820", "10.1.1.0/24")}, nil, true},
		{"IPv6 endpoint", nil, []network.Peer{peer(k1, "n1", "[2001:db8::1]:51820", "10.1.1.0/24")}, []change{{k1, false}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := peerChanges(own, tc.current, tc.want)
			if (err != nil) != tc.wantErr || (err != nil && !errors.Is(err, sdk.ErrInvalidArgument)) {
				t.Fatalf("peerChanges: %v, want error %v (ErrInvalidArgument)", err, tc.wantErr)
			}
			var have []change
			for _, c := range got {
				have = append(have, change{c.PublicKey, c.Remove})
			}
			if !slices.Equal(have, tc.changes) {
				t.Errorf("peerChanges = %v, want %v", have, tc.changes)
			}
		})
	}
}

func TestParsePeerErrors(t *testing.T) {
	good := network.Peer{NodeID: "n1", PublicKey: mustKey(t).String(), Endpoint: "192.0.2.1:51820", Subnets: []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")}}
	for _, tc := range []struct {
		name   string
		modify func(*network.Peer)
	}{
		{"bad key", func(p *network.Peer) { p.PublicKey = "xyz" }},
		{"empty key", func(p *network.Peer) { p.PublicKey = "" }},
		{"endpoint without port", func(p *network.Peer) { p.Endpoint = "192.0.2.1" }},
		{"port 0", func(p *network.Peer) { p.Endpoint = "192.0.2.1:0" }},
		{"host name", func(p *network.Peer) { p.Endpoint = "example.com:51820" }},
		{"no subnets", func(p *network.Peer) { p.Subnets = nil }},
	} {
		p := good
		tc.modify(&p)
		if _, err := parsePeer(p); !errors.Is(err, sdk.ErrInvalidArgument) {
			t.Errorf("parsePeer with %s: %v, want ErrInvalidArgument", tc.name, err)
		}
	}
	pc, err := parsePeer(good)
	if err != nil || pc.Endpoint.String() != good.Endpoint || *pc.PersistentKeepaliveInterval != 25*time.Second || !pc.ReplaceAllowedIPs {
		t.Errorf("parsePeer(%+v) = %+v, %v", good, pc, err)
	}
}

func TestAllocator(t *testing.T) {
	subnet := netip.MustParsePrefix("10.1.1.0/29") // .2 to .6
	a := newAllocator(subnet)
	take := func() string {
		t.Helper()
		addr, err := a.take(subnet)
		if err != nil {
			return err.Error()
		}
		return addr.String()
	}
	var got []string
	for range 5 {
		got = append(got, take())
	}
	if want := []string{"10.1.1.2", "10.1.1.3", "10.1.1.4", "10.1.1.5", "10.1.1.6"}; !slices.Equal(got, want) {
		t.Errorf("fresh addresses %v, want %v", got, want)
	}
	if _, err := a.take(subnet); !errors.Is(err, sdk.ErrFailedPrecondition) {
		t.Errorf("take from a full subnet: %v, want ErrFailedPrecondition", err)
	}
	for _, s := range []string{"10.1.1.4", "10.1.1.2", "10.1.1.6"} {
		a.release(netip.MustParseAddr(s))
	}
	got = []string{take(), take()}
	a.release(netip.MustParseAddr("10.1.1.4"))
	got = append(got, take(), take())
	if want := []string{"10.1.1.4", "10.1.1.2", "10.1.1.6", "10.1.1.4"}; !slices.Equal(got, want) {
		t.Errorf("reused addresses %v, want least recently released first %v", got, want)
	}
}

func TestOverlayMTU(t *testing.T) {
	for _, tc := range []struct{ configured, underlay, want int }{
		{0, 1500, 1420},
		{0, 9001, 8921},
		{1380, 1500, 1380},
	} {
		if got := overlayMTU(tc.configured, tc.underlay); got != tc.want {
			t.Errorf("overlayMTU(%d, %d) = %d, want %d", tc.configured, tc.underlay, got, tc.want)
		}
	}
}

func TestConfigure(t *testing.T) {
	for _, tc := range []struct {
		name, json string
		ok         bool
	}{
		{"defaults", `{}`, true},
		{"everything", `{"state_dir": "/tmp/x", "interface": "wg0", "bridge": "br0", "mtu": 1400, "listen_port": 51000, "datapath": "userspace"}`, true},
		{"unknown attribute", `{"vxlan": true}`, false},
		{"long interface name", `{"interface": "a-very-long-name0"}`, false},
		{"interface is the bridge", `{"interface": "x", "bridge": "x"}`, false},
		{"MTU too small", `{"mtu": 500}`, false},
		{"bad port", `{"listen_port": 70000}`, false},
		{"relative state dir", `{"state_dir": "state"}`, false},
		{"unknown datapath", `{"datapath": "ebpf"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.ok {
				// Point the defaults' state dir somewhere harmless.
				tc.json = tc.json[:len(tc.json)-1]
				if tc.name == "defaults" {
					tc.json += `"state_dir": "` + t.TempDir() + `"}`
				} else {
					tc.json += `}`
				}
			}
			err := New().Configure(t.Context(), []byte(tc.json))
			if tc.ok && err != nil {
				t.Errorf("Configure(%s): %v", tc.json, err)
			}
			if !tc.ok && !errors.Is(err, sdk.ErrInvalidArgument) {
				t.Errorf("Configure(%s): %v, want ErrInvalidArgument", tc.json, err)
			}
		})
	}
}

func TestDefaultNames(t *testing.T) {
	a1, b1 := DefaultNames("/var/lib/warren/network-wireguard")
	a2, b2 := DefaultNames("/var/lib/warren-2/network-wireguard")
	a3, _ := DefaultNames("/var/lib/warren/network-wireguard/")
	for _, n := range []string{a1, b1, a2, b2} {
		if len(n) > 15 {
			t.Errorf("name %q is longer than Linux's 15 bytes", n)
		}
	}
	if a1 == a2 || b1 == b2 || a1 == b1 {
		t.Errorf("state dirs apart share names: %s %s / %s %s", a1, b1, a2, b2)
	}
	if a1 != a3 {
		t.Errorf("the same state dir gave %s and %s", a1, a3)
	}
}

func TestEndpoint(t *testing.T) {
	for _, tc := range []struct {
		addr string
		port int
		want string
	}{
		{"10.0.0.1", 51999, "10.0.0.1:51999"},
		{"fd00::1", 51820, "[fd00::1]:51820"},
		{"", 51820, ""},
	} {
		var a netip.Addr
		if tc.addr != "" {
			a = netip.MustParseAddr(tc.addr)
		}
		if got := endpoint(a, tc.port); got != tc.want {
			t.Errorf("endpoint(%s, %d) = %q, want %q", tc.addr, tc.port, got, tc.want)
		}
	}
}

func TestHostProblem(t *testing.T) {
	for _, tc := range []struct {
		name        string
		euid        int
		dp          Datapath
		tun, kernel bool
		want        string // in the error; "" for none
	}{
		{"root with tun", 0, DatapathAuto, true, false, ""},
		{"root with the kernel module only", 0, DatapathAuto, false, true, ""},
		{"kernel datapath needs no tun", 0, DatapathKernel, false, false, ""},
		{"not root", 1000, DatapathAuto, true, true, "needs root"},
		{"userspace without tun", 0, DatapathUserspace, false, true, "/dev/net/tun"},
		{"auto with neither", 0, DatapathAuto, false, false, "no kernel WireGuard"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := hostProblem(tc.euid, tc.dp, tc.tun, tc.kernel)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("hostProblem: %v, want nil", err)
			case tc.want != "" && (!errors.Is(err, sdk.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `network = "none"`)):
				t.Errorf("hostProblem: %v, want ErrUnsupported saying %q and how to opt out", err, tc.want)
			}
		})
	}
}
