package consumer

import (
	"context"
	"sync"
	"time"
)

// Gate is a hold shared by all workers: after Kombo announces when it will
// accept calls again (Retry-After, retry-after-ms, ratelimit-reset), no
// worker starts a call before that time. HoldUntil sets the hold, Wait
// blocks a worker until it ends. The zero hold is open.
//
// A Gate is safe for concurrent use and runs no goroutines of its own.
// Create one with NewGate.
type Gate struct {
	now func() time.Time

	mu    sync.Mutex
	until time.Time
}

// NewGate returns an open gate that reads the time from now; nil now means
// time.Now. Wait sleeps with the runtime's timers for Until minus now, and
// re-checks now when they fire, so now should advance with real time (a
// fixed clock suits tests of Open and Until only).
func NewGate(now func() time.Time) *Gate {
	if now == nil {
		now = time.Now
	}
	return &Gate{now: now}
}

// HoldUntil extends the hold to t if t is later than the current end; it
// never shortens the hold. A zero t has no effect.
func (g *Gate) HoldUntil(t time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t.After(g.until) {
		g.until = t
	}
}

// Until returns the end of the current hold, or the zero time if the gate
// was never held. It may be in the past.
func (g *Gate) Until() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.until
}

// Open reports whether the hold has ended: now is at or after Until.
func (g *Gate) Open() bool {
	return !g.now().Before(g.Until())
}

// Wait returns nil at once when the gate is open, even if ctx is done.
// Otherwise it blocks until the hold ends, waiting again if the hold was
// extended meanwhile, and returns nil; or until ctx is done, and returns
// ctx.Err().
func (g *Gate) Wait(ctx context.Context) error {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		d := g.Until().Sub(g.now())
		if d <= 0 {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
