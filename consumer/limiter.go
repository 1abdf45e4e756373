package consumer

import (
	"container/list"
	"context"
	"math"
	"sync"
)

// limiterDecrease is the multiplicative decrease applied to the cap when
// Kombo answers PLATFORM.CONCURRENCY_LIMIT_EXCEEDED.
const limiterDecrease = 0.7

// Outcome is what a call reports to Release, so that the Limiter can adapt
// its cap. The zero Outcome is OutcomeOther: a forgotten outcome changes
// nothing.
type Outcome int

const (
	// OutcomeOther is any answer that says nothing about Kombo's
	// concurrency (other errors, a rate limit, a transport failure): the
	// cap does not change.
	OutcomeOther Outcome = iota
	// OutcomeSuccess is an answer Kombo processed (200, or an error such
	// as PLATFORM.INTEGRATION_NOT_FOUND): the cap may grow.
	OutcomeSuccess
	// OutcomeConcurrencyLimited is PLATFORM.CONCURRENCY_LIMIT_EXCEEDED:
	// the cap shrinks, at most once per window.
	OutcomeConcurrencyLimited
)

// String returns a short lowercase name for o, usable as a metric label.
func (o Outcome) String() string {
	switch o {
	case OutcomeSuccess:
		return "success"
	case OutcomeConcurrencyLimited:
		return "concurrency_limited"
	case OutcomeOther:
		return "other"
	default:
		return "unknown"
	}
}

// Ticket is the permission for one call, returned by Acquire and handed
// back to Release exactly once. The zero Ticket is not a permission:
// releasing it has no effect, and so has releasing a Ticket a second time or
// to another Limiter.
type Ticket struct {
	c *limiterCall
}

// limiterCall is the Limiter's record of one acquired Ticket. Only released
// changes after creation, and only under the Limiter's mutex.
type limiterCall struct {
	l         *Limiter
	gen       uint64 // the Limiter's cut generation when the call started
	saturated bool   // in flight (this call included) reached the cap at start
	released  bool
}

// limiterWaiter is a goroutine blocked in Acquire. Its c is set and ready
// closed, under the Limiter's mutex, when it is granted a slot.
type limiterWaiter struct {
	ready chan struct{}
	c     *limiterCall
}

// Limiter caps how many Kombo calls are in flight, adapting the cap AIMD
// style: it starts at the maximum, shrinks multiplicatively (×0.7, floored,
// never below 1) when a call reports OutcomeConcurrencyLimited and grows
// additively (by 1/cap per success, so by about one per full window of
// successes) while calls succeed with the cap in full use, never above the
// maximum nor the latest bound given to SetBound.
//
// The cap shrinks at most once per round trip: a rejection from a call that
// started before the latest cut is ignored, because that call was made under
// the old cap and the cut already answered it. Calls in flight are never
// cancelled when the cap shrinks; new calls wait until in flight is below it.
//
// Waiters are served in FIFO order. A Limiter is safe for concurrent use and
// runs no goroutines of its own. Create one with NewLimiter.
type Limiter struct {
	max int

	mu       sync.Mutex
	cap      float64 // in [1, ceil]; Limit is its floor
	ceil     int     // min(max, latest bound)
	gen      uint64  // number of cuts so far
	inFlight int
	waiters  list.List     // of *limiterWaiter, oldest first
	changed  chan struct{} // nil until Changed is called
}

// NewLimiter returns a limiter whose cap starts at maxInFlight and never
// exceeds it. A maxInFlight below 1 is taken as 1.
func NewLimiter(maxInFlight int) *Limiter {
	n := max(maxInFlight, 1)
	return &Limiter{max: n, cap: float64(n), ceil: n}
}

// Acquire blocks until a call may start, that is until fewer calls than
// the cap are in flight and every earlier waiter has been served, and
// returns the call's Ticket. It returns ctx.Err() if ctx is done first,
// including when ctx is already done on entry; it then holds no slot.
func (l *Limiter) Acquire(ctx context.Context) (Ticket, error) {
	if err := ctx.Err(); err != nil {
		return Ticket{}, err
	}
	l.mu.Lock()
	if l.waiters.Len() == 0 && l.inFlight < l.limitLocked() {
		c := l.startLocked()
		l.mu.Unlock()
		return Ticket{c: c}, nil
	}
	w := &limiterWaiter{ready: make(chan struct{})}
	e := l.waiters.PushBack(w)
	l.mu.Unlock()

	select {
	case <-w.ready:
		return Ticket{c: w.c}, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-w.ready:
		// Granted while ctx was being cancelled: hand the slot back
		// unused, so that the caller sees one consistent answer.
		w.c.released = true
		l.inFlight--
		l.grantLocked()
	default:
		l.waiters.Remove(e)
	}
	l.notifyLocked()
	return Ticket{}, ctx.Err()
}

// Release ends the call of t with its outcome o and frees its slot.
// OutcomeConcurrencyLimited cuts the cap unless a cut happened since t was
// acquired; OutcomeSuccess grows it if t was acquired with the cap in full
// use. Releasing the zero Ticket, a Ticket already released or a Ticket of
// another Limiter has no effect.
func (l *Limiter) Release(t Ticket, o Outcome) {
	c := t.c
	if c == nil || c.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.releaseLocked(c, o)
}

// releaseLocked is Release of l's own call c.
func (l *Limiter) releaseLocked(c *limiterCall, o Outcome) {
	if c.released {
		return
	}
	c.released = true
	l.inFlight--
	switch o {
	case OutcomeConcurrencyLimited:
		if c.gen == l.gen {
			l.cap = math.Max(1, math.Floor(l.cap*limiterDecrease))
			l.gen++
		}
	case OutcomeSuccess:
		if c.saturated {
			l.cap = math.Min(l.cap+1/l.cap, float64(l.ceil))
		}
	}
	l.grantLocked()
	l.notifyLocked()
}

// SetBound records a Concurrency-Limit header value n: from now on the cap
// is at most min(max, n), and is lowered at once if it is above. The newest
// value wins: a larger n than before lets the cap grow again (additively,
// as calls succeed), never above max. An n of 0 or less is ignored. Calls
// in flight are not cancelled, and lowering the bound is not a cut (a
// rejection reported afterwards still cuts once).
func (l *Limiter) SetBound(n int) {
	if n <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ceil := min(l.max, n)
	if ceil == l.ceil {
		return
	}
	l.ceil = ceil
	l.cap = math.Min(l.cap, float64(ceil))
	l.notifyLocked()
}

// Limit returns the current cap: how many calls may be in flight at once.
// It is between 1 and the max given to NewLimiter.
func (l *Limiter) Limit() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limitLocked()
}

// InFlight returns how many acquired Tickets have not been released. It
// may exceed Limit for a while after the cap shrank.
func (l *Limiter) InFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inFlight
}

// Waiting returns how many goroutines are blocked in Acquire.
func (l *Limiter) Waiting() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiters.Len()
}

// Free returns max(0, Limit() - InFlight() - Waiting()), read at one
// instant: how many new messages a fetcher may pull now without them
// waiting for a slot.
func (l *Limiter) Free() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(l.limitLocked()-l.inFlight-l.waiters.Len(), 0)
}

// Changed returns a channel that is closed the next time Free may have
// grown: on a Release (which also grows the cap), a waiter giving up, or a
// bound change. Each close is followed by a new channel, so a watcher calls
// Changed again after every wake-up. To miss no change, call Changed before
// reading Free:
//
//	changed := l.Changed()
//	if l.Free() == 0 {
//		select {
//		case <-changed:
//		case <-ctx.Done():
//		}
//	}
//
// Free does not know about messages a fetcher pulled that have not reached
// Acquire yet; the fetcher counts those itself.
func (l *Limiter) Changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// limitLocked returns the integer cap. l.cap is at least 1, so the
// conversion is its floor.
func (l *Limiter) limitLocked() int {
	return int(l.cap)
}

// startLocked counts a new call in flight and returns its record.
func (l *Limiter) startLocked() *limiterCall {
	l.inFlight++
	return &limiterCall{l: l, gen: l.gen, saturated: l.inFlight >= l.limitLocked()}
}

// grantLocked hands free slots to waiters, oldest first.
func (l *Limiter) grantLocked() {
	for l.waiters.Len() > 0 && l.inFlight < l.limitLocked() {
		w := l.waiters.Remove(l.waiters.Front()).(*limiterWaiter)
		w.c = l.startLocked()
		close(w.ready)
	}
}

// notifyLocked wakes whoever waits on Changed. Without a watcher it
// allocates nothing.
func (l *Limiter) notifyLocked() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}
