// Package consumer reads delete requests from a JetStream durable consumer, deletes the
// integrations through Kombo and publishes exactly one result event per request.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/kombo"
)

// Deleter is what the consumer needs from the Kombo client.
type Deleter interface {
	DeleteIntegration(ctx context.Context, id string) (kombo.DeleteResult, error)
	CheckAPIKey(ctx context.Context) (kombo.KeyInfo, error)
}

// Options configure a Consumer. Every duration must be positive unless its comment says
// what zero means.
type Options struct {
	// Stream says which stream and durable consumer to bind, and how to provision them.
	Stream StreamOptions
	// DeletedSubject and FailedSubject receive the results.
	DeletedSubject, FailedSubject string
	// MaxConcurrency is the upper bound of Kombo calls in flight.
	MaxConcurrency int
	// MaxAttempts is the number of DELETE calls whose answers were the request's
	// fault (5xx, timeouts, network errors) after which a request fails.
	MaxAttempts int
	// RetryMaxElapsed is the time after which a request fails, paused time not counted.
	RetryMaxElapsed time.Duration
	// BackoffInitial and BackoffMax bound the exponential backoff (with jitter).
	BackoffInitial, BackoffMax time.Duration
	// AuthProbeInterval is how often a paused consumer checks the API key.
	AuthProbeInterval time.Duration
	// ShutdownTimeout bounds how long calls in flight may take after Run's context ends.
	ShutdownTimeout time.Duration
	// PullWait is how long one pull request waits on the server; 0 means 2s.
	PullWait time.Duration
	// Logger receives the consumer's logs; nil discards them.
	Logger *slog.Logger
	// Metrics receive the consumer's metrics; nil means unregistered ones.
	Metrics *Metrics
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// handBackDelay is the redelivery delay of a message handed back at shutdown. It is short,
// so that another replica soon takes it, but never zero: a bare Nak redelivers at once,
// which a crash-looping process could turn into a busy loop.
const handBackDelay = time.Second

// Consumer is the JetStream loop: pull only what free Kombo slots can start, call Kombo,
// decide, publish the result, ack.
type Consumer struct {
	js      jetstream.JetStream
	kombo   Deleter
	o       Options
	log     *slog.Logger
	m       *Metrics
	now     func() time.Time
	limiter *Limiter
	gate    *Gate
	pause   *pauser

	mu         sync.Mutex
	cons       jetstream.Consumer
	ackWait    time.Duration
	maxPending int
	bindErr    error // why the consumer is not bound; nil when bound
	stopping   bool

	held        atomic.Int64 // messages being handled
	outstanding atomic.Int64 // messages asked for by pulls not yet answered
	wake        chan struct{}

	// crashAfterPublish, set by tests, makes finish skip the ack of results it returns
	// true for, as a process that crashed between publishing and acking would.
	crashAfterPublish func(Result) bool
}

// New returns a consumer; Run starts it.
func New(js jetstream.JetStream, d Deleter, o Options) (*Consumer, error) {
	if o.MaxConcurrency < 1 || o.MaxAttempts < 1 {
		return nil, errors.New("consumer: MaxConcurrency and MaxAttempts must be at least 1")
	}
	if o.PullWait == 0 {
		o.PullWait = 2 * time.Second
	}
	c := &Consumer{
		js:      js,
		kombo:   d,
		o:       o,
		log:     o.Logger,
		m:       o.Metrics,
		now:     o.Now,
		limiter: NewLimiter(o.MaxConcurrency),
		pause:   newPauser(),
		wake:    make(chan struct{}, 1),
		bindErr: errors.New("not bound to the consumer yet"),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.m == nil {
		c.m = NewMetrics(nil)
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.gate = NewGate(c.now)
	c.m.ConcurrencyCap.Set(float64(c.limiter.Limit()))
	return c, nil
}

// Ready returns nil while the consumer is bound, not paused and not shutting down, and
// otherwise an error saying why not.
func (c *Consumer) Ready() error {
	c.mu.Lock()
	stopping, bindErr := c.stopping, c.bindErr
	c.mu.Unlock()
	if stopping {
		return errors.New("shutting down")
	}
	if bindErr != nil {
		return bindErr
	}
	if paused, why := c.pause.state(); paused {
		return fmt.Errorf("paused: Kombo rejects the API key (%s)", why)
	}
	return nil
}

// Limit returns the current concurrency cap.
func (c *Consumer) Limit() int { return c.limiter.Limit() }

// Run binds the consumer, checks the API key, and processes requests until ctx is done.
// Then it stops pulling, naks what waits, lets calls in flight finish within
// ShutdownTimeout, and returns nil. It fails only when it cannot bind at start for a
// reason retrying cannot fix (stream or consumer missing with provisioning off). It
// leaves no goroutine behind.
func (c *Consumer) Run(ctx context.Context) error {
	// hard outlives ctx by ShutdownTimeout: calls in flight and their results use it.
	hard, cancelHard := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelHard()
	var hardTimer *time.Timer
	var hardMu sync.Mutex
	stopAfter := context.AfterFunc(ctx, func() {
		hardMu.Lock()
		hardTimer = time.AfterFunc(c.o.ShutdownTimeout, cancelHard)
		hardMu.Unlock()
	})
	defer func() {
		stopAfter()
		hardMu.Lock()
		if hardTimer != nil {
			hardTimer.Stop()
		}
		hardMu.Unlock()
	}()

	if err := c.bindAtStart(ctx); err != nil {
		return err
	}
	c.checkKeyAtStart(ctx)

	var wg sync.WaitGroup
	sub, err := c.watchMaxDeliveries(hard)
	if err != nil {
		c.log.Warn("cannot watch MAX_DELIVERIES advisories", "err", err)
	}
	wg.Go(func() { c.probeLoop(ctx) })
	c.pullLoop(ctx, hard, &wg)

	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	c.log.Info("stopped pulling; waiting for calls in flight", "held", c.held.Load())
	wg.Wait()
	if sub != nil {
		_ = sub.Unsubscribe()
	}
	c.log.Info("consumer stopped")
	return nil
}

// kick wakes the pull loop.
func (c *Consumer) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pullable returns how many messages may be pulled now: as many as free Kombo slots can
// start at once, within the consumer's MaxAckPending.
func (c *Consumer) pullable() int {
	if paused, _ := c.pause.state(); paused || !c.gate.Open() {
		return 0
	}
	c.mu.Lock()
	bound, maxPending := c.bindErr == nil, c.maxPending
	c.mu.Unlock()
	if !bound {
		return 0
	}
	out := int(c.outstanding.Load())
	n := c.limiter.Free() - out
	if maxPending > 0 {
		n = min(n, maxPending-int(c.held.Load())-out)
	}
	return n
}

func (c *Consumer) pullLoop(ctx, hard context.Context, wg *sync.WaitGroup) {
	retry := time.Duration(0)
	for {
		if !c.isBound() {
			// The consumer disappeared (and could not be recreated, or provisioning is
			// off): try again every few seconds; Ready says why meanwhile.
			if sleep(ctx, rebindInterval) != nil {
				return
			}
			c.rebind(ctx)
			continue
		}
		changed := c.limiter.Changed() // taken before reading Free, so no release is missed
		n := c.pullable()
		if n <= 0 {
			if c.waitPullable(ctx, changed) != nil {
				return
			}
			continue
		}
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		cons := c.cons
		c.mu.Unlock()
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(c.o.PullWait))
		if err != nil {
			retry = min(max(2*retry, 100*time.Millisecond), 5*time.Second)
			c.log.Warn("pull failed", "err", err, "retry_in", retry)
			c.checkBinding(ctx, err)
			if sleep(ctx, retry) != nil {
				return
			}
			continue
		}
		retry = 0
		c.outstanding.Add(int64(n))
		wg.Go(func() { c.readBatch(ctx, hard, batch, n, wg) })
	}
}

// waitPullable waits until pulling may have become possible: a slot freed, a message
// finished, a state changed (kick), or a rate-limit hold ended.
func (c *Consumer) waitPullable(ctx context.Context, changed <-chan struct{}) error {
	var wait <-chan time.Time
	if until := c.gate.Until(); !c.gate.Open() {
		t := time.NewTimer(until.Sub(c.now()))
		defer t.Stop()
		wait = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-c.wake:
	case <-wait:
	}
	return nil
}

// readBatch hands each message of a pull to its own goroutine.
func (c *Consumer) readBatch(ctx, hard context.Context, batch jetstream.MessageBatch, n int, wg *sync.WaitGroup) {
	got := 0
	for msg := range batch.Messages() {
		got++
		c.outstanding.Add(-1)
		if ctx.Err() != nil {
			// Shutting down: hand it back so another replica takes it.
			_ = msg.NakWithDelay(handBackDelay)
			continue
		}
		c.held.Add(1)
		c.m.Held.Set(float64(c.held.Load()))
		wg.Go(func() { c.handle(ctx, hard, msg) })
	}
	c.outstanding.Add(int64(got - n))
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		c.log.Debug("pull ended", "err", err)
		c.checkBinding(ctx, err)
	} else if got == 0 {
		c.checkBinding(ctx, nil)
	}
	c.kick()
}

// job is one delivery of one request being handled.
type job struct {
	req       Request
	start     time.Time
	pausedAt0 time.Duration // pausedTotal when the job started
	prev      int           // DELETE calls made by earlier deliveries, as far as the delivery count tells
	calls     int           // DELETE calls made by this delivery
	counted   int           // calls whose answers use up KOMBO_MAX_ATTEMPTS
	bo        *backoff.ExponentialBackOff
}

func (c *Consumer) handle(ctx, hard context.Context, msg jetstream.Msg) {
	defer func() {
		c.held.Add(-1)
		c.m.Held.Set(float64(c.held.Load()))
		c.kick()
	}()
	stop := c.keepAlive(msg)
	defer stop()

	var (
		meta *jetstream.MsgMetadata
		req  Request
		j    *job
	)
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic while handling a request", "request_id", req.RequestID,
				"integration_id", req.IntegrationID, "panic", fmt.Sprint(r))
			attempts := 0
			if j != nil {
				attempts = j.prev + j.calls
			}
			res := c.failed(req, attempts, &ResultError{Code: CodeInternal, Title: "Internal error",
				Message: fmt.Sprintf("the daemon failed while handling this request: %v", r)})
			c.finish(hard, msg, res, true, "failed")
		}
	}()

	meta, err := msg.Metadata()
	if err != nil {
		c.log.Error("message without JetStream metadata; terminating it", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	if meta.NumDelivered > 1 {
		c.m.Redeliveries.Inc()
	}
	req, err = DecodeRequest(msg.Data(), msg.Headers(), meta.Stream, meta.Sequence.Stream)
	if err != nil {
		var inv *InvalidEventError
		errors.As(err, &inv)
		res := c.failed(req, 0, &ResultError{Code: CodeEventInvalid, Title: "Invalid request event", Message: inv.Reason})
		c.finish(hard, msg, res, true, "invalid")
		return
	}
	injectFault(req)
	now := c.now()
	j = &job{req: req, start: now, pausedAt0: c.pause.pausedTotal(now), prev: int(meta.NumDelivered) - 1, bo: c.newBackoff()}
	c.process(ctx, hard, msg, j)
}

func (c *Consumer) newBackoff() *backoff.ExponentialBackOff {
	return backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(c.o.BackoffInitial),
		backoff.WithMaxInterval(c.o.BackoffMax),
		backoff.WithRandomizationFactor(0.5),
		backoff.WithMultiplier(2),
		backoff.WithMaxElapsedTime(0), // the consumer keeps its own budget, without paused time
	)
}

// process calls Kombo until the request is done, failed, paused or shutdown interrupts.
func (c *Consumer) process(ctx, hard context.Context, msg jetstream.Msg, j *job) {
	log := c.log.With("request_id", j.req.RequestID, "integration_id", j.req.IntegrationID)
	for {
		ticket, err := c.awaitTurn(ctx)
		if err != nil {
			_ = msg.NakWithDelay(handBackDelay) // shutting down before the call: another replica takes it
			return
		}
		c.m.InFlight.Set(float64(c.limiter.InFlight()))
		callCtx := kombo.WithTrace(hard, j.req.Traceparent, j.req.Tracestate)
		t0 := c.now()
		res, err := c.kombo.DeleteIntegration(callCtx, j.req.IntegrationID)
		took := c.now().Sub(t0)
		j.calls++
		if err != nil && hard.Err() != nil {
			// The shutdown deadline cut the call: its outcome is unknown, redeliver.
			c.limiter.Release(ticket, OutcomeOther)
			_ = msg.NakWithDelay(handBackDelay)
			log.Warn("call cut by the shutdown deadline; request handed back", "attempt", j.prev+j.calls)
			return
		}
		d := Decide(res, err)
		c.limiter.Release(ticket, limiterOutcome(d))
		if d.ConcurrencyBound > 0 {
			c.limiter.SetBound(d.ConcurrencyBound)
		}
		c.m.InFlight.Set(float64(c.limiter.InFlight()))
		c.m.ConcurrencyCap.Set(float64(c.limiter.Limit()))
		status := 200
		var kerr *kombo.Error
		if errors.As(err, &kerr) {
			status = kerr.Status
		} else if err != nil {
			status = 0
		}
		c.m.call(status, d.Code, took.Seconds())

		switch d.Action {
		case ActionDeleted, ActionNotFound:
			notFound := d.Action == ActionNotFound
			if notFound {
				log.Warn("Kombo does not know the integration; counting it as deleted (a wrong region or environment looks the same)",
					"kombo_code", d.Code)
			}
			res := Result{RequestID: j.req.RequestID, IntegrationID: j.req.IntegrationID, Status: StatusDeleted,
				NotFound: &notFound, Attempts: j.prev + j.calls, RequestedBy: j.req.RequestedBy, Reason: j.req.Reason}
			outcome := "deleted"
			if notFound {
				outcome = "not_found"
			}
			c.finish(hard, msg, res, false, outcome)
			return
		case ActionFail:
			c.finish(hard, msg, c.failed(j.req, j.prev+j.calls, resultError(kerr, err)), false, "failed")
			return
		case ActionPause:
			c.pauseFor(err)
			_ = msg.NakWithDelay(c.o.AuthProbeInterval)
			log.Warn("Kombo rejects the API key; request kept for later", "kombo_code", d.Code, "attempt", j.prev+j.calls)
			return
		}

		// A retry.
		if d.Counts() {
			j.counted++
		}
		delay := j.bo.NextBackOff()
		reason := "transient"
		switch d.Action {
		case ActionRetryRateLimited:
			reason = "rate_limit"
			if d.Hint > 0 {
				delay = d.Hint
			}
			c.gate.HoldUntil(c.now().Add(delay))
			c.m.RateLimitHolds.Inc()
		case ActionRetryConcurrency:
			reason = "concurrency_limit"
			delay = max(delay, d.Hint)
		default:
			delay = max(delay, d.Hint)
		}
		now := c.now()
		active := now.Sub(j.start) - (c.pause.pausedTotal(now) - j.pausedAt0)
		if j.prev+j.counted >= c.o.MaxAttempts || active+delay > c.o.RetryMaxElapsed {
			re := resultError(kerr, err)
			if re.Code == "" {
				re.Code = CodeRetriesExhausted
			}
			re.Message = fmt.Sprintf("gave up after %d attempts over %s: %s", j.prev+j.calls, active.Round(time.Millisecond), re.Message)
			c.finish(hard, msg, c.failed(j.req, j.prev+j.calls, re), false, "failed")
			return
		}
		c.m.Retries.WithLabelValues(reason).Inc()
		lvl := slog.LevelDebug
		if d.Action == ActionRetry {
			lvl = slog.LevelWarn
		}
		log.Log(ctx, lvl, "retrying", "attempt", j.prev+j.calls, "kombo_code", d.Code,
			"decision", d.Action.String(), "delay", delay, "err", err)
		if sleep(ctx, delay) != nil {
			// Shutting down during the backoff: keep the backoff, but on the server.
			_ = msg.NakWithDelay(max(handBackDelay, delay-c.now().Sub(now)))
			return
		}
	}
}

// awaitTurn waits until the daemon is not paused, no rate-limit hold is on, and a Kombo
// slot is free; a waiting message holds no slot.
func (c *Consumer) awaitTurn(ctx context.Context) (Ticket, error) {
	for {
		if err := c.pause.wait(ctx); err != nil {
			return Ticket{}, err
		}
		if err := c.gate.Wait(ctx); err != nil {
			return Ticket{}, err
		}
		t, err := c.limiter.Acquire(ctx)
		if err != nil {
			return Ticket{}, err
		}
		if paused, _ := c.pause.state(); !paused && c.gate.Open() {
			return t, nil
		}
		c.limiter.Release(t, OutcomeOther)
	}
}

func limiterOutcome(d Decision) Outcome {
	switch d.Action {
	case ActionDeleted, ActionNotFound:
		return OutcomeSuccess
	case ActionRetryConcurrency:
		return OutcomeConcurrencyLimited
	default:
		return OutcomeOther
	}
}

func resultError(kerr *kombo.Error, err error) *ResultError {
	if kerr != nil {
		return &ResultError{Code: kerr.EffectiveCode(), Title: kerr.Title, Message: kerr.Message,
			LogURL: kerr.LogURL, HTTPStatus: kerr.Status}
	}
	msg := "no answer from Kombo"
	if err != nil {
		msg = err.Error()
	}
	return &ResultError{Title: "No answer from Kombo", Message: msg}
}

func (c *Consumer) failed(req Request, attempts int, re *ResultError) Result {
	return Result{RequestID: req.RequestID, IntegrationID: req.IntegrationID, Status: StatusFailed,
		Attempts: attempts, Error: re, RequestedBy: req.RequestedBy, Reason: req.Reason}
}

// finish publishes the result, waits for JetStream to store it, then acks (or terminates)
// the request. When the result cannot be stored before ctx ends, the request is left
// unacked and comes back after AckWait: its result is then published again and stored
// once thanks to the Nats-Msg-Id.
func (c *Consumer) finish(ctx context.Context, msg jetstream.Msg, res Result, term bool, outcome string) {
	res.CompletedAt = completedAt(c.now())
	subject := c.o.DeletedSubject
	if res.Status == StatusFailed {
		subject = c.o.FailedSubject
	}
	log := c.log.With("request_id", res.RequestID, "integration_id", res.IntegrationID, "attempts", res.Attempts)
	if err := c.publish(ctx, subject, res, msg.Headers()); err != nil {
		log.Error("cannot store the result; the request will be redelivered", "err", err)
		return
	}
	if c.crashAfterPublish != nil && c.crashAfterPublish(res) {
		return
	}
	var err error
	if term {
		err = msg.TermWithReason(outcome)
	} else {
		err = msg.DoubleAck(ctx)
	}
	if err != nil {
		log.Warn("ack failed; the request will be redelivered and its result deduplicated", "err", err)
	}
	c.m.Requests.WithLabelValues(outcome).Inc()
	attrs := []any{"outcome", outcome}
	if md, err := msg.Metadata(); err == nil {
		attrs = append(attrs, "duration", c.now().Sub(md.Timestamp).Round(time.Millisecond), "deliveries", md.NumDelivered)
	}
	if res.Error != nil {
		attrs = append(attrs, "kombo_code", res.Error.Code, "error", res.Error.Message, "log_url", res.Error.LogURL)
		log.Warn("request failed", attrs...)
		return
	}
	log.Info("request done", attrs...)
}

// keepAlive tells the server every third of AckWait that msg is still being worked on,
// so that no other replica gets it while it waits for a slot, a hold or a backoff.
func (c *Consumer) keepAlive(msg jetstream.Msg) (stop func()) {
	c.mu.Lock()
	every := c.ackWait / 3
	c.mu.Unlock()
	if every <= 0 {
		every = 10 * time.Second
	}
	var (
		mu      sync.Mutex
		stopped bool
		t       *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		_ = msg.InProgress()
		t.Reset(every)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
