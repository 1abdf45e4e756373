package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// aliveSet remembers the messages being handled, so that one goroutine (aliveLoop) can tell
// the server every third of AckWait that each is still being worked on, and no other
// replica gets it while it waits for a slot, a hold or a backoff. A message costs a list
// entry, not a timer: the per-message path stays cheap.
type aliveSet struct {
	mu   sync.Mutex
	ring aliveMsg // sentinel of a circular list of the messages held
}

// aliveMsg is one message in the aliveSet's list.
type aliveMsg struct {
	msg        jetstream.Msg
	claim      *ledger.Claim // renewed with the in-progress acks; nil until claimed
	last       time.Time     // when the message was received or last reported in progress
	prev, next *aliveMsg
}

// add puts msg, received at now, in the list.
func (k *aliveSet) add(msg jetstream.Msg, now time.Time) *aliveMsg {
	e := &aliveMsg{msg: msg, last: now}
	k.mu.Lock()
	if k.ring.next == nil {
		k.ring.next, k.ring.prev = &k.ring, &k.ring
	}
	e.prev, e.next = k.ring.prev, &k.ring
	k.ring.prev.next = e
	k.ring.prev = e
	k.mu.Unlock()
	return e
}

// setClaim attaches the ledger claim of e's request, so that it is renewed with e.
func (k *aliveSet) setClaim(e *aliveMsg, cl *ledger.Claim) {
	k.mu.Lock()
	e.claim = cl
	k.mu.Unlock()
}

// remove takes e out of the list.
func (k *aliveSet) remove(e *aliveMsg) {
	k.mu.Lock()
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
	k.mu.Unlock()
}

// due returns the messages (and their claims) not reported for every or longer, and
// counts them as reported at now.
func (k *aliveSet) due(now time.Time, every time.Duration) []aliveMsg {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []aliveMsg
	if k.ring.next == nil {
		return nil
	}
	for e := k.ring.next; e != &k.ring; e = e.next {
		if now.Sub(e.last) >= every {
			e.last = now
			out = append(out, aliveMsg{msg: e.msg, claim: e.claim})
		}
	}
	return out
}

// aliveLoop reports the messages being handled as in progress, then renews their claims in
// the ledger, every third of AckWait (it looks four times as often), until done is closed.
func (c *Consumer) aliveLoop(done <-chan struct{}) {
	for {
		c.mu.Lock()
		every := c.ackWait / 3
		c.mu.Unlock()
		if every <= 0 {
			every = 10 * time.Second
		}
		t := time.NewTimer(every / 4)
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
		due := c.alive.due(c.now(), every)
		for _, e := range due {
			_ = e.msg.InProgress()
		}
		// The claims after every in-progress ack, so that a slow ledger never delays
		// those; a claim not renewed in time only stops its holder from starting a call
		// (mayCall).
		for _, e := range due {
			if e.claim == nil {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(every, 2*time.Second))
			if err := e.claim.Renew(ctx, c.now()); err != nil && !errors.Is(err, ledger.ErrLost) {
				c.log.Warn("cannot renew a claim in the ledger", "err", err)
			}
			cancel()
		}
	}
}
