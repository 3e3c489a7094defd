package pluginhost

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"

	"github.com/warrenorch/warren/sdk"
)

// testSchema is the schema the test plugin reports.
var testSchema = sdk.Schema{Attributes: []sdk.Attribute{
	{Name: "path", Type: sdk.TypeString, Required: true},
	{Name: "sync", Type: sdk.TypeBool},
	{Name: "tags", Type: sdk.TypeListString},
	{Name: "retries", Type: sdk.TypeNumber},
	{Name: "labels", Type: sdk.TypeMapString},
}}

// pluginBlock parses src, which holds one `plugin "<name>" { }` block, as
// cluster.hcl and returns the body and range of its config block, or nil and
// the plugin block's range when it has none.
func pluginBlock(t testing.TB, src string) (hcl.Body, hcl.Range) {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "cluster.hcl")
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	blocks := f.Body.(*hclsyntax.Body).Blocks
	if len(blocks) != 1 || blocks[0].Type != "plugin" {
		t.Fatalf("want one plugin block in %q", src)
	}
	for _, b := range blocks[0].Body.Blocks {
		if b.Type == "config" {
			return b.Body, b.Range()
		}
	}
	return nil, blocks[0].Range()
}

func TestCheckSchema(t *testing.T) {
	tests := []struct {
		name  string
		attrs []sdk.Attribute
		want  []string // substrings of the error; none: valid
	}{
		{name: "valid", attrs: testSchema.Attributes},
		{name: "empty", attrs: nil},
		{name: "no name", attrs: []sdk.Attribute{{Type: sdk.TypeString}}, want: []string{"attribute #1 has no name"}},
		{name: "bad identifier", attrs: []sdk.Attribute{{Name: "1st", Type: sdk.TypeString}}, want: []string{`attribute "1st": name is not a valid HCL identifier`}},
		{name: "duplicate", attrs: []sdk.Attribute{{Name: "a", Type: sdk.TypeString}, {Name: "a", Type: sdk.TypeBool}}, want: []string{`attribute "a": declared twice`}},
		{name: "unknown type", attrs: []sdk.Attribute{{Name: "a", Type: "int"}}, want: []string{`attribute "a": unknown type "int"`}},
		{
			name:  "several problems",
			attrs: []sdk.Attribute{{Name: "a", Type: "list(number)"}, {Name: "a", Type: sdk.TypeString}},
			want:  []string{`unknown type "list(number)"`, "declared twice"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSchema(sdk.Schema{Attributes: tt.attrs})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("checkSchema: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("checkSchema accepted an invalid schema")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestDecodeConfig(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		wantJSON string // when no diagnostics are expected
		wantDiag string // summary of the first diagnostic
		wantLine int    // its subject's line
	}{
		{
			name: "all types",
			src: `plugin "s" {
  config {
    path    = "/var/lib/warren"
    sync    = true
    tags    = ["a", "b"]
    retries = 3.5
    labels  = { zone = "eu", "rack-id" = "r1" }
  }
}`,
			wantJSON: `{"path":"/var/lib/warren","sync":true,"tags":["a","b"],"retries":3.5,"labels":{"zone":"eu","rack-id":"r1"}}`,
		},
		{
			name:     "unset attributes are left out",
			src:      "plugin \"s\" {\n  config {\n    path = \"/x\"\n  }\n}",
			wantJSON: `{"path":"/x"}`,
		},
		{
			name:     "explicit null is left out",
			src:      "plugin \"s\" {\n  config {\n    path = \"/x\"\n    sync = null\n  }\n}",
			wantJSON: `{"path":"/x"}`,
		},
		{
			name:     "empty list kept",
			src:      "plugin \"s\" {\n  config {\n    path = \"/x\"\n    tags = []\n  }\n}",
			wantJSON: `{"path":"/x","tags":[]}`,
		},
		{
			name:     "conversions HCL allows",
			src:      "plugin \"s\" {\n  config {\n    path = 42\n    sync = \"true\"\n    retries = \"7\"\n  }\n}",
			wantJSON: `{"path":"42","sync":true,"retries":7}`,
		},
		{
			name:     "unknown attribute",
			src:      "plugin \"s\" {\n  config {\n    path = \"/x\"\n    colour = \"blue\"\n  }\n}",
			wantDiag: "Unsupported argument",
			wantLine: 4,
		},
		{
			name:     "wrong type",
			src:      "plugin \"s\" {\n  config {\n    path = \"/x\"\n\n    sync = \"maybe\"\n  }\n}",
			wantDiag: "Incorrect attribute value type",
			wantLine: 5,
		},
		{
			name:     "wrong element type",
			src:      "plugin \"s\" {\n  config {\n    path = \"/x\"\n    tags = [\"a\", [\"b\"]]\n  }\n}",
			wantDiag: "Incorrect attribute value type",
			wantLine: 4,
		},
		{
			name:     "missing required attribute",
			src:      "plugin \"s\" {\n  args = []\n  config {\n    sync = true\n  }\n}",
			wantDiag: "Missing required argument",
			wantLine: 3,
		},
		{
			name:     "no config block",
			src:      "plugin \"s\" {\n  args = []\n}",
			wantDiag: "Missing required argument",
			wantLine: 1,
		},
		{
			name:     "nested block",
			src:      "plugin \"s\" {\n  config {\n    path = \"/x\"\n    extra {\n    }\n  }\n}",
			wantDiag: "Unsupported block type",
			wantLine: 4,
		},
		{
			name:     "variables not allowed",
			src:      "plugin \"s\" {\n  config {\n    path = var.path\n  }\n}",
			wantDiag: "Variables not allowed",
			wantLine: 3,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, rng := pluginBlock(t, tt.src)
			js, diags := decodeConfig(body, rng, testSchema)
			if tt.wantDiag == "" {
				if diags.HasErrors() {
					t.Fatalf("decodeConfig: %v", diags)
				}
				var got, want any
				if err := json.Unmarshal(js, &got); err != nil {
					t.Fatalf("decodeConfig returned invalid JSON %s: %v", js, err)
				}
				if err := json.Unmarshal([]byte(tt.wantJSON), &want); err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("decodeConfig = %s, want %s", js, tt.wantJSON)
				}
				return
			}
			if !diags.HasErrors() {
				t.Fatalf("decodeConfig accepted the block, returned %s", js)
			}
			d := diags[0]
			if d.Summary != tt.wantDiag {
				t.Errorf("summary = %q, want %q (%v)", d.Summary, tt.wantDiag, diags)
			}
			if d.Subject == nil {
				t.Fatalf("diagnostic %v has no subject", d)
			}
			if d.Subject.Filename != "cluster.hcl" || d.Subject.Start.Line != tt.wantLine {
				t.Errorf("subject = %s, want cluster.hcl line %d", d.Subject, tt.wantLine)
			}
		})
	}
}

func TestDecodeConfigEmptySchema(t *testing.T) {
	js, diags := decodeConfig(nil, hcl.Range{}, sdk.Schema{})
	if diags.HasErrors() {
		t.Fatalf("decodeConfig: %v", diags)
	}
	if string(js) != "{}" {
		t.Fatalf("decodeConfig = %s, want {}", js)
	}
}

func TestConfigErrorMessage(t *testing.T) {
	body, rng := pluginBlock(t, "plugin \"s\" {\n  config {\n    path = \"/x\"\n    colour = \"blue\"\n  }\n}")
	_, diags := decodeConfig(body, rng, testSchema)
	err := &ConfigError{Plugin: "store-bolt", Diags: diags}
	want := `plugin "store-bolt": invalid config: cluster.hcl:4,5-11: Unsupported argument;`
	if !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("Error() = %q, want prefix %q", err, want)
	}
}

func TestBackoff(t *testing.T) {
	const ms = 1_000_000
	tests := []struct {
		n    int
		want int64
	}{{1, 200 * ms}, {2, 400 * ms}, {3, 800 * ms}, {6, 6400 * ms}, {7, 10000 * ms}, {50, 10000 * ms}}
	for _, tt := range tests {
		if got := backoff(200*ms, 10000*ms, tt.n); int64(got) != tt.want {
			t.Errorf("backoff(attempt %d) = %v, want %dms", tt.n, got, tt.want/ms)
		}
	}
}
