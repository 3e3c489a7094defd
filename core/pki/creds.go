package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
)

// Creds holds a node's live TLS material: the cluster CA (fixed) and the
// node's certificate and key, which Set swaps at runtime (renewal, promotion).
// Every tls.Config it returns reads the current pair through callbacks, so Set
// takes effect for new handshakes at once; established connections keep the
// certificate they were made with. Safe for concurrent use.
type Creds struct {
	ca    *x509.Certificate
	caPEM []byte
	pool  *x509.CertPool
	cur   atomic.Pointer[credState]
}

type credState struct {
	cert    *tls.Certificate // chain [leaf, CA]
	leaf    *x509.Certificate
	id      Identity
	certPEM []byte
}

// NewCreds builds Creds from the CA certificate and the node's certificate and
// key (PEM). It checks what Set checks.
func NewCreds(caPEM, certPEM, keyPEM []byte) (*Creds, error) {
	ca, err := ParseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("credentials: CA: %w", err)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid {
		return nil, fmt.Errorf("credentials: %q is not a CA certificate", ca.Subject.CommonName)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	c := &Creds{ca: ca, caPEM: append([]byte(nil), caPEM...), pool: pool}
	if err := c.Set(certPEM, keyPEM); err != nil {
		return nil, err
	}
	return c, nil
}

// Set replaces the node's certificate and key. The CA stays the same: the pair
// must match, chain to the CA, carry a valid Identity and belong to the CA's
// cluster. Validity dates are not checked here (an agent restarting with an
// expired certificate can still start and say so; peers refuse it in the
// handshake); use Leaf().NotAfter and RenewAt.
func (c *Creds) Set(certPEM, keyPEM []byte) error {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("credentials: certificate/key pair: %w", err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fmt.Errorf("credentials: certificate: %w", err)
		}
	}
	id, err := IdentityOf(leaf)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	if len(c.ca.Subject.Organization) != 1 || id.ClusterID != c.ca.Subject.Organization[0] {
		return fmt.Errorf("credentials: certificate %q is for cluster %q, the CA is %q", id.NodeID, id.ClusterID, c.ca.Subject.CommonName)
	}
	// Check the chain at a moment both certificates are valid, so that only
	// the signature path is judged here.
	at := leaf.NotBefore
	if c.ca.NotBefore.After(at) {
		at = c.ca.NotBefore
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:       c.pool,
		CurrentTime: at,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("credentials: certificate %q does not chain to the cluster CA: %w", id.NodeID, err)
	}
	// Present [leaf, CA]: joiners pin the CA by digest from the chain.
	pair.Certificate = [][]byte{pair.Certificate[0], c.ca.Raw}
	pair.Leaf = leaf
	c.cur.Store(&credState{
		cert:    &pair,
		leaf:    leaf,
		id:      id,
		certPEM: append([]byte(nil), certPEM...),
	})
	return nil
}

// Identity returns the identity of the current certificate.
func (c *Creds) Identity() Identity { return c.cur.Load().id }

// Leaf returns the current certificate.
func (c *Creds) Leaf() *x509.Certificate { return c.cur.Load().leaf }

// CertPEM returns the current certificate as PEM.
func (c *Creds) CertPEM() []byte { return c.cur.Load().certPEM }

// CA returns the cluster CA certificate.
func (c *Creds) CA() *x509.Certificate { return c.ca }

// CAPEM returns the cluster CA certificate as PEM.
func (c *Creds) CAPEM() []byte { return c.caPEM }

func (c *Creds) certificate() *tls.Certificate { return c.cur.Load().cert }

// ServerConfig is the server side of every inter-node connection: TLS 1.3
// minimum; the server presents [leaf, CA] (the CA in the chain lets joiners pin
// it by digest); client certificates are verified against the CA when given
// (VerifyClientCertIfGiven), so a foreign-CA or expired client certificate
// fails the handshake while no certificate at all passes: Join needs that, and
// the RPC layer refuses everything else from such a caller. NextProtos as given.
func (c *Creds) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.certificate(), nil
		},
		ClientAuth: tls.VerifyClientCertIfGiven,
		ClientCAs:  c.pool,
		NextProtos: nextProtos,
	}
}

// ClientConfig dials managers: it presents the node's certificate and accepts
// the server only if its certificate chains to the CA and carries the DNS SAN
// ManagerServerName (so only a manager can serve) with ServerAuth.
//
// RootCAs is the CA and ServerName is ManagerServerName, but the check does not
// depend on ServerName: grpc-go's TLS credentials overwrite ServerName with the
// dialed host, so the config verifies the server itself (VerifyConnection)
// against ManagerServerName whatever ServerName ends up being.
func (c *Creds) ClientConfig(nextProtos ...string) *tls.Config {
	return clientConfig(c.pool, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return c.certificate(), nil
	}, nextProtos)
}

func clientConfig(roots *x509.CertPool, getCert func(*tls.CertificateRequestInfo) (*tls.Certificate, error), nextProtos []string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              roots,
		ServerName:           ManagerServerName,
		GetClientCertificate: getCert,
		NextProtos:           nextProtos,
		// Verified in VerifyConnection, below, independently of ServerName.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("manager presented no certificate")
			}
			_, err := verifyManager(cs.PeerCertificates, roots)
			return err
		},
	}
}

// verifyManager checks that chain[0] is a manager certificate issued by a CA in
// roots (chain[1:] are offered as intermediates).
func verifyManager(chain []*x509.Certificate, roots *x509.CertPool) ([][]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		DNSName:       ManagerServerName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("server certificate %q: %w", chain[0].Subject.CommonName, err)
	}
	return chains, nil
}

// JoinConfig is for a node without credentials yet: it sends no client
// certificate and accepts the server only if the chain the server presents
// contains a CA certificate whose Digest equals digest and the leaf verifies
// against that CA for ManagerServerName with ServerAuth. onCA (may be nil)
// receives the pinned CA certificate. A mismatch fails the handshake with an
// error wrapping ErrCADigestMismatch.
func JoinConfig(digest string, onCA func(*x509.Certificate), nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: ManagerServerName,
		NextProtos: nextProtos,
		// Trust comes from the pinned digest, checked below.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("manager presented no certificate")
			}
			var ca *x509.Certificate
			for _, c := range cs.PeerCertificates[1:] {
				if c.IsCA && Digest(c.Raw) == digest {
					ca = c
					break
				}
			}
			if ca == nil {
				return fmt.Errorf("manager %q: %w", cs.PeerCertificates[0].Subject.CommonName, ErrCADigestMismatch)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			if _, err := verifyManager(cs.PeerCertificates[:1], roots); err != nil {
				return err
			}
			if onCA != nil {
				onCA(ca)
			}
			return nil
		},
	}
}

// ClientConfigFor builds a client tls.Config from the contents of PEM files,
// for the CLI with an admin certificate: it verifies the server as
// ClientConfig does (CA, ManagerServerName).
func ClientConfigFor(caPEM, certPEM, keyPEM []byte) (*tls.Config, error) {
	c, err := NewCreds(caPEM, certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	return c.ClientConfig(), nil
}
