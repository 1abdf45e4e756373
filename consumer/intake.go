package consumer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kick wakes the pull loop.
func (c *Consumer) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// pullable returns how many messages may be pulled now. Besides the calls in flight the
// process holds at most two caps' worth of messages that want a slot (a waiting message
// holds no slot), so that a slot that frees finds the next message at hand instead of
// waiting for a pull's round trip; and it pulls only once a cap's worth is missing, so
// that pulls come in batches (each pull is a subscription, a request and its messages).
// All within the consumer's MaxAckPending.
func (c *Consumer) pullable() int {
	c.mu.Lock()
	blocked, maxPending := c.bindErr != nil || c.storage.err() != nil, c.maxPending
	c.mu.Unlock()
	if blocked {
		return 0
	}
	s := c.adm.Stats()
	if s.Held {
		return 0
	}
	out := int(c.outstanding.Load())
	limit, inFlight := s.Cap, s.InFlight
	n := 3*limit - inFlight - int(c.wanting.Load()) - out
	if maxPending > 0 {
		n = min(n, maxPending-int(c.held.Load())-out)
	}
	if n < limit && inFlight+out > 0 {
		return 0 // wait for a batch's worth; with nothing in flight or asked for, pull what may be
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
		changed := c.adm.Changed() // taken before reading admission, so that no change is missed
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

// waitPullable waits until pulling may have become possible: admission changed (a slot
// freed, a hold ended, a resume) or a state changed (kick).
func (c *Consumer) waitPullable(ctx context.Context, changed <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-c.wake:
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
		c.wanting.Add(1)
		c.m.Held.Set(float64(c.held.Load()))
		select {
		case c.work <- msg: // an idle worker takes it
		default:
			wg.Go(func() { c.worker(ctx, hard, msg) })
		}
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

// workerIdle is how long a worker waits for another message before it ends.
const workerIdle = 10 * time.Second

// worker handles msg, then the messages readBatch hands it while it is idle, until it has
// waited workerIdle for one or Run stops. Reusing goroutines matters: a new goroutine's
// stack grows several times over the depth of one message's handling (JSON, HTTP, logs),
// and each growth copies it; a worker's stack has grown once and for all.
func (c *Consumer) worker(ctx, hard context.Context, msg jetstream.Msg) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		c.handle(ctx, hard, msg)
		idle.Reset(workerIdle)
		select {
		case msg = <-c.work:
		case <-idle.C:
			return
		case <-c.quit:
			return
		}
	}
}
