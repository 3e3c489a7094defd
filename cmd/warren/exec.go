package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// taskExecOptions are the flags of `task exec`.
type taskExecOptions struct {
	g     *globalOptions
	stdin bool
	tty   bool
	env   []string
}

func newTaskExecCmd(g *globalOptions) *cobra.Command {
	o := &taskExecOptions{g: g}
	cmd := &cobra.Command{
		Use:   "exec [-it] TASK-ID -- CMD [ARG...]",
		Short: "Run a command in a running task",
		Long: `Run a command inside a running task, on whichever node it runs, as the task's
own process runs (user, working directory, environment), and exit with the
command's exit status.

-i sends standard input to the command; -t gives it a terminal (raw mode,
resized with the window; with -t its stderr comes on stdout). The command
ends with the CLI: Ctrl-C without -t, or when the terminal closes.`,
		Example: `  warren task exec 3f2a9c1b7d4e -- cat /etc/hostname
  warren task exec -it 3f2a9c1b7d4e -- sh
  echo 'SELECT 1' | warren task exec -i 3f2a9c1b7d4e -- psql`,
		Args: func(cmd *cobra.Command, args []string) error {
			dash := cmd.ArgsLenAtDash()
			if dash != 1 || len(args) < 2 {
				return usageErrorf("%s needs one TASK-ID, then -- and the command: %s TASK-ID -- CMD [ARG...]", cmd.CommandPath(), cmd.CommandPath())
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0], args[1:])
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.stdin, "interactive", "i", false, "send standard input to the command")
	f.BoolVarP(&o.tty, "tty", "t", false, "give the command a terminal")
	f.StringArrayVarP(&o.env, "env", "e", nil, "add `KEY=VALUE` to the command's environment (repeatable)")
	return cmd
}

func (o *taskExecOptions) run(cmd *cobra.Command, task string, command []string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	in := cmd.InOrStdin()
	start := &apiv1.ExecStart{Task: task, Cmd: command, Env: o.env, Tty: o.tty, Stdin: o.stdin}
	var term *os.File
	if o.tty {
		f, ok := in.(*os.File)
		if !ok || !isTerminal(f) {
			return usageErrorf("-t needs standard input to be a terminal")
		}
		term = f
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			start.Size = &apiv1.TermSize{Width: uint32(ws.Col), Height: uint32(ws.Row)}
		}
	}
	stream, err := c.ExecTask(ctx)
	if err != nil {
		return err
	}
	var sendMu sync.Mutex
	send := func(in *apiv1.ExecInput) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(in)
	}
	if err := send(&apiv1.ExecInput{Msg: &apiv1.ExecInput_Start{Start: start}}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if term != nil {
		restore, err := rawMode(term)
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		defer restore()
		go forwardResizes(ctx, term, send)
	}
	if o.stdin {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					if send(&apiv1.ExecInput{Msg: &apiv1.ExecInput_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
						return
					}
				}
				if err != nil {
					_ = send(&apiv1.ExecInput{Msg: &apiv1.ExecInput_StdinClose{StdinClose: true}})
					return
				}
			}
		}()
	}
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	for {
		out, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("exec: the agent ended the command without its exit status")
			}
			return err
		}
		switch m := out.GetMsg().(type) {
		case *apiv1.ExecOutput_Stdout:
			if _, err := stdout.Write(m.Stdout); err != nil {
				return err
			}
		case *apiv1.ExecOutput_Stderr:
			if _, err := stderr.Write(m.Stderr); err != nil {
				return err
			}
		case *apiv1.ExecOutput_ExitCode:
			if m.ExitCode != 0 {
				return &reportedError{code: int(m.ExitCode)}
			}
			return nil
		}
	}
}

// rawMode puts the terminal f in raw mode and returns what restores it.
func rawMode(f *os.File) (func(), error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// forwardResizes sends the terminal's size whenever the window changes.
func forwardResizes(ctx context.Context, f *os.File, send func(*apiv1.ExecInput) error) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	defer signal.Stop(ch)
	for {
		select {
		case <-ctx.Done():
			return
		case <-ch:
			ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
			if err != nil {
				continue
			}
			if send(&apiv1.ExecInput{Msg: &apiv1.ExecInput_Resize{Resize: &apiv1.TermSize{Width: uint32(ws.Col), Height: uint32(ws.Row)}}}) != nil {
				return
			}
		}
	}
}
