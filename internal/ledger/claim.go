package ledger

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Claim is a handler's hold on one request id. Its writes are serialized (the handler and
// the goroutine that renews claims both write), and each one is a compare-and-set on the
// revision the previous one wrote: when another handler took the claim over, the write
// fails with ErrLost.
type Claim struct {
	l     *Ledger
	key   string
	lease time.Duration
	prior Entry // the counts before this claim

	mu       sync.Mutex
	rev      uint64
	e        Entry
	recorded bool // the claim became an outcome: it writes no more
}

// Prior returns the DELETE calls made for the request before this claim (every earlier
// delivery included) and those of them that use up KOMBO_MAX_ATTEMPTS.
func (c *Claim) Prior() (calls, counted int) { return c.prior.Calls, c.prior.Counted }

// RequestID returns the request id the claim holds.
func (c *Claim) RequestID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.e.RequestID
}

// PriorUntil returns when the claim this one took over had expired (zero: a new claim).
func (c *Claim) PriorUntil() time.Time { return c.prior.Until }

// Holds reports whether the claim, as last written, still holds at now for at least
// margin: no other handler can have taken it over meanwhile (one may only once it
// expired), so its holder may start a call.
func (c *Claim) Holds(now time.Time, margin time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.recorded && now.Add(margin).Before(c.e.Until)
}

// Count writes the request's call counts (calls: made, or about to start; counted: those
// that use up KOMBO_MAX_ATTEMPTS) and renews the claim. A call is counted before it
// starts, so that a crash during the call still counts it.
func (c *Claim) Count(ctx context.Context, calls, counted int, now time.Time) error {
	return c.write(ctx, func(e *Entry) {
		e.Calls, e.Counted = calls, counted
		e.Until = now.Add(c.lease)
	})
}

// Renew extends the claim to now plus the lease.
func (c *Claim) Renew(ctx context.Context, now time.Time) error {
	return c.write(ctx, func(e *Entry) { e.Until = now.Add(c.lease) })
}

// Release ends the claim at once (the message is handed back), so that the next handler
// need not wait for it to expire, with the counts of the calls really made (a call counted
// before it started, that did not start, is taken back).
func (c *Claim) Release(ctx context.Context, calls, counted int, now time.Time) error {
	return c.write(ctx, func(e *Entry) {
		e.Calls, e.Counted = calls, counted
		e.Until = now
	})
}

func (c *Claim) write(ctx context.Context, change func(*Entry)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recorded {
		return nil
	}
	e := c.e
	change(&e)
	rev, err := c.l.put(ctx, c.key, e, c.rev)
	if conflict(err) {
		// Taken over, unless the key is gone (the bucket was recreated): then it is
		// still this handler's to write.
		if _, _, ok, gerr := c.l.get(ctx, c.key); gerr != nil || ok {
			return fmt.Errorf("%w: %s", ErrLost, e.RequestID)
		}
		rev, err = c.l.put(ctx, c.key, e, 0)
		if conflict(err) {
			return fmt.Errorf("%w: %s", ErrLost, e.RequestID)
		}
	}
	if err != nil {
		return fmt.Errorf("ledger: write %s: %w", e.RequestID, err)
	}
	c.rev, c.e = rev, e
	return nil
}

// Record writes the outcome out in place of the claim; out.Calls and out.Counted are the
// request's exact counts. When another handler recorded an outcome first, that one is
// returned and out is dropped: an outcome, once written, is the request's for good. When
// another handler holds a live claim (it took this one over after it expired), Record
// fails with ErrLost and writes nothing. After Record the claim writes nothing.
func (c *Claim) Record(ctx context.Context, out Entry, now time.Time) (*Recorded, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.recorded {
		return &Recorded{l: c.l, key: c.key, rev: c.rev, Entry: c.e}, nil
	}
	out.Scope = c.e.Scope
	out.RecordedAt = now
	rev := c.rev
	for {
		nrev, err := c.l.put(ctx, c.key, out, rev)
		if err == nil {
			c.rev, c.e, c.recorded = nrev, out, true
			return &Recorded{l: c.l, key: c.key, rev: nrev, Entry: out}, nil
		}
		if !conflict(err) {
			return nil, fmt.Errorf("ledger: record %s: %w", out.RequestID, err)
		}
		// Someone else wrote the key: keep their outcome; leave a live claim of theirs
		// alone (its holder may be about to call: an outcome written under it would
		// be called after); take over an expired one, or a key that is gone.
		cur, crev, ok, err := c.l.get(ctx, c.key)
		if err != nil {
			return nil, err
		}
		switch {
		case ok && cur.Final():
			c.rev, c.e, c.recorded = crev, cur, true
			return &Recorded{l: c.l, key: c.key, rev: crev, Entry: cur}, nil
		case ok && now.Before(cur.Until):
			return nil, fmt.Errorf("%w: %s", ErrLost, out.RequestID)
		case ok:
			out.Calls, out.Counted = max(out.Calls, cur.Calls), max(out.Counted, cur.Counted)
		}
		rev = crev
	}
}

// Recorded is an outcome in the ledger.
type Recorded struct {
	Entry
	l   *Ledger
	key string
	rev uint64
}

// Stored notes that the result is stored in the stream at seq, so that later deliveries of
// the request publish nothing.
func (r *Recorded) Stored(ctx context.Context, seq uint64) error {
	e := r.Entry
	e.ResultSeq = seq
	rev, err := r.l.put(ctx, r.key, e, r.rev)
	if conflict(err) {
		return nil // another handler noted it first
	}
	if err != nil {
		return fmt.Errorf("ledger: note stored result of %s: %w", e.RequestID, err)
	}
	r.rev, r.Entry = rev, e
	return nil
}

// NoteStored is Stored without waiting: the note is sent and not confirmed, which saves a
// round trip on every request. A note that is lost (a crash, a disconnection) costs only a
// later delivery of the request a second publish of its result, which the stream
// deduplicates (or, past its window, finds first).
func (r *Recorded) NoteStored(seq uint64) error {
	e := r.Entry
	e.ResultSeq = seq
	if err := r.l.send(r.key, e, r.rev); err != nil {
		return fmt.Errorf("ledger: note stored result of %s: %w", e.RequestID, err)
	}
	r.Entry = e
	return nil
}

// send writes e at k if k's revision is still rev, without waiting for the server's
// answer (a write whose expectation fails is dropped by the server).
func (l *Ledger) send(k string, e Entry, rev uint64) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode: %w", err)
	}
	m := nats.NewMsg(l.subject(k))
	m.Data = data
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(rev, 10))
	return l.nc.PublishMsg(m)
}
