package config

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
)

// Load reads the configuration at path: one file, or every *.hcl file directly
// inside a directory (names starting with "." are skipped), parsed in name
// order and merged. An attribute or a manager/worker block set in two files is
// an error naming both places; plugin blocks from all files are collected.
//
// The diagnostics are sorted by file and position. When they contain errors the
// Agent must not be used, except for Files() to render them with
// DiagnosticsError. The Agent is nil only when no file could be read.
func Load(path string) (*Agent, hcl.Diagnostics) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read configuration",
			Detail:   fmt.Sprintf("Cannot read the configuration at %q: %s.", path, statReason(err)),
		}}
	}
	names := []string{path}
	if info.IsDir() {
		names, err = hclFiles(path)
		if err != nil {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "Cannot read configuration directory",
				Detail:   fmt.Sprintf("Cannot list the configuration directory %q: %s.", path, err),
			}}
		}
		if len(names) == 0 {
			return nil, hcl.Diagnostics{{
				Severity: hcl.DiagError,
				Summary:  "No configuration files",
				Detail:   fmt.Sprintf("The directory %q contains no *.hcl files.", path),
			}}
		}
	}

	p := hclparse.NewParser()
	var files []*hcl.File
	var diags hcl.Diagnostics
	for _, name := range names {
		f, fDiags := p.ParseHCLFile(name)
		diags = append(diags, fDiags...)
		if f != nil {
			files = append(files, f)
		}
	}
	a := &Agent{files: p.Files()}
	if diags.HasErrors() {
		// Decoding a body with syntax errors mostly adds noise.
		if len(files) == 0 {
			a = nil
		}
		return a, sortDiags(diags)
	}

	var fileStart *hcl.Range
	where := fmt.Sprintf("%q", path)
	if info.IsDir() {
		where = fmt.Sprintf("any of the files in %q", path)
	} else {
		fileStart = files[0].Body.MissingItemRange().Ptr()
	}
	diags = append(diags, decodeAgent(a, hcl.MergeFiles(files), fileStart, where)...)
	return a, sortDiags(diags)
}

// Parse reads a configuration from src, naming it filename in diagnostics.
// See Load for how to treat the results.
func Parse(src []byte, filename string) (*Agent, hcl.Diagnostics) {
	p := hclparse.NewParser()
	f, diags := p.ParseHCL(src, filename)
	a := &Agent{files: p.Files()}
	if diags.HasErrors() {
		return a, sortDiags(diags)
	}
	diags = append(diags, decodeAgent(a, f.Body, f.Body.MissingItemRange().Ptr(), fmt.Sprintf("%q", filename))...)
	return a, sortDiags(diags)
}

// hclFiles lists the *.hcl regular files directly inside dir, sorted by name,
// leaving out names that start with "." (editor lock and swap files).
func hclFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".hcl") {
			continue
		}
		names = append(names, filepath.Join(dir, name))
	}
	sort.Strings(names)
	return names, nil
}

func statReason(err error) string {
	switch {
	case os.IsNotExist(err):
		return "no such file or directory"
	case os.IsPermission(err):
		return "permission denied"
	}
	return err.Error()
}

// sortDiags orders diagnostics by file and position (those without a subject
// last), so their order does not depend on gohcl's map iteration.
func sortDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		}
		return a.Start.Byte < b.Start.Byte
	})
	return diags
}
