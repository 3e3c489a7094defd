package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func newServiceCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Manage services",
		Long: `Manage services: a service is an image run as a number of replicas (tasks)
that the cluster keeps running.`,
		Example: `  warren service create web --image nginx:1.27 --replicas 3
  warren service ls
  warren service scale web=5
  warren service ps web
  warren service logs web --follow`,
	}
	makeGroup(cmd)
	cmd.AddCommand(
		newServiceCreateCmd(g),
		newServiceListCmd(g),
		newServiceInspectCmd(g),
		newServiceScaleCmd(g),
		newServiceUpdateCmd(g),
		newServiceRollbackCmd(g),
		newServicePromoteCmd(g),
		newServiceRemoveCmd(g),
		newServicePsCmd(g),
		newServiceLogsCmd(g),
	)
	return cmd
}

// ---- ls ----

type serviceListOptions struct {
	g      *globalOptions
	labels []string
}

func newServiceListCmd(g *globalOptions) *cobra.Command {
	o := &serviceListOptions{g: g}
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List services",
		Long: `List services, sorted by name. REPLICAS is running/desired: the tasks in the
running state and the replicas asked for. PORTS are the published ports,
PUBLISHED->TARGET/PROTOCOL, "(host)" for those published in host mode.`,
		Example: `  warren service ls
  warren service ls --label team=edge
  warren service ls -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	cmd.Flags().StringArrayVar(&o.labels, "label", nil, "only services with this label `KEY=VALUE` (repeatable)")
	return cmd
}

func (o *serviceListOptions) run(cmd *cobra.Command) error {
	labels, err := parseKV("--label", o.labels)
	if err != nil {
		return &usageError{msg: err.Error()}
	}
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	services, err := c.listServices(ctx, &apiv1.ListServicesRequest{Labels: labels})
	if err != nil {
		return err
	}
	slices.SortFunc(services, func(a, b *apiv1.Service) int {
		return strings.Compare(a.GetSpec().GetName(), b.GetSpec().GetName())
	})
	if o.g.outputOr(outputTable) == outputJSON {
		return writeJSONList(cmd.OutOrStdout(), services)
	}
	tasks, err := c.listTasks(ctx, &apiv1.ListTasksRequest{View: apiv1.TaskView_TASK_VIEW_BASIC})
	if err != nil {
		return err
	}
	return writeTable(cmd.OutOrStdout(), serviceListHeader, serviceRows(services, tasks, time.Now()))
}

var serviceListHeader = []string{"ID", "NAME", "IMAGE", "REPLICAS", "PORTS", "UPDATED"}

// serviceRows are the rows of `service ls`, given every task. REPLICAS is
// running/desired and, when fewer run than asked, why: the problem most of
// the service's waiting tasks share (`0/3: rejected: image "x" not found`).
func serviceRows(services []*apiv1.Service, tasks []*apiv1.Task, now time.Time) [][]string {
	running := map[string]int{}
	problems := map[string]map[string]int{} // service ID → problem → tasks
	for _, t := range tasks {
		switch {
		case t.GetState() == apiv1.TaskState_TASK_STATE_RUNNING:
			running[t.GetServiceId()]++
		case wanted(t):
			if p, _ := slotProblem(t); p != "" {
				if problems[t.GetServiceId()] == nil {
					problems[t.GetServiceId()] = map[string]int{}
				}
				problems[t.GetServiceId()][p]++
			}
		}
	}
	rows := make([][]string, 0, len(services))
	for _, s := range services {
		replicas := fmt.Sprintf("%d/%d", running[s.GetId()], s.GetSpec().GetReplicas())
		if apiv1.IsJob(s.GetSpec().GetMode()) {
			replicas = jobReplicasText(s, running[s.GetId()])
		} else if uint64(running[s.GetId()]) < s.GetSpec().GetReplicas() {
			if p := commonest(problems[s.GetId()]); p != "" {
				replicas += ": " + truncate(p, errorWidth)
			}
		}
		updated := ago(s.GetUpdatedAt(), now)
		if st := s.GetUpdateStatus().GetState(); st != apiv1.UpdateStatus_STATE_UNSPECIFIED && st != apiv1.UpdateStatus_STATE_COMPLETED {
			updated += " (" + truncate(updateStatusText(s.GetUpdateStatus()), errorWidth) + ")"
		}
		rows = append(rows, []string{
			shortID(s.GetId()),
			s.GetSpec().GetName(),
			s.GetSpec().GetImage(),
			replicas,
			portsColumn(s.GetSpec().GetPorts()),
			updated,
		})
	}
	return rows
}

// jobReplicasText is a job's REPLICAS in `service ls`: its completions
// and, while it runs, its running tasks ("1/3 completed, 2 running"), or
// how it ended ("3/3 completed", "2/3 completed, 1 failed").
func jobReplicasText(s *apiv1.Service, running int) string {
	st := s.GetJobStatus()
	total := st.GetTotal()
	if st == nil {
		total = s.GetSpec().GetReplicas()
	}
	out := fmt.Sprintf("%d/%d completed", st.GetCompleted(), total)
	if running > 0 {
		out += fmt.Sprintf(", %d running", running)
	}
	if st.GetFailed() > 0 {
		out += fmt.Sprintf(", %d failed", st.GetFailed())
	}
	return out
}

// jobStatusText is a job status for inspect: its state and message, with
// when the run started and ended.
func jobStatusText(st *apiv1.JobStatus) string {
	if st == nil {
		return ""
	}
	out := enumText(st.GetState(), "") + ": " + st.GetMessage()
	if st.GetStartedAt() != nil {
		out += "; started " + timeText(st.GetStartedAt())
	}
	if st.GetCompletedAt() != nil {
		out += ", ended " + timeText(st.GetCompletedAt())
	}
	return out
}

// commonest is the key with the highest count (the first in order on a
// tie), "" for none.
func commonest(counts map[string]int) string {
	best := ""
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		if best == "" || counts[k] > counts[best] {
			best = k
		}
	}
	return best
}

// ---- inspect ----

type serviceInspectOptions struct {
	g *globalOptions
}

func newServiceInspectCmd(g *globalOptions) *cobra.Command {
	o := &serviceInspectOptions{g: g}
	return &cobra.Command{
		Use:   "inspect NAME|ID...",
		Short: "Show services in detail",
		Long: `Show one or more services in detail: a JSON array by default (as docker does),
or a readable summary with -o table. A service is named by its name, its ID or
a unique prefix of its ID.`,
		Example: `  warren service inspect web
  warren service inspect web api -o table
  warren service inspect web | jq '.[0].spec.env'`,
		Args: minArgs(1, "at least one service NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
}

func (o *serviceInspectOptions) run(cmd *cobra.Command, names []string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	var (
		services []*apiv1.Service
		errs     []error
	)
	for _, name := range names {
		resp, err := c.GetService(ctx, &apiv1.GetServiceRequest{NameOrId: name})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		services = append(services, resp.GetService())
	}
	return writeInspect(cmd.OutOrStdout(), o.g.outputOr(outputJSON) == outputJSON, services, serviceFields, errs)
}

// writeInspect writes what an inspect command found: a JSON array (asJSON),
// or each item's fields, a blank line between them; then it returns the
// errors of the items it did not find.
func writeInspect[T proto.Message](out io.Writer, asJSON bool, items []T, fields func(T) [][2]string, errs []error) error {
	if asJSON {
		if len(items) > 0 || len(errs) == 0 {
			if err := writeJSONList(out, items); err != nil {
				return err
			}
		}
		return errors.Join(errs...)
	}
	for i, it := range items {
		if i > 0 {
			fmt.Fprintln(out)
		}
		if err := writeFields(out, fields(it)); err != nil {
			return err
		}
	}
	return errors.Join(errs...)
}

// serviceFields is a service as `inspect -o table` shows it.
func serviceFields(s *apiv1.Service) [][2]string {
	spec := s.GetSpec()
	f := [][2]string{
		{"ID", s.GetId()},
		{"Name", spec.GetName()},
		{"Image", spec.GetImage()},
		{"Command", shellJoin(spec.GetCommand())},
		{"Args", shellJoin(spec.GetArgs())},
		{"Replicas", strconv.FormatUint(spec.GetReplicas(), 10)},
		{"Env", pairs(spec.GetEnv())},
		{"Labels", pairs(spec.GetLabels())},
		{"Constraints", strings.Join(spec.GetConstraints(), ", ")},
		{"Ports", strings.ReplaceAll(portsColumn(spec.GetPorts()), ",", ", ")},
		{"Limits", resourcesText(spec.GetLimits())},
		{"Reservations", resourcesText(spec.GetReservations())},
	}
	if rp := spec.GetRestartPolicy(); rp != nil {
		parts := []string{"condition " + enumText(rp.GetCondition(), "any")}
		if rp.GetDelay() != nil {
			parts = append(parts, "delay "+rp.GetDelay().AsDuration().String())
		}
		if rp.GetMaxAttempts() > 0 {
			parts = append(parts, fmt.Sprintf("at most %d attempts", rp.GetMaxAttempts()))
		}
		f = append(f, [2]string{"Restart", strings.Join(parts, ", ")})
	}
	if up := spec.GetUpdatePolicy(); up != nil {
		f = append(f, [2]string{"Update", policyText(up)})
	}
	if rp := spec.GetRollbackPolicy(); rp != nil {
		f = append(f, [2]string{"Rollback", policyText(rp)})
	}
	if st := updateStatusText(s.GetUpdateStatus()); st != "" {
		f = append(f, [2]string{"Update status", st})
	}
	if m := spec.GetMode(); m != apiv1.ServiceMode_SERVICE_MODE_UNSPECIFIED && m != apiv1.ServiceMode_SERVICE_MODE_REPLICATED {
		f = append(f, [2]string{"Mode", enumText(m, "")})
	}
	if spec.GetMaxConcurrent() > 0 {
		f = append(f, [2]string{"Max concurrent", strconv.FormatUint(spec.GetMaxConcurrent(), 10)})
	}
	if st := jobStatusText(s.GetJobStatus()); st != "" {
		f = append(f, [2]string{"Job status", st})
	}
	if hc := healthText(spec.GetHealthCheck()); hc != "" {
		f = append(f, [2]string{"Health check", hc})
	}
	stop := spec.GetStopSignal()
	if spec.GetStopGracePeriod() != nil {
		stop = strings.TrimSpace(stop + " then kill after " + spec.GetStopGracePeriod().AsDuration().String())
	}
	f = append(f,
		[2]string{"Stop", stop},
		[2]string{"Working dir", spec.GetWorkingDir()},
		[2]string{"User", spec.GetUser()},
		[2]string{"Version", strconv.FormatUint(s.GetVersion(), 10)},
		[2]string{"Created", timeText(s.GetCreatedAt())},
		[2]string{"Updated", timeText(s.GetUpdatedAt())},
	)
	return f
}

// policyText is an update or rollback policy for inspect.
func policyText(up *apiv1.UpdatePolicy) string {
	parallelism := "all"
	if up.GetParallelism() > 0 {
		parallelism = strconv.FormatUint(uint64(up.GetParallelism()), 10)
	}
	s := fmt.Sprintf("%s at a time, %s, on failure %s", parallelism, enumText(up.GetOrder(), "stop-first"), enumText(up.GetFailureAction(), "pause"))
	if m := up.GetMonitor(); m != nil {
		s += ", monitor " + m.AsDuration().String()
	}
	if r := up.GetMaxFailureRatio(); r > 0 {
		s += fmt.Sprintf(", max failure ratio %g", r)
	}
	return s
}

// shellJoin writes words as a shell command line, quoting those that need it,
// so that what `inspect -o table` shows can be given back to --args.
func shellJoin(words []string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_@%+=:,./-") == "" {
			quoted[i] = w
		} else {
			quoted[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(quoted, " ")
}

// pairs is a map as "K=V, K2=V2", sorted by key.
func pairs(m map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ", ")
}

// resourcesText is "1.5 CPUs, 512MiB"; empty when r sets nothing.
func resourcesText(r *apiv1.Resources) string {
	var parts []string
	if n := r.GetNanoCpus(); n > 0 {
		parts = append(parts, cpusText(n)+" CPUs")
	}
	if b := r.GetMemoryBytes(); b > 0 {
		parts = append(parts, sizeText(b))
	}
	return strings.Join(parts, ", ")
}

// cpusText is nano CPUs as a decimal: 1500000000 is "1.5".
func cpusText(nano int64) string {
	s := strconv.FormatInt(nano/1e9, 10)
	if frac := nano % 1e9; frac != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%09d", frac), "0")
	}
	return s
}

// sizeText is a byte count in the largest binary unit that divides it:
// 536870912 is "512MiB", 1000 is "1000B".
func sizeText(b int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b%u.size == 0 {
			return strconv.FormatInt(b/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(b, 10) + "B"
}

// ---- scale ----

type serviceScaleOptions struct {
	g    *globalOptions
	wait convergeOptions
}

func newServiceScaleCmd(g *globalOptions) *cobra.Command {
	o := &serviceScaleOptions{g: g}
	cmd := &cobra.Command{
		Use:   "scale NAME=REPLICAS...",
		Short: "Change the number of replicas of services",
		Long: `Set the number of replicas of one or more services, then wait until each one
converges, as "service create" does (--detach returns at once, --quiet prints
no progress, --timeout-converge sets how long to wait for each service).
Every argument is checked before any service is changed, and every service
is changed before the waiting starts.`,
		Example: `  warren service scale web=5
  warren service scale web=5 api=2
  warren service scale worker=0 --detach`,
		Args: minArgs(1, "at least one NAME=REPLICAS"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
	o.wait.addFlags(cmd.Flags())
	return cmd
}

// scaleTarget is one NAME=REPLICAS argument.
type scaleTarget struct {
	name     string
	replicas uint64
}

// parseScaleArgs checks every NAME=REPLICAS argument.
func parseScaleArgs(args []string) ([]scaleTarget, error) {
	targets := make([]scaleTarget, 0, len(args))
	for _, a := range args {
		name, n, ok := strings.Cut(a, "=")
		if !ok || name == "" {
			return nil, usageErrorf("invalid argument %q: expected NAME=REPLICAS, e.g. web=3", a)
		}
		var replicas uint64
		if err := newUintValue(&replicas, 0).Set(n); err != nil {
			return nil, usageErrorf("invalid replicas in %q: %v", a, err)
		}
		targets = append(targets, scaleTarget{name: name, replicas: replicas})
	}
	return targets, nil
}

func (o *serviceScaleOptions) run(cmd *cobra.Command, args []string) error {
	targets, err := parseScaleArgs(args)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	c, w, done, err := o.wait.connect(ctx, o.g)
	if err != nil {
		return err
	}
	defer done()
	// Change them all first: they converge together, and an interrupted
	// wait leaves no service unchanged.
	var (
		errs   []error
		scaled []*apiv1.Service
	)
	for _, t := range targets {
		resp, err := c.ScaleService(ctx, &apiv1.ScaleServiceRequest{NameOrId: t.name, Replicas: t.replicas})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		scaled = append(scaled, resp.GetService())
	}
	for _, svc := range scaled {
		fmt.Fprintf(cmd.OutOrStdout(), "%s scaled to %d\n", svc.GetSpec().GetName(), svc.GetSpec().GetReplicas())
		if err := o.wait.wait(cmd, c, w, svc, "scaled"); err != nil {
			var reported *reportedError
			if errors.As(err, &reported) {
				return err // interrupted: that was said
			}
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// ---- rm ----

type serviceRemoveOptions struct {
	g *globalOptions
}

func newServiceRemoveCmd(g *globalOptions) *cobra.Command {
	o := &serviceRemoveOptions{g: g}
	return &cobra.Command{
		Use:     "rm NAME|ID...",
		Aliases: []string{"remove"},
		Short:   "Remove services",
		Long: `Remove one or more services; their tasks are stopped. Each removed service's
name or ID is printed as given; a service that cannot be removed is reported
and the others are still removed.`,
		Example: `  warren service rm web
  warren service rm web api`,
		Args: minArgs(1, "at least one service NAME or ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args)
		},
	}
}

func (o *serviceRemoveOptions) run(cmd *cobra.Command, names []string) error {
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	var errs []error
	for _, name := range names {
		if _, err := c.RemoveService(ctx, &apiv1.RemoveServiceRequest{NameOrId: name}); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), name)
	}
	return errors.Join(errs...)
}
