package dispatcher

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/fsm"
)

// ConditionRuntime is the node condition a worker reports while its
// runtime (the runtime plugin, or what the plugin drives, such as
// containerd) does not answer.
const ConditionRuntime = "runtime"

// ConditionPorts is the node condition a worker reports while it cannot
// publish a service's port because a process of the node holds it; the
// message names the ports.
const ConditionPorts = "ports"

// workerConditions are the condition types a worker reports on its
// heartbeats; the others (such as the leader's "assignment") are not the
// worker's to set or clear.
var workerConditions = []string{ConditionRuntime, ConditionPorts}

// commitConditions makes the worker-reported conditions of node nodeID the
// ones a heartbeat carried, committing only when they differ from what the
// state holds: a heartbeat that changes nothing writes nothing.
func (d *Dispatcher) commitConditions(ctx context.Context, nodeID string, reported []*apiv1.NodeCondition) {
	err := d.changeConditions(ctx, nodeID, func(old []*apiv1.NodeCondition) ([]*apiv1.NodeCondition, bool) {
		return mergeConditions(old, reported)
	})
	if err != nil && !errors.Is(err, fsm.ErrNodeNotFound) {
		// The next heartbeat tries again: the state still differs.
		d.log.Error("recording node conditions", "id", nodeID, "error", err)
	}
}

// mergeConditions returns the conditions of a node that has old when its
// worker reports reported: old's conditions of the types workers do not
// report, then each reported condition of a worker type (the first of a
// type; since kept from old while the message stays the same). changed
// says whether that differs from old in anything but order.
func mergeConditions(old, reported []*apiv1.NodeCondition) (next []*apiv1.NodeCondition, changed bool) {
	oldOf := map[string]*apiv1.NodeCondition{}
	for _, c := range old {
		if slices.Contains(workerConditions, c.GetType()) {
			oldOf[c.GetType()] = c
		} else {
			next = append(next, c)
		}
	}
	seen := map[string]bool{}
	for _, c := range reported {
		typ := c.GetType()
		if !slices.Contains(workerConditions, typ) || seen[typ] {
			continue
		}
		seen[typ] = true
		if o := oldOf[typ]; o != nil && o.GetMessage() == c.GetMessage() {
			next = append(next, o)
			continue
		}
		changed = true
		c = proto.CloneOf(c)
		if c.GetSince() == nil {
			c.Since = timestamppb.Now()
		}
		next = append(next, c)
	}
	if len(seen) != len(oldOf) {
		changed = true // a reported type went away
	}
	return next, changed
}

// conditionTypes lists the types of cs, for logs.
func conditionTypes(cs []*apiv1.NodeCondition) []string {
	out := make([]string, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.GetType()+": "+c.GetMessage())
	}
	return out
}
