package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// The write orders of one request (docs/LEDGER.md lists what a crash after each write
// leaves):
//
//	claim   ledger: claimed {owner, until, calls}   (before waiting for a Kombo slot)
//	call    Kombo DELETE; a retry writes calls+1 to the claim first; no call starts
//	        unless the claim, as last written, holds for a while yet
//	failed:  record the outcome (CAS) → publish the result (PubAck) → note its sequence
//	         (not waited for) → ack. A stored failed must stay final: no call after it.
//	deleted: publish the result (PubAck) → record the outcome with its sequence (in the
//	         background, tried until written; the ack does not wait) → ack. Nothing can
//	         contradict a deleted result.
//
// A delivery that finds an outcome recorded makes no call: it publishes the recorded
// result if it is not noted as stored, and acks.

// storageWait is how long a message that cannot be claimed (the ledger does not answer)
// waits on the server before it comes back.
const storageWait = 2 * time.Second

// owner names the handler of one message: the durable consumer and the message's stream
// sequence (for the logs and for an operator reading the ledger).
func (c *Consumer) owner(meta *jetstream.MsgMetadata) string {
	return c.o.Stream.Consumer + "/" + strconv.FormatUint(meta.Sequence.Stream, 10)
}

// lease is how long a claim holds without being renewed: AckWait and a half. Claims are
// renewed every third of AckWait with the in-progress acks; a call starts only while the
// claim holds for half an AckWait more (holdMargin), and nobody may take a claim over
// before it expired, so two calls of one request never overlap while both holders can
// reach the server.
func (c *Consumer) lease() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.ackWait*3/2, 2*time.Second)
}

// holdMargin is how long a claim must hold yet for a call to start under it.
func (c *Consumer) holdMargin() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return max(c.ackWait/2, 500*time.Millisecond)
}

// ledgerID is the ledger's name for req: a "<stream>-<sequence>" request id is unique only
// within this incarnation of the stream (a stream created again numbers from 1), so it is
// scoped to it.
func (c *Consumer) ledgerID(req request) ledger.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := ledger.ID{Request: req.RequestID}
	if seq, ok := strings.CutPrefix(req.RequestID, c.o.Stream.Name+"-"); ok && seq != "" && strings.Trim(seq, "0123456789") == "" {
		id.Scope = c.incarnation
	}
	return id
}

// claim takes the request in the ledger before any call. It returns nil when the message
// needs nothing more from its caller: its outcome was recorded already (it is then settled
// here, with no call), or the ledger does not answer, or shutdown came while another
// handler held the request (the message is then handed back). While another handler
// holds it, claim waits for that handler's outcome.
func (c *Consumer) claim(j *job, calling bool) *ledger.Claim {
	msg, meta, req := j.msg, j.meta, j.req
	wait := 50 * time.Millisecond
	for {
		lctx, cancel := context.WithTimeout(j.cutoff, 10*time.Second)
		r, err := c.ledger.Claim(lctx, c.ledgerID(req), req.IntegrationID, c.owner(meta), c.now(), c.lease(), calling)
		cancel()
		switch {
		case err != nil:
			c.ledgerFailed(err)
			c.log.Error("cannot claim the request in the ledger; no call is made, the message comes back later",
				"request_id", req.RequestID, "integration_id", req.IntegrationID, "err", err)
			_ = msg.NakWithDelay(storageWait)
			return nil
		case r.Claim != nil:
			if c.foundStored(j, r.Claim) {
				return nil
			}
			return r.Claim
		case r.Recorded != nil:
			c.settle(j.cutoff, msg, meta, r.Recorded, false, "already_recorded")
			return nil
		}
		// Another handler holds it (a second event with the same request id): wait for
		// its outcome, kept alive meanwhile like any waiting message.
		if sleep(j.ctx, wait) != nil {
			_ = msg.NakWithDelay(handBackDelay)
			return nil
		}
		wait = min(2*wait, time.Second)
	}
}

// foundStored looks, when cl took over the claim of a handler that had called Kombo long
// enough ago that the stream would no longer recognise its result as a duplicate, whether
// that handler stored a result (a deleted one is stored before its outcome is recorded)
// and, if so, records it and settles the message with no call. It reports whether it did.
func (c *Consumer) foundStored(j *job, cl *ledger.Claim) bool {
	ctx := j.cutoff
	calls, counted := cl.Prior()
	window := c.resultWindow()
	// The earlier handler published, if at all, around its last renewal: at most a
	// lease and a renewal interval before its claim expired.
	published := cl.PriorUntil().Add(-c.lease() - c.holdMargin())
	if calls == 0 || c.now().Sub(published) <= window/2 {
		return false // nothing called, or a repeated result would still be deduplicated
	}
	id := cl.RequestID()
	seq, err := c.findStored(ctx, id, published.Add(-window))
	if err != nil || seq == 0 {
		if err != nil {
			c.log.Warn("cannot look for a result stored before the claim expired; calling again", "request_id", id, "err", err)
		}
		return false
	}
	data, err := c.storedResult(ctx, c.o.DeletedSubject, seq)
	var res Result
	if err == nil {
		err = json.Unmarshal(data, &res)
	}
	if err != nil || res.Status != StatusDeleted || res.RequestID != id {
		return false
	}
	rec, err := cl.Record(ctx, ledger.Entry{RequestID: res.RequestID, IntegrationID: res.IntegrationID, Status: ledger.Deleted,
		Calls: max(calls, res.Attempts), Counted: counted, CompletedAt: res.CompletedAt, Subject: c.o.DeletedSubject,
		Result: data, ResultSeq: seq}, c.now())
	if err != nil {
		return false
	}
	c.settle(ctx, j.msg, j.meta, rec, false, "already_recorded")
	return true
}

// release hands the job's request back: the claim ends at once, keeping the counts of the
// calls really made, and the message comes back after delay. A claim another handler took
// over is left alone, and so is the message: its delivery is that handler's now (a nak
// would send it out again).
func (c *Consumer) release(j *job, delay time.Duration) {
	if j.claim != nil { // nil: a dry run
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := j.claim.Release(ctx, j.prev+j.calls, j.prevCounted+j.counted, c.now())
		if errors.Is(err, ledger.ErrLost) {
			return
		}
		if err != nil {
			c.log.Warn("cannot release the claim; it expires by itself", "err", err)
		}
	}
	_ = j.msg.NakWithDelay(delay)
}

// finish records the outcome res in the ledger (counted: the calls that used up
// KOMBO_MAX_ATTEMPTS), then settles it: publish, note, ack (or
// terminate, for term). When the outcome cannot be recorded, the message comes back and
// no ack is sent. When another handler recorded an outcome first, that one is settled.
func (c *Consumer) finish(j *job, res Result, counted int, term bool, outcome string) {
	ctx, msg, meta, cl := j.cutoff, j.msg, j.meta, j.claim
	res.CompletedAt = completedAt(c.now())
	if c.o.DryRun {
		c.finishDry(j, res, term, outcome)
		return
	}
	subject := c.o.DeletedSubject
	status := ledger.Deleted
	code := ""
	if res.Status == StatusFailed {
		subject, status = c.o.FailedSubject, ledger.Failed
		code = res.Error.Code
	}
	data, err := json.Marshal(res)
	if err != nil { // a Result always encodes; kept so that a change that breaks it shows
		panic(fmt.Sprintf("consumer: encode result: %v", err))
	}
	out := ledger.Entry{RequestID: res.RequestID, IntegrationID: res.IntegrationID, Status: status,
		Calls: res.Attempts, Counted: counted, Code: code, CompletedAt: res.CompletedAt, Subject: subject, Result: data}
	if status == ledger.Deleted {
		c.finishDeleted(ctx, msg, meta, cl, out, outcome)
		return
	}
	rec, err := cl.Record(ctx, out, c.now())
	if errors.Is(err, ledger.ErrLost) {
		c.log.Warn("another handler holds this request now; its outcome will be that handler's",
			"request_id", res.RequestID, "integration_id", res.IntegrationID, "attempts", res.Attempts)
		return
	}
	if err != nil {
		c.ledgerFailed(err)
		c.log.Error("cannot record the outcome in the ledger; the request will be redelivered",
			"request_id", res.RequestID, "integration_id", res.IntegrationID, "attempts", res.Attempts, "err", err)
		_ = msg.NakWithDelay(storageWait)
		return
	}
	injectCrash("recorded", res.IntegrationID)
	if string(rec.Result) != string(data) {
		c.log.Warn("another handler recorded this request's outcome first; keeping that one",
			"request_id", res.RequestID, "integration_id", res.IntegrationID, "recorded", rec.Status, "ours", status)
		outcome = "already_recorded"
	}
	c.settle(ctx, msg, meta, rec, term, outcome)
}

// finishDeleted stores a deleted outcome in the other order: the result first, then the
// outcome with the result's sequence, in the background, then the ack. Nothing after a
// deleted result can contradict it (a repeated call answers not found: deleted too), so
// the outcome need not precede it: a crash in between costs only a repeated call, whose
// result the stream deduplicates. This saves a waited round trip on the common path.
func (c *Consumer) finishDeleted(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, cl *ledger.Claim, out ledger.Entry, outcome string) {
	seq, stored, err := c.publishResult(ctx, out.Subject, out.RequestID, out.Result, msg.Headers())
	if err != nil {
		c.log.Error("cannot store the result; the request will be redelivered", "request_id", out.RequestID,
			"integration_id", out.IntegrationID, "attempts", out.Calls, "err", err)
		return
	}
	injectCrash("published", out.IntegrationID)
	out.ResultSeq, out.Result = seq, stored
	written := c.recordStored(ctx, cl, out)
	injectCrash("recorded", out.IntegrationID, func() error { <-written; return nil })
	rec := &ledger.Recorded{Entry: out}
	c.ack(ctx, msg, meta, rec, false, outcome)
}

// recordStored records, in the background, an outcome whose result is stored, trying until
// it is written, another handler holds the request, or ctx ends: a write lost at a leader
// change, or refused while the ledger is away, costs a later delivery of the request a
// repeated call. Each try holds the claim for at most the ledger's write bound. The channel
// is closed once it is written or given up; the intake waits for all before it stops.
func (c *Consumer) recordStored(ctx context.Context, cl *ledger.Claim, out ledger.Entry) <-chan struct{} {
	done := make(chan struct{})
	c.records.Add(1)
	go func() {
		defer c.records.Done()
		defer close(done)
		wait := 250 * time.Millisecond
		for {
			_, err := cl.Record(ctx, out, c.now())
			if err == nil || errors.Is(err, ledger.ErrLost) {
				return
			}
			if wait == 250*time.Millisecond {
				c.log.Warn("cannot record the outcome in the ledger yet; trying again", "request_id", out.RequestID, "err", err)
			}
			if sleep(ctx, wait) != nil {
				c.log.Warn("cannot record the outcome in the ledger; a later delivery calls again", "request_id", out.RequestID, "err", err)
				return
			}
			wait = min(2*wait, 2*time.Second)
		}
	}()
	return done
}

// publishResult publishes a result and returns its stream sequence and the result as
// stored: the stored one when the stream already had it (a repeated call after a crash).
func (c *Consumer) publishResult(ctx context.Context, subject, requestID string, data []byte, reqHdr nats.Header) (uint64, []byte, error) {
	seq, dup, err := c.publish(ctx, subject, "result-"+requestID, data, reqHdr)
	if err != nil || !dup {
		return seq, data, err
	}
	stored, err := c.storedResult(ctx, subject, seq)
	if err != nil {
		return 0, nil, err
	}
	return seq, stored, nil
}

// settle makes sure the recorded outcome's result is stored, then acks (or terminates)
// the message.
func (c *Consumer) settle(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, rec *ledger.Recorded, term bool, outcome string) {
	ids := [3]slog.Attr{slog.String("request_id", rec.RequestID), slog.String("integration_id", rec.IntegrationID),
		slog.Int("attempts", rec.Calls)}
	if err := c.storeResult(ctx, rec, msg.Headers()); err != nil {
		c.log.LogAttrs(ctx, slog.LevelError, "cannot store the result; the request will be redelivered",
			ids[0], ids[1], ids[2], slog.Any("err", err))
		return
	}
	c.ack(ctx, msg, meta, rec, term, outcome)
}

// ack acks (or terminates) the message of a settled request and writes its log line.
func (c *Consumer) ack(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, rec *ledger.Recorded, term bool, outcome string) {
	ids := [3]slog.Attr{slog.String("request_id", rec.RequestID), slog.String("integration_id", rec.IntegrationID),
		slog.Int("attempts", rec.Calls)}
	if c.crashAfterPublish != nil && c.crashAfterPublish(rec.RequestID) {
		return
	}
	var err error
	if term {
		err = msg.TermWithReason(outcome)
	} else {
		err = msg.Ack()
	}
	if err != nil {
		c.log.LogAttrs(ctx, slog.LevelWarn, "ack failed; the request will be redelivered and find its outcome recorded",
			ids[0], ids[1], ids[2], slog.Any("err", err))
	}
	c.logOutcome(ctx, msg, meta, rec, outcome, ids)
}

// storeResult publishes the recorded outcome's result unless the ledger notes it stored,
// and notes where it went. Past half the duplicate window since the outcome was recorded,
// a second copy would no longer be recognised by the stream: it first looks whether the
// result is there (published, then a crash before the note).
func (c *Consumer) storeResult(ctx context.Context, rec *ledger.Recorded, reqHdr nats.Header) error {
	if rec.ResultSeq != 0 {
		return nil
	}
	if window := c.resultWindow(); c.now().Sub(rec.RecordedAt) > window/2 {
		seq, err := c.findStored(ctx, rec.RequestID, rec.RecordedAt.Add(-window))
		if err != nil {
			return fmt.Errorf("look for the stored result: %w", err)
		}
		if seq != 0 {
			return rec.Stored(ctx, seq)
		}
	}
	seq, _, err := c.publish(ctx, rec.Subject, "result-"+rec.RequestID, rec.Result, reqHdr)
	if err != nil {
		return err
	}
	injectCrash("published", rec.IntegrationID)
	if err := rec.NoteStored(seq); err != nil {
		// The result is stored; a later delivery publishes it again and the stream's
		// duplicate window keeps it one.
		c.log.Warn("cannot note the stored result in the ledger", "request_id", rec.RequestID, "err", err)
	}
	injectCrash("stored", rec.IntegrationID, c.js.Conn().Flush)
	return nil
}

// logOutcome counts the outcome and writes the request's one line.
func (c *Consumer) logOutcome(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, rec *ledger.Recorded, outcome string, ids [3]slog.Attr) {
	if outcome == "deleted" {
		c.deleted.Inc()
	} else {
		c.m.requests.WithLabelValues(outcome).Inc()
	}
	level, text := slog.LevelInfo, "request done"
	switch {
	case outcome == "already_recorded":
		text = "request already has an outcome; no call made"
	case rec.Status == ledger.Failed:
		level, text = slog.LevelWarn, "request failed"
	}
	if !c.log.Enabled(ctx, level) {
		return
	}
	attrs := make([]slog.Attr, 0, 9)
	attrs = append(attrs, ids[:]...)
	attrs = append(attrs, slog.String("outcome", outcome))
	if meta == nil {
		meta, _ = msg.Metadata()
	}
	if meta != nil {
		attrs = append(attrs, slog.Duration("duration", c.now().Sub(meta.Timestamp).Round(time.Millisecond)),
			slog.Uint64("deliveries", meta.NumDelivered))
	}
	if rec.Status == ledger.Failed {
		var res Result
		_ = json.Unmarshal(rec.Result, &res)
		if res.Error != nil {
			attrs = append(attrs, slog.String("kombo_code", res.Error.Code), slog.String("error", res.Error.Message),
				slog.String("log_url", res.Error.LogURL))
		}
	}
	c.log.LogAttrs(ctx, level, text, attrs...)
}
