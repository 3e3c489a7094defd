package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pki/pkitest"
)

func TestNewCA(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ca, err := pki.NewCA("c1", now)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	checks := []struct {
		name string
		ok   bool
	}{
		{"CN", c.Subject.CommonName == "warren-ca-c1"},
		{"O", len(c.Subject.Organization) == 1 && c.Subject.Organization[0] == "c1"},
		{"IsCA", c.IsCA && c.BasicConstraintsValid},
		{"MaxPathLenZero", c.MaxPathLen == 0 && c.MaxPathLenZero},
		{"KeyUsage", c.KeyUsage == x509.KeyUsageCertSign|x509.KeyUsageCRLSign},
		{"NotBefore", c.NotBefore.Equal(now.Add(-time.Minute))},
		{"NotAfter", c.NotAfter.Equal(now.Add(-time.Minute).Add(20 * 365 * 24 * time.Hour))},
		{"P-256", c.PublicKeyAlgorithm == x509.ECDSA && c.PublicKey.(*ecdsa.PublicKey).Curve.Params().Name == "P-256"},
		{"self-signed", c.CheckSignatureFrom(c) == nil},
		{"PEM", mustParse(t, ca.CertPEM).Equal(c)},
		{"ClusterID", ca.ClusterID() == "c1"},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("CA certificate: %s wrong", ch.name)
		}
	}
	if _, err := pki.NewCA("", now); err == nil {
		t.Error("NewCA with empty cluster ID: want error")
	}
}

func TestSealOpen(t *testing.T) {
	ca, err := pki.NewCA("c1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := pki.NewCA("c1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	kek, err := pki.NewKEK()
	if err != nil {
		t.Fatal(err)
	}
	if len(kek) != 32 {
		t.Fatalf("KEK is %d bytes", len(kek))
	}
	sealed, err := ca.SealKey(kek)
	if err != nil {
		t.Fatal(err)
	}

	opened, err := pki.OpenCA(ca.CertPEM, sealed, kek)
	if err != nil {
		t.Fatalf("OpenCA: %v", err)
	}
	if !opened.Cert.Equal(ca.Cert) {
		t.Fatal("opened CA has another certificate")
	}
	// The opened CA signs certificates that chain to the original.
	c := &pkitest.Cluster{ID: "c1", CA: opened}
	certPEM, _ := c.Issue(t, "n1", pki.RoleWorker, time.Hour, time.Now())
	if err := mustParse(t, certPEM).CheckSignatureFrom(ca.Cert); err != nil {
		t.Fatalf("certificate from opened CA: %v", err)
	}

	wrongKEK, _ := pki.NewKEK()
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 1
		return b
	}
	cases := []struct {
		name   string
		cert   []byte
		sealed []byte
		kek    []byte
		want   error  // errors.Is target, or nil to match msg only
		msg    string // substring of the error
	}{
		{"wrong KEK", ca.CertPEM, sealed, wrongKEK, pki.ErrSealedKey, "wrong key-encryption key or tampered"},
		{"tampered nonce", ca.CertPEM, flip(0), kek, pki.ErrSealedKey, "tampered"},
		{"tampered ciphertext", ca.CertPEM, flip(20), kek, pki.ErrSealedKey, "tampered"},
		{"tampered tag", ca.CertPEM, flip(len(sealed) - 1), kek, pki.ErrSealedKey, "tampered"},
		{"truncated", ca.CertPEM, sealed[:10], kek, pki.ErrSealedKey, "too short"},
		{"other CA certificate", other.CertPEM, sealed, kek, pki.ErrSealedKey, "tampered"},
		{"short KEK", ca.CertPEM, sealed, kek[:16], nil, "key-encryption key is 16 bytes, want 32"},
		{"not PEM", []byte("nope"), sealed, kek, nil, "no CERTIFICATE PEM block"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pki.OpenCA(tc.cert, tc.sealed, tc.kek)
			if err == nil {
				t.Fatal("want error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %v is not %v", err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}

	if _, err := ca.SealKey(kek[:31]); err == nil {
		t.Error("SealKey with a 31-byte KEK: want error")
	}
}

func TestSignCSR(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	now := time.Now().Truncate(time.Second)
	roots := x509.NewCertPool()
	roots.AddCert(c.CA.Cert)
	for _, tc := range []struct {
		role    pki.Role
		wantSAN bool
	}{
		{pki.RoleManager, true},
		{pki.RoleWorker, false},
		{pki.RoleAdmin, false},
	} {
		t.Run(string(tc.role), func(t *testing.T) {
			want := pki.Identity{NodeID: "node-" + string(tc.role), Role: tc.role, ClusterID: "c1"}
			certPEM, _ := c.Issue(t, want.NodeID, tc.role, 2*time.Hour, now)
			cert := mustParse(t, certPEM)
			got, err := pki.IdentityOf(cert)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("identity %+v, want %+v", got, want)
			}
			hasSAN := len(cert.DNSNames) == 1 && cert.DNSNames[0] == pki.ManagerServerName
			if hasSAN != tc.wantSAN || (!tc.wantSAN && len(cert.DNSNames) != 0) {
				t.Errorf("DNS SANs %v, want ManagerServerName: %v", cert.DNSNames, tc.wantSAN)
			}
			if !cert.NotBefore.Equal(now.Add(-time.Minute)) || !cert.NotAfter.Equal(now.Add(2*time.Hour)) {
				t.Errorf("validity [%s, %s)", cert.NotBefore, cert.NotAfter)
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage %v", cert.KeyUsage)
			}
			if len(cert.ExtKeyUsage) != 2 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || cert.ExtKeyUsage[1] != x509.ExtKeyUsageClientAuth {
				t.Errorf("ExtKeyUsage %v", cert.ExtKeyUsage)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if cert.SerialNumber.BitLen() > 128 || cert.SerialNumber.Sign() <= 0 {
				t.Errorf("serial %s", cert.SerialNumber)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("verify: %v", err)
			}
			_, err = cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: pki.ManagerServerName})
			if (err == nil) != tc.wantSAN {
				t.Errorf("verify as %s: %v", pki.ManagerServerName, err)
			}
		})
	}
}

func TestSignCSRTTLCutAtCA(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	certPEM, _ := c.Issue(t, "n1", pki.RoleWorker, 100*365*24*time.Hour, time.Now())
	if got := mustParse(t, certPEM).NotAfter; !got.Equal(c.CA.Cert.NotAfter) {
		t.Errorf("NotAfter %s, want the CA's %s", got, c.CA.Cert.NotAfter)
	}
}

func TestSignCSRRefuses(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	key, _ := pki.NewKey()
	csr, err := pki.NewCSR(key, "n1")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := x509.ParseCertificateRequest(csr)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a bit of the signature: the CSR still parses, the signature fails.
	badSig := bytes.Clone(csr)
	sigAt := bytes.LastIndex(badSig, parsed.Signature)
	badSig[sigAt+len(parsed.Signature)-2] ^= 1
	ok := pki.Identity{NodeID: "n1", Role: pki.RoleWorker, ClusterID: "c1"}

	cases := []struct {
		name string
		csr  []byte
		id   pki.Identity
		ttl  time.Duration
		msg  string
	}{
		{"bad signature", badSig, ok, time.Hour, "bad CSR signature"},
		{"garbage", []byte("not a csr"), ok, time.Hour, "parse"},
		{"other cluster", csr, pki.Identity{NodeID: "n1", Role: pki.RoleWorker, ClusterID: "c2"}, time.Hour, `cluster ID "c2" is not this CA's cluster "c1"`},
		{"unknown role", csr, pki.Identity{NodeID: "n1", Role: "root", ClusterID: "c1"}, time.Hour, `unknown role "root"`},
		{"empty node ID", csr, pki.Identity{Role: pki.RoleWorker, ClusterID: "c1"}, time.Hour, "empty node ID"},
		{"zero TTL", csr, ok, 0, "non-positive TTL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.CA.SignCSR(tc.csr, tc.id, tc.ttl, time.Now())
			if err == nil {
				t.Fatal("want error")
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestIdentityOfRefuses(t *testing.T) {
	cases := []struct {
		name    string
		subject pkix.Name
		msg     string
	}{
		{"no OU", pkix.Name{CommonName: "n1", Organization: []string{"c1"}}, "0 OU"},
		{"two OUs", pkix.Name{CommonName: "n1", OrganizationalUnit: []string{"worker", "manager"}, Organization: []string{"c1"}}, "2 OU"},
		{"no O", pkix.Name{CommonName: "n1", OrganizationalUnit: []string{"worker"}}, "0 O (cluster ID)"},
		{"no CN", pkix.Name{OrganizationalUnit: []string{"worker"}, Organization: []string{"c1"}}, "empty node ID"},
		{"unknown role", pkix.Name{CommonName: "n1", OrganizationalUnit: []string{"root"}, Organization: []string{"c1"}}, `unknown role "root"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pki.IdentityOf(selfSigned(t, tc.subject))
			if !errors.Is(err, pki.ErrInvalidIdentity) {
				t.Fatalf("error %v, want ErrInvalidIdentity", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
		})
	}
}

func TestIssueAdmin(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	certPEM, keyPEM, err := c.CA.IssueAdmin("c1", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := pki.NewCreds(c.CA.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	id := creds.Identity()
	if id.Role != pki.RoleAdmin || id.ClusterID != "c1" || !strings.HasPrefix(id.NodeID, "admin-") || len(id.NodeID) <= len("admin-") {
		t.Errorf("admin identity %+v", id)
	}
	if len(creds.Leaf().DNSNames) != 0 {
		t.Errorf("admin certificate has SANs %v", creds.Leaf().DNSNames)
	}
	if _, _, err := c.CA.IssueAdmin("c2", time.Hour, time.Now()); err == nil {
		t.Error("IssueAdmin for another cluster: want error")
	}
}

func TestRenewAt(t *testing.T) {
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	// Issued at start for 90h, backdated a minute as the CA does.
	cert := &x509.Certificate{NotBefore: start.Add(-time.Minute), NotAfter: start.Add(90 * time.Hour)}
	if got, want := pki.RenewAt(cert), start.Add(60*time.Hour); !got.Equal(want) {
		t.Errorf("RenewAt %s, want %s", got, want)
	}
	short := &x509.Certificate{NotBefore: start.Add(-time.Minute), NotAfter: start.Add(30 * time.Second)}
	if got, want := pki.RenewAt(short), start.Add(20*time.Second); !got.Equal(want) {
		t.Errorf("RenewAt of a 30s certificate %s, want %s", got, want)
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.KeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "-----BEGIN EC PRIVATE KEY-----") {
		t.Errorf("key PEM starts %q", b[:30])
	}
	back, err := pki.ParseKeyPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(key) {
		t.Error("key changed in the round trip")
	}
	if _, err := pki.ParseCertPEM(b); err == nil {
		t.Error("ParseCertPEM of a key: want error")
	}
}

func mustParse(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	cert, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func selfSigned(t *testing.T, subject pkix.Name) *x509.Certificate {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestSealOpenSecret(t *testing.T) {
	kek, err := pki.NewKEK()
	if err != nil {
		t.Fatal(err)
	}
	other, _ := pki.NewKEK()
	sealed, err := pki.Seal(kek, []byte("s3cret"), []byte("worker"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := pki.Open(kek, sealed, []byte("worker")); err != nil || string(got) != "s3cret" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	tampered := append([]byte(nil), sealed...)
	tampered[len(tampered)-1] ^= 1
	cases := []struct {
		name      string
		kek, blob []byte
		aad       string
	}{
		{"wrong key", other, sealed, "worker"},
		{"other purpose", kek, sealed, "manager"},
		{"tampered", kek, tampered, "worker"},
		{"truncated", kek, sealed[:4], "worker"},
	}
	for _, c := range cases {
		if _, err := pki.Open(c.kek, c.blob, []byte(c.aad)); !errors.Is(err, pki.ErrSealedKey) {
			t.Errorf("%s: %v, want ErrSealedKey", c.name, err)
		}
	}
}
