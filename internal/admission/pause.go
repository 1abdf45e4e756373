package admission

import "time"

// pause is the stop of every call while Kombo rejects the API key. The time paused is
// summed, so that retry budgets do not run meanwhile.
type pause struct {
	on     bool
	reason string
	since  time.Time
	sum    time.Duration // of the pauses that ended
}

func newPause() pause { return pause{} }

// start pauses at now for reason, and reports whether it was not paused before.
func (p *pause) start(now time.Time, reason string) bool {
	p.reason = reason
	if p.on {
		return false
	}
	p.on, p.since = true, now
	return true
}

// end ends a pause at now, and reports whether there was one.
func (p *pause) end(now time.Time) bool {
	if !p.on {
		return false
	}
	p.on = false
	p.sum += now.Sub(p.since)
	return true
}

// total returns the time paused until now.
func (p *pause) total(now time.Time) time.Duration {
	if p.on {
		return p.sum + now.Sub(p.since)
	}
	return p.sum
}
