package main

import (
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// The settings below are flags `service create` and `service update` share:
// each adds the same flags to both and makes the spec's value of the old
// one (nil on create) and the flags given, so that a setting is parsed and
// checked in one place.

// resourceOptions are --cpus, --memory, --reserve-cpus and --reserve-memory.
type resourceOptions struct {
	cpus, memory               int64 // nano CPUs, bytes
	reserveCPUs, reserveMemory int64
}

// resourceFlags are the flag names resourceOptions adds.
var resourceFlags = []string{"cpus", "memory", "reserve-cpus", "reserve-memory"}

func (o *resourceOptions) addFlags(f *pflag.FlagSet) {
	f.Var(&cpuValue{p: &o.cpus}, "cpus", "CPU limit, e.g. 1.5 (0: none)")
	f.Var(&sizeValue{p: &o.memory}, "memory", "memory limit, e.g. 512MiB (0: none)")
	f.Var(&cpuValue{p: &o.reserveCPUs}, "reserve-cpus", "CPUs reserved on the node for each task, e.g. 0.5 (0: none)")
	f.Var(&sizeValue{p: &o.reserveMemory}, "reserve-memory", "memory reserved on the node for each task, e.g. 256MiB (0: none)")
}

// apply sets the limits and reservations of s that the flags in f set.
func (o *resourceOptions) apply(f *pflag.FlagSet, s *apiv1.ServiceSpec) {
	s.Limits = editResources(s.GetLimits(), f, "cpus", o.cpus, "memory", o.memory)
	s.Reservations = editResources(s.GetReservations(), f, "reserve-cpus", o.reserveCPUs, "reserve-memory", o.reserveMemory)
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

// restartOptions are --restart-condition, --restart-delay and
// --restart-max-attempts.
type restartOptions struct {
	condition   string
	delay       time.Duration
	maxAttempts uint32
}

// restartFlags are the flag names restartOptions adds.
var restartFlags = []string{"restart-condition", "restart-delay", "restart-max-attempts"}

var restartConditions = map[string]apiv1.RestartPolicy_Condition{
	"any":        apiv1.RestartPolicy_CONDITION_ANY,
	"on-failure": apiv1.RestartPolicy_CONDITION_ON_FAILURE,
	"none":       apiv1.RestartPolicy_CONDITION_NONE,
}

func (o *restartOptions) addFlags(f *pflag.FlagSet) {
	f.Var(&choiceValue{p: &o.condition, choices: []string{"any", "on-failure", "none"}}, "restart-condition", "when to replace a task that exited")
	f.DurationVar(&o.delay, "restart-delay", 0, "delay before a replacement starts, doubling on repeated failures (e.g. 5s)")
	f.Var(newUintValue(&o.maxAttempts, 0), "restart-max-attempts", "give up after this many restarts (0: never)")
}

// policy returns old (nil on create) changed by the flags set in f, or old
// itself when none is set.
func (o *restartOptions) policy(f *pflag.FlagSet, old *apiv1.RestartPolicy) (*apiv1.RestartPolicy, error) {
	if !f.Changed("restart-condition") && !f.Changed("restart-delay") && !f.Changed("restart-max-attempts") {
		return old, nil
	}
	rp := &apiv1.RestartPolicy{}
	if old != nil {
		rp = proto.CloneOf(old)
	}
	if f.Changed("restart-condition") {
		rp.Condition = restartConditions[o.condition]
	}
	if f.Changed("restart-delay") {
		if o.delay < 0 {
			return nil, usageErrorf("invalid --restart-delay %s: cannot be negative", o.delay)
		}
		rp.Delay = durationpb.New(o.delay)
	}
	if f.Changed("restart-max-attempts") {
		rp.MaxAttempts = o.maxAttempts
	}
	return rp, nil
}

// stopOptions are --stop-signal and --stop-grace-period.
type stopOptions struct {
	signal      string
	gracePeriod time.Duration
}

// stopFlags are the flag names stopOptions adds.
var stopFlags = []string{"stop-signal", "stop-grace-period"}

func (o *stopOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.signal, "stop-signal", "", "signal that stops a task (e.g. SIGTERM)")
	f.DurationVar(&o.gracePeriod, "stop-grace-period", 0, "time between the stop signal and SIGKILL (e.g. 10s)")
}

// edit checks the flags set in f and returns the change they make to a
// spec's stop settings (nothing when none is set).
func (o *stopOptions) edit(f *pflag.FlagSet) (func(*apiv1.ServiceSpec), error) {
	sig := ""
	if f.Changed("stop-signal") {
		var err error
		if sig, err = parseSignal(o.signal); err != nil {
			return nil, usageErrorf("invalid --stop-signal %q: %v", o.signal, err)
		}
	}
	if f.Changed("stop-grace-period") && o.gracePeriod < 0 {
		return nil, usageErrorf("invalid --stop-grace-period %s: cannot be negative", o.gracePeriod)
	}
	return func(s *apiv1.ServiceSpec) {
		if f.Changed("stop-signal") {
			s.StopSignal = sig
		}
		if f.Changed("stop-grace-period") {
			s.StopGracePeriod = durationpb.New(o.gracePeriod)
		}
	}, nil
}
