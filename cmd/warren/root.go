package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// defaultSocket is where the agent serves its API unless api_socket says
	// otherwise.
	defaultSocket = "/run/warren/warren.sock"
	// socketEnv overrides defaultSocket; --socket overrides both.
	socketEnv = "WARREN_SOCKET"
	// addrEnv and certDirEnv set --addr and --cert-dir.
	addrEnv    = "WARREN_ADDR"
	certDirEnv = "WARREN_CERT_DIR"
)

// Values of --output.
const (
	outputTable = "table"
	outputJSON  = "json"
)

// globalOptions are the persistent flags every client command shares.
type globalOptions struct {
	socket  string
	addr    string
	certDir string
	output  string
	timeout time.Duration

	socketSet bool // --socket was given
}

func (g *globalOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&g.socket, "socket", defaultSocket, "`path` of the agent's API socket (or set "+socketEnv+")")
	fs.StringVar(&g.addr, "addr", "", "reach a manager's cluster port at `host:port` instead of the local socket, with the admin certificate of --cert-dir (or set "+addrEnv+")")
	fs.StringVar(&g.certDir, "cert-dir", "", "`dir` holding ca.pem, cert.pem and key.pem from `warren cluster admin-cert` (or set "+certDirEnv+"; default ~/.warren)")
	fs.VarP(&choiceValue{p: &g.output, choices: []string{outputTable, outputJSON}}, "output", "o",
		"output format (default: table for lists, json for inspect)")
	fs.DurationVar(&g.timeout, "timeout", 30*time.Second, "how long to wait for the agent to answer a call (0: no limit; streams have none)")
}

// socketPath is --socket if given, else $WARREN_SOCKET, else the default.
func (g *globalOptions) socketPath() string {
	if g.socketSet && g.socket != "" {
		return g.socket
	}
	if env := os.Getenv(socketEnv); env != "" {
		return env
	}
	return defaultSocket
}

// dial connects to the agent: a remote manager with --addr, else the
// local socket.
func (g *globalOptions) dial(ctx context.Context) (*agentClient, error) {
	addr := g.addr
	if addr == "" {
		addr = os.Getenv(addrEnv)
	}
	if addr == "" {
		return dialAgent(ctx, g.socketPath(), g.timeout)
	}
	dir := g.certDir
	if dir == "" {
		dir = os.Getenv(certDirEnv)
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("--cert-dir: %w", err)
		}
		dir = filepath.Join(home, ".warren")
	}
	return dialRemote(ctx, addr, dir, g.timeout)
}

// outputOr returns --output, or def when it was not given.
func (g *globalOptions) outputOr(def string) string {
	if g.output == "" {
		return def
	}
	return g.output
}

// newRootCmd builds the whole command tree.
func newRootCmd() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "warren",
		Short: "Run and manage a Warren cluster",
		Long: `Warren keeps services running on a handful of Linux machines.

"warren agent" runs the agent on a machine; the other commands talk to the
local agent over its API socket (` + defaultSocket + ` by default; it is
root-only, so run them as root).

Flags may be written with one dash, Go-style: "warren agent -config cluster.hcl".`,
		Example: `  warren agent -config /etc/warren/cluster.hcl
  warren service create web --image nginx:1.27 --replicas 3
  warren service ls
  warren service ps web
  warren service logs web --follow`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if g.timeout < 0 {
				return usageErrorf("invalid --timeout %s: cannot be negative (0 means no limit)", g.timeout)
			}
			g.socketSet = cmd.Flags().Changed("socket")
			return nil
		},
	}
	makeGroup(root)
	g.addFlags(root.PersistentFlags())
	root.SetFlagErrorFunc(flagError)
	root.AddCommand(
		newAgentCmd(),
		newServiceCmd(g),
		newNodeCmd(g),
		newTaskCmd(g),
		newImageCmd(g),
		newFileKindCmd(g, secretOps),
		newFileKindCmd(g, configOps),
		newVolumeCmd(g),
		newEventsCmd(g),
		newStatsCmd(g),
		newPluginCmd(g),
		newClusterCmd(g),
		newVersionCmd(g),
		newBenchCmd(g),
	)
	return root
}

// run runs the command line args (without the program name) and returns the
// exit status: 0 on success, 1 on any error (reported on stderr as
// "Error: ..."), 130 when the command was interrupted.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return execute(ctx, newRootCmd(), args, stdout, stderr)
}

// execute is run with the command tree root.
func execute(ctx context.Context, root *cobra.Command, args []string, stdout, stderr io.Writer) int {
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Cobra adds these as it executes; adding them first lets normalizeArgs
	// see them. (The completion command keeps the output set above.)
	root.InitDefaultHelpCmd()
	root.InitDefaultCompletionCmd()
	root.SetArgs(normalizeArgs(root, args))
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return 0
	}
	var reported *reportedError
	if errors.As(err, &reported) {
		return reported.code
	}
	if ctx.Err() != nil && (errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled) {
		fmt.Fprintln(stderr, "Error: interrupted")
		return 130
	}
	for _, e := range flatten(err) {
		fmt.Fprintf(stderr, "Error: %s\n", strings.TrimRight(e.Error(), "\n"))
	}
	var usage *usageError
	if errors.As(err, &usage) && cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return 1
}

// flatten splits an errors.Join of several failures (one per name given to
// a command) into its parts.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// usageError is a mistake in the command line itself; run adds a pointer to
// --help.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// reportedError ends a command whose failure has been written out already
// (HCL diagnostics, for one); run exits with code without printing more.
type reportedError struct{ code int }

func (e *reportedError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// makeGroup makes cmd a command that only holds subcommands: run alone, it
// prints its help; run with an unknown subcommand, it says so and suggests
// the closest ones. (Cobra would print the help for an unknown subcommand
// below the root and exit 0.)
func makeGroup(cmd *cobra.Command) {
	cmd.Args = cobra.ArbitraryArgs
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
		return &usageError{msg: msg}
	}
}

// flagError makes flag parsing errors usage errors and suggests the closest
// flag names for an unknown one.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	var unknown *pflag.NotExistError
	if errors.As(err, &unknown) && unknown.GetSpecifiedShortnames() == "" {
		if s := suggestFlags(cmd.Flags(), unknown.GetSpecifiedName()); len(s) > 0 {
			msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
		}
	}
	return &usageError{msg: msg}
}

// suggestFlags returns the flags (as "--name") whose names are within two
// edits of name or start with it.
func suggestFlags(fs *pflag.FlagSet, name string) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if editDistance(f.Name, name) <= 2 || strings.HasPrefix(f.Name, name) {
			out = append(out, "--"+f.Name)
		}
	})
	return out
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// exactArgs, minArgs, maxArgs and noArgs are cobra.PositionalArgs that name what is
// missing or extra, as usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < n:
			return usageErrorf("%q needs %s", cmd.CommandPath(), what)
		case len(args) > n:
			return usageErrorf("%q takes %s, but got %d arguments: %s", cmd.CommandPath(), what, len(args), strings.Join(args, " "))
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usageErrorf("%q needs %s", cmd.CommandPath(), what)
		}
		return nil
	}
}

// maxArgs is a cobra.PositionalArgs taking at most n arguments.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usageErrorf("%q takes %s, but got %d arguments: %s", cmd.CommandPath(), what, len(args), strings.Join(args, " "))
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErrorf("%q takes no arguments, but got %q", cmd.CommandPath(), args[0])
	}
	return nil
}
