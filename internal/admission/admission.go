// Package admission decides when a Kombo call may start: under a concurrency cap that
// follows what Kombo states, after the waits Kombo announces, at a pace below its rate limit,
// and not while the API key is rejected. It knows nothing of NATS or HTTP: a caller asks for
// a turn (Wait), makes its call, and reports what came back (Done).
//
// The parts, each in its own file, are plain state under the Controller's one mutex, so that
// an answer is applied whole before any waiter is granted:
//   - slots (cap.go): the cap on calls in flight, and the first call that goes alone;
//   - hold (hold.go): no call starts before an announced wait ends, or for a while after
//     Kombo refused a call at a cap of 1;
//   - pause (pause.go): no call starts while Kombo rejects the API key or an operator paused;
//   - quota (quota.go): with ratelimit-limit/ratelimit-remaining on the answers, calls start
//     only while the quota they state has room;
//   - pace (pace.go): without those headers, calls are spaced at a rate estimated from
//     Kombo's refusals.
package admission

import (
	"container/list"
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// Class is what one call came to, for admission.
type Class int

const (
	// NotCalled: the turn was not used (the caller gave up before calling).
	NotCalled Class = iota
	// Processed: Kombo did the work (deleted, or did not know the integration).
	Processed
	// Other: any other answer, or none (a server error, a timeout, a rejected key).
	Other
	// ConcurrencyRefused: PLATFORM.CONCURRENCY_LIMIT_EXCEEDED.
	ConcurrencyRefused
	// RateRefused: PLATFORM.RATE_LIMIT_EXCEEDED or a 429 without a code.
	RateRefused
)

// Answer is what the caller reports of one call: how it ended and the limits Kombo stated
// on the answer. The zero Answer is NotCalled.
type Answer struct {
	Class Class
	// Took is how long the call took.
	Took time.Duration
	// ConcurrencyLimit is the Concurrency-Limit header, 0 when absent; ConcurrencyRemaining,
	// the Concurrency-Remaining header, counts only with a ConcurrencyLimit and when not
	// negative.
	ConcurrencyLimit, ConcurrencyRemaining int
	// RateLimit and RateRemaining are ratelimit-limit and ratelimit-remaining; they count
	// only both together, RateLimit above 0 and RateRemaining not negative.
	RateLimit, RateRemaining int
	// Wait, on a RateRefused answer, is how long no call may start: the wait Kombo announced
	// or, without one, the caller's backoff.
	Wait time.Duration
}

// Ticket is one turn: returned by Wait, handed back to Done exactly once. Handing back the
// zero Ticket, or a Ticket a second time, has no effect.
type Ticket struct{ t *turn }

// turn is the Controller's record of one call: what held when it started.
type turn struct {
	seq      uint64    // calls started before it, plus one
	start    time.Time // when it started
	inFlight int       // calls in flight when it started, itself included
	gen      uint64    // cuts of the cap before it started
	done     bool
}

// Options configure a Controller.
type Options struct {
	// Max is the most calls in flight at once (KOMBO_MAX_CONCURRENCY); below 1 means 1.
	Max int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Controller admits Kombo calls. It is safe for concurrent use. Its only goroutine of its
// own is a timer's callback that grants waiters when a hold or a pace interval ends.
type Controller struct {
	now    func() time.Time
	jitter func() float64 // in [0, 1): spreads the holds and pauses of replicas

	mu      sync.Mutex
	slots   slots
	hold    hold
	pause   pause
	quota   quota
	pace    pace
	meanOK  time.Duration // moving mean of processed calls' durations
	seq     uint64        // calls started so far
	waiters list.List     // of *waiter, oldest first
	timer   *time.Timer   // grants waiters when a hold or pace interval ends
	timerAt time.Time     // when timer fires; zero when not armed
	changed chan struct{} // closed when Free may have grown; nil until asked for
}

// waiter is a caller blocked in Wait. Its turn is set, and ready closed, when it is granted.
type waiter struct {
	ready chan struct{}
	t     *turn
}

// New returns a Controller whose first call goes alone.
func New(o Options) *Controller {
	c := &Controller{now: o.Now, jitter: rand.Float64}
	if c.now == nil {
		c.now = time.Now
	}
	c.slots = newSlots(max(o.Max, 1))
	c.pause = newPause()
	return c
}

// Wait blocks until a call may start, and returns its Ticket: not paused, no hold, the pace
// and quota allow it, a slot is free and every earlier waiter has been served. It returns
// ctx.Err() when ctx ends first (also when it already had on entry); it then holds no turn.
func (c *Controller) Wait(ctx context.Context) (Ticket, error) {
	if err := ctx.Err(); err != nil {
		return Ticket{}, err
	}
	c.mu.Lock()
	now := c.now()
	if c.waiters.Len() == 0 && c.mayStartLocked(now) {
		t := c.startLocked(now)
		c.mu.Unlock()
		return Ticket{t}, nil
	}
	w := &waiter{ready: make(chan struct{})}
	e := c.waiters.PushBack(w)
	c.scheduleLocked(now)
	c.mu.Unlock()

	select {
	case <-w.ready:
		return Ticket{w.t}, nil
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-w.ready:
		// Granted while ctx ended: hand the turn back unused.
		c.doneLocked(w.t, Answer{})
	default:
		c.waiters.Remove(e)
		c.grantLocked(c.now())
	}
	return Ticket{}, ctx.Err()
}

// Done ends the call of t with its answer a: the limits it states and what it came to are
// applied, then waiters are granted. A NotCalled answer only frees the turn.
func (c *Controller) Done(t Ticket, a Answer) {
	if t.t == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.doneLocked(t.t, a)
}

// Changed returns a channel closed the next time more calls may have become able to start
// (an answer, a waiter leaving, a hold ending, a resume). A puller sizing its pulls from
// Stats takes it before reading Stats, so that no change is missed.
func (c *Controller) Changed() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.changed == nil {
		c.changed = make(chan struct{})
	}
	return c.changed
}

// Stats is a snapshot of the Controller, for metrics and logs.
type Stats struct {
	// Cap is the concurrency cap (before the first answer, Max: the first call still goes
	// alone); InFlight the calls in flight.
	Cap, InFlight int
	// Held is true while paused or held: no call may start now, whatever the cap.
	Held bool
	// Pace is the calls per second the pacer allows; 0 while calls are not paced.
	Pace float64
	// HoldUntil is the end of the latest hold; it may be in the past.
	HoldUntil time.Time
	// MeanCall is the moving mean duration of processed calls; 0 before the first.
	MeanCall time.Duration
}

// Stats returns a snapshot.
func (c *Controller) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{Cap: int(c.slots.cap), InFlight: c.slots.inFlight, Held: c.pause.on(),
		HoldUntil: c.hold.until(), MeanCall: c.meanOK}
	if !c.hold.end().IsZero() || c.pace.on { // the clock only when it matters: Stats is read per call
		now := c.now()
		s.Held = s.Held || !c.hold.open(now)
		s.Pace = c.pace.current(now)
	}
	return s
}

// Pause stops every call from starting for cause (reason says how), until Resume(cause).
// It reports whether cause did not hold before.
func (c *Controller) Pause(cause Cause, reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pause.start(c.now(), cause, reason)
}

// Resume ends the pause of cause and, when no other cause holds, grants waiters. It
// reports whether cause held.
func (c *Controller) Resume(cause Cause) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if !c.pause.end(now, cause) {
		return false
	}
	c.grantLocked(now)
	return true
}

// Paused reports whether calls are paused for any cause, and why.
func (c *Controller) Paused() (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pause.on(), c.pause.reason()
}

// PausedFor reports whether cause holds, and its reason.
func (c *Controller) PausedFor(cause Cause) (bool, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.pause.reasons[cause]
	return ok, r
}

// PausedTotal returns the time spent paused so far, the current pause included: retry
// budgets do not run while paused.
func (c *Controller) PausedTotal() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pause.total(c.now())
}

// mayStartLocked reports whether a call may start at now.
func (c *Controller) mayStartLocked(now time.Time) bool {
	return !c.pause.on() && c.hold.open(now) && c.slots.free() && !c.rateNext(now).After(now)
}

// rateNext returns the earliest start the rate limit allows: by the quota Kombo states when
// it states one, else by the pace estimated from its refusals.
func (c *Controller) rateNext(now time.Time) time.Time {
	if c.quota.known() {
		return c.quota.next(now, c.seq)
	}
	return c.pace.next
}

// startLocked starts a call at now.
func (c *Controller) startLocked(now time.Time) *turn {
	c.seq++
	t := c.slots.start(c.seq, now)
	c.pace.started(now)
	return t
}

// doneLocked applies the answer a to the call t, then grants waiters.
func (c *Controller) doneLocked(t *turn, a Answer) {
	if t.done {
		return
	}
	t.done = true
	now := c.now()
	if a.Class == Processed && a.Took > 0 {
		if c.meanOK == 0 {
			c.meanOK = a.Took
		} else {
			c.meanOK += (a.Took - c.meanOK) / 8
		}
	}
	switch c.slots.done(t, a, now, c.jitter, c.meanCall()) {
	case atFloor:
		c.hold.refusedAtFloor(now, c.meanCall(), c.jitter)
	case cleared:
		c.hold.clearFloor()
	}
	if a.Class != NotCalled && a.RateLimit > 0 && a.RateRemaining >= 0 {
		c.quota.answer(t, a)
	}
	switch a.Class {
	case RateRefused:
		until := now.Add(a.Wait)
		c.hold.announce(until)
		if !c.quota.known() {
			c.pace.refused(t.start, now, until, c.slots.inFlight)
		}
	case Processed, Other:
		c.pace.admitted(t.start)
	}
	c.grantLocked(now)
}

// meanCall returns the mean duration of processed calls, or 5 ms before the first.
func (c *Controller) meanCall() time.Duration {
	if c.meanOK <= 0 {
		return 5 * time.Millisecond
	}
	return c.meanOK
}

// grantLocked grants waiters, oldest first, while calls may start; arms the timer when a
// hold or the pace keeps the next one waiting; and tells watchers that Free may have grown.
func (c *Controller) grantLocked(now time.Time) {
	for c.waiters.Len() > 0 && c.mayStartLocked(now) {
		w := c.waiters.Remove(c.waiters.Front()).(*waiter)
		w.t = c.startLocked(now)
		close(w.ready)
	}
	c.scheduleLocked(now)
	if c.changed != nil {
		close(c.changed)
		c.changed = nil
	}
}

// scheduleLocked arms the timer for when the hold or the pace lets the next waiter go. A
// paused Controller waits for Resume, a full one for Done: neither needs the timer.
func (c *Controller) scheduleLocked(now time.Time) {
	if c.pause.on() || (c.waiters.Len() == 0 && c.changed == nil) {
		return
	}
	at := c.hold.end()
	if c.slots.free() {
		at = latest(at, c.rateNext(now))
	}
	if !at.After(now) || (!c.timerAt.IsZero() && !c.timerAt.After(at) && c.timerAt.After(now)) {
		return
	}
	c.timerAt = at
	if c.timer == nil {
		c.timer = time.AfterFunc(at.Sub(now), c.fire)
		return
	}
	c.timer.Reset(at.Sub(now))
}

// fire is the timer's callback.
func (c *Controller) fire() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timerAt = time.Time{}
	c.grantLocked(c.now())
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
