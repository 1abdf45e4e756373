package consumer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// watchInterval is how often the consumer asks the server whether what it writes to can
// still be written: the ledger bucket, a stream for each result subject, the consumer's
// filter. It also saves the consumer's ack floor then.
const watchInterval = 2 * time.Second

// checkResultsStored asks the server whether a stream stores each result subject (any
// stream: the one this daemon provisions or another).
func (c *Consumer) checkResultsStored(ctx context.Context) error {
	window := time.Duration(0)
	type result struct{ env, subject string }
	subjects := []result{{"DELETED_SUBJECT", c.o.DeletedSubject}, {"FAILED_SUBJECT", c.o.FailedSubject}}
	if c.o.DryRun {
		subjects = []result{{"DRY_RUN_SUBJECT", c.o.DryRunSubject}}
	}
	for _, s := range subjects {
		name, err := c.js.StreamNameBySubject(ctx, s.subject)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: no stream stores %s %q: results could not be stored, so no request would ever finish",
				errUnusable, s.env, s.subject)
		}
		var stream jetstream.Stream
		if err == nil {
			stream, err = c.js.Stream(ctx, name)
		}
		if err != nil {
			return fmt.Errorf("consumer: which stream stores %s %q: %w", s.env, s.subject, err)
		}
		if d := stream.CachedInfo().Config.Duplicates; window == 0 || d < window {
			window = d
		}
	}
	c.mu.Lock()
	c.dupWindow = window
	c.mu.Unlock()
	return nil
}

// floorName names the ack floor of this durable consumer on this stream's incarnation: a
// stream deleted and created again starts its sequences anew, and an old floor must not
// skip its requests.
func (c *Consumer) floorName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.o.Stream.Consumer + "@" + c.o.Stream.Name + "@" + c.incarnation
}

// savedFloor returns the last ack floor saved for the consumer (0: none), so that a
// recreated consumer starts after what was acknowledged instead of replaying the stream.
func (c *Consumer) savedFloor(ctx context.Context) uint64 {
	floor, err := c.ledger.Floor(ctx, c.floorName())
	if err != nil {
		c.log.Warn("cannot read the saved ack floor; the new consumer starts at the start of the stream (recorded requests are not called again)", "err", err)
		return 0
	}
	return floor
}

// storageState says whether outcomes can be stored. Three sources, each with its own
// way back: the server's answers to the checks of watchLoop (replaced at each check), a
// failed ledger write (kept until a probe write succeeds), a failed result publish (kept
// until a publish succeeds: the handlers whose publish failed keep retrying it).
type storageState struct {
	check, ledger, publish error
}

func (s storageState) err() error {
	switch {
	case s.check != nil:
		return s.check
	case s.ledger != nil:
		return s.ledger
	}
	return s.publish
}

// setStorage changes the state and logs when outcomes stop or start being storable.
func (c *Consumer) setStorage(change func(*storageState)) {
	c.mu.Lock()
	was := c.storage.err()
	change(&c.storage)
	now := c.storage.err()
	c.mu.Unlock()
	switch {
	case now != nil && was == nil:
		c.log.Error("outcomes cannot be stored: no new DELETE starts until they can", "err", now)
	case now == nil && was != nil:
		c.log.Info("outcomes can be stored again; resuming")
		c.wakePull()
	}
}

// ledgerFailed notes a failed ledger write (nil: none).
func (c *Consumer) ledgerFailed(err error) { c.setStorage(func(s *storageState) { s.ledger = err }) }

// publishFailed notes a failed result publish (nil: a publish succeeded).
func (c *Consumer) publishFailed(err error) {
	c.mu.Lock()
	nothing := err == nil && c.storage.publish == nil // the common case: no change to log
	c.mu.Unlock()
	if !nothing {
		c.setStorage(func(s *storageState) { s.publish = err })
		c.moveAway(err)
	}
}

// moveAfter is how long JetStream may leave the daemon's writes and checks unanswered before
// it moves to another server of its pool.
const moveAfter = 1500 * time.Millisecond

// moveAway notes whether JetStream served a write or a check (err nil) or gave no answer
// (or said it is unavailable) and, when it has not served one for moveAfter, reconnects to
// another server of the pool: the one it is connected to may be cut off from the rest of
// the cluster, whose other nodes elect new leaders while its clients get no JetStream
// answer until the cut heals. During an election seen from a healthy server the move costs
// one reconnect. Other errors (a bucket missing) change nothing here.
func (c *Consumer) moveAway(err error) {
	nc := c.js.Conn()
	now := time.Now()
	c.mu.Lock()
	switch {
	case err == nil:
		c.unanswered = time.Time{}
	case unanswered(err) && c.unanswered.IsZero():
		c.unanswered = now
	}
	due := !c.unanswered.IsZero() && now.Sub(c.unanswered) >= moveAfter && now.Sub(c.moved) >= moveAfter
	if due {
		c.moved, c.unanswered = now, time.Time{}
	}
	c.mu.Unlock()
	if due && len(nc.Servers()) > 1 {
		c.log.Warn("JetStream does not answer through this server; moving to another", "server", nc.ConnectedUrlRedacted(), "err", err)
		_ = nc.ForceReconnect()
	}
}

// unanswered reports whether err says that JetStream gave no answer, or that it is
// unavailable (no meta leader within reach).
func unanswered(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) ||
		(errors.As(err, &api) && api.Code == 503)
}

// blocked says why no DELETE may start now: the consumer is not bound or not usable as it
// is configured, or outcomes cannot be stored; nil when calls may start.
func (c *Consumer) blocked() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bindErr != nil {
		return c.bindErr
	}
	if err := c.storage.err(); err != nil {
		return err
	}
	if c.protect != nil {
		if err := c.protect.Ready(); err != nil {
			return fmt.Errorf("the protect list cannot be read, so no call starts: %w", err)
		}
	}
	return nil
}

// resultWindow is the duplicate window of the stream that stores the results.
func (c *Consumer) resultWindow() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dupWindow
}

// watchLoop checks every watchInterval that outcomes can be stored and the consumer is
// still usable, and saves the consumer's ack floor, until ctx ends.
func (c *Consumer) watchLoop(ctx context.Context) {
	every(ctx, watchInterval, func(ctx context.Context) {
		err := c.checkStorage(ctx)
		c.setStorage(func(s *storageState) { s.check = err })
		c.moveAway(err)
		if c.storageLedgerErr() != nil {
			c.ledgerFailed(c.ledger.Probe(ctx)) // a write that succeeds clears it
		}
		c.checkConsumer(ctx)
	})
}

func (c *Consumer) storageLedgerErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.storage.ledger
}

// checkStorage checks the ledger (recreating it when it is gone and provisioning is on)
// and the result streams.
func (c *Consumer) checkStorage(ctx context.Context) error {
	err := c.ledger.Check(ctx)
	gone := errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
	if gone && c.o.Ledger.Provision {
		c.log.Error("the ledger bucket is gone; creating it again and recording the results still in the stream (other outcomes it held are lost)",
			"bucket", c.o.Ledger.Bucket)
		if _, _, err = ledger.Open(ctx, c.js, c.o.Ledger); err == nil {
			err = c.ledger.Check(ctx)
		}
		if err == nil {
			err = c.backfillLogged(context.WithoutCancel(ctx))
		}
	}
	if err != nil {
		return err
	}
	if err := c.checkFuse(ctx); err != nil {
		return err
	}
	return c.checkResultsStored(ctx)
}

// checkFuse checks that the fuse's stream is there, creating it again when it is gone and
// provisioning is on: without it every token is an error and no DELETE starts, so a stream
// deleted by hand must say so rather than hand messages back for ever.
func (c *Consumer) checkFuse(ctx context.Context) error {
	c.mu.Lock()
	fuse := c.fuse
	c.mu.Unlock()
	if fuse == nil {
		return nil
	}
	o := c.o.Controls
	_, err := c.js.Stream(ctx, o.FuseStream)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil // there, or the server does not answer: the token's error tells
	}
	if c.o.Stream.Provision {
		c.log.Error("the fuse's stream is gone; creating it again with a fresh window", "stream", o.FuseStream)
		_, err = control.OpenFuse(ctx, c.js, o.FuseStream, o.FuseCalls, o.FuseWindow, c.o.Stream.Replicas, true)
	}
	if err != nil {
		return fmt.Errorf("%w: the fuse's stream %q is missing, so no DELETE starts: create it again (or set DELETE_FUSE=off): %v",
			errUnusable, o.FuseStream, err)
	}
	return nil
}

// checkConsumer refuses a consumer whose configuration was changed into one that can
// misfire, and saves its ack floor when it moved.
func (c *Consumer) checkConsumer(ctx context.Context) {
	c.mu.Lock()
	cons, bound, saved := c.cons, c.bindErr == nil, c.floorSaved
	c.mu.Unlock()
	if cons == nil || !bound {
		return
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return // the pull loop finds out whether it is gone
	}
	if err := usable(info.Config, c.o.Stream); err != nil {
		c.log.Error("the consumer cannot be used as it is configured now; stopped pulling", "err", err)
		c.setBindErr(err)
		return
	}
	if floor := info.AckFloor.Stream; floor > saved {
		if err := c.ledger.SaveFloor(ctx, c.floorName(), floor); err != nil {
			c.log.Warn("cannot save the consumer's ack floor", "err", err)
			return
		}
		c.mu.Lock()
		c.floorSaved = floor
		c.mu.Unlock()
	}
}
