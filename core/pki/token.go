package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"math/big"
	"strings"
)

// Join tokens read "WRN-1-<digest>-<secret>": the digest pins the cluster CA
// (a joiner accepts a manager only if it presents that CA), the secret proves
// the joiner was given the token and picks the role it joins as.
const (
	tokenPrefix  = "WRN"
	tokenVersion = "1"
	// DigestLen is the length of a CA digest: SHA-256 in base36.
	DigestLen = 50
	// SecretLen is the length of a token secret: 128 bits in base36.
	SecretLen = 25
)

// Digest is the SHA-256 of the CA certificate's DER in lowercase base36,
// zero-padded to DigestLen (50) characters.
func Digest(caCertDER []byte) string {
	sum := sha256.Sum256(caCertDER)
	return base36(new(big.Int).SetBytes(sum[:]), DigestLen)
}

// NewSecret returns a token secret: 128 random bits as SecretLen (25)
// lowercase base36 characters.
func NewSecret() (string, error) {
	s, err := randomBase36(128, SecretLen)
	if err != nil {
		return "", fmt.Errorf("new token secret: %w", err)
	}
	return s, nil
}

// FormatToken returns the join token for the CA with DER caCertDER and secret.
func FormatToken(caCertDER []byte, secret string) string {
	return tokenPrefix + "-" + tokenVersion + "-" + Digest(caCertDER) + "-" + secret
}

// Token is a parsed join token.
type Token struct {
	// Digest pins the cluster CA (see Digest).
	Digest string
	// Secret is compared, with SecretEqual, to the cluster's secret for a role.
	Secret string
}

// String returns the token in its textual form.
func (t Token) String() string {
	return tokenPrefix + "-" + tokenVersion + "-" + t.Digest + "-" + t.Secret
}

// ParseToken parses a join token (surrounding white space is ignored). The
// error wraps ErrInvalidToken and names what is wrong: the prefix, the
// version, the digest's or the secret's length or character set. The error
// never repeats the secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 4 {
		return Token{}, fmt.Errorf("%w: want 4 dash-separated parts WRN-1-<digest>-<secret>, got %d", ErrInvalidToken, len(parts))
	}
	if parts[0] != tokenPrefix {
		return Token{}, fmt.Errorf("%w: prefix %q, want %q", ErrInvalidToken, truncate(parts[0]), tokenPrefix)
	}
	if parts[1] != tokenVersion {
		return Token{}, fmt.Errorf("%w: unsupported version %q, want %q", ErrInvalidToken, truncate(parts[1]), tokenVersion)
	}
	if err := checkBase36("CA digest", parts[2], DigestLen, 256); err != nil {
		return Token{}, err
	}
	if err := checkBase36("secret", parts[3], SecretLen, 128); err != nil {
		return Token{}, err
	}
	return Token{Digest: parts[2], Secret: parts[3]}, nil
}

// SecretEqual compares two secrets in constant time (for equal lengths).
func SecretEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

func checkBase36(what, v string, length, bits int) error {
	if len(v) != length {
		return fmt.Errorf("%w: %s is %d characters, want %d", ErrInvalidToken, what, len(v), length)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return fmt.Errorf("%w: %s has a character outside lowercase base36 [0-9a-z] at position %d", ErrInvalidToken, what, i+1)
		}
	}
	if n, _ := new(big.Int).SetString(v, 36); n.BitLen() > bits {
		return fmt.Errorf("%w: %s is larger than %d bits", ErrInvalidToken, what, bits)
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 10 {
		return s[:10] + "..."
	}
	return s
}

func base36(n *big.Int, width int) string {
	s := n.Text(36)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// randomBase36 returns bits random bits as width base36 characters.
func randomBase36(bits uint, width int) (string, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), bits))
	if err != nil {
		return "", err
	}
	return base36(n, width), nil
}
