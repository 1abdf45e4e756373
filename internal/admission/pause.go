package admission

import (
	"slices"
	"strings"
	"time"
)

// Cause is why calls are paused. Pauses of different causes are independent: calls start
// again when every cause has ended.
type Cause string

const (
	// KeyRejected: Kombo rejects the API key; the daemon's probe ends it.
	KeyRejected Cause = "key"
	// Operator: the consumer is paused on the server, by an operator or the fuse.
	Operator Cause = "operator"
)

// pause is the stop of every call while any cause holds. The time paused is summed, so
// that retry budgets do not run meanwhile.
type pause struct {
	reasons map[Cause]string
	since   time.Time     // when the current pause began
	sum     time.Duration // of the pauses that ended
}

func newPause() pause { return pause{reasons: map[Cause]string{}} }

func (p *pause) on() bool { return len(p.reasons) > 0 }

// start pauses at now for cause, and reports whether cause did not hold before.
func (p *pause) start(now time.Time, cause Cause, reason string) bool {
	_, had := p.reasons[cause]
	if !p.on() {
		p.since = now
	}
	p.reasons[cause] = reason
	return !had
}

// end ends cause at now, and reports whether it held.
func (p *pause) end(now time.Time, cause Cause) bool {
	if _, had := p.reasons[cause]; !had {
		return false
	}
	delete(p.reasons, cause)
	if !p.on() {
		p.sum += now.Sub(p.since)
	}
	return true
}

// reason joins the reasons of the causes that hold, in a fixed order.
func (p *pause) reason() string {
	rs := make([]string, 0, len(p.reasons))
	for _, r := range p.reasons {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	return strings.Join(rs, "; ")
}

// total returns the time paused until now.
func (p *pause) total(now time.Time) time.Duration {
	if p.on() {
		return p.sum + now.Sub(p.since)
	}
	return p.sum
}
