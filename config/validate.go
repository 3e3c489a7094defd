package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The checks below return "" when a value is fine, otherwise what is wrong with
// it, phrased to follow a colon in a diagnostic.

// checkDNSLabel checks an RFC 1123 label in lowercase: node and plugin names.
func checkDNSLabel(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > 63:
		return fmt.Sprintf("it is %d characters long, the limit is 63", len(s))
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return fmt.Sprintf("it contains %q; use only lowercase letters a-z, digits 0-9 and '-'", r)
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return "it starts or ends with '-'"
	}
	return ""
}

// checkGroupName checks a Unix group name (as useradd accepts it: a letter
// or '_' first, then letters, digits, '_', '-', '.', at most 32, an optional
// trailing '$') or a numeric group ID, and returns what is wrong, or "".
func checkGroupName(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > 32:
		return fmt.Sprintf("it is %d characters long, the limit is 32", len(s))
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil && n < 1<<32-1 {
		return "" // a numeric group ID
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_'
		later := r >= '0' && r <= '9' || r == '-' || r == '.' || r == '$' && i == len(s)-1
		if !letter && (i == 0 || !later) {
			return fmt.Sprintf("it contains %q at position %d; use letters, digits, '_', '-' and '.', starting with a letter or '_' (or give a numeric group ID)", r, i+1)
		}
	}
	return ""
}

// checkHostPort checks "host:port" where host is an IP address or a host name
// and port is 1 to 65535.
func checkHostPort(s string) string {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		var addrErr *net.AddrError
		if errors.As(err, &addrErr) {
			return addrErr.Err
		}
		return err.Error()
	}
	if host == "" {
		return "the host is empty; write 0.0.0.0 to mean every interface"
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Sprintf("the port %q is not a number from 1 to 65535", port)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if !validHostname(host) {
		return fmt.Sprintf("the host %q is neither an IP address nor a host name", host)
	}
	return ""
}

// validHostname checks an RFC 1123 host name, which, unlike a bare IP address,
// cannot end in an all-digit label.
func validHostname(h string) bool {
	h = strings.TrimSuffix(h, ".")
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if checkDNSLabel(strings.ToLower(l)) != "" {
			return false
		}
	}
	last := labels[len(labels)-1]
	return strings.Trim(last, "0123456789") != ""
}

// unspecifiedHost reports whether the host of host:port is 0.0.0.0 or ::.
func unspecifiedHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	addr, err := netip.ParseAddr(host)
	return err == nil && addr.IsUnspecified()
}

// checkLabel checks a worker label: the key is 1 to 63 characters from
// [a-zA-Z0-9._/-], the value at most 63 characters.
func checkLabel(k, v string) (keyProblem, valueProblem string) {
	switch {
	case k == "":
		keyProblem = "it is empty"
	case len(k) > 63:
		keyProblem = fmt.Sprintf("it is %d characters long, the limit is 63", len(k))
	default:
		for _, r := range k {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/-", r)) {
				keyProblem = fmt.Sprintf("it contains %q; use only letters, digits and . _ / -", r)
				break
			}
		}
	}
	if n := utf8.RuneCountInString(v); n > 63 {
		valueProblem = fmt.Sprintf("it is %d characters long, the limit is 63", n)
	}
	return keyProblem, valueProblem
}

// checkEnv checks an environment variable for a plugin process.
func checkEnv(k, v string) (keyProblem, valueProblem string) {
	switch {
	case k == "":
		keyProblem = "it is empty"
	case strings.ContainsAny(k, "=\x00"):
		keyProblem = "it contains '=' or a NUL byte"
	}
	if strings.ContainsRune(v, 0) {
		valueProblem = "it contains a NUL byte"
	}
	return keyProblem, valueProblem
}

// checkToken checks the shape of a join token, WRN-1-<digest>-<secret>;
// the agent parses it fully (and checks it against the cluster) on join.
func checkToken(s string) string {
	parts := strings.Split(s, "-")
	switch {
	case s == "":
		return "it is empty"
	case len(parts) != 4 || parts[0] != "WRN":
		return `it must look like "WRN-1-<CA digest>-<secret>"`
	case parts[1] != "1":
		return fmt.Sprintf("version %q is not supported (this agent reads version 1)", parts[1])
	case parts[2] == "" || parts[3] == "":
		return "the CA digest or the secret is empty"
	}
	return ""
}
