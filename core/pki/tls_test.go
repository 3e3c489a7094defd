package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pki/pkitest"
)

// handshakeResult is what each side of a real loopback TLS connection saw.
type handshakeResult struct {
	server    tls.ConnectionState
	serverErr error
	clientErr error // handshake error, or the error reading the server's first byte
}

// handshake runs one TLS connection over loopback between server and client
// configs. After a successful server handshake the server writes one byte;
// the client reads it, so a client certificate the server refuses (reported
// after the client's handshake returns in TLS 1.3) shows up on both sides.
func handshake(t *testing.T, server, client *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type srv struct {
		state tls.ConnectionState
		err   error
	}
	done := make(chan srv, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- srv{err: err}
			return
		}
		conn := tls.Server(raw, server)
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		if err := conn.Handshake(); err != nil {
			done <- srv{err: err}
			return
		}
		_, err = conn.Write([]byte{1})
		done <- srv{state: conn.ConnectionState(), err: err}
	}()

	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := tls.Client(raw, client)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	clientErr := conn.Handshake()
	if clientErr == nil {
		_, clientErr = io.ReadFull(conn, make([]byte, 1))
	}
	conn.Close()
	s := <-done
	return handshakeResult{server: s.state, serverErr: s.err, clientErr: clientErr}
}

func TestTLS(t *testing.T) {
	// The CA is three days old, so that it can issue a certificate that
	// expired yesterday.
	past := time.Now().Add(-48 * time.Hour)
	ca, err := pki.NewCA("c1", past.Add(-24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	c := &pkitest.Cluster{ID: "c1", CA: ca}
	foreign := pkitest.NewCluster(t, "c1") // same cluster ID, another CA
	manager := c.Creds(t, "m1", pki.RoleManager)
	worker := c.Creds(t, "w1", pki.RoleWorker)
	foreignWorker := foreign.Creds(t, "w9", pki.RoleWorker)
	expiredCert, expiredKey := c.Issue(t, "w2", pki.RoleWorker, time.Hour, past)
	expired, err := pki.NewCreds(c.CA.CertPEM, expiredCert, expiredKey)
	if err != nil {
		t.Fatal(err)
	}
	digest := pki.Digest(c.CA.Cert.Raw)

	// A client config whose ServerName was overwritten, as grpc-go does with
	// the dialed host: verification must still demand ManagerServerName.
	renamed := worker.ClientConfig()
	renamed.ServerName = "127.0.0.1"

	var pinned *x509.Certificate
	cases := []struct {
		name   string
		server *pki.Creds
		client *tls.Config
		// wantID is the client identity the server must see; nil when the
		// client presents no certificate.
		wantID *pki.Identity
		// failMsg is a substring of the expected failure (client or server
		// side); empty when the connection must succeed.
		failMsg string
		// wantErr is an errors.Is target on the client error.
		wantErr error
	}{
		{name: "worker certificate", server: manager, client: worker.ClientConfig(), wantID: &pki.Identity{NodeID: "w1", Role: pki.RoleWorker, ClusterID: "c1"}},
		{name: "manager certificate", server: manager, client: manager.ClientConfig(), wantID: &pki.Identity{NodeID: "m1", Role: pki.RoleManager, ClusterID: "c1"}},
		{name: "ServerName overwritten", server: manager, client: renamed, wantID: &pki.Identity{NodeID: "w1", Role: pki.RoleWorker, ClusterID: "c1"}},
		{name: "no client certificate", server: manager, client: pki.JoinConfig(digest, nil)},
		{name: "foreign CA client", server: manager, client: foreignWorker.ClientConfig(), failMsg: "certificate signed by unknown authority"},
		{name: "expired client", server: manager, client: expired.ClientConfig(), failMsg: "expired"},
		{name: "join right digest", server: manager, client: pki.JoinConfig(digest, func(ca *x509.Certificate) { pinned = ca })},
		{name: "join wrong digest", server: manager, client: pki.JoinConfig(pki.Digest(foreign.CA.Cert.Raw), nil), failMsg: "CA digest does not match the token", wantErr: pki.ErrCADigestMismatch},
		{name: "join to a worker", server: worker, client: pki.JoinConfig(digest, nil), failMsg: "wanted to match " + pki.ManagerServerName},
		{name: "worker as server", server: worker, client: manager.ClientConfig(), failMsg: "wanted to match " + pki.ManagerServerName},
		{name: "foreign manager as server", server: foreign.Creds(t, "m9", pki.RoleManager), client: worker.ClientConfig(), failMsg: "certificate signed by unknown authority"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := handshake(t, tc.server.ServerConfig(), tc.client)
			if tc.failMsg != "" {
				if r.clientErr == nil && r.serverErr == nil {
					t.Fatal("connection succeeded, want failure")
				}
				both := errString(r.clientErr) + " | " + errString(r.serverErr)
				if !strings.Contains(both, tc.failMsg) {
					t.Errorf("errors %q do not say %q", both, tc.failMsg)
				}
				if tc.wantErr != nil && !errors.Is(r.clientErr, tc.wantErr) {
					t.Errorf("client error %v is not %v", r.clientErr, tc.wantErr)
				}
				return
			}
			if r.clientErr != nil || r.serverErr != nil {
				t.Fatalf("client: %v; server: %v", r.clientErr, r.serverErr)
			}
			if r.server.Version != tls.VersionTLS13 {
				t.Errorf("TLS version %x", r.server.Version)
			}
			if tc.wantID == nil {
				if len(r.server.PeerCertificates) != 0 {
					t.Errorf("server saw %d peer certificates, want none", len(r.server.PeerCertificates))
				}
				return
			}
			if len(r.server.VerifiedChains) == 0 {
				t.Fatal("server has no verified client chain")
			}
			id, err := pki.IdentityOf(r.server.VerifiedChains[0][0])
			if err != nil {
				t.Fatal(err)
			}
			if id != *tc.wantID {
				t.Errorf("server sees %+v, want %+v", id, *tc.wantID)
			}
		})
	}
	if pinned == nil || !pinned.Equal(c.CA.Cert) {
		t.Error("JoinConfig did not hand the pinned CA to onCA")
	}
}

func TestCredsSet(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	other := pkitest.NewCluster(t, "c1")
	otherCluster := pkitest.NewCluster(t, "c2")
	creds := c.Creds(t, "n1", pki.RoleWorker)
	server := c.Creds(t, "m1", pki.RoleManager)

	// Promotion: a manager certificate replaces the worker one; the next
	// handshake already uses it.
	mCert, mKey := c.Issue(t, "n1", pki.RoleManager, time.Hour, time.Now())
	if err := creds.Set(mCert, mKey); err != nil {
		t.Fatal(err)
	}
	if creds.Identity().Role != pki.RoleManager || string(creds.CertPEM()) != string(mCert) {
		t.Fatalf("after Set: %+v", creds.Identity())
	}
	r := handshake(t, server.ServerConfig(), creds.ClientConfig())
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("client: %v; server: %v", r.clientErr, r.serverErr)
	}
	if id, _ := pki.IdentityOf(r.server.PeerCertificates[0]); id.Role != pki.RoleManager {
		t.Errorf("server saw %+v after Set", id)
	}
	// And the promoted node can serve as a manager now.
	r = handshake(t, creds.ServerConfig(), server.ClientConfig())
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("serving after promotion: client: %v; server: %v", r.clientErr, r.serverErr)
	}

	_, otherKey := c.Issue(t, "n1", pki.RoleWorker, time.Hour, time.Now())
	foreignCert, foreignKey := other.Issue(t, "n1", pki.RoleWorker, time.Hour, time.Now())
	c2Cert, c2Key := otherCluster.Issue(t, "n1", pki.RoleWorker, time.Hour, time.Now())
	cases := []struct {
		name      string
		cert, key []byte
		msg       string
	}{
		{"mismatched key", mCert, otherKey, "private key does not match public key"},
		{"other CA", foreignCert, foreignKey, "does not chain to the cluster CA"},
		{"other cluster", c2Cert, c2Key, `is for cluster "c2"`},
		{"garbage", []byte("x"), []byte("y"), "certificate/key pair"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := creds.Set(tc.cert, tc.key)
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v, want one saying %q", err, tc.msg)
			}
			if creds.Identity().Role != pki.RoleManager {
				t.Error("a refused Set changed the credentials")
			}
		})
	}
}

func TestClientConfigFor(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	server := c.Creds(t, "m1", pki.RoleManager)
	certPEM, keyPEM, err := c.CA.IssueAdmin("c1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pki.ClientConfigFor(c.CA.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	r := handshake(t, server.ServerConfig(), cfg)
	if r.clientErr != nil || r.serverErr != nil {
		t.Fatalf("client: %v; server: %v", r.clientErr, r.serverErr)
	}
	if id, _ := pki.IdentityOf(r.server.VerifiedChains[0][0]); id.Role != pki.RoleAdmin {
		t.Errorf("server saw %+v", id)
	}
	if _, err := pki.ClientConfigFor(c.CA.CertPEM, certPEM, []byte("bad")); err == nil {
		t.Error("ClientConfigFor with a bad key: want error")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
