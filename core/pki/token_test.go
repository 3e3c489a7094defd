package pki_test

import (
	"errors"
	"math/big"
	"regexp"
	"strings"
	"testing"

	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pki/pkitest"
)

func TestTokenRoundTrip(t *testing.T) {
	c := pkitest.NewCluster(t, "c1")
	secret, err := pki.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-z]{25}$`).MatchString(secret) {
		t.Fatalf("secret %q is not 25 lowercase base36 characters", secret)
	}
	digest := pki.Digest(c.CA.Cert.Raw)
	if !regexp.MustCompile(`^[0-9a-z]{50}$`).MatchString(digest) {
		t.Fatalf("digest %q is not 50 lowercase base36 characters", digest)
	}
	tok := pki.FormatToken(c.CA.Cert.Raw, secret)
	if want := "WRN-1-" + digest + "-" + secret; tok != want {
		t.Fatalf("token %q, want %q", tok, want)
	}
	got, err := pki.ParseToken("  " + tok + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest != digest || got.Secret != secret || got.String() != tok {
		t.Errorf("parsed %+v from %q", got, tok)
	}
}

func TestDigestPadding(t *testing.T) {
	// Whatever the hash, the digest is 50 characters; 36^50 > 2^256.
	for i := range 200 {
		if d := pki.Digest([]byte{byte(i)}); len(d) != pki.DigestLen {
			t.Fatalf("digest %q has %d characters", d, len(d))
		}
	}
	if new(big.Int).Exp(big.NewInt(36), big.NewInt(49), nil).BitLen() > 256 {
		t.Fatal("49 base36 digits already hold 256 bits: padding width wrong")
	}
}

func TestParseTokenRefuses(t *testing.T) {
	digest := pki.Digest([]byte("ca"))
	secret := strings.Repeat("1", 25)
	cases := []struct {
		name, token, msg string
	}{
		{"empty", "", "want 4 dash-separated parts"},
		{"too few parts", "WRN-1-" + digest, "got 3"},
		{"too many parts", "WRN-1-" + digest + "-" + secret + "-x", "got 5"},
		{"prefix", "SWMTKN-1-" + digest + "-" + secret, `prefix "SWMTKN", want "WRN"`},
		{"lowercase prefix", "wrn-1-" + digest + "-" + secret, `prefix "wrn"`},
		{"version", "WRN-2-" + digest + "-" + secret, `unsupported version "2"`},
		{"short digest", "WRN-1-" + digest[:49] + "-" + secret, "CA digest is 49 characters, want 50"},
		{"long digest", "WRN-1-" + digest + "a-" + secret, "CA digest is 51 characters, want 50"},
		{"digest charset", "WRN-1-" + digest[:10] + "_" + digest[11:] + "-" + secret, "CA digest has a character outside lowercase base36 [0-9a-z] at position 11"},
		{"uppercase digest", "WRN-1-" + strings.ToUpper(digest) + "-" + secret, "CA digest has a character outside lowercase base36"},
		{"digest over 256 bits", "WRN-1-" + strings.Repeat("z", 50) + "-" + secret, "CA digest is larger than 256 bits"},
		{"short secret", "WRN-1-" + digest + "-" + secret[:24], "secret is 24 characters, want 25"},
		{"secret charset", "WRN-1-" + digest + "-" + secret[:24] + "!", "secret has a character outside lowercase base36 [0-9a-z] at position 25"},
		{"secret over 128 bits", "WRN-1-" + digest + "-" + strings.Repeat("z", 25), "secret is larger than 128 bits"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pki.ParseToken(tc.token)
			if !errors.Is(err, pki.ErrInvalidToken) {
				t.Fatalf("error %v, want ErrInvalidToken", err)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not say %q", err, tc.msg)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q repeats the secret", err)
			}
		})
	}
}

func TestSecretEqual(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "abcd", false},
		{"", "", true},
	}
	for _, tc := range cases {
		if got := pki.SecretEqual(tc.a, tc.b); got != tc.want {
			t.Errorf("SecretEqual(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
