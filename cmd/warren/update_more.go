package main

import (
	"slices"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// updateMoreOptions are the flags `service update` shares with create's
// settings beyond image, args, env, labels and network.
type updateMoreOptions struct {
	constraintAdd   []string
	constraintRm    []string
	workdir         string
	user            string
	stopSignal      string
	stopGracePeriod time.Duration
	cpus, memory    int64
	reserveCPUs     int64
	reserveMemory   int64
	restartCond     string
	restartDelay    time.Duration
	restartMax      uint32
}

// updateMoreFlags are the flag names updateMoreOptions adds.
var updateMoreFlags = []string{"constraint-add", "constraint-rm", "workdir", "user", "stop-signal", "stop-grace-period",
	"cpus", "memory", "reserve-cpus", "reserve-memory", "restart-condition", "restart-delay", "restart-max-attempts"}

func (o *updateMoreOptions) addFlags(f *pflag.FlagSet) {
	f.StringArrayVar(&o.constraintAdd, "constraint-add", nil, "add a placement `constraint` (repeatable)")
	f.StringArrayVar(&o.constraintRm, "constraint-rm", nil, "remove a placement `constraint` (repeatable)")
	f.StringVarP(&o.workdir, "workdir", "w", "", "new working directory inside the container (\"\": the image's)")
	f.StringVarP(&o.user, "user", "u", "", "new user to run as (\"\": the image's)")
	f.StringVar(&o.stopSignal, "stop-signal", "", "new stop signal")
	f.DurationVar(&o.stopGracePeriod, "stop-grace-period", 0, "new time between the stop signal and SIGKILL")
	f.Var(&cpuValue{p: &o.cpus}, "cpus", "new CPU limit (0: none)")
	f.Var(&sizeValue{p: &o.memory}, "memory", "new memory limit (0: none)")
	f.Var(&cpuValue{p: &o.reserveCPUs}, "reserve-cpus", "new CPU reservation (0: none)")
	f.Var(&sizeValue{p: &o.reserveMemory}, "reserve-memory", "new memory reservation (0: none)")
	f.Var(&choiceValue{p: &o.restartCond, choices: []string{"any", "on-failure", "none"}}, "restart-condition", "new restart condition")
	f.DurationVar(&o.restartDelay, "restart-delay", 0, "new restart delay")
	f.Var(newUintValue(&o.restartMax, 0), "restart-max-attempts", "new restart attempts limit (0: none)")
}

// edit checks the flags set in f and returns the change they make to a
// spec, or nil when none is set.
func (o *updateMoreOptions) edit(f *pflag.FlagSet) (func(*apiv1.ServiceSpec), error) {
	if !slices.ContainsFunc(updateMoreFlags, f.Changed) {
		return nil, nil
	}
	for _, c := range o.constraintAdd {
		if err := checkConstraint(c); err != nil {
			return nil, &usageError{msg: err.Error()}
		}
	}
	sig := ""
	if f.Changed("stop-signal") {
		var err error
		if sig, err = parseSignal(o.stopSignal); err != nil {
			return nil, usageErrorf("invalid --stop-signal %q: %v", o.stopSignal, err)
		}
	}
	if o.stopGracePeriod < 0 || o.restartDelay < 0 {
		return nil, usageErrorf("--stop-grace-period and --restart-delay cannot be negative")
	}
	return func(s *apiv1.ServiceSpec) {
		if len(o.constraintRm) > 0 || len(o.constraintAdd) > 0 {
			var cs []string
			for _, c := range s.GetConstraints() {
				if !slices.Contains(o.constraintRm, c) {
					cs = append(cs, c)
				}
			}
			for _, c := range o.constraintAdd {
				if !slices.Contains(cs, c) {
					cs = append(cs, c)
				}
			}
			s.Constraints = cs
		}
		if f.Changed("workdir") {
			s.WorkingDir = o.workdir
		}
		if f.Changed("user") {
			s.User = o.user
		}
		if f.Changed("stop-signal") {
			s.StopSignal = sig
		}
		if f.Changed("stop-grace-period") {
			s.StopGracePeriod = durationpb.New(o.stopGracePeriod)
		}
		s.Limits = editResources(s.GetLimits(), f, "cpus", o.cpus, "memory", o.memory)
		s.Reservations = editResources(s.GetReservations(), f, "reserve-cpus", o.reserveCPUs, "reserve-memory", o.reserveMemory)
		if f.Changed("restart-condition") || f.Changed("restart-delay") || f.Changed("restart-max-attempts") {
			rp := &apiv1.RestartPolicy{}
			if s.GetRestartPolicy() != nil {
				rp = proto.CloneOf(s.GetRestartPolicy())
			}
			if f.Changed("restart-condition") {
				rp.Condition = restartConditions[o.restartCond]
			}
			if f.Changed("restart-delay") {
				rp.Delay = durationpb.New(o.restartDelay)
			}
			if f.Changed("restart-max-attempts") {
				rp.MaxAttempts = o.restartMax
			}
			s.RestartPolicy = rp
		}
	}, nil
}

// editResources sets the CPU and memory of r that the flags named cpuFlag
// and memFlag set; nil when both end up 0.
func editResources(r *apiv1.Resources, f *pflag.FlagSet, cpuFlag string, cpus int64, memFlag string, mem int64) *apiv1.Resources {
	if !f.Changed(cpuFlag) && !f.Changed(memFlag) {
		return r
	}
	out := &apiv1.Resources{}
	if r != nil {
		out = proto.CloneOf(r)
	}
	if f.Changed(cpuFlag) {
		out.NanoCpus = cpus
	}
	if f.Changed(memFlag) {
		out.MemoryBytes = mem
	}
	if out.GetNanoCpus() == 0 && out.GetMemoryBytes() == 0 {
		return nil
	}
	return out
}
