// Package pkitest issues real cluster credentials for tests: a CA and node
// certificates from core/pki, nothing faked.
package pkitest

import (
	"testing"
	"time"

	"github.com/warrenorch/warren/core/pki"
)

// Cluster is a test cluster CA.
type Cluster struct {
	ID string
	CA *pki.CA
}

// NewCluster makes a CA for clusterID.
func NewCluster(t testing.TB, clusterID string) *Cluster {
	t.Helper()
	ca, err := pki.NewCA(clusterID, time.Now())
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return &Cluster{ID: clusterID, CA: ca}
}

// Issue returns the PEM certificate and key for nodeID in role, issued at now
// for ttl.
func (c *Cluster) Issue(t testing.TB, nodeID string, role pki.Role, ttl time.Duration, now time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	csr, err := pki.NewCSR(key, nodeID)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	certPEM, err = c.CA.SignCSR(csr, pki.Identity{NodeID: nodeID, Role: role, ClusterID: c.ID}, ttl, now)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	keyPEM, err = pki.KeyPEM(key)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return certPEM, keyPEM
}

// Creds returns live credentials for nodeID in role, valid for an hour.
func (c *Cluster) Creds(t testing.TB, nodeID string, role pki.Role) *pki.Creds {
	t.Helper()
	certPEM, keyPEM := c.Issue(t, nodeID, role, time.Hour, time.Now())
	creds, err := pki.NewCreds(c.CA.CertPEM, certPEM, keyPEM)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return creds
}
