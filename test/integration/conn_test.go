package integration

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/test/testutil"
)

// openFDs returns how many file descriptors process pid has open.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("open files of the agent: %v", err)
	}
	return len(ents)
}

// TestClusterPortFloodLeavesRoomForCLI floods a real agent's cluster port
// with TLS connections that present no certificate, negotiate h2 and send
// only the HTTP/2 preface (issue 9, point 3). The agent holds no more of
// them than its caps, whatever their number, and its local CLI keeps
// answering meanwhile.
func TestClusterPortFloodLeavesRoomForCLI(t *testing.T) {
	a, bin := startAgent(t, "")
	cfg, err := os.ReadFile(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`bind_addr\s*=\s*"([^"]+)"`).FindSubmatch(cfg)
	if m == nil {
		t.Fatalf("no bind_addr in %s", a.Config)
	}
	addr := string(m[1])
	before := openFDs(t, a.PID())

	const sources, each = 20, 30 // 600 connections, 30 per source
	lim := clusternet.DefaultLimits
	preface := []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	handshaken := 0
	for i := range sources * each {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%sources))}, Timeout: 5 * time.Second}
		raw, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
		t.Cleanup(func() { raw.Close() })
		conn := tls.Client(raw, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if err := conn.Handshake(); err == nil {
			handshaken++
			_, _ = conn.Write(preface)
		}
	}
	if handshaken < lim.Strangers {
		t.Fatalf("only %d of %d connections were handshaken; the flood did not reach the caps", handshaken, sources*each)
	}

	// The local CLI answers during the flood.
	start := time.Now()
	if out, errOut, code := testutil.RunCLI(t, bin, a.Socket, "node", "ls"); code != 0 || !strings.Contains(out, "test-manager") {
		t.Fatalf("warren node ls during the flood: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("warren node ls answered in %v with %d flood connections open on the client side", time.Since(start), sources*each)

	// The agent holds at most the total cap of them (plus its own few).
	slack := 30
	testutil.Eventually(t, 10*time.Second, "the agent to hold no more flood connections than its caps", func() bool {
		return openFDs(t, a.PID()) <= before+lim.Strangers+slack
	})
	t.Logf("agent file descriptors: %d before, %d during a flood of %d connections (caps: %d in total, %d per source)",
		before, openFDs(t, a.PID()), sources*each, lim.Strangers, lim.StrangersPerSource)
	if out := a.Output(); !strings.Contains(out, "too many such connections") {
		t.Errorf("the agent did not log the flood; its log:\n%s", out)
	}
}
