package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/admission"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/kombo"
)

// One request's path, on the worker that took its message (intake.go):
//
//	handle        the message enters: it is held and kept alive (alive.go) until it ends
//	serve         reads and decodes it, claims its request id in the ledger (claim, in
//	              outcome.go; an outcome already recorded is settled there, no call)
//	process       per call: turn waits in admission.Wait for a slot, call calls Kombo's
//	              DELETE, decide (decide.go) classifies the answer, admission.Done
//	              reports it, settleAnswer acts on it
//	settleAnswer  a result: finish (outcome.go) records the outcome, stores the result
//	              and acks; a rejected key: release hands the message back; else retry
//	              waits its delay, or gives up with a failed result (finish)

// job is one delivery of one request, from the worker that takes its message to its ack
// or nak: what is known of it, and the calls it made.
type job struct {
	// ctx and cutoff are the intake's: when ctx ends, a job that waits hands its message
	// back; cutoff ends ShutdownTimeout later and cuts a call in flight and the writes of
	// its outcome.
	ctx, cutoff  context.Context
	msg          jetstream.Msg
	aliveMsg     *aliveMsg                   // the message's entry in the aliveSet
	meta         *jetstream.MsgMetadata      // nil until read
	req          request                     // zero until decoded
	claim        *ledger.Claim               // this handler's hold on the request id; nil until claimed
	start        time.Time                   // when the claim was taken (retries are timed from it)
	pausedBefore time.Duration               // admission's PausedTotal then
	prev         int                         // DELETE calls made before this delivery (the ledger's count)
	prevCounted  int                         // of those, the ones that use up KOMBO_MAX_ATTEMPTS
	calls        int                         // DELETE calls made by this delivery
	counted      int                         // of those, the ones that use up KOMBO_MAX_ATTEMPTS
	bo           *backoff.ExponentialBackOff // made at the first retry
	expectMet    bool                        // the GET showed what the request expects
	wanting      bool                        // counted in Consumer.wanting
}

// log returns the consumer's logger with the job's ids, for the lines about one request.
func (j *job) log(l *slog.Logger) *slog.Logger {
	return l.With("request_id", j.req.RequestID, "integration_id", j.req.IntegrationID)
}

// handle is where a request message enters, on a worker: it handles msg until it is
// settled (acked or terminated with its result stored) or handed back, and keeps the
// intake's counts.
func (c *Consumer) handle(ctx, cutoff context.Context, msg jetstream.Msg) {
	defer func() {
		c.held.Add(-1)
		c.m.held.Set(float64(c.held.Load()))
		// Wake the pull loop only if it may pull now: it pulls in batches, so most
		// messages that end leave it nothing to do (every change that can make pulling
		// possible checks this after making it, so no wake-up is lost).
		if c.pullable() > 0 {
			c.wakePull()
		}
	}()
	// wanting: counted in c.wanting by readBatch, until its first call starts.
	j := job{ctx: ctx, cutoff: cutoff, msg: msg, aliveMsg: c.alive.add(msg, c.now()), wanting: true}
	defer c.alive.remove(j.aliveMsg)
	defer func() {
		if j.wanting {
			c.wanting.Add(-1)
		}
	}()
	defer c.recoverPanic(&j)
	c.serve(&j)
}

// recoverPanic, deferred, turns a panic while handling a message into a failed
// DELETER.INTERNAL result (once the request is claimed; before, the message comes back).
func (c *Consumer) recoverPanic(j *job) {
	r := recover()
	if r == nil {
		return
	}
	c.log.Error("panic while handling a request", "request_id", j.req.RequestID,
		"integration_id", j.req.IntegrationID, "panic", fmt.Sprint(r))
	if j.claim == nil {
		_ = j.msg.NakWithDelay(storageWait)
		return
	}
	res := c.failed(j.req, j.prev+j.calls, &ResultError{Code: codeInternal, Title: "Internal error",
		Message: fmt.Sprintf("the daemon failed while handling this request: %v", r)})
	c.finish(j, res, j.prevCounted+j.counted, true, "failed")
}

// serve reads the message, claims its request in the ledger (settling it at once when an
// outcome is recorded) and processes it.
func (c *Consumer) serve(j *job) {
	msg := j.msg
	meta, err := msg.Metadata()
	if err != nil {
		c.log.Error("message without JetStream metadata; terminating it", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	j.meta = meta
	if meta.NumDelivered > 1 {
		c.m.redeliveries.Inc()
	}
	if err := c.blocked(); err != nil {
		// Delivered by a pull made before the consumer turned unusable (a widened filter
		// delivers results too): handed back untouched.
		_ = msg.NakWithDelay(storageWait)
		return
	}
	req, decodeErr := decodeRequest(msg.Data(), msg.Headers(), meta.Stream, meta.Sequence.Stream)
	j.req = req
	if !c.o.DryRun { // a dry run calls nothing that matters twice: no claim
		if j.claim = c.claim(j, decodeErr == nil); j.claim == nil {
			return
		}
		j.prev, j.prevCounted = j.claim.Prior()
		c.alive.setClaim(j.aliveMsg, j.claim)
	}
	if decodeErr != nil {
		var inv *invalidEventError
		errors.As(decodeErr, &inv)
		res := c.failed(req, 0, &ResultError{Code: codeEventInvalid, Title: "Invalid request event", Message: inv.Reason})
		c.finish(j, res, 0, true, "invalid")
		return
	}
	injectFault(req)
	injectCrash("claimed", req.IntegrationID)
	j.start, j.pausedBefore = c.now(), c.adm.PausedTotal()
	c.process(j)
}

// process calls Kombo until the request is done, failed, paused or shutdown interrupts:
// wait for a turn, call, decide, report the answer to admission, then settle or retry.
func (c *Consumer) process(j *job) {
	for {
		if j.calls > 0 && !c.countCall(j) { // the first call was counted by the claim
			return
		}
		ticket, err := c.turn(j)
		if err != nil {
			c.noTurn(j, err)
			return
		}
		get := c.o.DryRun || (j.req.Expect != nil && !j.expectMet)
		if !c.guard(j, ticket, get) {
			return
		}
		a := c.call(j, ticket, get)
		injectCrash("called", j.req.IntegrationID)
		if a.err != nil && j.cutoff.Err() != nil {
			// The shutdown deadline cut the call: its outcome is unknown, redeliver.
			c.adm.Done(ticket, admission.Answer{Class: admission.Other, Took: a.took})
			c.release(j, handBackDelay)
			j.log(c.log).Warn("call cut by the shutdown deadline; request handed back", "attempt", j.prev+j.calls)
			return
		}
		d := decide(a.res, a.err)
		var delay time.Duration
		if d.retries() {
			delay = c.retryDelay(j, d) // before Done: a rate-limit answer holds every call for it
		}
		c.adm.Done(ticket, admissionAnswer(d, a.took, delay))
		c.observe(d, a)
		if get && d.Action == actionDeleted { // 200 to the GET
			if !c.settleShown(j, a.shown) {
				return
			}
			continue
		}
		if !c.settleAnswer(j, d, a, delay) {
			return
		}
	}
}

// turn waits for j's turn to call Kombo; a waiting message holds no slot. With the turn
// granted, the call may start only if the consumer is usable and j's claim holds.
func (c *Consumer) turn(j *job) (admission.Ticket, error) {
	if !j.wanting {
		c.wanting.Add(1)
		j.wanting = true
	}
	t, err := c.adm.Wait(j.ctx)
	c.wanting.Add(-1)
	j.wanting = false
	if err != nil {
		return t, err
	}
	if err = c.blocked(); err == nil {
		err = c.mayCall(j)
	}
	if err != nil {
		c.adm.Done(t, admission.Answer{})
		return admission.Ticket{}, err
	}
	return t, nil
}

// settleAnswer acts on the decision about one answer: a result for a deleted, unknown or
// failed integration, a pause for a rejected key, or a retry. It reports whether to call
// again.
func (c *Consumer) settleAnswer(j *job, d decision, a callAnswer, delay time.Duration) bool {
	switch d.Action {
	case actionDeleted, actionNotFound:
		notFound := d.Action == actionNotFound
		outcome := "deleted"
		if notFound {
			outcome = "not_found"
			j.log(c.log).Warn("Kombo does not know the integration; counting it as deleted (a wrong region or environment looks the same)",
				"kombo_code", d.Code)
		}
		res := resultOf(j.req, StatusDeleted, j.prev+j.calls)
		res.NotFound = &notFound
		c.finish(j, res, j.prevCounted+j.counted, false, outcome)
		return false
	case actionFail:
		c.finish(j, c.failed(j.req, j.prev+j.calls, resultError(a.err)), j.prevCounted+j.counted, false, "failed")
		return false
	case actionPause:
		c.pauseFor(a.err)
		c.release(j, c.o.AuthProbeInterval)
		j.log(c.log).Warn("Kombo rejects the API key; request kept for later", "kombo_code", d.Code, "attempt", j.prev+j.calls)
		return false
	}
	return c.retry(j, d, a.err, delay)
}

// mayCall says whether j's call may start now: its claim, as last written, holds for a
// while yet, or it is renewed now (ErrLost: another handler took it over after it expired).
func (c *Consumer) mayCall(j *job) error {
	if j.claim == nil || j.claim.Holds(c.now(), c.holdMargin()) { // nil: a dry run
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := j.claim.Renew(ctx, c.now())
	if err != nil && !errors.Is(err, ledger.ErrLost) {
		c.ledgerFailed(err)
	}
	return err
}

// noTurn hands j back when no call could start: shutting down (another replica takes it),
// outcomes not storable, or the claim lost (the message is another handler's then).
func (c *Consumer) noTurn(j *job, err error) {
	switch {
	case errors.Is(err, ledger.ErrLost):
		j.log(c.log).Warn("another handler took this request over; leaving it to that one", "err", err)
	case j.ctx.Err() != nil:
		c.release(j, handBackDelay)
	default: // not bound, not usable, or outcomes not storable
		c.release(j, storageWait)
	}
}

// callAnswer is what one call came back with: a DELETE, or a GET (shown).
type callAnswer struct {
	res   kombo.DeleteResult // the limits the answer stated
	shown kombo.Integration  // a GET's answer
	err   error
	took  time.Duration
}

// call makes one DELETE call, or GET call when get, in the turn of ticket. The caller
// reports the answer to admission, except when the call panics: the turn is handed back
// here then.
func (c *Consumer) call(j *job, ticket admission.Ticket, get bool) callAnswer {
	defer func() {
		if r := recover(); r != nil {
			c.adm.Done(ticket, admission.Answer{Class: admission.Other})
			panic(r)
		}
	}()
	c.m.inFlight.Set(float64(c.adm.Stats().InFlight))
	callCtx := j.cutoff
	if j.req.Traceparent != "" || j.req.Tracestate != "" {
		callCtx = kombo.WithTrace(j.cutoff, j.req.Traceparent, j.req.Tracestate)
	}
	t0 := c.now()
	if get {
		in, err := c.kombo.GetIntegration(callCtx, j.req.IntegrationID)
		return callAnswer{res: kombo.DeleteResult{Limits: in.Limits}, shown: in, err: err, took: c.now().Sub(t0)}
	}
	j.calls++ // started: counted even if it never returns
	res, err := c.kombo.DeleteIntegration(callCtx, j.req.IntegrationID)
	return callAnswer{res: res, err: err, took: c.now().Sub(t0)}
}

// settleShown acts on Kombo's 200 to a GET: in a dry run, the would-be result; otherwise a
// mismatch with what the request expects fails it, and a match lets the DELETE follow. It
// reports whether to call again (the DELETE).
func (c *Consumer) settleShown(j *job, in kombo.Integration) bool {
	if j.req.Expect != nil {
		if diff := j.req.Expect.mismatch(in); diff != "" {
			res := c.failed(j.req, j.prev+j.calls, &ResultError{Code: codeMismatch, Title: "Not the expected integration",
				Message: diff + ": no DELETE made"})
			c.finish(j, res, j.prevCounted+j.counted, false, "mismatch")
			return false
		}
		j.expectMet = true
	}
	if c.o.DryRun {
		res := resultOf(j.req, statusWouldDelete, 0)
		res.Integration = integrationOf(in)
		c.finish(j, res, 0, false, "would_delete")
		return false
	}
	return true
}

// admissionAnswer is what admission learns from one answer: what it came to, how long it
// took, the limits Kombo stated, and, for a rate-limit answer, how long no call may start.
func admissionAnswer(d decision, took, delay time.Duration) admission.Answer {
	a := admission.Answer{Took: took, ConcurrencyLimit: d.Limits.ConcurrencyLimit, ConcurrencyRemaining: d.Limits.ConcurrencyRemaining,
		RateLimit: d.Limits.RateLimit, RateRemaining: d.Limits.RateRemaining}
	switch d.Action {
	case actionDeleted, actionNotFound:
		a.Class = admission.Processed
	case actionRetryConcurrency:
		a.Class = admission.ConcurrencyRefused
	case actionRetryRateLimited:
		a.Class, a.Wait = admission.RateRefused, delay
	default:
		a.Class = admission.Other
	}
	return a
}

// observe counts one answer in the metrics, and logs a new rate-limit hold.
func (c *Consumer) observe(d decision, a callAnswer) {
	s := c.adm.Stats()
	c.m.inFlight.Set(float64(s.InFlight))
	c.m.concurrencyCap.Set(float64(s.Cap))
	if d.Action == actionRetryRateLimited {
		if until := s.HoldUntil.UnixNano(); c.holdLogged.Swap(until) < until {
			c.log.Info("Kombo's rate limit: no call starts before the time it announced, then calls are paced",
				"until", s.HoldUntil.UTC().Format(time.RFC3339Nano), "pace_per_second", math.Round(s.Pace*10)/10)
		}
	}
	if a.err == nil {
		c.okCalls.Inc()
		c.m.komboLatency.Observe(a.took.Seconds())
		return
	}
	status := 0
	var kerr *kombo.Error
	if errors.As(a.err, &kerr) {
		status = kerr.Status
	}
	c.m.call(status, d.Code, a.took.Seconds())
}

// countCall counts, in the ledger's claim, the call about to start (a retry), before it
// waits for a slot. It reports false when the claim is no longer this handler's or cannot
// be written; the message is then left to come back (or handed back) and the caller stops.
func (c *Consumer) countCall(j *job) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := j.claim.Count(ctx, j.prev+j.calls+1, j.prevCounted+j.counted, c.now())
	if err == nil {
		return true
	}
	if errors.Is(err, ledger.ErrLost) {
		j.log(c.log).Warn("another handler took this request over; leaving it to that one", "err", err)
		return false
	}
	c.ledgerFailed(err)
	j.log(c.log).Error("cannot count the call in the ledger; the request is handed back", "err", err)
	c.release(j, storageWait)
	return false
}

// retry counts the call, gives up when the budget is used (a failed result), and waits
// delay. It reports whether to call again.
func (c *Consumer) retry(j *job, d decision, err error, delay time.Duration) bool {
	now := c.now()
	active := now.Sub(j.start) - (c.adm.PausedTotal() - j.pausedBefore)
	if j.prevCounted+j.counted+boolInt(d.usesAttempt()) >= c.o.MaxAttempts || active+delay > c.o.RetryMaxElapsed {
		re := resultError(err)
		if re.Code == "" {
			re.Code = codeRetriesExhausted
		}
		re.Message = fmt.Sprintf("gave up after %d attempts over %s: %s", j.prev+j.calls, active.Round(time.Millisecond), re.Message)
		c.finish(j, c.failed(j.req, j.prev+j.calls, re), j.prevCounted+j.counted+boolInt(d.usesAttempt()), false, "failed")
		return false
	}
	if d.usesAttempt() {
		j.counted++
	}
	lvl := slog.LevelDebug
	if d.Action == actionRetry {
		lvl = slog.LevelWarn
	}
	if c.log.Enabled(j.ctx, lvl) {
		j.log(c.log).Log(j.ctx, lvl, "retrying", "attempt", j.prev+j.calls, "kombo_code", d.Code,
			"decision", d.Action.String(), "delay", delay, "err", err)
	}
	if sleep(j.ctx, delay) != nil {
		// Shutting down during the backoff: keep the backoff, but on the server.
		c.release(j, max(handBackDelay, delay-c.now().Sub(now)))
		return false
	}
	return true
}

// retryDelay returns how long to wait before the next call, and counts the retry's reason.
// A rate-limit answer waits what Kombo announced, else the backoff, and every call waits
// with it (admission holds them). A concurrency refusal waits about two call durations,
// jittered, and goes back in line: the cap paces those calls, and an escalating backoff
// would leave a message refused a few times in a row waiting long after Kombo has room.
func (c *Consumer) retryDelay(j *job, d decision) time.Duration {
	if j.bo == nil {
		j.bo = c.newBackoff()
	}
	switch d.Action {
	case actionRetryRateLimited:
		c.m.retries.WithLabelValues("rate_limit").Inc()
		c.m.rateLimitHolds.Inc()
		if d.Hint > 0 {
			return d.Hint
		}
		return j.bo.NextBackOff()
	case actionRetryConcurrency:
		c.m.retries.WithLabelValues("concurrency_limit").Inc()
		mean := max(c.adm.Stats().MeanCall, 5*time.Millisecond)
		jittered := mean + time.Duration(rand.Int64N(int64(2*mean))) // two call durations, ±50 %
		return max(min(max(jittered, 10*time.Millisecond), c.o.BackoffInitial), d.Hint)
	default:
		c.m.retries.WithLabelValues("transient").Inc()
		return max(j.bo.NextBackOff(), d.Hint)
	}
}

// newBackoff returns the backoff of one job's transient failures and unannounced rate
// limits.
func (c *Consumer) newBackoff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.o.BackoffInitial),
		backoff.WithMaxInterval(c.o.BackoffMax),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0), // the consumer keeps its own budget, without paused time
	)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// resultError is the error of a failed result, from the error of the last call (nil: no
// answer).
func resultError(err error) *ResultError {
	var kerr *kombo.Error
	if errors.As(err, &kerr) {
		return &ResultError{Code: kerr.EffectiveCode(), Title: kerr.Title, Message: kerr.Message,
			LogURL: kerr.LogURL, HTTPStatus: kerr.Status}
	}
	msg := "no answer from Kombo"
	if err != nil {
		msg = err.Error()
	}
	return &ResultError{Title: "No answer from Kombo", Message: msg}
}

func (c *Consumer) failed(req request, attempts int, re *ResultError) Result {
	res := resultOf(req, StatusFailed, attempts)
	res.Error = re
	return res
}

// resultOf is the result of req with status, echoing what the request asks to echo.
func resultOf(req request, status string, attempts int) Result {
	return Result{RequestID: req.RequestID, IntegrationID: req.IntegrationID, Status: status,
		Attempts: attempts, RequestedBy: req.RequestedBy, Reason: req.Reason, RetryOf: req.RetryOf}
}
