package pluginhost

import (
	"errors"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/warrenorch/warren/sdk"
)

// ConfigError reports a plugin's `config { }` block that does not fit the
// schema the plugin reported, or that the plugin's Configure refused. Diags
// carry file:line:col, so the agent can print them with source snippets
// (hcl.NewDiagnosticTextWriter).
type ConfigError struct {
	// Plugin is the name of the plugin block.
	Plugin string
	// Diags holds at least one error.
	Diags hcl.Diagnostics
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("plugin %q: invalid config: %s", e.Plugin, e.Diags.Error())
}

// ctyTypes maps the schema's attribute types to cty types.
var ctyTypes = map[sdk.AttributeType]cty.Type{
	sdk.TypeString:     cty.String,
	sdk.TypeNumber:     cty.Number,
	sdk.TypeBool:       cty.Bool,
	sdk.TypeListString: cty.List(cty.String),
	sdk.TypeMapString:  cty.Map(cty.String),
}

// checkSchema reports everything wrong with a schema a plugin reported:
// attribute names that are not HCL identifiers or appear twice, and unknown
// types.
func checkSchema(s sdk.Schema) error {
	var errs []error
	seen := make(map[string]bool, len(s.Attributes))
	for i, a := range s.Attributes {
		switch {
		case a.Name == "":
			errs = append(errs, fmt.Errorf("attribute #%d has no name", i+1))
			continue
		case !hclsyntax.ValidIdentifier(a.Name):
			errs = append(errs, fmt.Errorf("attribute %q: name is not a valid HCL identifier", a.Name))
		case seen[a.Name]:
			errs = append(errs, fmt.Errorf("attribute %q: declared twice", a.Name))
		}
		seen[a.Name] = true
		if _, ok := ctyTypes[a.Type]; !ok {
			errs = append(errs, fmt.Errorf("attribute %q: unknown type %q (want one of string, number, bool, list(string), map(string))", a.Name, a.Type))
		}
	}
	return errors.Join(errs...)
}

// specFor builds the hcldec spec of a schema that passed checkSchema.
func specFor(s sdk.Schema) hcldec.ObjectSpec {
	spec := make(hcldec.ObjectSpec, len(s.Attributes))
	for _, a := range s.Attributes {
		spec[a.Name] = &hcldec.AttrSpec{Name: a.Name, Type: ctyTypes[a.Type], Required: a.Required}
	}
	return spec
}

// decodeConfig decodes body against schema and returns the JSON object
// Configure expects: one member per attribute the operator set. A nil body
// stands for an absent config block; rng (the block's range, or the plugin
// block's) is where diagnostics point when HCL itself has no better place.
func decodeConfig(body hcl.Body, rng hcl.Range, schema sdk.Schema) ([]byte, hcl.Diagnostics) {
	if body == nil {
		body = hcl.EmptyBody()
	}
	val, diags := hcldec.Decode(body, specFor(schema), nil)
	for _, d := range diags {
		if (d.Subject == nil || d.Subject.Filename == "") && rng.Filename != "" {
			d.Subject = rng.Ptr()
		}
	}
	if diags.HasErrors() {
		return nil, diags
	}
	if !val.IsWhollyKnown() {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Unknown value in plugin config",
			Detail:   "Every attribute of a plugin's config block must have a value known when the agent starts.",
			Subject:  subject(rng),
		}}
	}
	set := make(map[string]cty.Value)
	for it := val.ElementIterator(); it.Next(); {
		k, v := it.Element()
		if !v.IsNull() {
			set[k.AsString()] = v
		}
	}
	obj := cty.ObjectVal(set)
	js, err := ctyjson.Marshal(obj, obj.Type())
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot encode plugin config",
			Detail:   err.Error(),
			Subject:  subject(rng),
		}}
	}
	return js, nil
}

// subject returns rng as a diagnostic subject, or nil for an empty range.
func subject(rng hcl.Range) *hcl.Range {
	if rng.Filename == "" {
		return nil
	}
	return rng.Ptr()
}
