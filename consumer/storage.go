package consumer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// watchInterval is how often the consumer asks the server whether what it writes to can
// still be written: the ledger bucket, a stream for each result subject, the consumer's
// filter. It also saves the consumer's ack floor then.
const watchInterval = 2 * time.Second

// openLedger binds (or, when provisioning, creates) the ledger bucket, once.
func (c *Consumer) openLedger(ctx context.Context) error {
	if c.ledger != nil {
		return nil
	}
	l, created, err := ledger.Open(ctx, c.js, c.o.Ledger)
	if err != nil {
		return err
	}
	if created {
		c.log.Info("created the ledger bucket", "bucket", c.o.Ledger.Bucket, "replicas", c.o.Ledger.Replicas,
			"max_age", c.o.Ledger.MaxAge)
	}
	c.ledger = l
	return nil
}

// checkResultsStored asks the server whether a stream stores each result subject (any
// stream: the one this daemon provisions or another).
func (c *Consumer) checkResultsStored(ctx context.Context) error {
	for _, s := range []struct{ env, subject string }{{"DELETED_SUBJECT", c.o.DeletedSubject}, {"FAILED_SUBJECT", c.o.FailedSubject}} {
		_, err := c.js.StreamNameBySubject(ctx, s.subject)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: no stream stores %s %q: results could not be stored, so no request would ever finish",
				errUnusable, s.env, s.subject)
		}
		if err != nil {
			return fmt.Errorf("consumer: which stream stores %s %q: %w", s.env, s.subject, err)
		}
	}
	return nil
}

// floorName names the ack floor of this durable consumer on this stream's incarnation: a
// stream deleted and created again starts its sequences anew, and an old floor must not
// skip its requests.
func (c *Consumer) floorName(info *jetstream.StreamInfo) string {
	return c.o.Stream.Consumer + "@" + c.o.Stream.Name + "@" + strconv.FormatInt(info.Created.UnixNano(), 10)
}

// savedFloor returns the last ack floor saved for the consumer (0: none), so that a
// recreated consumer starts after what was acknowledged instead of replaying the stream.
func (c *Consumer) savedFloor(ctx context.Context, info *jetstream.StreamInfo) uint64 {
	floor, err := c.ledger.Floor(ctx, c.floorName(info))
	if err != nil {
		c.log.Warn("cannot read the saved ack floor; the new consumer starts at the start of the stream (recorded requests are not called again)", "err", err)
		return 0
	}
	return floor
}

// storageFailed notes that the ledger or a result stream could not be written: not ready,
// nothing pulled, no new call, until the next check finds them writable again.
func (c *Consumer) storageFailed(err error) {
	c.mu.Lock()
	first := c.storage == nil
	c.storage = err
	c.mu.Unlock()
	if first {
		c.log.Error("outcomes cannot be stored: no new DELETE starts until they can", "err", err)
	}
}

// storageErr says why outcomes cannot be stored now; nil when they can.
func (c *Consumer) storageErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.storage
}

// blocked says why no DELETE may start now: the consumer is not bound or not usable as it
// is configured, or outcomes cannot be stored; nil when calls may start.
func (c *Consumer) blocked() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bindErr != nil {
		return c.bindErr
	}
	return c.storage
}

// watchLoop checks every watchInterval that outcomes can be stored and the consumer is
// still usable, and saves the consumer's ack floor, until ctx ends.
func (c *Consumer) watchLoop(ctx context.Context) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, watchInterval)
		err := c.checkStorage(cctx)
		c.checkConsumer(cctx)
		cancel()
		c.mu.Lock()
		was := c.storage
		c.storage = err
		c.mu.Unlock()
		switch {
		case err != nil && was == nil:
			c.log.Error("outcomes cannot be stored: no new DELETE starts until they can", "err", err)
		case err == nil && was != nil:
			c.log.Info("outcomes can be stored again; resuming")
			c.kick()
		}
	}
}

// checkStorage checks the ledger (recreating it when it is gone and provisioning is on)
// and the result streams.
func (c *Consumer) checkStorage(ctx context.Context) error {
	err := c.ledger.Check(ctx)
	gone := errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound)
	if gone && c.o.Ledger.Provision {
		c.log.Error("the ledger bucket is gone; creating it again (outcomes recorded before are lost: a replayed request whose outcome was in it would be called again)",
			"bucket", c.o.Ledger.Bucket)
		if _, _, err = ledger.Open(ctx, c.js, c.o.Ledger); err == nil {
			err = c.ledger.Check(ctx)
		}
	}
	if err != nil {
		return err
	}
	return c.checkResultsStored(ctx)
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
		sinfo, err := c.js.Stream(ctx, c.o.Stream.Name)
		if err == nil {
			err = c.ledger.SaveFloor(ctx, c.floorName(sinfo.CachedInfo()), floor)
		}
		if err != nil {
			c.log.Warn("cannot save the consumer's ack floor", "err", err)
			return
		}
		c.mu.Lock()
		c.floorSaved = floor
		c.mu.Unlock()
	}
}
