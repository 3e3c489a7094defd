package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// DiagnosticsError returns diags as an error for the command line, or nil when
// diags has no errors. The text is hcl's diagnostic text writer output without
// color or wrapping, each diagnostic prefixed with its file:line:col (when it
// has a subject) so editors and terminals can jump to it:
//
//	agent.hcl:4:19: Error: Invalid duration
//
//	  on agent.hcl line 4, in manager:
//	   4:   heartbeat_ttl = "ten"
//
//	heartbeat_ttl: time: invalid duration "ten"; use ...
//
// files supplies the snippets (Agent.Files); it may be nil. errors.As with an
// *hcl.Diagnostics target recovers diags.
func DiagnosticsError(files map[string]*hcl.File, diags hcl.Diagnostics) error {
	if !diags.HasErrors() {
		return nil
	}
	var buf bytes.Buffer
	w := hcl.NewDiagnosticTextWriter(&buf, files, 0, false)
	for _, diag := range diags {
		if s := diag.Subject; s != nil {
			fmt.Fprintf(&buf, "%s:%d:%d: ", s.Filename, s.Start.Line, s.Start.Column)
		}
		// Writing to a bytes.Buffer cannot fail.
		_ = w.WriteDiagnostic(diag)
	}
	return &diagnosticsError{
		text:  strings.TrimRight(buf.String(), "\n"),
		diags: diags,
	}
}

type diagnosticsError struct {
	text  string
	diags hcl.Diagnostics
}

func (e *diagnosticsError) Error() string { return e.text }

// Unwrap lets errors.As find the hcl.Diagnostics.
func (e *diagnosticsError) Unwrap() error { return e.diags }
