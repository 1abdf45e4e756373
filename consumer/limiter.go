package consumer

import (
	"container/list"
	"context"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// limiterDecrease is the multiplicative decrease applied to the cap when
// Kombo answers PLATFORM.CONCURRENCY_LIMIT_EXCEEDED.
const limiterDecrease = 0.7

// limiterGentle is how many times slower the cap grows near a level Kombo
// refused more than once (see Limiter): the last step up to that level and
// the step above it each take limiterGentle windows of saturated successes
// instead of one.
const limiterGentle = 200

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
// From the second cut on, the Limiter remembers the level it was cut at
// (the Limit when the rejection came): Kombo's limit showed itself as a
// recurring ceiling, typically one shared with other clients or replicas,
// whose share of it the Limiter cannot see. Growth then stays fast far
// below that level, but the last step up to it and the step above it are
// limiterGentle times slower, so that the cap rests just below the level
// Kombo refused and probes it rarely, at the price of one rejection per
// probe. Two replicas sharing a limit settle on shares that add up to it,
// without coordination. Above that level growth is fast again: the limit
// has moved.
//
// Waiters are served in FIFO order. A Limiter is safe for concurrent use and
// runs no goroutines of its own. Create one with NewLimiter.
type Limiter struct {
	max int

	mu       sync.Mutex
	cap      float64 // in [1, ceil]; Limit is its floor
	ceil     int     // min(max, latest bound)
	gen      uint64  // number of cuts so far
	refused  float64 // the Limit at the latest cut: the level Kombo refused
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
	l.release(t, o)
}

// release is Release, and reports whether it handed a slot to a waiter.
func (l *Limiter) release(t Ticket, o Outcome) (granted bool) {
	c := t.c
	if c == nil || c.l != l {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.releaseLocked(c, o)
}

// releaseLocked is release of l's own call c.
func (l *Limiter) releaseLocked(c *limiterCall, o Outcome) (granted bool) {
	if c.released {
		return false
	}
	c.released = true
	l.inFlight--
	switch o {
	case OutcomeConcurrencyLimited:
		if c.gen == l.gen {
			l.refused = float64(l.limitLocked())
			l.cap = math.Max(1, math.Floor(l.cap*limiterDecrease))
			l.gen++
		}
	case OutcomeSuccess:
		if c.saturated {
			l.cap = math.Min(l.cap+l.stepLocked(), float64(l.ceil))
		}
	}
	waiting := l.waiters.Len()
	l.grantLocked()
	l.notifyLocked()
	return l.waiters.Len() < waiting
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

// usage returns Limit() and InFlight(), read at one instant.
func (l *Limiter) usage() (limit, inFlight int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.limitLocked(), l.inFlight
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

// stepLocked is the growth of the cap for one saturated success: 1/cap, so
// about one per window, or limiterGentle times less on the two steps around
// a level refused by the second or a later cut.
func (l *Limiter) stepLocked() float64 {
	step := 1 / l.cap
	if level := math.Floor(l.cap); l.gen >= 2 && level+1 >= l.refused && level <= l.refused {
		step /= limiterGentle
	}
	return step
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

// Tuning of the pacer.
const (
	// paceBelow is where the pace starts after a refusal, as a share of the
	// rate Kombo was estimated to allow.
	paceBelow = 0.97
	// paceGrowth is how fast the pace grows afterwards, as a share of that
	// estimate per second: it passes the estimate after 24 s. The growth
	// doubles every paceDouble without a refusal, so that a limit that was
	// raised is found again within minutes.
	paceGrowth = 0.00125
	paceDouble = 40 * time.Second
	// paceProbeHold is how long a probing pace must hold before the pacer
	// grows from it, by paceProbeGrowth (a share of it per second).
	paceProbeHold   = 3 * time.Second
	paceProbeGrowth = 0.1
	// paceStop: a pace this many times the last one refused is no pace.
	paceStop = 10
	// paceSlots is the number of 100 ms slots of recent answers kept for
	// the rate at which calls are answered.
	paceSlots = 10
)

// pacer spaces the starts of Kombo calls once Kombo's rate limit has shown
// itself. Kombo announces when it will take calls again, in whole seconds
// (ratelimit-reset), not how many calls it takes: a daemon that only honours
// the announced waits runs into the limit again right after each one, holds
// every worker for a second each time, and does a fraction of what Kombo
// allows. The pacer estimates the rate instead and paces just below it, so
// that refusals, and the waits they announce, become rare.
//
// It takes the limit as a bucket of B calls refilled at R per second. The
// first refusal bounds B: what got through until then. Every announced wait
// starts an epoch: the bucket holds min(B, R·wait) then, and is empty at
// the refusal that ends the epoch. At a constant pace the calls admitted in
// between give R; at a pace that grew past R during the epoch (by b
// calls/s²) its excess over R emptied the bucket, which puts R sqrt(2·B·b)
// below the pace at the refusal. After an estimate the pace starts at
// paceBelow·R and grows slowly (paceGrowth of R per second, doubling every
// paceDouble without a refusal), so that it passes R only after a while:
// each pass costs one refusal and one announced wait, and refines the
// estimate. The less sure an estimate (a short epoch), the faster the pace
// grows from it.
//
// Without an estimate (after the first refusal, or after one that came too
// soon to tell anything) the pacer probes: first at the geometric mean of
// the rate that would have emptied the bucket over the first epoch and its
// wait and the rate at which calls were answered then, below a refused
// probe by bisection; a probe that holds for paceProbeHold grows by
// paceProbeGrowth per second until refused. Once the pace is paceStop times
// the last one refused, the pacer stops pacing until the next refusal.
//
// Answers to calls started before the current epoch began (the end of the
// latest announced wait) are ignored: the refusal that ended it accounted
// for them (as in flight), as the Limiter ignores rejections from before
// its latest cut.
//
// A pacer is safe for concurrent use and runs no goroutines of its own.
type pacer struct {
	now func() time.Time

	mu        sync.Mutex
	pacing    bool
	probe     bool          // searching: pace at est, no estimate yet
	est       float64       // calls per second: the estimate of Kombo's rate, or the probe's pace
	lo, hi    float64       // the search bracket; hi 0 while no pace was refused
	growth    float64       // share of est the pace grows by per second
	base      time.Time     // when the pace started from est
	next      time.Time     // earliest start of the next call
	burst     float64       // estimate of the bucket size; 0 before the first refusal
	epoch     time.Time     // start of the current epoch; zero before the first call
	prevHold  time.Duration // the announced wait that began the epoch
	startPace float64       // the pace when the epoch began
	admitted  int           // calls of this epoch that Kombo's rate limit admitted
	refused   float64       // the pace at the latest refusal
	recent    [paceSlots]int
	lastSlot  int64 // 100 ms slot of the latest answer counted in recent
}

func newPacer(now func() time.Time) *pacer {
	if now == nil {
		now = time.Now
	}
	return &pacer{now: now}
}

// rateLocked returns the pace at now, in calls per second.
func (p *pacer) rateLocked(now time.Time) float64 {
	if p.probe {
		return p.est
	}
	t := max(now.Sub(p.base).Seconds(), 0)
	return p.est * (paceBelow + p.growth*t)
}

// current returns the pace now, in calls per second, or 0 while not pacing.
func (p *pacer) current() float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.pacing {
		return 0
	}
	return p.rateLocked(p.now())
}

// wait takes the next start time of the pace and sleeps until it; without
// a pace it returns at once. It returns ctx.Err() when ctx ends first.
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	if !p.pacing {
		p.mu.Unlock()
		return nil
	}
	now := p.now()
	at := p.next
	if at.Before(now) {
		at = now
	}
	p.next = at.Add(time.Duration(float64(time.Second) / p.rateLocked(at)))
	p.mu.Unlock()
	if d := at.Sub(now); d > 0 {
		return sleep(ctx, d)
	}
	return nil
}

// done reports the answer to a call started at start: admitted when Kombo's
// rate limit let it through (any answer but a rate-limit or concurrency-limit
// refusal; a transport error is neither).
func (p *pacer) done(start time.Time, admitted bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now, current := p.answerLocked(start)
	if !admitted || !current {
		return // refused, or of an epoch already ended (counted as in flight then)
	}
	p.admitted++
	if !p.pacing {
		return
	}
	held := now.Sub(p.base)
	switch {
	case p.probe && held >= paceProbeHold:
		// The probe held: grow from it, fast, until refused.
		p.lo = p.est
		p.probe, p.est, p.growth, p.base = false, p.est/paceBelow, paceProbeGrowth, now
	case !p.probe && held >= paceDouble:
		// No refusal for a while: carry on from the pace reached, growing faster.
		p.est, p.growth, p.base = p.rateLocked(now)/paceBelow, min(2*p.growth, 1), now
		if p.est > paceStop*p.refused {
			p.pacing = false // far beyond any rate refused: Kombo's limit has moved
		}
	}
}

// limited reports a rate-limit answer to a call started at start, after
// which no call starts before until (the end of the announced wait);
// inFlight other calls are still on their way, most of them admitted. It
// returns the new pace (calls per second, from until on) and whether it is
// a search (a probe) rather than an estimate, with changed false when the
// answer belonged to an epoch already ended.
func (p *pacer) limited(start, until time.Time, inFlight int) (pace float64, probe, changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now, current := p.answerLocked(start)
	if !current {
		return 0, false, false // answered before the epoch: its refusal was accounted for
	}
	active := max(now.Sub(p.epoch).Seconds(), 0.001)
	hold := max(until.Sub(now), 0)
	admitted := float64(p.admitted + inFlight)
	n := 0
	for _, c := range p.recent {
		n += c
	}
	answered := float64(n) / min(active, float64(paceSlots)/10) // the rate at which calls were answered lately
	refusedAt := answered                                       // the pace refused
	if p.pacing {
		refusedAt = p.rateLocked(now)
	}
	if p.burst == 0 {
		// The first refusal: what got through bounds the bucket. Search between
		// the rate that would have emptied it over this epoch and its wait, and
		// the rate at which calls were answered lately.
		got := float64(p.admitted)
		p.burst = max(got+float64(inFlight)/2, 1) // about half the calls still on their way get through
		low := p.burst / (active + hold.Seconds())
		if window := float64(paceSlots) / 10; active > 2*window {
			// A daemon that ran for a while before it was refused: only the
			// last window tells the bucket. Before it, calls came at a rate q;
			// if Kombo allowed q, the bucket was full when the window began
			// and Kombo refilled it at R ≥ q during it: B = n - R·window ≤
			// n - q·window. Over the whole epoch Kombo let through all but B
			// of the calls at R at least.
			q := (got - float64(n)) / (active - window)
			p.burst = max(float64(n)-q*window+float64(inFlight)/2, 1)
			low = max(p.burst/(window+hold.Seconds()), (got-p.burst)/(active+hold.Seconds()))
		}
		p.probe, p.lo, p.hi = true, 0, 0
		p.est = math.Sqrt(low * max(answered, 4*low))
	} else {
		pace := refusedAt
		// The bucket is empty now, and when the epoch began it held what had
		// refilled during the wait, at most B. At a constant pace the calls
		// admitted since used up min(B, R·wait) + R·t tokens. At a growing
		// pace that crossed R during the epoch, the excess over R since the
		// crossing used up B: with the growth b (calls/s²) that takes
		// sqrt(2B/b) and puts R sqrt(2Bb) below the pace now.
		rate := (admitted - p.burst) / active
		if p.prevHold > 0 {
			rate = max(rate, admitted/(active+p.prevHold.Seconds()))
		}
		// How far off the estimate may be, for an error of the burst estimate
		// of ±30 %.
		unsure := 0.3 * p.burst / active
		if p.pacing && !p.probe {
			b := p.est * p.growth
			if excess := math.Sqrt(2 * p.burst * b); pace-excess > p.startPace {
				rate, unsure = pace-excess, 0.15*excess
			}
		}
		if rate > 0 {
			// The less sure the estimate, the faster the pace grows from it, so
			// that a low one does not last (the next refusal gives a better one).
			est := min(rate, pace)
			p.probe, p.est = false, est
			p.growth = max(paceGrowth, min(unsure/est/10, paceProbeGrowth))
			p.lo, p.hi = 0, 0
		} else {
			// Refused before the bucket could have emptied at this pace: search below it.
			p.hi = pace
			if p.lo > 0 && p.lo < p.hi {
				p.est = math.Sqrt(p.lo * p.hi)
			} else {
				p.lo, p.est = 0, p.hi/2
			}
			p.probe = true
		}
	}
	p.refused = refusedAt
	p.pacing = true
	p.next = until
	p.epoch, p.base, p.prevHold, p.admitted = until, until, hold, 0
	p.startPace = p.rateLocked(until)
	return p.startPace, p.probe, true
}

// answerLocked counts an answer to a call started at start, and reports the time and
// whether the call belongs to the current epoch (the first call begins the first one).
func (p *pacer) answerLocked(start time.Time) (now time.Time, current bool) {
	now = p.now()
	p.countLocked(now)
	if p.epoch.IsZero() {
		p.epoch = start
	}
	return now, !start.Before(p.epoch)
}

// countLocked counts an answer at now in its 100 ms slot.
func (p *pacer) countLocked(now time.Time) {
	slot := now.UnixNano() / int64(100*time.Millisecond)
	if gap := slot - p.lastSlot; gap > 0 {
		for i := int64(1); i <= min(gap, paceSlots); i++ {
			p.recent[(p.lastSlot+i)%paceSlots] = 0
		}
		p.lastSlot = slot
	}
	p.recent[slot%paceSlots]++
}

// scout lets the very first Kombo call go alone: its answer carries Kombo's
// Concurrency-Limit, so that the calls after it start under the right cap
// instead of a burst of KOMBO_MAX_CONCURRENCY calls that Kombo mostly
// refuses. Once a call has been answered (however), every call goes.
//
// A scout is safe for concurrent use. The zero scout is not usable; create
// one with newScout.
type scout struct {
	open atomic.Bool // a call has been answered

	mu    sync.Mutex
	going bool          // the first call is on its way
	done  chan struct{} // closed when open becomes true
	freed chan struct{} // closed (and replaced) when the first call is abandoned
}

func newScout() *scout { return &scout{done: make(chan struct{}), freed: make(chan struct{})} }

// wait returns at once, with first true, for the caller that is to make the
// first call, and with first false once a call has been answered; the others
// wait until then, or until ctx ends.
func (s *scout) wait(ctx context.Context) (first bool, err error) {
	for {
		if s.open.Load() {
			return false, nil
		}
		s.mu.Lock()
		if !s.going && !s.open.Load() {
			s.going = true
			s.mu.Unlock()
			return true, nil
		}
		freed := s.freed
		s.mu.Unlock()
		select {
		case <-s.done:
			return false, nil
		case <-freed:
			// The first call was abandoned: one of those waiting takes its place.
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
}

// abandon says that the caller wait chose will not make its call after all:
// the next caller of wait makes it.
func (s *scout) abandon() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.going {
		s.going = false
		close(s.freed)
		s.freed = make(chan struct{})
	}
}

// answered says that a call has been answered: every caller goes from now on.
func (s *scout) answered() {
	if s.open.Load() {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open.Load() {
		s.open.Store(true)
		close(s.done)
	}
}
