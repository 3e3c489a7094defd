package sdk

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
)

// APIVersion is the version of the plugin protocol this sdk speaks. It is
// negotiated through go-plugin's versioned plugin sets: a host offers the
// versions it supports and the plugin picks the highest it also supports.
const APIVersion = 1

// Kind names what a plugin provides.
type Kind string

// The plugin kinds. Each has its own package under sdk/.
const (
	KindStore     Kind = "store"
	KindScheduler Kind = "scheduler"
	KindRuntime   Kind = "runtime"
	KindNetwork   Kind = "network"
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindStore, KindScheduler, KindRuntime, KindNetwork:
		return true
	}
	return false
}

// Info says who a plugin is. The host checks Kind and APIVersions against
// what the configuration asked for before it calls anything else.
type Info struct {
	Kind        Kind
	Name        string
	Version     string
	APIVersions []uint32
	Description string
}

// AttributeType is the type of a config attribute, in HCL's type syntax.
type AttributeType string

// The attribute types a plugin's config block may use.
const (
	TypeString     AttributeType = "string"
	TypeNumber     AttributeType = "number"
	TypeBool       AttributeType = "bool"
	TypeListString AttributeType = "list(string)"
	TypeMapString  AttributeType = "map(string)"
)

// Valid reports whether t is one of the supported attribute types.
func (t AttributeType) Valid() bool {
	switch t {
	case TypeString, TypeNumber, TypeBool, TypeListString, TypeMapString:
		return true
	}
	return false
}

// Attribute describes one attribute of a plugin's `config { }` block.
type Attribute struct {
	Name        string
	Type        AttributeType
	Required    bool
	Description string
}

// Schema is the shape of a plugin's `config { }` block. The host decodes the
// operator's block against it, so unknown attributes and wrong types are
// reported with file:line:col before the plugin sees anything.
type Schema struct {
	Attributes []Attribute
}

// Plugin is what every plugin implements, whatever its kind.
//
// The host calls Info first, then ConfigSchema, then Configure exactly once
// per process start, before any kind-specific method. All three may be
// called concurrently with nothing else and must be cheap.
type Plugin interface {
	// Info reports the plugin's identity. It must not depend on Configure.
	Info(ctx context.Context) (Info, error)

	// ConfigSchema reports the attributes the plugin's config block accepts.
	// A plugin without configuration returns an empty Schema.
	ConfigSchema(ctx context.Context) (Schema, error)

	// Configure hands the plugin its configuration: a JSON object with one
	// member per attribute the operator set, already checked against
	// ConfigSchema. Return an error wrapping ErrInvalidArgument for values
	// the schema cannot express as invalid (a path that does not exist, a
	// negative size); the host reports it and does not start the plugin.
	Configure(ctx context.Context, configJSON []byte) error
}

// DecodeConfig unmarshals a Configure payload into v, rejecting unknown
// members. Errors wrap ErrInvalidArgument.
func DecodeConfig(configJSON []byte, v any) error {
	if len(configJSON) == 0 {
		configJSON = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(configJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode config: %v: %w", err, ErrInvalidArgument)
	}
	return nil
}
