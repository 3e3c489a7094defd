package cluster

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pki/pkitest"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/netns"
	"github.com/warrenorch/warren/test/testutil"
)

// TestClusterFormsAndRefusesStrangers forms a 3-manager, 2-worker cluster
// from join tokens, runs a service on the workers through a follower, and
// then checks that bad tokens, a foreign CA and callers without a (right)
// certificate are refused on every RPC.
func TestClusterFormsAndRefusesStrangers(t *testing.T) {
	bin := testutil.Install(t, clustertest.Plugins...)
	c := clustertest.New(t, bin)
	c.Form([]string{"m1", "m2", "m3"}, []string{"w1", "w2"})
	m1, m2, m3 := c.Node("m1"), c.Node("m2"), c.Node("m3")
	w1, w2 := c.Node("w1"), c.Node("w2")

	out := m2.CLI(0, "node", "ls")
	for _, want := range []string{"m1", "m2", "m3", "w1", "w2"} {
		if !strings.Contains(out, want) {
			t.Fatalf("node ls on m2 lacks %s:\n%s", want, out)
		}
	}
	members := m3.CLI(0, "cluster", "members")
	if strings.Count(members, "voter") != 3 || strings.Count(members, " leader ") != 1 {
		t.Fatalf("cluster members:\n%s", members)
	}

	// A service created through a follower runs on the workers only.
	leader := c.Leader()
	follower := m2
	if leader == m2 {
		follower = m3
	}
	follower.CLI(0, "service", "create", "web", "--image", ctrtest.TestImage, "--replicas", "4")
	testutil.Eventually(t, 60*time.Second, "4 containers on the workers", func() bool {
		return len(w1.RunningOn())+len(w2.RunningOn()) == 4
	})
	if n1, n2 := len(w1.RunningOn()), len(w2.RunningOn()); n1 != 2 || n2 != 2 {
		t.Fatalf("round robin placed %d on w1 and %d on w2, want 2 and 2", n1, n2)
	}
	if ps := m1.CLI(0, "service", "ps", "web"); runningRows(ps) != 4 {
		t.Fatalf("service ps through m1:\n%s", ps)
	}

	t.Run("bad tokens are refused", func(t *testing.T) {
		wtok := c.Token(m1, "worker")
		tok, err := pki.ParseToken(wtok)
		if err != nil {
			t.Fatal(err)
		}
		wrongSecret := "WRN-1-" + tok.Digest + "-" + strings.Repeat("a", pki.SecretLen)
		otherCA := pkitest.NewCluster(t, "other")
		wrongCA := pki.FormatToken(otherCA.CA.Cert.Raw, tok.Secret)
		m1.CLI(0, "cluster", "join-token", "--rotate", "worker")
		cases := []struct {
			name, token, want string
		}{
			{"wrong-secret", wrongSecret, "join token is not valid"},
			{"rotated", wtok, "join token is not valid"},
			{"foreign-ca", wrongCA, "CA digest does not match"},
		}
		for i, tc := range cases {
			n := c.Add("bad"+string(rune('a'+i)), clustertest.Spec{Worker: true, Join: tc.token})
			out := n.StartExpectFailure()
			if !strings.Contains(out, tc.want) {
				t.Errorf("%s: agent output lacks %q:\n%s", tc.name, tc.want, out)
			}
			if _, err := os.Stat(filepath.Join(n.DataDir, "certs", "node.pem")); err == nil {
				t.Errorf("%s: the refused node got a certificate", tc.name)
			}
		}
		if out := m1.CLI(0, "node", "ls"); strings.Contains(out, "bad") {
			t.Fatalf("a refused node was registered:\n%s", out)
		}
	})

	t.Run("every RPC checks the caller's certificate", func(t *testing.T) {
		// The intruder sits on a host of its own, on the cluster network.
		intruder := c.Net.AddHost(t, "x1")
		caPEM, err := os.ReadFile(filepath.Join(m1.DataDir, "certs", "ca.pem"))
		if err != nil {
			t.Fatal(err)
		}
		ca, err := pki.ParseCertPEM(caPEM)
		if err != nil {
			t.Fatal(err)
		}
		noCert := pki.JoinConfig(pki.Digest(ca.Raw), nil, "h2")
		foreign := pkitest.NewCluster(t, "evil").Creds(t, "evil-node", pki.RoleManager).ClientConfig("h2")
		workerCfg := certConfig(t, w1)

		for _, target := range []*clustertest.Node{leader, follower} {
			for _, rpc := range allRPCs() {
				// No certificate: only Join gets past authentication.
				code := call(t, intruder, target.Addr(), noCert, rpc)
				want := codes.Unauthenticated
				if rpc.name == apiv1.NodeCA_Join_FullMethodName {
					want = codes.InvalidArgument
				}
				if code != want {
					t.Errorf("%s on %s without a certificate: %s, want %s", rpc.name, target.Name, code, want)
				}
				// A certificate from another CA fails the TLS handshake.
				if code := call(t, intruder, target.Addr(), foreign, rpc); code != codes.Unavailable {
					t.Errorf("%s on %s with a foreign CA's certificate: %s, want Unavailable (handshake refused)", rpc.name, target.Name, code)
				}
				// A worker certificate reaches only the node methods.
				code = call(t, intruder, target.Addr(), workerCfg, rpc)
				if rpc.workerMay {
					if code == codes.Unauthenticated || code == codes.PermissionDenied {
						t.Errorf("%s on %s with a worker certificate: %s, want it admitted", rpc.name, target.Name, code)
					}
				} else if code != codes.PermissionDenied {
					t.Errorf("%s on %s with a worker certificate: %s, want PermissionDenied", rpc.name, target.Name, code)
				}
			}
		}
	})

	t.Run("admin certificate from another machine", func(t *testing.T) {
		dir := t.TempDir()
		m1.CLI(0, "cluster", "admin-cert", "--out", dir)
		admin := c.Net.AddHost(t, "adm")
		out, err := admin.Command(bin, "--addr", follower.Addr(), "--cert-dir", dir, "service", "ls").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "web") {
			t.Fatalf("remote service ls: %v\n%s", err, out)
		}
		// The same files without the key are useless.
		if err := os.Remove(filepath.Join(dir, "key.pem")); err != nil {
			t.Fatal(err)
		}
		out, err = admin.Command(bin, "--addr", follower.Addr(), "--cert-dir", dir, "service", "ls").CombinedOutput()
		if err == nil {
			t.Fatalf("service ls without the key worked:\n%s", out)
		}
	})
}

type rpc struct {
	name      string
	stream    *grpc.StreamDesc
	workerMay bool
}

// allRPCs lists every method served on the cluster port.
func allRPCs() []rpc {
	var out []rpc
	for _, d := range []grpc.ServiceDesc{apiv1.Warren_ServiceDesc, apiv1.Cluster_ServiceDesc, apiv1.NodeCA_ServiceDesc, apiv1.Dispatcher_ServiceDesc} {
		node := d.ServiceName == apiv1.Dispatcher_ServiceDesc.ServiceName
		for _, m := range d.Methods {
			full := "/" + d.ServiceName + "/" + m.MethodName
			out = append(out, rpc{name: full, workerMay: node || full == apiv1.NodeCA_Renew_FullMethodName || full == apiv1.NodeCA_Join_FullMethodName})
		}
		for i := range d.Streams {
			s := d.Streams[i]
			out = append(out, rpc{name: "/" + d.ServiceName + "/" + s.StreamName, stream: &grpc.StreamDesc{StreamName: s.StreamName, ServerStreams: s.ServerStreams, ClientStreams: s.ClientStreams}, workerMay: node})
		}
	}
	return out
}

// call invokes one RPC with an empty request from host and returns the
// status code.
func call(t *testing.T, host *netns.Host, addr string, cfg *tls.Config, r rpc) codes.Code {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(cfg.Clone())),
		grpc.WithContextDialer(clustertest.Dialer(host)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if r.stream == nil {
		err = conn.Invoke(ctx, r.name, &emptypb.Empty{}, &emptypb.Empty{})
		return status.Code(err)
	}
	s, err := conn.NewStream(ctx, r.stream, r.name)
	if err != nil {
		return status.Code(err)
	}
	if r.stream.ClientStreams {
		_ = s.CloseSend()
	} else if err := s.SendMsg(&emptypb.Empty{}); err == nil {
		_ = s.CloseSend()
	}
	err = s.RecvMsg(&emptypb.Empty{})
	if err == nil {
		// The stream was admitted and answered.
		return codes.OK
	}
	return status.Code(err)
}

// certConfig is a client TLS config with n's node certificate.
func certConfig(t *testing.T, n *clustertest.Node) *tls.Config {
	t.Helper()
	dir := pki.Dir(filepath.Join(n.DataDir, "certs"))
	caPEM, certPEM, keyPEM, err := dir.Load()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := pki.NewCreds(caPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return creds.ClientConfig("h2")
}

// runningRows counts the rows of `service ps` whose desired and current
// states are both Running.
func runningRows(ps string) int {
	n := 0
	for _, line := range strings.Split(ps, "\n") {
		if strings.Count(line, "Running") >= 2 {
			n++
		}
	}
	return n
}
