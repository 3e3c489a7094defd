package main

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/spf13/cobra"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// eventKinds are the object kinds events are about.
var eventKinds = []string{"service", "task", "node", "secret", "volume", "network"}

type eventsOptions struct {
	g     *globalOptions
	kinds []string
}

func newEventsCmd(g *globalOptions) *cobra.Command {
	o := &eventsOptions{g: g}
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream cluster changes as they happen",
		Long: `Print each change to the cluster state as it is applied, from now on, until
interrupted (Ctrl-C). One line per event: time (UTC), kind, action, the object's
name and ID, and the Raft index that made the change. -o json prints each
event, with the object as it is after the change, as one JSON line.`,
		Example: `  warren events
  warren events --kind service --kind task
  warren events -o json | jq -c 'select(.action == "EVENT_ACTION_DELETED")'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd)
		},
	}
	cmd.Flags().StringArrayVar(&o.kinds, "kind", nil, "only events about this `kind`: "+orList(eventKinds)+" (repeatable)")
	return cmd
}

func (o *eventsOptions) run(cmd *cobra.Command) error {
	for _, k := range o.kinds {
		if !slices.Contains(eventKinds, k) {
			return usageErrorf("invalid --kind %q: use %s", k, orList(eventKinds))
		}
	}
	ctx := cmd.Context()
	c, err := o.g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()

	stream, err := c.Events(ctx, &apiv1.EventsRequest{Kinds: o.kinds})
	if err != nil {
		return err
	}
	asJSON := o.g.outputOr(outputTable) == outputJSON
	out := cmd.OutOrStdout()
	for {
		ev, err := stream.Recv()
		switch {
		case errors.Is(err, io.EOF):
			return nil // the agent ended the stream
		case err != nil && ctx.Err() != nil:
			return nil // interrupted: the normal way to stop
		case err != nil:
			return err
		}
		if asJSON {
			err = writeJSONLine(out, ev)
		} else {
			_, err = fmt.Fprintln(out, eventLine(ev))
		}
		if err != nil {
			return err
		}
	}
}

// eventLine is an event as one line of text:
//
//	2025-05-01T10:00:00.000Z service created web (id 0123456789ab) index=42
func eventLine(ev *apiv1.Event) string {
	subject := ev.GetName()
	switch {
	case subject == "":
		subject = ev.GetId()
	case ev.GetId() != "":
		subject += " (id " + shortID(ev.GetId()) + ")"
	}
	return fmt.Sprintf("%s %s %s %s index=%d",
		timeText(ev.GetTime()), cell(ev.GetKind()), enumText(ev.GetAction(), "-"), cell(subject), ev.GetIndex())
}
