package admission

import (
	"math"
	"time"
)

// Tuning of the pace.
const (
	// paceBelow is where the pace starts after an estimate, as a share of it.
	paceBelow = 0.97
	// paceGrowthMin and paceGrowthMax bound how fast the pace grows after an estimate, as a
	// share of it per second; a probe grows at paceGrowthMax.
	paceGrowthMin = 0.001
	paceGrowthMax = 0.1
	// paceDouble: the growth doubles after this long without a refusal, so that a limit
	// Kombo raised is found again within minutes.
	paceDouble = time.Minute
)

// pace spaces the starts of calls once Kombo's rate limit has refused one and no quota
// headers tell how much is left. Kombo announces when it takes calls again, in whole
// seconds, not how many it takes: a daemon that only honours those waits runs into the
// limit again right after each one and loses most of every wait. The pace estimates the rate
// instead and stays just below it, so that refusals, and their waits, are rare.
//
// It takes the limit as a bucket of B calls refilled at R per second. An epoch runs from the
// end of an announced wait to the next refusal: the bucket was full when it began (the waits
// are long against B/R) and is empty at the refusal, so the A calls admitted in between give
// A = B + R·T. The first refusal gives B (what got through from the start); each later one R,
// or, when the pace passed R during the epoch (the bucket stayed full until then), the pace
// less what its excess over R took to empty the bucket.
// After the first refusal, knowing nothing of R yet, the pace probes at the geometric mean of
// a rate that would only have refilled the bucket over the epoch and its wait and the rate
// at which calls got through, and grows from there until refused. After an estimate it paces
// at paceBelow·R and grows slowly (faster when the epoch was short and the estimate rough),
// so that it passes R only now and then: one refusal, one wait, a better estimate.
//
// A refusal of a call started before the current epoch is ignored: the refusal that ended
// that epoch accounted for it.
type pace struct {
	on     bool
	base   float64   // calls per second at baseAt
	baseAt time.Time // the pace is base·(1 + growth·(t - baseAt))
	growth float64   // share of base per second
	next   time.Time // earliest start of the next call
	burst  float64   // B; 0 before the first refusal
	epoch  time.Time // start of the current epoch; zero before the first call
	got    int       // calls of this epoch admitted
}

// rate returns the pace at t, in calls per second.
func (p *pace) rate(t time.Time) float64 {
	return p.base * (1 + p.growth*max(t.Sub(p.baseAt).Seconds(), 0))
}

// current returns the pace at now, or 0 while calls are not paced.
func (p *pace) current(now time.Time) float64 {
	if !p.on {
		return 0
	}
	return p.rate(now)
}

// started takes the start of a call at now: the next may start one interval later.
func (p *pace) started(now time.Time) {
	if p.epoch.IsZero() {
		p.epoch = now
	}
	if !p.on {
		return
	}
	if now.Sub(p.baseAt) >= paceDouble {
		p.base, p.baseAt, p.growth = p.rate(now), now, min(2*p.growth, paceGrowthMax)
	}
	p.next = latest(p.next, now).Add(time.Duration(float64(time.Second) / p.rate(now)))
}

// admitted counts a call started at start that Kombo's rate limit let through.
func (p *pace) admitted(start time.Time) {
	if !start.Before(p.epoch) {
		p.got++
	}
}

// refused takes a rate-limit refusal, at now, of a call started at start, with no call to
// start before until; inFlight calls are still on their way, most of them admitted.
func (p *pace) refused(start, now, until time.Time, inFlight int) {
	if start.Before(p.epoch) {
		return
	}
	active := max(now.Sub(p.epoch).Seconds(), 0.001)
	got := float64(p.got) + float64(inFlight)/2
	switch {
	case p.burst == 0:
		p.burst = max(got, 1)
		low := p.burst / (active + until.Sub(now).Seconds())
		p.base, p.growth = math.Sqrt(low*max(got/active, low)), paceGrowthMax
	case got > p.burst:
		r := (got - p.burst) / active
		rough := 2 / (active * r) // the estimate's relative error, for ±1 call at each end
		if crossed := p.rate(now) - math.Sqrt(2*p.burst*p.base*p.growth); crossed > p.rate(p.epoch) {
			// The pace passed R during the epoch: the bucket stayed full (wasting what
			// refilled) until then, and the pace's excess over R since emptied it. At a
			// growth of b calls/s², that puts R sqrt(2·B·b) below the pace now.
			r, rough = crossed, 0.15*(p.rate(now)-crossed)/crossed
		}
		p.base, p.growth = paceBelow*r, min(max(rough/10, paceGrowthMin), paceGrowthMax)
	default:
		// Refused before the bucket could have emptied at this pace: far too fast.
		p.base, p.growth = p.rate(now)/2, paceGrowthMax
	}
	p.on = true
	p.baseAt, p.next, p.epoch, p.got = until, until, until, 0
}
