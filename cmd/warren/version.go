package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/warrenorch/warren/core/version"
)

// commit is the VCS revision this binary was built from, when the build
// recorded one ("-dirty" when the tree had changes).
func commit() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = shortID(s.Value)
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}

type versionOptions struct {
	g *globalOptions
}

func newVersionCmd(g *globalOptions) *cobra.Command {
	o := &versionOptions{g: g}
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this warren binary",
		Long: `Print the version of this warren binary, the commit, the Go version it was
built with and its platform. "warren cluster info" shows the running agent's version.`,
		Example: `  warren version
  warren version -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
}

func (o *versionOptions) run(cmd *cobra.Command) error {
	v := struct {
		Version   string `json:"version"`
		Commit    string `json:"commit,omitempty"`
		GoVersion string `json:"go_version"`
		Platform  string `json:"platform"`
	}{version.Version, commit(), runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH}
	if o.g.outputOr(outputTable) == outputJSON {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return fmt.Errorf("encoding the version as JSON: %w", err)
		}
		_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
		return err
	}
	built := v.GoVersion + ", " + v.Platform
	if v.Commit != "" {
		built = v.Commit + ", " + built
	}
	_, err := fmt.Fprintf(cmd.OutOrStdout(), "warren %s (%s)\n", v.Version, built)
	return err
}
