package containerd

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestLogEntries writes output through entryWriter and reads it back
// through entryReader in pieces of every size: the output comes back
// whole, lines before since are left out, and timestamps go in front of
// each line (not of the pieces of a long one).
func TestLogEntries(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 20, 0, 0, 0, time.UTC)
	var file bytes.Buffer
	clock := t0
	w := &entryWriter{w: &file, now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	long := strings.Repeat("x", loggerLine+10)
	w.copy("stdout", strings.NewReader("one\ntwo\n"))    // t0+1s, +2s
	w.copy("stderr", strings.NewReader("err\n"))         // +3s
	w.copy("stdout", strings.NewReader(long+"\nno-end")) // +4s (P), +5s (F), +6s (P)

	at := func(s int) string { return t0.Add(time.Duration(s)*time.Second).Format(time.RFC3339Nano) + " " }
	tests := []struct {
		name       string
		since      time.Time
		timestamps bool
		stdout     string
		stderr     string
	}{
		{"everything", time.Time{}, false, "one\ntwo\n" + long + "\nno-end", "err\n"},
		{"since the second line", t0.Add(2 * time.Second), false, "two\n" + long + "\nno-end", "err\n"},
		{"since after stderr's line", t0.Add(3*time.Second + 1), false, long + "\nno-end", ""},
		{"timestamps", time.Time{}, true, at(1) + "one\n" + at(2) + "two\n" + at(4) + long + "\n" + at(6) + "no-end", at(3) + "err\n"},
	}
	for _, tt := range tests {
		for _, piece := range []int{1, 7, 4096, file.Len()} {
			r := &entryReader{since: tt.since, timestamps: tt.timestamps}
			var stdout, stderr strings.Builder
			data := file.Bytes()
			for len(data) > 0 {
				n := min(piece, len(data))
				for _, p := range r.decode(data[:n]) {
					if p.stream == "stderr" {
						stderr.Write(p.data)
					} else {
						stdout.Write(p.data)
					}
				}
				data = data[n:]
			}
			if stdout.String() != tt.stdout || stderr.String() != tt.stderr {
				t.Errorf("%s, read %d bytes at a time:\nstdout %.80q\nwant   %.80q\nstderr %q, want %q", tt.name, piece, stdout.String(), tt.stdout, stderr.String(), tt.stderr)
			}
		}
	}
}
