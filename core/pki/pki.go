// Package pki is Warren's cluster public-key infrastructure, after Docker
// Swarm's scheme: one self-signed ECDSA P-256 CA per cluster, whose private
// key lives in Raft state only sealed under a key-encryption key (KEK) that
// managers keep on local disk; node certificates that say who their holder is
// (NodeID, Role, ClusterID); join tokens that pin the CA by digest; and the
// tls.Config values every inter-node connection uses (mutual TLS, TLS 1.3).
//
// Everything here is the standard library's crypto. Nothing in this package
// does network I/O; core/clusternet carries the connections.
package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// Role is what a certificate's holder may do in the cluster. It is carried as
// the certificate subject's single OrganizationalUnit.
type Role string

const (
	// RoleManager is a Raft member serving the API; its certificates carry the
	// ManagerServerName DNS SAN.
	RoleManager Role = "manager"
	// RoleWorker runs tasks and talks to managers as a client only.
	RoleWorker Role = "worker"
	// RoleAdmin is a CLI client certificate; never a node.
	RoleAdmin Role = "admin"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool {
	switch r {
	case RoleManager, RoleWorker, RoleAdmin:
		return true
	}
	return false
}

// ManagerServerName is the DNS SAN every manager certificate carries (and only
// manager certificates). Clients dial managers with ServerName =
// ManagerServerName, so a worker certificate can never serve as a manager.
const ManagerServerName = "manager.warren"

// Sentinel errors. Functions wrap them with what they concern, so callers can
// test with errors.Is.
var (
	// ErrInvalidIdentity: a certificate's subject does not name a NodeID, a
	// known Role and a ClusterID.
	ErrInvalidIdentity = errors.New("invalid certificate identity")
	// ErrSealedKey: a sealed CA key cannot be opened: the KEK is wrong or the
	// blob (or the CA certificate it is bound to) was tampered with.
	ErrSealedKey = errors.New("cannot open sealed CA key: wrong key-encryption key or tampered data")
	// ErrInvalidToken: a join token is malformed.
	ErrInvalidToken = errors.New("invalid join token")
	// ErrCADigestMismatch: the CA a manager presented does not have the
	// digest the join token pins.
	ErrCADigestMismatch = errors.New("CA digest does not match the token")
)

// Identity is what a certificate says about its holder: Subject CN = NodeID,
// the single OU = Role, the single O = ClusterID.
type Identity struct {
	NodeID    string
	Role      Role
	ClusterID string
}

// String renders the identity as role/nodeID@clusterID, for logs.
func (id Identity) String() string {
	return fmt.Sprintf("%s/%s@%s", id.Role, id.NodeID, id.ClusterID)
}

func (id Identity) validate() error {
	switch {
	case id.NodeID == "":
		return fmt.Errorf("%w: empty node ID", ErrInvalidIdentity)
	case !id.Role.Valid():
		return fmt.Errorf("%w: unknown role %q", ErrInvalidIdentity, id.Role)
	case id.ClusterID == "":
		return fmt.Errorf("%w: empty cluster ID", ErrInvalidIdentity)
	}
	return nil
}

// IdentityOf reads the identity a certificate carries. It is an error (wrapping
// ErrInvalidIdentity) when the CN is empty, when there is not exactly one OU and
// one O, or when the OU is not a known Role.
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrInvalidIdentity)
	}
	s := cert.Subject
	if len(s.OrganizationalUnit) != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %q has %d OU (role) values, want 1", ErrInvalidIdentity, s.CommonName, len(s.OrganizationalUnit))
	}
	if len(s.Organization) != 1 {
		return Identity{}, fmt.Errorf("%w: certificate %q has %d O (cluster ID) values, want 1", ErrInvalidIdentity, s.CommonName, len(s.Organization))
	}
	id := Identity{NodeID: s.CommonName, Role: Role(s.OrganizationalUnit[0]), ClusterID: s.Organization[0]}
	if err := id.validate(); err != nil {
		return Identity{}, fmt.Errorf("certificate %q: %w", s.CommonName, err)
	}
	return id, nil
}
