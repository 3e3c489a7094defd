package main

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/sdk/scheduler"
)

// Parsers for the values operators type on the command line. Their errors do
// not repeat the input: pflag's "invalid argument %q for %q flag: ..." does.

// sizeRE is a size: digits, an optional fraction and an optional unit.
var sizeRE = regexp.MustCompile(`^([0-9]+)(?:\.([0-9]+))?([a-zA-Z]*)$`)

// sizeUnits are powers of 1024, whatever their spelling: "100M" and "1g" mean
// what they mean to docker.
var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
	"m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
	"g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
	"t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40,
}

// parseSize parses a byte size: "1024", "512MiB", "1GiB", "100M", "1g",
// "1.5GiB". Units are case-insensitive powers of 1024; a fraction of a byte is
// dropped.
func parseSize(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		if strings.HasPrefix(s, "-") {
			return 0, errors.New("a size cannot be negative")
		}
		return 0, errors.New("not a size: use a number of bytes (1024) or a number with a unit (512MiB, 1GiB, 100M)")
	}
	whole, frac, unitName := m[1], m[2], m[3]
	unit, ok := sizeUnits[strings.ToLower(unitName)]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q: use B, KiB, MiB, GiB or TiB (K, M, G and T mean the same)", unitName)
	}
	n, _ := new(big.Int).SetString(whole+frac, 10) // digits only: cannot fail
	n.Mul(n, big.NewInt(unit))
	n.Quo(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil))
	if !n.IsInt64() {
		return 0, errors.New("too large: the most is 8 EiB")
	}
	return n.Int64(), nil
}

// cpuRE is a decimal number of CPUs: "2", "1.5", "0.25", ".5".
var cpuRE = regexp.MustCompile(`^([0-9]*)(?:\.([0-9]*))?$`)

// parseCPUs parses a decimal number of CPUs into nano CPUs (1e-9 cores):
// "1.5" is 1500000000. More than nine decimal places is an error rather than
// a silent rounding.
func parseCPUs(s string) (int64, error) {
	m := cpuRE.FindStringSubmatch(s)
	if m == nil || m[1] == "" && m[2] == "" {
		if strings.HasPrefix(s, "-") {
			return 0, errors.New("a number of CPUs cannot be negative")
		}
		return 0, errors.New("not a number of CPUs: use a decimal such as 0.5, 1.5 or 2")
	}
	whole, frac := m[1], strings.TrimRight(m[2], "0")
	if len(frac) > 9 {
		return 0, errors.New("too precise: use at most 9 decimal places")
	}
	if whole == "" {
		whole = "0"
	}
	frac += strings.Repeat("0", 9-len(frac))
	n, _ := new(big.Int).SetString(whole+frac, 10)
	if !n.IsInt64() {
		return 0, errors.New("too many CPUs")
	}
	return n.Int64(), nil
}

// parseKV parses KEY=VALUE items given to flag (named in errors, e.g. "--env")
// into a map. The value may be empty; the key may not; a key given twice is an
// error, as it is most likely a mistake.
func parseKV(flag string, items []string) (map[string]string, error) {
	out := make(map[string]string, len(items))
	for _, item := range items {
		k, v, err := splitKV(flag, item)
		if err != nil {
			return nil, err
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("invalid %s: %q is given twice", flag, k)
		}
		out[k] = v
	}
	return out, nil
}

// splitKV splits one KEY=VALUE item of flag.
func splitKV(flag, item string) (key, value string, err error) {
	k, v, ok := strings.Cut(item, "=")
	switch {
	case !ok:
		return "", "", fmt.Errorf("invalid %s %q: expected KEY=VALUE", flag, item)
	case k == "":
		return "", "", fmt.Errorf("invalid %s %q: the key before '=' is empty", flag, item)
	}
	return k, v, nil
}

// checkConstraint checks a placement constraint such as
// node.labels.zone==edge-1 with the parser the agent and the schedulers use.
func checkConstraint(c string) error {
	if _, err := scheduler.ParseConstraint(c); err != nil {
		return fmt.Errorf("invalid --constraint %q: %w; e.g. node.labels.zone==edge-1", c, err)
	}
	return nil
}

// signals are the signal names a stop signal may use (Linux numbering).
var signals = map[string]int{
	"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6,
	"BUS": 7, "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12,
	"PIPE": 13, "ALRM": 14, "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18,
	"STOP": 19, "TSTP": 20, "TTIN": 21, "TTOU": 22, "URG": 23, "XCPU": 24,
	"XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28, "IO": 29, "POLL": 29,
	"PWR": 30, "SYS": 31,
}

// parseSignal accepts a signal as SIGTERM, TERM, term or 15 and returns its
// canonical spelling ("SIGTERM", or the number for real-time signals).
func parseSignal(s string) (string, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return "", errors.New("signal numbers go from 1 to 64")
		}
		for name, num := range signals {
			if num == n && name != "IOT" && name != "POLL" {
				return "SIG" + name, nil
			}
		}
		return s, nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	if _, ok := signals[name]; !ok {
		return "", errors.New("not a signal name: use a name such as SIGTERM, SIGINT or SIGQUIT, or a number")
	}
	return "SIG" + name, nil
}

// splitWords splits s into words the way a POSIX shell would, without any
// expansion: blanks separate words, single quotes keep everything literally,
// double quotes keep everything but a backslash before " or \, and a
// backslash outside quotes keeps the next character literally.
func splitWords(s string) ([]string, error) {
	var (
		words   []string
		cur     strings.Builder
		inWord  bool
		quote   rune // 0, '\'' or '"'
		escaped bool
	)
	for _, r := range s {
		switch {
		case escaped:
			if quote == '"' && r != '"' && r != '\\' {
				cur.WriteRune('\\')
			}
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote == '"':
			if r == '"' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	switch {
	case escaped:
		return nil, errors.New("ends with an unfinished backslash escape")
	case quote != 0:
		return nil, fmt.Errorf("a %c quote is not closed", quote)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// uintValue is a pflag.Value for a whole number with errors an operator
// understands ("cannot be negative" instead of strconv's "invalid syntax").
type uintValue[T uint32 | uint64] struct{ p *T }

func newUintValue[T uint32 | uint64](p *T, def T) *uintValue[T] {
	*p = def
	return &uintValue[T]{p: p}
}

func (v *uintValue[T]) String() string { return strconv.FormatUint(uint64(*v.p), 10) }
func (v *uintValue[T]) Type() string   { return "uint" }

func (v *uintValue[T]) Set(s string) error {
	bits := 64
	if uint64(^T(0)) == math.MaxUint32 {
		bits = 32
	}
	n, err := strconv.ParseUint(s, 10, bits)
	if err != nil {
		switch {
		case strings.HasPrefix(strings.TrimSpace(s), "-"):
			return errors.New("cannot be negative")
		case errors.Is(err, strconv.ErrRange):
			return fmt.Errorf("too large: the most is %d", uint64(^T(0)))
		}
		return errors.New("not a whole number")
	}
	*v.p = T(n)
	return nil
}

// sizeValue is a pflag.Value parsed by parseSize.
type sizeValue struct {
	p    *int64
	text string
}

func (v *sizeValue) String() string { return v.text }
func (v *sizeValue) Type() string   { return "size" }

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v.p, v.text = n, s
	return nil
}

// cpuValue is a pflag.Value parsed by parseCPUs.
type cpuValue struct {
	p    *int64
	text string
}

func (v *cpuValue) String() string { return v.text }
func (v *cpuValue) Type() string   { return "decimal" }

func (v *cpuValue) Set(s string) error {
	n, err := parseCPUs(s)
	if err != nil {
		return err
	}
	*v.p, v.text = n, s
	return nil
}

// choiceValue is a pflag.Value that takes one of a fixed set of words. Its
// zero value (the empty string) means "not given".
type choiceValue struct {
	p       *string
	choices []string
}

func (v *choiceValue) String() string { return *v.p }
func (v *choiceValue) Type() string   { return strings.Join(v.choices, "|") }

func (v *choiceValue) Set(s string) error {
	for _, c := range v.choices {
		if s == c {
			*v.p = s
			return nil
		}
	}
	return fmt.Errorf("use %s", orList(v.choices))
}

// orList writes a, b or c.
func orList(words []string) string {
	switch len(words) {
	case 0:
		return ""
	case 1:
		return words[0]
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

// parseFileRef parses a --secret or --config value: NAME alone, or
// comma-separated key=value options source|src=NAME, target=PATH, uid=N,
// gid=N and mode=OCTAL.
func parseFileRef(flag, s string) (*apiv1.FileReference, error) {
	if !strings.Contains(s, "=") {
		return &apiv1.FileReference{Name: s}, nil
	}
	ref := &apiv1.FileReference{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("invalid %s %q: %q is not key=value", flag, s, part)
		}
		num := func(base int) (uint32, error) {
			n, err := strconv.ParseUint(v, base, 32)
			if err != nil {
				return 0, fmt.Errorf("invalid %s %q: %s=%q is not a number", flag, s, k, v)
			}
			return uint32(n), nil
		}
		var err error
		switch k {
		case "source", "src":
			ref.Name = v
		case "target", "dst":
			ref.Target = v
		case "uid":
			ref.Uid, err = num(10)
		case "gid":
			ref.Gid, err = num(10)
		case "mode":
			ref.Mode, err = num(8)
		default:
			return nil, fmt.Errorf("invalid %s %q: unknown option %q (source, target, uid, gid, mode)", flag, s, k)
		}
		if err != nil {
			return nil, err
		}
	}
	if ref.Name == "" {
		return nil, fmt.Errorf("invalid %s %q: source=NAME is required", flag, s)
	}
	return ref, nil
}

// parseMount parses a value of flag (--mount, --mount-add):
// comma-separated type=bind|volume|tmpfs, source|src=..., target|dst=...,
// readonly (or ro, readonly=true|false), tmpfs-size=SIZE and
// tmpfs-mode=OCTAL.
func parseMount(flag, s string) (*apiv1.Mount, error) {
	m := &apiv1.Mount{}
	for _, part := range strings.Split(s, ",") {
		k, v, hasValue := strings.Cut(part, "=")
		switch k {
		case "type":
			m.Type = v
		case "source", "src":
			m.Source = v
		case "target", "dst", "destination":
			m.Target = v
		case "readonly", "ro":
			if !hasValue {
				m.ReadOnly = true
				continue
			}
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, fmt.Errorf("invalid %s %q: %s=%q is not true or false", flag, s, k, v)
			}
			m.ReadOnly = b
		case "tmpfs-size":
			n, err := parseSize(v)
			if err != nil {
				return nil, fmt.Errorf("invalid %s %q: tmpfs-size %q: %v", flag, s, v, err)
			}
			m.TmpfsSizeBytes = n
		case "tmpfs-mode":
			n, err := strconv.ParseUint(v, 8, 32)
			if err != nil || n > 0o7777 {
				return nil, fmt.Errorf("invalid %s %q: tmpfs-mode %q is not an octal mode such as 1777", flag, s, v)
			}
			m.TmpfsMode = uint32(n)
		default:
			return nil, fmt.Errorf("invalid %s %q: unknown option %q (type, source, target, readonly, tmpfs-size, tmpfs-mode)", flag, s, k)
		}
	}
	switch m.Type {
	case "bind", "volume", "tmpfs":
	case "":
		return nil, fmt.Errorf("invalid %s %q: type=bind, volume or tmpfs is required", flag, s)
	default:
		return nil, fmt.Errorf("invalid %s %q: type %q is not bind, volume or tmpfs", flag, s, m.Type)
	}
	if m.Target == "" {
		return nil, fmt.Errorf("invalid %s %q: target=PATH is required", flag, s)
	}
	return m, nil
}
