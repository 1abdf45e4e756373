// Package ledger records the outcome of each delete request in a JetStream KV bucket, so
// that Kombo's DELETE is called for a request id until an outcome is recorded and never
// after, whatever the stream redelivers or replays.
//
// One key per request id holds one of two things:
//   - a claim: who handles the request now, until when, and how many DELETE calls were made;
//   - an outcome: deleted or failed, the result event, and once it is stored, the stream
//     sequence of that result.
//
// Every write is a compare-and-set on the key's revision, so two replicas handling the same
// request id never both believe they hold it, and an outcome, once written, is never
// replaced.
package ledger

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrMissing is returned by Open when the bucket does not exist and provisioning is off.
var ErrMissing = errors.New("ledger: bucket missing and JETSTREAM_PROVISION=false")

// ErrUnusable is returned by Open when the existing bucket cannot keep the promise (its
// max age is shorter than the stream's).
var ErrUnusable = errors.New("ledger: bucket unusable")

// ErrLost is returned by a Claim's writes when another handler took the claim over: the
// caller's delivery is stale and must stop without acking.
var ErrLost = errors.New("ledger: claim taken over by another handler")

// Options say which bucket to use and how to create it.
type Options struct {
	// Bucket is the KV bucket's name.
	Bucket string
	// Provision creates the bucket when it is missing.
	Provision bool
	// Replicas of the bucket when created.
	Replicas int
	// MaxAge is how long an outcome is kept (the bucket's TTL when created).
	MaxAge time.Duration
	// MinMaxAge is the shortest max age that keeps the promise (the stream's max age); an
	// existing bucket that forgets sooner is refused. 0 checks nothing.
	MinMaxAge time.Duration
}

// Status is the state a key records.
type Status string

// The statuses of an entry.
const (
	Claimed Status = "claimed"
	Deleted Status = "deleted"
	Failed  Status = "failed"
)

// Entry is what the ledger holds for one request id.
type Entry struct {
	RequestID     string `json:"request_id"`
	Scope         string `json:"scope,omitempty"` // see ID
	IntegrationID string `json:"integration_id"`
	Status        Status `json:"status"`
	// Calls counts the DELETE calls made so far, every delivery included (a claim counts
	// the call its holder is about to make); Counted those that use up
	// KOMBO_MAX_ATTEMPTS.
	Calls   int `json:"calls"`
	Counted int `json:"counted"`

	// Owner and Until describe a claim: who handles the request (consumer and stream
	// sequence of the message) and until when the claim holds without being renewed.
	Owner string    `json:"owner,omitempty"`
	Until time.Time `json:"until,omitzero"`

	// An outcome: its code (empty for deleted), when it completed, the result event as
	// it is published, on which subject, and the stream sequence of the stored result
	// (0 until the server has confirmed storing it).
	Code        string          `json:"code,omitempty"`
	CompletedAt string          `json:"completed_at,omitempty"`
	Subject     string          `json:"subject,omitempty"`
	Result      json.RawMessage `json:"result,omitempty"`
	ResultSeq   uint64          `json:"result_seq,omitempty"`
	RecordedAt  time.Time       `json:"recorded_at,omitzero"`
}

// Final reports whether e is an outcome.
func (e *Entry) Final() bool { return e.Status == Deleted || e.Status == Failed }

// Ledger is the outcome bucket.
type Ledger struct {
	kv jetstream.KeyValue
	nc *nats.Conn
	o  Options
	// write is one try of a compare-and-set write (writeKV; tests wrap it to lose replies).
	write func(ctx context.Context, k string, data []byte, rev uint64) (uint64, error)
}

// Open binds the bucket, creating it when missing and provisioning is on. created says
// whether this call created it.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (l *Ledger, created bool, err error) {
	kv, err := js.KeyValue(ctx, o.Bucket)
	switch {
	case errors.Is(err, jetstream.ErrBucketNotFound):
		if !o.Provision {
			return nil, false, fmt.Errorf("%w: bucket %q not found", ErrMissing, o.Bucket)
		}
		kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      o.Bucket,
			Description: "integration-deleter: the outcome of each delete request",
			History:     1,
			TTL:         o.MaxAge,
			Storage:     jetstream.FileStorage,
			Replicas:    o.Replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another replica was first
			kv, err = js.KeyValue(ctx, o.Bucket)
		} else if err == nil {
			created = true
		}
		if err != nil {
			return nil, false, fmt.Errorf("ledger: create bucket %q: %w", o.Bucket, err)
		}
	case err != nil:
		return nil, false, fmt.Errorf("ledger: look up bucket %q: %w", o.Bucket, err)
	}
	l = &Ledger{kv: kv, nc: js.Conn(), o: o}
	l.write = l.writeKV
	if err := l.Check(ctx); err != nil {
		return nil, false, err
	}
	return l, created, nil
}

// Check asks the server whether the bucket still exists and keeps outcomes long enough.
func (l *Ledger) Check(ctx context.Context) error {
	st, err := l.kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("ledger: bucket %q: %w", l.o.Bucket, err)
	}
	if ttl := st.TTL(); ttl > 0 && ttl < l.o.MinMaxAge {
		return fmt.Errorf("%w: bucket %q keeps outcomes for %s, shorter than the stream keeps requests (%s): a request could be redelivered after its outcome is forgotten",
			ErrUnusable, l.o.Bucket, ttl, l.o.MinMaxAge)
	}
	return nil
}

// Probe writes to the bucket (a key of its own) and reports whether the write was stored.
func (l *Ledger) Probe(ctx context.Context) error {
	if _, err := l.kv.Put(ctx, "probe", []byte("1")); err != nil {
		return fmt.Errorf("ledger: bucket %q cannot be written: %w", l.o.Bucket, err)
	}
	return nil
}

// subject is the subject a write of key k is published on (no JetStream domain or API
// prefix: the daemon uses neither).
func (l *Ledger) subject(k string) string { return "$KV." + l.o.Bucket + "." + k }

// ID names a request in the ledger: its request id and, for an id that is unique only
// within one incarnation of the stream (the "<stream>-<sequence>" fallback, which starts
// again when the stream is created again), that incarnation.
type ID struct {
	Request string
	Scope   string // "" for ids unique for good
}

// Incarnation names one incarnation of a stream, by its creation time, as ID.Scope holds it.
func Incarnation(created time.Time) string { return strconv.FormatInt(created.UnixNano(), 10) }

// IDOf returns the ID of requestID on the stream named stream, whose current incarnation
// is incarnation: a "<stream>-<sequence>" id is scoped to it, any other id is not.
func IDOf(requestID, stream, incarnation string) ID {
	id := ID{Request: requestID}
	if seq, ok := strings.CutPrefix(requestID, stream+"-"); ok && seq != "" && strings.Trim(seq, "0123456789") == "" {
		id.Scope = incarnation
	}
	return id
}

// key is the KV key of id: any request id, in KV's key alphabet.
func (id ID) key() string {
	k := "r-empty" // "r." alone is not a key; no encoded id is "-empty"
	if id.Request != "" {
		k = "r." + base64.RawURLEncoding.EncodeToString([]byte(id.Request))
	}
	if id.Scope != "" {
		k += "." + base64.RawURLEncoding.EncodeToString([]byte(id.Scope))
	}
	return k
}

// id returns the ID an entry is kept under.
func (e *Entry) id() ID { return ID{Request: e.RequestID, Scope: e.Scope} }

// Lookup returns the entry of id; ok is false when the ledger knows nothing of it.
func (l *Ledger) Lookup(ctx context.Context, id ID) (e Entry, ok bool, err error) {
	e, _, ok, err = l.get(ctx, id.key())
	return e, ok, err
}

func (l *Ledger) get(ctx context.Context, k string) (Entry, uint64, bool, error) {
	kve, err := l.kv.Get(ctx, k)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Entry{}, 0, false, nil
	}
	if err != nil {
		return Entry{}, 0, false, fmt.Errorf("ledger: read %s: %w", k, err)
	}
	var e Entry
	if err := json.Unmarshal(kve.Value(), &e); err != nil {
		return Entry{}, 0, false, fmt.Errorf("ledger: read %s: %w", k, err)
	}
	return e, kve.Revision(), true, nil
}

// put writes e at k if k's revision is still rev (0: k must not exist), trying again for up
// to writeFor while no reply comes. A write in flight when the bucket's leader goes away
// may get no reply although it was stored: the next try then fails the compare-and-set, and
// a key holding exactly what was written is taken as this write's. Any other error, or a
// bucket that is gone (its writes time out while the server deletes it), ends it at once:
// a write must not land in a bucket created anew before the daemon has put back what it
// knows (consumer/storage.go).
func (l *Ledger) put(ctx context.Context, k string, e Entry, rev uint64) (uint64, error) {
	data, err := json.Marshal(e)
	if err != nil {
		return 0, fmt.Errorf("ledger: encode: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, writeFor)
	defer cancel()
	wait, unanswered := 50*time.Millisecond, false
	for {
		tctx, tcancel := context.WithTimeout(ctx, writeTry)
		nrev, err := l.write(tctx, k, data, rev)
		tcancel()
		switch {
		case err == nil:
			return nrev, nil
		case unanswered && conflict(err):
			if kve, gerr := l.kv.Get(ctx, k); gerr == nil && bytes.Equal(kve.Value(), data) {
				return kve.Revision(), nil
			}
			return 0, err
		case ctx.Err() != nil || !noReply(err) || l.gone(ctx):
			return 0, err
		}
		unanswered = true
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// writeTry bounds one try of a write: a write takes milliseconds, a new leader answers
// within a fraction of a second of a graceful handover, and the bucket's compare-and-set
// makes a second try of a stored write harmless. writeFor bounds all the tries of one
// write, as nats.go's default timeout bounded the single one: a ledger that does not
// answer is reported (storage.go) instead of waited on.
const (
	writeTry = 500 * time.Millisecond
	writeFor = 5 * time.Second
)

func (l *Ledger) writeKV(ctx context.Context, k string, data []byte, rev uint64) (uint64, error) {
	if rev == 0 {
		return l.kv.Create(ctx, k, data)
	}
	return l.kv.Update(ctx, k, data, rev)
}

// gone reports whether the server says that the bucket does not exist.
func (l *Ledger) gone(ctx context.Context) bool {
	_, err := l.kv.Status(ctx)
	return errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
}

// noReply reports whether err says that no reply came in time (the write may be stored).
func noReply(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
}

// conflict reports whether err says the key's revision was not the one expected.
func conflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

// ClaimResult is what Claim found: a claim to work under, an outcome already recorded, or
// another handler's live claim.
type ClaimResult struct {
	// Claim is set when the caller now holds the request.
	Claim *Claim
	// Recorded is set when an outcome is recorded: no DELETE may be called.
	Recorded *Recorded
	// BusyUntil is set when another handler holds a live claim: wait and ask again.
	BusyUntil time.Time
}

// Claim takes the request for owner until now+lease, unless an outcome is recorded or a
// claim holds that has not expired (busy; the same owner included: the same message
// redelivered while its earlier delivery may still be working). An expired or released
// claim is taken over and keeps its call counts. calling counts the call the caller is
// about to make.
func (l *Ledger) Claim(ctx context.Context, id ID, integrationID, owner string, now time.Time, lease time.Duration, calling bool) (ClaimResult, error) {
	requestID := id.Request
	k := id.key()
	e := Entry{RequestID: requestID, Scope: id.Scope, IntegrationID: integrationID, Status: Claimed, Owner: owner, Until: now.Add(lease)}
	next := 0
	if calling {
		next = 1
	}
	var prior Entry
	rev := uint64(0) // create
	for {
		taken := e
		taken.Calls, taken.Counted = prior.Calls+next, prior.Counted
		nrev, err := l.put(ctx, k, taken, rev)
		if err == nil {
			return ClaimResult{Claim: &Claim{l: l, key: k, rev: nrev, e: taken, lease: lease, prior: prior}}, nil
		}
		if !conflict(err) {
			return ClaimResult{}, fmt.Errorf("ledger: claim %s: %w", requestID, err)
		}
		cur, crev, ok, err := l.get(ctx, k)
		if err != nil {
			return ClaimResult{}, err
		}
		switch {
		case !ok:
			prior, rev = Entry{}, 0 // deleted meanwhile: create again
			continue
		case cur.Final():
			return ClaimResult{Recorded: &Recorded{l: l, key: k, rev: crev, Entry: cur}}, nil
		case now.Before(cur.Until):
			return ClaimResult{BusyUntil: cur.Until}, nil
		}
		prior, rev = cur, crev // take it over
	}
}

// RecordUnclaimed records an outcome for a request without claiming it first (a request
// the server stopped delivering), unless an outcome is recorded already or a claim still
// holds (busy: its holder may still record the outcome; ask again once it expired). It
// returns the outcome in force.
func (l *Ledger) RecordUnclaimed(ctx context.Context, out Entry, now time.Time) (rec *Recorded, busyUntil time.Time, err error) {
	k := out.id().key()
	for {
		cur, rev, ok, err := l.get(ctx, k)
		if err != nil {
			return nil, time.Time{}, err
		}
		switch {
		case ok && cur.Final():
			return &Recorded{l: l, key: k, rev: rev, Entry: cur}, time.Time{}, nil
		case ok && now.Before(cur.Until):
			return nil, cur.Until, nil
		}
		if ok {
			out.Calls, out.Counted = max(out.Calls, cur.Calls), cur.Counted
		}
		out.RecordedAt = now
		rev, err = l.put(ctx, k, out, rev)
		if err == nil {
			return &Recorded{l: l, key: k, rev: rev, Entry: out}, time.Time{}, nil
		}
		if !conflict(err) {
			return nil, time.Time{}, fmt.Errorf("ledger: record %s: %w", out.RequestID, err)
		}
	}
}

// floorKey is the key of a durable consumer's last known ack floor.
func floorKey(consumer string) string {
	return "floor." + base64.RawURLEncoding.EncodeToString([]byte(consumer))
}

// SaveFloor remembers the consumer's ack floor (the stream sequence up to which every
// request is acknowledged), so that a consumer recreated after it was deleted starts after
// it instead of replaying the stream.
func (l *Ledger) SaveFloor(ctx context.Context, consumer string, seq uint64) error {
	if _, err := l.kv.Put(ctx, floorKey(consumer), []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("ledger: save ack floor of %q: %w", consumer, err)
	}
	return nil
}

// Floor returns the consumer's last saved ack floor; 0 when none is known.
func (l *Ledger) Floor(ctx context.Context, consumer string) (uint64, error) {
	kve, err := l.kv.Get(ctx, floorKey(consumer))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger: read ack floor of %q: %w", consumer, err)
	}
	seq, err := strconv.ParseUint(string(kve.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("ledger: read ack floor of %q: %w", consumer, err)
	}
	return seq, nil
}

// Adopt records e, an outcome learnt elsewhere (a result found in the stream), unless the
// ledger already holds an entry for its request id. added says whether it did.
func (l *Ledger) Adopt(ctx context.Context, e Entry, now time.Time) (added bool, err error) {
	e.RecordedAt = now
	_, err = l.put(ctx, e.id().key(), e, 0)
	switch {
	case err == nil:
		return true, nil
	case conflict(err):
		return false, nil
	}
	return false, fmt.Errorf("ledger: adopt %s: %w", e.RequestID, err)
}
