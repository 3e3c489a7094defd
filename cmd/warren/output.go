package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// shortIDLen is how much of an ID tables show, as docker does.
const shortIDLen = 12

// writeTable writes header and rows as space-aligned columns.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range rows {
		cells := make([]string, len(row))
		for i, c := range row {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// writeFields writes "Key:  value" lines, aligned.
func writeFields(w io.Writer, fields [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], cell(f[1]))
	}
	return tw.Flush()
}

// cell keeps a value on one table cell: tabs and line breaks become spaces,
// and an empty value shows as "-".
func cell(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return s
}

// truncate shortens s to at most n runes, marking the cut with "…".
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// shortID is the first shortIDLen characters of id.
func shortID(id string) string {
	if len(id) > shortIDLen {
		return id[:shortIDLen]
	}
	return id
}

// jsonOptions is how protos become JSON: field names as in the .proto, unset
// fields left out.
var jsonOptions = protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false}

// writeJSON writes m as indented JSON. protojson varies its whitespace on
// purpose, so the output goes through encoding/json to be the same each time.
func writeJSON(w io.Writer, m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s as JSON: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	return writeIndented(w, b)
}

// writeJSONList writes msgs as an indented JSON array ([] when empty).
func writeJSONList[M proto.Message](w io.Writer, msgs []M) error {
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, m := range msgs {
		if i > 0 {
			buf.WriteByte(',')
		}
		b, err := jsonOptions.Marshal(m)
		if err != nil {
			return fmt.Errorf("encoding %s as JSON: %w", m.ProtoReflect().Descriptor().Name(), err)
		}
		buf.Write(b)
	}
	buf.WriteByte(']')
	return writeIndented(w, buf.Bytes())
}

// writeJSONLine writes m as JSON on one line, for streams.
func writeJSONLine(w io.Writer, m proto.Message) error {
	b, err := jsonOptions.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s as JSON: %w", m.ProtoReflect().Descriptor().Name(), err)
	}
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return fmt.Errorf("compacting JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

func writeIndented(w io.Writer, b []byte) error {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return fmt.Errorf("indenting JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err := w.Write(out.Bytes())
	return err
}

// enumText is an enum value as a table shows it: TASK_STATE_RUNNING is
// "running", CONDITION_ON_FAILURE "on-failure". The zero value gives zero,
// so that each caller says what "unspecified" means for its column.
func enumText(e protoreflect.Enum, zero string) string {
	values := e.Descriptor().Values()
	if e.Number() == 0 {
		return zero
	}
	v := values.ByNumber(e.Number())
	if v == nil {
		return fmt.Sprint(int32(e.Number())) // from a newer agent
	}
	prefix := ""
	if unspecified := values.ByNumber(0); unspecified != nil {
		prefix = strings.TrimSuffix(string(unspecified.Name()), "UNSPECIFIED")
	}
	name := strings.TrimPrefix(string(v.Name()), prefix)
	return strings.ReplaceAll(strings.ToLower(name), "_", "-")
}

// age says how long ago ts was, as "5 minutes"; "-" when ts is unset.
func age(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	d := now.Sub(ts.AsTime())
	unit := func(n int64, name string) string {
		if n == 1 {
			return "1 " + name
		}
		return fmt.Sprintf("%d %ss", n, name)
	}
	const day = 24 * time.Hour
	switch {
	case d < time.Second: // and clocks that disagree
		return "less than a second"
	case d < time.Minute:
		return unit(int64(d/time.Second), "second")
	case d < time.Hour:
		return unit(int64(d/time.Minute), "minute")
	case d < 2*day:
		return unit(int64(d/time.Hour), "hour")
	case d < 14*day:
		return unit(int64(d/day), "day")
	case d < 60*day:
		return unit(int64(d/(7*day)), "week")
	case d < 365*day:
		return unit(int64(d/(30*day)), "month")
	}
	return unit(int64(d/(365*day)), "year")
}

// ago is age followed by " ago", or "-".
func ago(ts *timestamppb.Timestamp, now time.Time) string {
	if ts == nil {
		return "-"
	}
	return age(ts, now) + " ago"
}

// timeText is ts in UTC, to the millisecond, or "-".
func timeText(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return "-"
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z")
}
