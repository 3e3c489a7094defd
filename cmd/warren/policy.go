package main

import (
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// failureActions are the values of --update-failure-action and
// --rollback-failure-action.
var failureActions = map[string]apiv1.UpdatePolicy_FailureAction{
	"pause":    apiv1.UpdatePolicy_FAILURE_ACTION_PAUSE,
	"continue": apiv1.UpdatePolicy_FAILURE_ACTION_CONTINUE,
	"rollback": apiv1.UpdatePolicy_FAILURE_ACTION_ROLLBACK,
}

// policyOptions are the --update-* or --rollback-* flags (prefix) of
// `service create` and `service update`.
type policyOptions struct {
	prefix        string
	parallelism   uint32
	order         string
	failureAction string
	monitor       time.Duration
	delay         time.Duration
	maxFailure    float64
	// canary and autoPromote: --update-canary and --update-auto-promote
	// (update policy only).
	canary      int
	autoPromote bool
}

// flagNames are the flags the options add.
func (o *policyOptions) flagNames() []string {
	var out []string
	names := []string{"parallelism", "delay", "order", "failure-action", "monitor", "max-failure-ratio"}
	if o.prefix == "update" {
		names = append(names, "canary", "auto-promote")
	}
	for _, n := range names {
		out = append(out, o.prefix+"-"+n)
	}
	return out
}

func (o *policyOptions) addFlags(f *pflag.FlagSet) {
	what := "update"
	actions := []string{"pause", "continue", "rollback"}
	if o.prefix == "rollback" {
		what = "rollback"
		actions = actions[:2]
	}
	f.Var(newUintValue(&o.parallelism, 0), o.prefix+"-parallelism", "tasks replaced at once on "+what+" (0: all)")
	f.DurationVar(&o.delay, o.prefix+"-delay", 0, "on "+what+", wait this long after a batch's tasks serve before the next batch (default 0s)")
	f.Var(&choiceValue{p: &o.order, choices: []string{"stop-first", "start-first"}}, o.prefix+"-order", "on "+what+", stop the old task before starting the new one, or the reverse")
	f.Var(&choiceValue{p: &o.failureAction, choices: actions}, o.prefix+"-failure-action", "what a failed "+what+" does (default pause)")
	f.DurationVar(&o.monitor, o.prefix+"-monitor", 0, "how long after the "+what+" a failed task still counts as its failure (default 5s)")
	f.Float64Var(&o.maxFailure, o.prefix+"-max-failure-ratio", 0, "share of the replicas that may fail before the failure action (0-1, default 0)")
	if o.prefix == "update" {
		f.IntVar(&o.canary, "update-canary", 0, "start this many tasks of the new spec beside the old ones and wait for 'warren service promote' before the rest (0: none)")
		f.BoolVar(&o.autoPromote, "update-auto-promote", false, "promote the canaries once they have served through the monitor window")
	}
}

// policy returns old (nil on create) changed by the flags set in f, or old
// itself when none is set.
func (o *policyOptions) policy(f *pflag.FlagSet, old *apiv1.UpdatePolicy) (*apiv1.UpdatePolicy, error) {
	changed := false
	for _, n := range o.flagNames() {
		changed = changed || f.Changed(n)
	}
	if !changed {
		return old, nil
	}
	p := &apiv1.UpdatePolicy{}
	if old != nil {
		p = proto.CloneOf(old)
	}
	if f.Changed(o.prefix + "-parallelism") {
		p.Parallelism = o.parallelism
	}
	if f.Changed(o.prefix + "-delay") {
		if o.delay < 0 {
			return nil, usageErrorf("invalid --%s-delay %s: must not be negative", o.prefix, o.delay)
		}
		p.Delay = durationpb.New(o.delay)
	}
	if f.Changed(o.prefix + "-order") {
		p.Order = updateOrders[o.order]
	}
	if f.Changed(o.prefix + "-failure-action") {
		p.FailureAction = failureActions[o.failureAction]
	}
	if f.Changed(o.prefix + "-monitor") {
		if o.monitor <= 0 {
			return nil, usageErrorf("invalid --%s-monitor %s: must be positive", o.prefix, o.monitor)
		}
		p.Monitor = durationpb.New(o.monitor)
	}
	if f.Changed(o.prefix + "-max-failure-ratio") {
		if o.maxFailure < 0 || o.maxFailure > 1 {
			return nil, usageErrorf("invalid --%s-max-failure-ratio %v: must be between 0 and 1", o.prefix, o.maxFailure)
		}
		p.MaxFailureRatio = float32(o.maxFailure)
	}
	if f.Changed("update-canary") {
		if o.canary < 0 {
			return nil, usageErrorf("invalid --update-canary %d: must be 0 or more", o.canary)
		}
		p.Canary = uint32(o.canary)
	}
	if f.Changed("update-auto-promote") {
		p.AutoPromote = o.autoPromote
	}
	return p, nil
}
