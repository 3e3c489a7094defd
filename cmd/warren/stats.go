package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// statsInterval is how often `warren stats` samples: docker stats' pace.
const statsInterval = time.Second

type statsOptions struct {
	g        *globalOptions
	service  string
	node     string
	noStream bool
}

func newStatsCmd(g *globalOptions) *cobra.Command {
	o := &statsOptions{g: g}
	cmd := &cobra.Command{
		Use:   "stats [TASK...]",
		Short: "Show the CPU and memory use of running tasks",
		Long: `Show the CPU and memory use of running tasks on every node, as docker stats
does: the tasks named (ID or unique prefix), a service's (--service), a
node's (--node), or every running task. The table is refreshed every second
until interrupted; --no-stream prints it once.

CPU % is the share of one CPU the task used between two samples a second
apart (it passes 100% for a task on more than one CPU). MEM USAGE is the
task's memory without the page cache the kernel can drop, LIMIT its memory
limit ("-" when it has none). A node that does not answer gives its tasks a
row whose ERROR names the node. -o json prints each sample as the API's
TaskStatsResponse on one line.`,
		Example: `  warren stats
  warren stats --service web --no-stream
  warren stats --node edge-2`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	cmd.Flags().StringVar(&o.service, "service", "", "show the tasks of this `SERVICE` (name or ID)")
	cmd.Flags().StringVar(&o.node, "node", "", "show the tasks on this `NODE` (name or ID)")
	cmd.Flags().BoolVar(&o.noStream, "no-stream", false, "print one table and exit")
	return cmd
}

func (o *statsOptions) run(cmd *cobra.Command, tasks []string) error {
	ctx := cmd.Context()
	if len(tasks) > 0 && (o.service != "" || o.node != "") {
		return usageErrorf("give tasks, or --service/--node, not both")
	}
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	req := &apiv1.TaskStatsRequest{Tasks: tasks, Service: o.service, Node: o.node}
	out := cmd.OutOrStdout()
	jsonOut := o.g.outputOr(outputTable) == outputJSON
	if o.noStream {
		return statsOnce(ctx, c, req, out, jsonOut)
	}
	clear := !jsonOut && isTerminal(out)
	tick := time.NewTicker(statsInterval)
	defer tick.Stop()
	var prev []*apiv1.TaskStatsSample
	for frame := 0; ; frame++ {
		resp, err := c.TaskStats(ctx, req)
		if err != nil {
			return err
		}
		// The first table waits for a second sample: CPU % needs two.
		if frame > 0 || len(resp.GetStats()) == 0 || jsonOut {
			if err := writeStatsFrame(out, prev, resp, jsonOut, clear); err != nil {
				return err
			}
		}
		prev = resp.GetStats()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// statsOnce prints one table from two samples a second apart; a task that
// had no figures in the first (its node did not answer) keeps that row and
// is not asked again.
func statsOnce(ctx context.Context, c *agentClient, req *apiv1.TaskStatsRequest, out io.Writer, jsonOut bool) error {
	first, err := c.TaskStats(ctx, req)
	if err != nil {
		return err
	}
	var ids []string
	for _, s := range first.GetStats() {
		if s.GetError() == "" {
			ids = append(ids, s.GetTaskId())
		}
	}
	final := first
	if len(ids) > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(statsInterval):
		}
		second, err := c.TaskStats(ctx, &apiv1.TaskStatsRequest{Tasks: ids})
		if err != nil {
			return err
		}
		again := make(map[string]*apiv1.TaskStatsSample, len(ids))
		for _, s := range second.GetStats() {
			again[s.GetTaskId()] = s
		}
		final = &apiv1.TaskStatsResponse{}
		for _, s := range first.GetStats() {
			if n := again[s.GetTaskId()]; s.GetError() == "" && n != nil {
				s = n
			}
			final.Stats = append(final.Stats, s)
		}
	}
	return writeStatsFrame(out, first.GetStats(), final, jsonOut, false)
}

// writeStatsFrame prints one table (or, with jsonOut, the response);
// clear first clears the terminal.
func writeStatsFrame(w io.Writer, prev []*apiv1.TaskStatsSample, resp *apiv1.TaskStatsResponse, jsonOut, clear bool) error {
	if jsonOut {
		return writeJSONLine(w, resp)
	}
	if clear {
		if _, err := io.WriteString(w, "\x1b[H\x1b[2J"); err != nil {
			return err
		}
	}
	return writeTable(w, statsHeader, statsRows(prev, resp.GetStats()))
}

var statsHeader = []string{"ID", "NAME", "NODE", "CPU %", "MEM USAGE / LIMIT", "MEM %", "ERROR"}

// statsRows is one row per sample in cur, its CPU % from the same task's
// sample in prev ("-" when there is none).
func statsRows(prev, cur []*apiv1.TaskStatsSample) [][]string {
	before := make(map[string]*apiv1.TaskStatsSample, len(prev))
	for _, p := range prev {
		if p.GetError() == "" {
			before[p.GetTaskId()] = p
		}
	}
	rows := make([][]string, 0, len(cur))
	for _, s := range cur {
		name := fmt.Sprintf("%s.%d", s.GetServiceName(), s.GetSlot())
		if s.GetError() != "" {
			rows = append(rows, []string{shortID(s.GetTaskId()), name, s.GetNode(), "-", "-", "-", truncate(s.GetError(), errorWidth)})
			continue
		}
		rows = append(rows, []string{
			shortID(s.GetTaskId()), name, s.GetNode(),
			cpuPercent(before[s.GetTaskId()], s),
			humanSize(int64(s.GetMemoryBytes())) + " / " + memLimit(s.GetMemoryLimitBytes()),
			memPercent(s.GetMemoryBytes(), s.GetMemoryLimitBytes()),
			"",
		})
	}
	return rows
}

// cpuPercent is the CPU time used between two samples of a task as a
// share of the wall time between them, in percent of one CPU.
func cpuPercent(prev, cur *apiv1.TaskStatsSample) string {
	if prev == nil || cur.GetSampledUnixNano() <= prev.GetSampledUnixNano() || cur.GetCpuUsageNs() < prev.GetCpuUsageNs() {
		return "-"
	}
	used := float64(cur.GetCpuUsageNs() - prev.GetCpuUsageNs())
	wall := float64(cur.GetSampledUnixNano() - prev.GetSampledUnixNano())
	return strconv.FormatFloat(100*used/wall, 'f', 2, 64) + "%"
}

func memLimit(limit uint64) string {
	if limit == 0 {
		return "-"
	}
	return humanSize(int64(limit))
}

func memPercent(usage, limit uint64) string {
	if limit == 0 {
		return "-"
	}
	return strconv.FormatFloat(100*float64(usage)/float64(limit), 'f', 2, 64) + "%"
}
