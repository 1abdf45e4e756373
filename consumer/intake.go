package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// intake is a running consumer: it pulls request messages and hands each to a worker
// while Run's context lives, then stops in order. It starts every goroutine of a running
// consumer, through spawn, in two groups by when stop waits for them:
//
//	stopFirst: end once ctx has ended (workers: once their message is settled or handed
//	back, and idle ones at quit); stop waits for them first
//	  pullLoop    one; pulls what free Kombo slots can start, and a little ahead
//	  readBatch   one per pull not yet answered; hands each message to a worker
//	  worker      at most one per message held, reused while busy and ended after
//	              workerIdle idle; runs handle (request.go) for each message
//	  probeLoop   one; checks a rejected API key until Kombo accepts it (keypause.go)
//	  watchLoop   one; checks that outcomes can be stored, saves the ack floor (storage.go)
//	stopLast: stop waits for them once the others ended
//	  aliveLoop   one; in-progress acks and claim renewals of the messages held, which
//	              need them until their workers end (alive.go)
//	  watchPause  one; follows the consumer's pause on the server (controls.go)
//	  watchProtect one, when set; keeps the protect list fresh (internal/control). These
//	              two end with ctx, but may take seconds to when NATS is down: waited last
//	  records     one per deleted outcome being recorded in the background (recordStored,
//	              counted in Consumer.records, not spawned): waited for after these; each
//	              ends by cutoff at the latest
//
// Its two contexts: ctx is Run's. When it ends, nothing new is pulled, and a message that
// waits (for a slot, another handler's outcome, a backoff) is handed back. cutoff ends
// ShutdownTimeout after ctx: calls in flight and the writes of their outcomes use it, so
// that they finish unless they take longer than that. The MAX_DELIVERIES advisories are
// handled on the NATS client's goroutine, with cutoff; stop unsubscribes them.
type intake struct {
	c           *Consumer
	ctx, cutoff context.Context
	endCutoff   func() // ends cutoff now

	work       chan jetstream.Msg // hands a message to an idle worker
	quit       chan struct{}      // closed by stop: idle workers end
	pulled     chan struct{}      // closed when pullLoop has returned
	aliveDone  chan struct{}      // closed by stop once the stopFirst group ended: aliveLoop ends
	advisories *nats.Subscription // the MAX_DELIVERIES advisories; nil if not subscribed
	wg         [2]sync.WaitGroup  // by group
}

// The groups of the intake's goroutines, by when stop waits for them.
const (
	stopFirst = iota
	stopLast
)

// startIntake starts the goroutines of a consumer bound and running until ctx ends.
func (c *Consumer) startIntake(ctx context.Context) *intake {
	cutoff, endCutoff := outlive(ctx, c.o.ShutdownTimeout)
	in := &intake{c: c, ctx: ctx, cutoff: cutoff, endCutoff: endCutoff, work: make(chan jetstream.Msg),
		quit: make(chan struct{}), pulled: make(chan struct{}), aliveDone: make(chan struct{})}
	in.spawn(stopLast, func() { c.aliveLoop(in.aliveDone) })
	in.spawn(stopLast, func() { c.watchPause(ctx) })
	if c.protect != nil {
		in.spawn(stopLast, func() { c.watchProtect(ctx) })
	}
	if !c.o.DryRun { // a dry run records nothing: the real daemon answers the advisory
		sub, err := c.watchMaxDeliveries(cutoff)
		if err != nil {
			c.log.Warn("cannot watch MAX_DELIVERIES advisories", "err", err)
		}
		in.advisories = sub
	}
	in.spawn(stopFirst, func() { c.probeLoop(ctx) })
	in.spawn(stopFirst, func() { c.watchLoop(ctx) })
	in.spawn(stopFirst, in.pullLoop)
	return in
}

// spawn starts f as one of the intake's goroutines, in group (stopFirst or stopLast).
func (in *intake) spawn(group int, f func()) { in.wg[group].Go(f) }

// stop stops the intake once ctx has ended, in this order: the pull loop returns (no new
// pull; messages still arriving are handed back by readBatch); idle workers end, and busy
// ones once their message is settled or handed back: a waiting one at once, a call in
// flight when it finishes with its result, or when cutoff cuts it; then the keepalive, which
// kept their messages alive meanwhile; then the advisories; then the outcomes still being
// recorded in the background; cutoff ends last.
func (in *intake) stop() {
	c := in.c
	<-in.pulled
	c.mu.Lock()
	c.stopping = true
	c.mu.Unlock()
	c.log.Info("stopped pulling; waiting for calls in flight", "held", c.held.Load())
	close(in.quit)
	in.wg[stopFirst].Wait()
	close(in.aliveDone)
	in.wg[stopLast].Wait()
	if in.advisories != nil {
		_ = in.advisories.Unsubscribe()
	}
	c.records.Wait() // each ends by the cutoff at the latest
	in.endCutoff()
}

// outlive returns a context that ends grace after ctx ends, and a function that ends it
// at once (and must be called to release it).
func outlive(ctx context.Context, grace time.Duration) (context.Context, func()) {
	cutoff, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var mu sync.Mutex
	var timer *time.Timer
	stopAfter := context.AfterFunc(ctx, func() {
		mu.Lock()
		timer = time.AfterFunc(grace, cancel)
		mu.Unlock()
	})
	return cutoff, func() {
		stopAfter()
		mu.Lock()
		if timer != nil {
			timer.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// wakePull wakes the pull loop.
func (c *Consumer) wakePull() {
	select {
	case c.pullWake <- struct{}{}:
	default:
	}
}

// pullable returns how many messages may be pulled now. Besides the calls in flight the
// process holds at most four caps' worth of messages that want a slot (a waiting message
// holds no slot), so that a slot that frees finds the next message at hand instead of
// waiting for a pull's round trip; and it pulls only once a cap's worth is missing, so
// that pulls come in batches (each pull is a subscription, a request and its messages).
// All within the consumer's MaxAckPending.
func (c *Consumer) pullable() int {
	if c.blocked() != nil {
		return 0
	}
	c.mu.Lock()
	maxPending := c.maxPending
	c.mu.Unlock()
	s := c.adm.Stats()
	if s.Held {
		return 0
	}
	out := int(c.outstanding.Load())
	limit, inFlight := s.Cap, s.InFlight
	n := 5*limit - inFlight - int(c.wanting.Load()) - out
	if maxPending > 0 {
		n = min(n, maxPending-int(c.held.Load())-out)
	}
	if n < limit && inFlight+out > 0 {
		return 0 // wait for a batch's worth; with nothing in flight or asked for, pull what may be
	}
	return n
}

// pullLoop pulls what pullable allows, each pull's messages read by a readBatch of their
// own, until ctx ends.
func (in *intake) pullLoop() {
	defer close(in.pulled)
	c, ctx := in.c, in.ctx
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
		changed := c.adm.Changed() // taken before reading admission, so that no change is missed
		n := c.pullable()
		if n <= 0 {
			if in.waitPullable(changed) != nil {
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
		// Heartbeats end a pull whose server went away within two of them, instead of at
		// its expiry: the next pull goes to a server that is there.
		batch, err := cons.Fetch(n, jetstream.FetchMaxWait(c.o.pullWait), jetstream.FetchHeartbeat(c.o.pullWait/5))
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
		in.spawn(stopFirst, func() { in.readBatch(batch, n) })
	}
}

// waitPullable waits until pulling may have become possible: admission changed (a slot
// freed, a hold ended, a resume) or a state changed (wakePull). While the consumer is
// blocked it also looks again every blockedRecheck: the protect list becoming readable
// says so to no one.
func (in *intake) waitPullable(changed <-chan struct{}) error {
	var recheck <-chan time.Time
	if in.c.blocked() != nil {
		t := time.NewTimer(blockedRecheck)
		defer t.Stop()
		recheck = t.C
	}
	select {
	case <-in.ctx.Done():
		return in.ctx.Err()
	case <-changed:
	case <-in.c.pullWake:
	case <-recheck:
	}
	return nil
}

// blockedRecheck is how often a blocked consumer looks whether it may pull again.
const blockedRecheck = 100 * time.Millisecond

// readBatch hands each message of a pull (n asked for) to an idle worker, or to a new one.
// A message that arrives once ctx ended is handed back at once.
func (in *intake) readBatch(batch jetstream.MessageBatch, n int) {
	c, ctx := in.c, in.ctx
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
		c.wanting.Add(1)
		c.m.held.Set(float64(c.held.Load()))
		select {
		case in.work <- msg: // an idle worker takes it
		default:
			in.spawn(stopFirst, func() { in.worker(msg) })
		}
	}
	c.outstanding.Add(int64(got - n))
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		c.log.Debug("pull ended", "err", err)
		c.checkBinding(ctx, err)
	} else if got == 0 {
		c.checkBinding(ctx, nil)
	}
	c.wakePull()
}

// workerIdle is how long a worker waits for another message before it ends.
const workerIdle = 10 * time.Second

// worker handles msg, then the messages readBatch hands it while it is idle, until it has
// waited workerIdle for one or stop ends the idle workers. Reusing goroutines matters: a
// new goroutine's stack grows several times over the depth of one message's handling
// (JSON, HTTP, logs), and each growth copies it; a worker's stack has grown once and for
// all.
func (in *intake) worker(msg jetstream.Msg) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		in.c.handle(in.ctx, in.cutoff, msg)
		idle.Reset(workerIdle)
		select {
		case msg = <-in.work:
		case <-idle.C:
			return
		case <-in.quit:
			return
		}
	}
}
