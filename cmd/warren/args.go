package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// normalizeArgs lets operators write long flags Go-style with one dash, as in
// `warren agent -config cluster.hcl` or `-log-level=debug`: pflag would read
// "-config" as the shorthands -c -o -n... Before "--", a token "-name" or
// "-name=value" whose name has more than one letter and is a long flag of the
// command being run becomes "--name" / "--name=value". Everything else is
// left alone: shorthands (-o json), flag values (--user -x), unknown names
// (reported by pflag as usual) and whatever follows "--".
func normalizeArgs(root *cobra.Command, args []string) []string {
	flags := flagsOf(findCommand(root, args))
	out := make([]string, len(args))
	copy(out, args)
	for i := 0; i < len(out); i++ {
		a := out[i]
		if a == "--" {
			break
		}
		if strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && flags.Lookup(name) != nil {
				a = "-" + a
				out[i] = a
			}
		}
		if takesValue(flags, a) {
			i++ // the next token is this flag's value, whatever it looks like
		}
	}
	return out
}

// findCommand returns the command args run: it follows subcommand names from
// root, skipping flags and their values, until the first word that is not a
// subcommand.
func findCommand(root *cobra.Command, args []string) *cobra.Command {
	cmd := root
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return cmd
		case strings.HasPrefix(a, "-") && len(a) > 1:
			if takesValue(flagsOf(cmd), a) || takesValue(flagsOf(cmd), "-"+a) {
				i++
			}
		default:
			sub := subcommand(cmd, a)
			if sub == nil {
				return cmd
			}
			cmd = sub
		}
	}
	return cmd
}

// subcommand returns cmd's subcommand called (or aliased) name, or nil.
func subcommand(cmd *cobra.Command, name string) *cobra.Command {
	for _, c := range cmd.Commands() {
		if c.Name() == name || c.HasAlias(name) {
			return c
		}
	}
	return nil
}

// flagsOf returns every flag cmd accepts: its own, the persistent ones of its
// parents and --help.
func flagsOf(cmd *cobra.Command) *pflag.FlagSet {
	cmd.InitDefaultHelpFlag()
	cmd.InheritedFlags() // merges the parents' persistent flags into Flags()
	return cmd.Flags()
}

// takesValue reports whether token is a flag written without "=value" that
// reads the next token as its value: "--image" or "-o", but not "--dev",
// "--image=x", "-ojson" or an unknown flag.
func takesValue(flags *pflag.FlagSet, token string) bool {
	var f *pflag.Flag
	switch {
	case strings.Contains(token, "="):
		return false
	case strings.HasPrefix(token, "--"):
		f = flags.Lookup(token[2:])
	case len(token) == 2 && token[0] == '-':
		f = flags.ShorthandLookup(token[1:])
	}
	return f != nil && f.NoOptDefVal == ""
}
