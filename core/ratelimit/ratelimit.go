// Package ratelimit holds the two small limiters Warren's network edges use:
// a token bucket per key (a source address, say) and a sampler that lets a
// log line through at most once per interval, counting what it held back.
package ratelimit

import (
	"sync"
	"time"
)

// maxKeys bounds how many keys a Keyed remembers; past it, the buckets that
// have refilled (they hold no state worth keeping) are dropped first.
const maxKeys = 4096

// Keyed is a token bucket per key: each key may take burst tokens at once
// and gets perSecond tokens back each second. Its methods are safe for
// concurrent use.
type Keyed struct {
	perSecond float64
	burst     float64
	now       func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

// NewKeyed returns a Keyed refilling perSecond tokens a second up to burst.
// now is the clock; nil means time.Now.
func NewKeyed(perSecond float64, burst int, now func() time.Time) *Keyed {
	if now == nil {
		now = time.Now
	}
	return &Keyed{perSecond: perSecond, burst: float64(max(burst, 1)), now: now, buckets: map[string]*bucket{}}
}

// Allow takes one token from key's bucket and reports whether there was one.
func (k *Keyed) Allow(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	b := k.refill(key)
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Empty reports whether key's bucket has no whole token, taking none.
func (k *Keyed) Empty(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.refill(key).tokens < 1
}

// Take takes one token from key's bucket if it has one: for charging what
// turned out to cost (a failure) after the fact.
func (k *Keyed) Take(key string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if b := k.refill(key); b.tokens >= 1 {
		b.tokens--
	}
}

// refill returns key's bucket, topped up for the time since it was last
// used. k.mu is held.
func (k *Keyed) refill(key string) *bucket {
	now := k.now()
	b, ok := k.buckets[key]
	if !ok {
		if len(k.buckets) >= maxKeys {
			k.sweep(now)
		}
		b = &bucket{tokens: k.burst, last: now}
		k.buckets[key] = b
	}
	b.tokens = min(k.burst, b.tokens+now.Sub(b.last).Seconds()*k.perSecond)
	b.last = now
	return b
}

// sweep drops the buckets that are full again; if none is, it drops half
// of them (an attacker with many keys then gains at most a fresh burst).
func (k *Keyed) sweep(now time.Time) {
	for key, b := range k.buckets {
		if b.tokens+now.Sub(b.last).Seconds()*k.perSecond >= k.burst {
			delete(k.buckets, key)
		}
	}
	for key := range k.buckets {
		if len(k.buckets) < maxKeys/2 {
			break
		}
		delete(k.buckets, key)
	}
}

// Sometimes lets an action (a log line) run at most once per Every,
// telling it how many were held back since the last one ran. The zero value
// with Every set is ready; its methods are safe for concurrent use.
type Sometimes struct {
	// Every is the least time between two runs.
	Every time.Duration

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// Do runs f now if Every has passed since the last run, else counts it.
func (s *Sometimes) Do(f func(suppressed int)) {
	s.mu.Lock()
	now := time.Now()
	if !s.last.IsZero() && now.Sub(s.last) < s.Every {
		s.suppressed++
		s.mu.Unlock()
		return
	}
	n := s.suppressed
	s.last, s.suppressed = now, 0
	s.mu.Unlock()
	f(n)
}
