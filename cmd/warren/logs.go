package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// maxPartialLine is how much of a line without its end is held back before
// it is printed anyway (a task printing a progress bar, or binary).
const maxPartialLine = 64 << 10

// logsOptions are the flags of `service logs` and `task logs`.
type logsOptions struct {
	g       *globalOptions
	service bool // service logs, or task logs
	follow  bool
	tail    int64 // 0: all
	raw     bool
	// since is --since in nanoseconds since the epoch; 0: all.
	since      int64
	timestamps bool
}

func newServiceLogsCmd(g *globalOptions) *cobra.Command {
	o := &logsOptions{g: g, service: true}
	cmd := &cobra.Command{
		Use:   "logs NAME|ID",
		Short: "Print the output of a service's tasks",
		Long: `Print the output (stdout and stderr) of the current tasks of a service, each
line prefixed with the task that wrote it, as SERVICE.SLOT@NODE:

  web.1@edge-1   | GET / 200
  web.2@edge-2   | GET /health 200

--raw prints the lines alone. With --follow, new output is printed as it comes
until interrupted (Ctrl-C), which ends the command with status 0. --since
leaves out the lines written before a time (RFC 3339, as 2026-12-02T20:00:00Z)
or a duration ago (10m, 1h30m); --timestamps puts the time each line was
written (RFC 3339 with nanoseconds, UTC) in front of it. Tasks started before
Warren recorded these times print all their lines, without times.`,
		Example: `  warren service logs web
  warren service logs web --follow --tail 20
  warren service logs web --since 10m --timestamps
  warren service logs web --raw | grep ERROR`,
		Args: exactArgs(1, "one service NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func newTaskLogsCmd(g *globalOptions) *cobra.Command {
	o := &logsOptions{g: g}
	cmd := &cobra.Command{
		Use:   "logs TASK-ID",
		Short: "Print the output of a task",
		Long: `Print the output (stdout and stderr) of one task, named by its ID or a unique
prefix of it, as "service logs" does: lines prefixed with SERVICE.SLOT@NODE
unless --raw, new output as it comes with --follow.`,
		Example: `  warren task logs 3f2a9c1b7d4e
  warren task logs 3f2a9c1b7d4e --raw --tail 100`,
		Args: exactArgs(1, "one TASK-ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	o.addFlags(cmd.Flags())
	return cmd
}

func (o *logsOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVarP(&o.follow, "follow", "f", false, "keep printing new output until interrupted")
	f.Var(&tailValue{p: &o.tail}, "tail", "print only the last `N` lines of each task's output so far, or all")
	f.BoolVar(&o.raw, "raw", false, "print the lines without the SERVICE.SLOT@NODE prefix")
	f.Var(&sinceValue{p: &o.since, now: time.Now}, "since", "print only the lines written since `T`: an RFC 3339 time or a duration ago (10m)")
	f.BoolVarP(&o.timestamps, "timestamps", "t", false, "put the time each line was written in front of it")
}

func (o *logsOptions) run(cmd *cobra.Command, target string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	req := &apiv1.TaskLogsRequest{Follow: o.follow, Tail: o.tail, SinceUnixNano: o.since, Timestamps: o.timestamps}
	names := &taskLabels{ctx: ctx, c: c}
	if o.service {
		resp, err := c.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: target})
		if err != nil {
			return err
		}
		req.Service = resp.GetService().GetId()
		names.service = resp.GetService().GetSpec().GetName()
	} else {
		req.Task = target
	}
	lw := &logWriter{out: cmd.OutOrStdout(), raw: o.raw}
	if !o.raw {
		if err := names.load(); err != nil {
			return err
		}
		lw.prefix = names.prefix
		if o.service {
			// Pad the prefixes to the longest of the current tasks', so
			// that the lines line up from the first one.
			tasks, err := c.listTasks(ctx, &apiv1.ListTasksRequest{Service: req.Service, View: apiv1.TaskView_TASK_VIEW_BASIC})
			if err != nil {
				return err
			}
			for _, t := range tasks {
				lw.width = max(lw.width, len(names.labelFor(names.service, t.GetSlot(), t.GetNodeId())))
			}
		}
	}

	stream, err := c.TaskLogs(ctx, req)
	if err != nil {
		return err
	}
	for {
		chunk, err := stream.Recv()
		if err != nil {
			if ferr := lw.flush(); ferr != nil {
				return ferr
			}
			switch {
			case errors.Is(err, io.EOF):
				return nil
			case ctx.Err() != nil && o.follow:
				return nil // interrupted: how --follow ends
			case ctx.Err() != nil:
				return ctx.Err()
			}
			return err
		}
		if end := chunk.GetEnd(); end != "" {
			// A followed task's output ended: say so, apart from the output.
			if err := lw.flush(); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "%s\n", end)
			continue
		}
		if err := lw.write(chunk); err != nil {
			return err
		}
	}
}

// taskLabels names the tasks whose output is printed: SERVICE.SLOT@NODE.
type taskLabels struct {
	ctx context.Context
	c   *agentClient
	// service is the service's name for `service logs`; `task logs` looks
	// its task up.
	service string
	nodes   map[string]string
	tasks   map[string]string // task ID → service name
	// reloaded keeps the lookups of unknown IDs to one each.
	reloaded map[string]bool
}

func (l *taskLabels) load() error {
	var err error
	l.nodes, err = nodeNames(l.ctx, l.c)
	l.reloaded = map[string]bool{}
	return err
}

// prefix is the label of the task that wrote chunk; an unknown task or node
// is looked up once, and shown by its short ID if it is still unknown.
func (l *taskLabels) prefix(chunk *apiv1.LogChunk) string {
	if l.service == "" && l.tasks[chunk.GetTaskId()] == "" && !l.reloaded[chunk.GetTaskId()] {
		l.reloaded[chunk.GetTaskId()] = true
		if tasks, err := l.c.listTasks(l.ctx, &apiv1.ListTasksRequest{All: true, View: apiv1.TaskView_TASK_VIEW_BASIC}); err == nil {
			l.tasks = map[string]string{}
			for _, t := range tasks {
				l.tasks[t.GetId()] = t.GetServiceName()
			}
		}
	}
	if node := chunk.GetNodeId(); node != "" && l.nodes[node] == "" && !l.reloaded[node] {
		l.reloaded[node] = true
		if names, err := nodeNames(l.ctx, l.c); err == nil {
			l.nodes = names
		}
	}
	name := l.service
	if name == "" {
		name = l.tasks[chunk.GetTaskId()]
	}
	if name == "" {
		name = shortID(chunk.GetTaskId())
	}
	return l.labelFor(name, chunk.GetSlot(), chunk.GetNodeId())
}

// labelFor is SERVICE.SLOT@NODE.
func (l *taskLabels) labelFor(service string, slot uint64, nodeID string) string {
	node := l.nodes[nodeID]
	if node == "" {
		node = shortID(nodeID)
	}
	return service + "." + strconv.FormatUint(slot, 10) + "@" + node
}

// logWriter prints tasks' output as whole lines, each prefixed with the
// label of its task (unless raw), however the chunks cut it: the start of
// a line is held per task until its end comes.
type logWriter struct {
	out    io.Writer
	raw    bool
	prefix func(*apiv1.LogChunk) string
	// width is the width the labels are padded to; it grows with the
	// longest seen.
	width int

	partial map[string]*partialLine // by task ID
	order   []string                // task IDs in the order they first held a partial line
}

type partialLine struct {
	label string
	data  []byte
}

// write prints the whole lines chunk completes.
func (w *logWriter) write(chunk *apiv1.LogChunk) error {
	if w.partial == nil {
		w.partial = map[string]*partialLine{}
	}
	label := ""
	if !w.raw && w.prefix != nil {
		label = w.prefix(chunk)
		w.width = max(w.width, len(label))
	}
	id := chunk.GetTaskId()
	data := chunk.GetData()
	if p := w.partial[id]; p != nil {
		data = append(p.data, data...)
	}
	var out bytes.Buffer
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		w.line(&out, label, data[:i+1])
		data = data[i+1:]
	}
	if len(data) > maxPartialLine {
		if !w.raw {
			data = append(data, '\n')
		}
		w.line(&out, label, data)
		data = nil
	}
	if len(data) > 0 {
		if w.partial[id] == nil {
			w.order = append(w.order, id)
		}
		w.partial[id] = &partialLine{label: label, data: bytes.Clone(data)}
	} else if w.partial[id] != nil {
		delete(w.partial, id)
		w.order = slices.DeleteFunc(w.order, func(s string) bool { return s == id })
	}
	if out.Len() == 0 {
		return nil
	}
	_, err := w.out.Write(out.Bytes())
	return err
}

// flush prints the lines that never got their end, when the output ends:
// with their prefix and a line end added, or as they are with --raw.
func (w *logWriter) flush() error {
	var out bytes.Buffer
	for _, id := range w.order {
		p := w.partial[id]
		data := p.data
		if !w.raw {
			data = append(data, '\n')
		}
		w.line(&out, p.label, data)
	}
	w.partial, w.order = nil, nil
	_, err := w.out.Write(out.Bytes())
	return err
}

func (w *logWriter) line(out *bytes.Buffer, label string, data []byte) {
	if !w.raw {
		fmt.Fprintf(out, "%-*s | ", w.width, label)
	}
	out.Write(data)
}

// tailValue is --tail: a positive number of lines, or "all" (0).
type tailValue struct{ p *int64 }

func (v *tailValue) String() string {
	if *v.p == 0 {
		return "all"
	}
	return strconv.FormatInt(*v.p, 10)
}

func (v *tailValue) Type() string { return "lines" }

func (v *tailValue) Set(s string) error {
	if strings.EqualFold(s, "all") {
		*v.p = 0
		return nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return errors.New(`use a positive number of lines, or "all"`)
	}
	*v.p = n
	return nil
}

// sinceValue is --since: an RFC 3339 time, or a duration before now, kept
// as nanoseconds since the epoch.
type sinceValue struct {
	p   *int64
	now func() time.Time
}

func (v *sinceValue) String() string {
	if *v.p == 0 {
		return ""
	}
	return time.Unix(0, *v.p).UTC().Format(time.RFC3339Nano)
}

func (v *sinceValue) Type() string { return "time" }

func (v *sinceValue) Set(s string) error {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*v.p = t.UnixNano()
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return errors.New("use an RFC 3339 time (2026-12-02T20:00:00Z) or a positive duration ago (10m, 1h30m)")
	}
	*v.p = v.now().Add(-d).UnixNano()
	return nil
}
