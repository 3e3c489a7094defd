package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

const (
	// caValidity is how long a cluster CA is valid.
	caValidity = 20 * 365 * 24 * time.Hour
	// backdate is subtracted from "now" for NotBefore, to absorb clock skew
	// between nodes.
	backdate = time.Minute
	// kekSize is the size of a key-encryption key: AES-256.
	kekSize = 32
)

// CA is a cluster certificate authority: its certificate and the private key
// that signs node certificates.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte

	key *ecdsa.PrivateKey
}

// ClusterID returns the cluster the CA belongs to (its subject's O).
func (ca *CA) ClusterID() string {
	if len(ca.Cert.Subject.Organization) != 1 {
		return ""
	}
	return ca.Cert.Subject.Organization[0]
}

// NewCA makes a self-signed ECDSA P-256 CA for clusterID, valid 20 years from
// now-1min: CN "warren-ca-"+clusterID, O clusterID, IsCA, KeyUsage
// CertSign|CRLSign, MaxPathLenZero (it signs leaf certificates only).
func NewCA(clusterID string, now time.Time) (*CA, error) {
	if clusterID == "" {
		return nil, errors.New("new CA: empty cluster ID")
	}
	key, err := NewKey()
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %q: %w", clusterID, err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %q: %w", clusterID, err)
	}
	notBefore := now.Add(-backdate)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:   "warren-ca-" + clusterID,
			Organization: []string{clusterID},
		},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %q: sign: %w", clusterID, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA for cluster %q: %w", clusterID, err)
	}
	return &CA{Cert: cert, CertPEM: certPEM(der), key: key}, nil
}

// NewKEK returns a random 32-byte key-encryption key.
func NewKEK() ([]byte, error) {
	kek := make([]byte, kekSize)
	if _, err := rand.Read(kek); err != nil {
		return nil, fmt.Errorf("new KEK: %w", err)
	}
	return kek, nil
}

func kekAEAD(kek []byte) (cipher.AEAD, error) {
	if len(kek) != kekSize {
		return nil, fmt.Errorf("key-encryption key is %d bytes, want %d", len(kek), kekSize)
	}
	block, err := aes.NewCipher(kek)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plaintext with AES-256-GCM under kek, bound to aad (which
// Open must be given again): nonce||ciphertext. It is how secrets kept in
// the Raft state, such as the join-token secrets, stay unreadable without
// a manager's KEK.
func Seal(kek, plaintext, aad []byte) ([]byte, error) {
	aead, err := kekAEAD(kek)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal returned. A wrong kek, a different aad or a
// tampered blob is an error wrapping ErrSealedKey.
func Open(kek, sealed, aad []byte) ([]byte, error) {
	aead, err := kekAEAD(kek)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	if len(sealed) < aead.NonceSize() {
		return nil, fmt.Errorf("open: %w", ErrSealedKey)
	}
	out, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], aad)
	if err != nil {
		return nil, fmt.Errorf("open: %w", ErrSealedKey)
	}
	return out, nil
}

// SealKey returns the CA private key encrypted with AES-256-GCM under kek
// (nonce||ciphertext, with the CA certificate's DER as additional data), so
// the key is never stored in clear in Raft state and a sealed key only opens
// together with its own certificate.
func (ca *CA) SealKey(kek []byte) ([]byte, error) {
	aead, err := kekAEAD(kek)
	if err != nil {
		return nil, fmt.Errorf("seal CA key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(ca.key)
	if err != nil {
		return nil, fmt.Errorf("seal CA key: %w", err)
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(der)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal CA key: %w", err)
	}
	return aead.Seal(nonce, nonce, der, ca.Cert.Raw), nil
}

// OpenCA loads a CA from its certificate PEM and sealed key. A wrong kek or a
// tampered blob is an error wrapping ErrSealedKey.
func OpenCA(certPEM, sealedKey, kek []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("open CA: %w", err)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("open CA: certificate %q is not a CA certificate", cert.Subject.CommonName)
	}
	aead, err := kekAEAD(kek)
	if err != nil {
		return nil, fmt.Errorf("open CA %q: %w", cert.Subject.CommonName, err)
	}
	if len(sealedKey) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("open CA %q: sealed key is %d bytes, too short: %w", cert.Subject.CommonName, len(sealedKey), ErrSealedKey)
	}
	nonce, ct := sealedKey[:aead.NonceSize()], sealedKey[aead.NonceSize():]
	der, err := aead.Open(nil, nonce, ct, cert.Raw)
	if err != nil {
		return nil, fmt.Errorf("open CA %q: %w", cert.Subject.CommonName, ErrSealedKey)
	}
	key, err := x509.ParseECPrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("open CA %q: parse key: %w", cert.Subject.CommonName, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, fmt.Errorf("open CA %q: sealed key does not match the certificate: %w", cert.Subject.CommonName, ErrSealedKey)
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: key}, nil
}

// SignCSR checks the CSR's self-signature and issues a certificate for id
// valid [now-1min, now+ttl) (cut at the CA's own NotAfter): CN/OU/O per
// Identity, ExtKeyUsage ServerAuth+ClientAuth, KeyUsage DigitalSignature, a
// random 128-bit serial, and the DNS SAN ManagerServerName only when id.Role
// is RoleManager. The CSR's subject and extensions are ignored; only its
// public key (ECDSA P-256) is used. id.ClusterID must be the CA's cluster.
// Returns PEM.
func (ca *CA) SignCSR(csrDER []byte, id Identity, ttl time.Duration, now time.Time) (certPEM []byte, err error) {
	if err := id.validate(); err != nil {
		return nil, fmt.Errorf("sign CSR for %q: %w", id.NodeID, err)
	}
	if id.ClusterID != ca.ClusterID() {
		return nil, fmt.Errorf("sign CSR for %q: cluster ID %q is not this CA's cluster %q: %w", id.NodeID, id.ClusterID, ca.ClusterID(), ErrInvalidIdentity)
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("sign CSR for %q: non-positive TTL %s", id.NodeID, ttl)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("sign CSR for %q: parse: %w", id.NodeID, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sign CSR for %q: bad CSR signature: %w", id.NodeID, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, fmt.Errorf("sign CSR for %q: public key is %T, want ECDSA P-256", id.NodeID, csr.PublicKey)
	}
	return ca.issue(pub, id, ttl, now)
}

func (ca *CA) issue(pub *ecdsa.PublicKey, id Identity, ttl time.Duration, now time.Time) ([]byte, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %q: %w", id.NodeID, err)
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         id.NodeID,
			OrganizationalUnit: []string{string(id.Role)},
			Organization:       []string{id.ClusterID},
		},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	if id.Role == RoleManager {
		tmpl.DNSNames = []string{ManagerServerName}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for %q: %w", id.NodeID, err)
	}
	return certPEM(der), nil
}

// IssueAdmin issues an admin client certificate with a fresh key:
// Identity{NodeID: "admin-"+random, Role: RoleAdmin, ClusterID: clusterID}.
// It returns the certificate and key PEM.
func (ca *CA) IssueAdmin(clusterID string, ttl time.Duration, now time.Time) (certPEM, keyPEM []byte, err error) {
	suffix, err := randomBase36(64, 13)
	if err != nil {
		return nil, nil, fmt.Errorf("issue admin certificate: %w", err)
	}
	key, err := NewKey()
	if err != nil {
		return nil, nil, fmt.Errorf("issue admin certificate: %w", err)
	}
	csr, err := NewCSR(key, "admin-"+suffix)
	if err != nil {
		return nil, nil, fmt.Errorf("issue admin certificate: %w", err)
	}
	certPEM, err = ca.SignCSR(csr, Identity{NodeID: "admin-" + suffix, Role: RoleAdmin, ClusterID: clusterID}, ttl, now)
	if err != nil {
		return nil, nil, fmt.Errorf("issue admin certificate: %w", err)
	}
	keyPEM, err = KeyPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue admin certificate: %w", err)
	}
	return certPEM, keyPEM, nil
}

// RenewAt returns when a certificate should be renewed: at 2/3 of the
// lifetime it was issued for. The CA backdates NotBefore by a minute for
// clock skew; that minute is not counted, or a short-lived certificate
// would be due for renewal the moment it is issued.
func RenewAt(cert *x509.Certificate) time.Time {
	issued := cert.NotBefore
	if cert.NotAfter.Sub(issued) > backdate {
		issued = issued.Add(backdate)
	}
	life := cert.NotAfter.Sub(issued)
	return issued.Add(life / 3 * 2)
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	return serial, nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})
}
