package consumer

import (
	"context"
	"sync"
	"time"
)

// pauser is the daemon-wide pause while Kombo rejects the API key. Paused time is
// accumulated so that retry budgets do not run while the daemon is paused.
type pauser struct {
	mu      sync.Mutex
	paused  bool
	since   time.Time
	total   time.Duration
	reason  string
	resumed chan struct{} // closed on resume; a new one is made on pause
}

func newPauser() *pauser {
	ch := make(chan struct{})
	close(ch)
	return &pauser{resumed: ch}
}

// pause starts a pause and reports whether it was not paused before.
func (p *pauser) pause(now time.Time, reason string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reason = reason
	if p.paused {
		return false
	}
	p.paused, p.since = true, now
	p.resumed = make(chan struct{})
	return true
}

// resume ends a pause and reports whether there was one.
func (p *pauser) resume(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.paused {
		return false
	}
	p.paused = false
	p.total += now.Sub(p.since)
	close(p.resumed)
	return true
}

// state returns whether the daemon is paused and why.
func (p *pauser) state() (bool, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused, p.reason
}

// pausedTotal returns the time spent paused so far, the current pause included.
func (p *pauser) pausedTotal(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.paused {
		return p.total + now.Sub(p.since)
	}
	return p.total
}

// wait blocks while paused, until resumed or ctx is done.
func (p *pauser) wait(ctx context.Context) error {
	p.mu.Lock()
	ch := p.resumed
	p.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
