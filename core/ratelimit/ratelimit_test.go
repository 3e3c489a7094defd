package ratelimit_test

import (
	"testing"
	"time"

	"github.com/warrenorch/warren/core/ratelimit"
)

func TestKeyed(t *testing.T) {
	now := time.Unix(0, 0)
	k := ratelimit.NewKeyed(0.5, 3, func() time.Time { return now }) // one token every 2 s
	steps := []struct {
		advance time.Duration
		op      string // allow, empty, take
		key     string
		want    bool
	}{
		{0, "allow", "a", true},
		{0, "allow", "a", true},
		{0, "take", "a", false},
		{0, "empty", "a", true},
		{0, "allow", "a", false},
		{0, "allow", "b", true}, // keys are apart
		{time.Second, "allow", "a", false},
		{time.Second, "empty", "a", false}, // 2 s: one token back
		{0, "allow", "a", true},
		{time.Hour, "allow", "a", true}, // refills up to the burst only
		{0, "allow", "a", true},
		{0, "allow", "a", true},
		{0, "allow", "a", false},
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		var got bool
		switch s.op {
		case "allow":
			got = k.Allow(s.key)
		case "empty":
			got = k.Empty(s.key)
		case "take":
			k.Take(s.key)
			continue
		}
		if got != s.want {
			t.Errorf("step %d: %s(%q) = %v, want %v", i, s.op, s.key, got, s.want)
		}
	}
}

func TestSometimes(t *testing.T) {
	s := ratelimit.Sometimes{Every: time.Hour}
	var ran []int
	for range 5 {
		s.Do(func(suppressed int) { ran = append(ran, suppressed) })
	}
	if len(ran) != 1 || ran[0] != 0 {
		t.Errorf("ran %v, want once with 0 held back", ran)
	}
	s.Every = 0
	s.Do(func(suppressed int) { ran = append(ran, suppressed) })
	if len(ran) != 2 || ran[1] != 4 {
		t.Errorf("ran %v, want a second run told of 4 held back", ran)
	}
}
