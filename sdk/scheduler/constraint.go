package scheduler

import (
	"fmt"
	"strings"

	"github.com/warrenorch/warren/sdk"
)

// Op is a constraint's comparison.
type Op string

// The comparisons a constraint can make.
const (
	// OpEqual holds when the node's value equals the constraint's.
	OpEqual Op = "=="
	// OpNotEqual holds when the node's value differs from the constraint's,
	// including when the node has no such label at all.
	OpNotEqual Op = "!="
)

// The keys a constraint can test. A label key is LabelKeyPrefix followed by
// the label's name: node.labels.zone. An attribute key is AttrKeyPrefix
// followed by a runtime fingerprint attribute's key:
// node.attr.containerd.snapshotter.
const (
	KeyNodeID       = "node.id"
	KeyNodeName     = "node.name"
	KeyPlatformOS   = "node.platform.os"
	KeyPlatformArch = "node.platform.arch"
	LabelKeyPrefix  = "node.labels."
	AttrKeyPrefix   = "node.attr."
)

// ReservedAttrPrefix starts the attributes the host adds to a node's view
// itself; a runtime's own attributes never start with it (the host leaves
// such attributes out).
const ReservedAttrPrefix = "warren."

// CapabilityAttr is the attribute the host sets to "true" on the view of a
// node whose runtime has capability c ("images"), and the host gives every
// task that needs c the constraint node.attr.<CapabilityAttr(c)>==true:
// a scheduler that honours constraints places tasks only where their
// runtime can run them.
func CapabilityAttr(c string) string { return ReservedAttrPrefix + "capability." + c }

// Capability reports whether c is the constraint the host gives a task that
// needs a runtime capability, and which: a scheduler can then explain an
// unplaceable task as "no ready worker's runtime supports <capability>".
func (c Constraint) Capability() (string, bool) {
	name, ok := strings.CutPrefix(c.Key, AttrKeyPrefix+CapabilityAttr(""))
	return name, ok && name != "" && c.Op == OpEqual && c.Value == "true"
}

// maxAttributeKey bounds an attribute key's length.
const maxAttributeKey = 128

// CheckAttributeKey reports whether key may name a runtime fingerprint
// attribute (runtime.Fingerprint.Attributes), and so follow node.attr. in a
// constraint: 1 to 128 ASCII letters, digits, '.', '_' and '-', starting and
// ending with a letter or digit, such as "containerd.snapshotter". The
// worker leaves out, with an error in its log, any attribute whose key
// fails this check. Errors wrap sdk.ErrInvalidArgument and quote the key.
func CheckAttributeKey(key string) error {
	bad := func(why string) error {
		return fmt.Errorf("attribute key %q: %s: %w", key, why, sdk.ErrInvalidArgument)
	}
	if key == "" || len(key) > maxAttributeKey {
		return bad(fmt.Sprintf("want 1 to %d characters", maxAttributeKey))
	}
	for i, r := range key {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		switch {
		case alnum:
		case (r == '.' || r == '_' || r == '-') && i > 0 && i < len(key)-1:
		default:
			return bad("want letters, digits, '.', '_' and '-', starting and ending with a letter or digit")
		}
	}
	return nil
}

// Constraint is one condition a task puts on its node, written
// <key><op><value> in a service spec: node.labels.zone==edge-1,
// node.name!=gw-1, node.id==k3x9.
type Constraint struct {
	// Key is node.id, node.name, node.platform.os, node.platform.arch,
	// node.labels.<label> or node.attr.<attribute>.
	Key string
	// Op is == or !=.
	Op Op
	// Value is compared with the node's value as an exact, case-sensitive
	// string. It is never empty.
	Value string
}

// String returns c as written in a service spec: node.labels.zone==edge-1.
func (c Constraint) String() string {
	return c.Key + string(c.Op) + c.Value
}

// ParseConstraint parses <key>==<value> or <key>!=<value>, with optional
// spaces around key and value. The key must be node.id, node.name,
// node.platform.os, node.platform.arch, node.labels.<label> or
// node.attr.<attribute> (the attribute key passing CheckAttributeKey), and
// the value must not be empty. Errors wrap sdk.ErrInvalidArgument and quote
// the input.
func ParseConstraint(s string) (Constraint, error) {
	i := strings.Index(s, string(OpEqual))
	j := strings.Index(s, string(OpNotEqual))
	if i < 0 || (j >= 0 && j < i) {
		i = j
	}
	if i < 0 {
		return Constraint{}, fmt.Errorf("constraint %q: want <key>==<value> or <key>!=<value>: %w", s, sdk.ErrInvalidArgument)
	}
	c := Constraint{
		Key:   strings.TrimSpace(s[:i]),
		Op:    Op(s[i : i+2]),
		Value: strings.TrimSpace(s[i+2:]),
	}
	if err := c.check(); err != nil {
		return Constraint{}, fmt.Errorf("constraint %q: %w", s, err)
	}
	return c, nil
}

// check reports what is wrong with c, wrapping sdk.ErrInvalidArgument.
func (c Constraint) check() error {
	switch {
	case c.Key == KeyNodeID, c.Key == KeyNodeName, c.Key == KeyPlatformOS, c.Key == KeyPlatformArch:
	case strings.HasPrefix(c.Key, LabelKeyPrefix) && len(c.Key) > len(LabelKeyPrefix):
	case strings.HasPrefix(c.Key, AttrKeyPrefix):
		if err := CheckAttributeKey(c.Key[len(AttrKeyPrefix):]); err != nil {
			return fmt.Errorf("key %q: %w", c.Key, err)
		}
	default:
		return fmt.Errorf("key %q: want %s, %s, %s, %s, %s<label> or %s<attribute>: %w", c.Key,
			KeyNodeID, KeyNodeName, KeyPlatformOS, KeyPlatformArch, LabelKeyPrefix, AttrKeyPrefix, sdk.ErrInvalidArgument)
	}
	if c.Op != OpEqual && c.Op != OpNotEqual {
		return fmt.Errorf("operator %q: want %s or %s: %w", c.Op, OpEqual, OpNotEqual, sdk.ErrInvalidArgument)
	}
	if c.Value == "" {
		return fmt.Errorf("key %q: empty value: %w", c.Key, sdk.ErrInvalidArgument)
	}
	return nil
}

// Matches reports whether node n satisfies c. A node without the label or
// attribute a constraint names (or whose platform is unknown) has the empty
// value for it: node.labels.zone==edge-1 does not match it and
// node.labels.zone!=edge-1 does. A constraint with an unknown key or
// operator matches no node.
func (c Constraint) Matches(n Node) bool {
	v, ok := c.nodeValue(n)
	if !ok {
		return false
	}
	switch c.Op {
	case OpEqual:
		return v == c.Value
	case OpNotEqual:
		return v != c.Value
	}
	return false
}

// nodeValue is n's value for c's key, and false for a key no node has.
func (c Constraint) nodeValue(n Node) (string, bool) {
	switch {
	case c.Key == KeyNodeID:
		return n.ID, true
	case c.Key == KeyNodeName:
		return n.Name, true
	case c.Key == KeyPlatformOS:
		return n.OS, true
	case c.Key == KeyPlatformArch:
		return n.Arch, true
	case strings.HasPrefix(c.Key, LabelKeyPrefix) && len(c.Key) > len(LabelKeyPrefix):
		return n.Labels[c.Key[len(LabelKeyPrefix):]], true
	case strings.HasPrefix(c.Key, AttrKeyPrefix) && len(c.Key) > len(AttrKeyPrefix):
		return n.Attributes[c.Key[len(AttrKeyPrefix):]], true
	}
	return "", false
}

// MatchesAll reports whether n satisfies every constraint in cs; an empty
// cs matches every node.
func MatchesAll(n Node, cs []Constraint) bool {
	for _, c := range cs {
		if !c.Matches(n) {
			return false
		}
	}
	return true
}
