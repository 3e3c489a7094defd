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
// the label's name: node.labels.zone.
const (
	KeyNodeID      = "node.id"
	KeyNodeName    = "node.name"
	LabelKeyPrefix = "node.labels."
)

// Constraint is one condition a task puts on its node, written
// <key><op><value> in a service spec: node.labels.zone==edge-1,
// node.name!=gw-1, node.id==k3x9.
type Constraint struct {
	// Key is node.id, node.name or node.labels.<label>.
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
// spaces around key and value. The key must be node.id, node.name or
// node.labels.<label>, and the value must not be empty. Errors wrap
// sdk.ErrInvalidArgument and quote the input.
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
	case c.Key == KeyNodeID, c.Key == KeyNodeName:
	case strings.HasPrefix(c.Key, LabelKeyPrefix) && len(c.Key) > len(LabelKeyPrefix):
	default:
		return fmt.Errorf("key %q: want %s, %s or %s<label>: %w", c.Key, KeyNodeID, KeyNodeName, LabelKeyPrefix, sdk.ErrInvalidArgument)
	}
	if c.Op != OpEqual && c.Op != OpNotEqual {
		return fmt.Errorf("operator %q: want %s or %s: %w", c.Op, OpEqual, OpNotEqual, sdk.ErrInvalidArgument)
	}
	if c.Value == "" {
		return fmt.Errorf("key %q: empty value: %w", c.Key, sdk.ErrInvalidArgument)
	}
	return nil
}

// Matches reports whether node n satisfies c. A node without the label a
// constraint names has the empty value for it: node.labels.zone==edge-1
// does not match it and node.labels.zone!=edge-1 does. A constraint with an
// unknown key or operator matches no node.
func (c Constraint) Matches(n Node) bool {
	var v string
	switch {
	case c.Key == KeyNodeID:
		v = n.ID
	case c.Key == KeyNodeName:
		v = n.Name
	case strings.HasPrefix(c.Key, LabelKeyPrefix) && len(c.Key) > len(LabelKeyPrefix):
		v = n.Labels[c.Key[len(LabelKeyPrefix):]]
	default:
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
