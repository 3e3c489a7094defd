package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
)

const (
	pemCertificate = "CERTIFICATE"
	pemECKey       = "EC PRIVATE KEY"
)

// NewKey returns a new ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return key, nil
}

// KeyPEM encodes key as an "EC PRIVATE KEY" (SEC 1) PEM block.
func KeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemECKey, Bytes: der}), nil
}

// ParseKeyPEM decodes the first "EC PRIVATE KEY" block of b, as KeyPEM writes it.
func ParseKeyPEM(b []byte) (*ecdsa.PrivateKey, error) {
	block := firstBlock(b, pemECKey)
	if block == nil {
		return nil, fmt.Errorf("parse key: no %q PEM block", pemECKey)
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse key: %w", err)
	}
	return key, nil
}

// NewCSR returns a DER certificate signing request for key with CN=nodeID.
// The CA ignores the subject; it decides the identity itself.
func NewCSR(key *ecdsa.PrivateKey, nodeID string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: nodeID},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR for %q: %w", nodeID, err)
	}
	return der, nil
}

// ParseCertPEM decodes the first CERTIFICATE block of b.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	block := firstBlock(b, pemCertificate)
	if block == nil {
		return nil, errors.New("parse certificate: no CERTIFICATE PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	return cert, nil
}

// firstBlock returns the first PEM block of type typ in b, or nil.
func firstBlock(b []byte, typ string) *pem.Block {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil
		}
		if block.Type == typ {
			return block
		}
	}
}
