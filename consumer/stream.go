package consumer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// ErrMissing is returned by Run when the stream or the durable consumer does not exist
// and provisioning is off.
var ErrMissing = errors.New("consumer: missing and JETSTREAM_PROVISION=false")

// errUnusable says an existing consumer cannot be used as it is configured.
var errUnusable = errors.New("consumer: existing consumer is unusable")

// StreamOptions say which stream and durable consumer to bind, and how to create them
// when they are missing.
type StreamOptions struct {
	// Provision creates the stream and the consumer when missing; existing ones are
	// left alone (differences are logged).
	Provision bool
	// Name is the stream; Subjects its subjects when created.
	Name     string
	Subjects []string
	// Consumer is the durable pull consumer, filtered on RequestSubject.
	Consumer       string
	RequestSubject string
	// Replicas of the stream and the consumer when created.
	Replicas int
	// MaxAge of stored messages when created; 0 keeps them forever.
	MaxAge time.Duration
	// DuplicateWindow of the stream when created.
	DuplicateWindow time.Duration
	// MinDuplicateWindow is the shortest window that keeps result deduplication sound;
	// an existing stream with a shorter one gets a warning.
	MinDuplicateWindow time.Duration
	// AckWait, MaxDeliver (-1: unlimited) and MaxAckPending of the consumer when created.
	AckWait       time.Duration
	MaxDeliver    int
	MaxAckPending int
}

// StreamConfig is the stream this daemon creates.
func (o StreamOptions) streamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        o.Name,
		Description: "integration-deleter: delete requests and their results",
		Subjects:    o.Subjects,
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		Replicas:    o.Replicas,
		MaxAge:      o.MaxAge,
		Duplicates:  o.DuplicateWindow,
	}
}

// ConsumerConfig is the durable consumer this daemon creates. It starts after floor, the
// ack floor of an earlier consumer of the same name (0: at the start of the stream).
func (o StreamOptions) consumerConfig(floor uint64) jetstream.ConsumerConfig {
	policy, start := jetstream.DeliverAllPolicy, uint64(0)
	if floor > 0 {
		policy, start = jetstream.DeliverByStartSequencePolicy, floor+1
	}
	return jetstream.ConsumerConfig{
		Durable:       o.Consumer,
		Description:   "integration-deleter: shared by all replicas",
		DeliverPolicy: policy,
		OptStartSeq:   start,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    o.MaxDeliver,
		MaxAckPending: o.MaxAckPending,
		FilterSubject: o.RequestSubject,
		Replicas:      o.Replicas,
	}
}

// bindAtStart binds, retrying what can get better (NATS not ready yet) until ctx ends.
func (c *Consumer) bindAtStart(ctx context.Context) error {
	return c.retryAtStart(ctx, "cannot bind to the consumer yet; retrying", c.bindOnce, func(err error) bool {
		return errors.Is(err, ErrMissing) || errors.Is(err, errUnusable) ||
			errors.Is(err, ledger.ErrMissing) || errors.Is(err, ledger.ErrUnusable)
	})
}

// retryAtStart calls try until it succeeds, fails for good (final), or ctx ends (nil),
// waiting 0.2 s doubling to 5 s between tries; meanwhile Ready says why (the error).
func (c *Consumer) retryAtStart(ctx context.Context, msg string, try func(context.Context) error, final func(error) bool) error {
	wait := 200 * time.Millisecond
	for {
		err := try(ctx)
		if err == nil || final(err) {
			return err
		}
		c.setBindErr(err)
		c.log.Warn(msg, "err", err, "retry_in", wait)
		if sleep(ctx, wait) != nil {
			return nil
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// rebindInterval is how often an unbound consumer tries to bind again.
const rebindInterval = 2 * time.Second

func (c *Consumer) isBound() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bindErr == nil
}

func (c *Consumer) setBindErr(err error) {
	c.mu.Lock()
	c.bindErr = err
	c.mu.Unlock()
}

// bindOnce looks up (or creates) the stream, the ledger and the consumer, checks that
// outcomes can be stored and the consumer is usable, and remembers the consumer.
func (c *Consumer) bindOnce(ctx context.Context) error {
	o := c.o.Stream
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := c.lookupStream(lctx)
	if err != nil {
		return err
	}
	cons, err := stream.Consumer(lctx, o.Consumer)
	missing := errors.Is(err, jetstream.ErrConsumerNotFound)
	switch {
	case missing && !o.Provision:
		return fmt.Errorf("%w: consumer %q on stream %q not found", ErrMissing, o.Consumer, o.Name)
	case err != nil && !missing:
		return fmt.Errorf("consumer: look up consumer %q: %w", o.Consumer, err)
	}
	created, err := c.prepareStorage(lctx, stream.CachedInfo())
	if err != nil {
		return err
	}
	if missing {
		if cons, err = c.createConsumer(ctx, stream, created); err != nil {
			return err
		}
	} else if created {
		if err := c.backfillLogged(ctx); err != nil {
			return err
		}
	}
	info := cons.CachedInfo()
	if err := usable(info.Config, o); err != nil {
		return err
	}
	c.compareConsumer(info.Config)
	c.mu.Lock()
	c.cons = cons
	c.ackWait = info.Config.AckWait
	c.maxPending = info.Config.MaxAckPending
	c.bindErr = nil
	c.mu.Unlock()
	c.log.Info("bound to consumer", "stream", o.Name, "consumer", o.Consumer, "ack_wait", info.Config.AckWait,
		"max_ack_pending", info.Config.MaxAckPending, "max_deliver", info.Config.MaxDeliver)
	c.wakePull()
	return nil
}

// lookupStream returns the stream, created when missing and provisioning.
func (c *Consumer) lookupStream(ctx context.Context) (jetstream.Stream, error) {
	o := c.o.Stream
	stream, err := c.js.Stream(ctx, o.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		if !o.Provision {
			return nil, fmt.Errorf("%w: stream %q not found", ErrMissing, o.Name)
		}
		stream, err = c.js.CreateStream(ctx, o.streamConfig())
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // another replica was first
			stream, err = c.js.Stream(ctx, o.Name)
		} else if err == nil {
			c.log.Info("created stream", "stream", o.Name, "subjects", o.Subjects, "replicas", o.Replicas,
				"duplicate_window", o.DuplicateWindow, "max_age", o.MaxAge)
		}
		if err != nil {
			return nil, fmt.Errorf("consumer: create stream %q: %w", o.Name, err)
		}
	case err != nil:
		return nil, fmt.Errorf("consumer: look up stream %q: %w", o.Name, err)
	default:
		c.compareStream(stream.CachedInfo().Config)
	}
	return stream, nil
}

// prepareStorage opens the ledger (it must keep outcomes at least as long as the stream
// keeps requests) and checks that a stream stores each result subject. created says
// whether the ledger bucket was created now.
func (c *Consumer) prepareStorage(ctx context.Context, info *jetstream.StreamInfo) (created bool, err error) {
	c.mu.Lock()
	c.incarnation = strconv.FormatInt(info.Created.UnixNano(), 10)
	c.mu.Unlock()
	if c.ledger == nil {
		o := c.o.Ledger
		o.MinMaxAge = info.Config.MaxAge // the stream's own, whoever created it
		l, made, err := ledger.Open(ctx, c.js, o)
		if err != nil {
			return false, err
		}
		if made {
			c.log.Info("created the ledger bucket", "bucket", o.Bucket, "replicas", o.Replicas, "max_age", o.MaxAge)
		}
		if info.Config.MaxAge == 0 && o.MaxAge > 0 {
			c.log.Warn("the stream keeps requests for ever but the ledger forgets outcomes: a request redelivered after LEDGER_MAX_AGE would be called again",
				"ledger_max_age", o.MaxAge)
		}
		c.ledger, created = l, made
	}
	return created, c.checkResultsStored(ctx)
}

// createConsumer creates the durable consumer: after the ack floor an earlier consumer of
// the same name reached, or, when none is known, at the start of the stream once every
// result already stored is in the ledger (so that none of those requests is called again).
func (c *Consumer) createConsumer(ctx context.Context, stream jetstream.Stream, backfilled bool) (jetstream.Consumer, error) {
	o := c.o.Stream
	floor := c.savedFloor(ctx)
	if floor == 0 || backfilled {
		if err := c.backfillLogged(ctx); err != nil {
			return nil, err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cons, err := stream.CreateConsumer(cctx, o.consumerConfig(floor))
	if errors.Is(err, jetstream.ErrConsumerExists) { // another replica was first
		cons, err = stream.Consumer(cctx, o.Consumer)
	} else if err == nil {
		c.log.Info("created consumer", "stream", o.Name, "consumer", o.Consumer, "ack_wait", o.AckWait,
			"max_deliver", o.MaxDeliver, "max_ack_pending", o.MaxAckPending, "starts_after", floor)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer: create consumer %q: %w", o.Consumer, err)
	}
	return cons, nil
}

// checkBinding looks whether the consumer still exists after a pull error or an empty
// pull, and rebinds (recreating it when provisioning) when it is gone.
func (c *Consumer) checkBinding(ctx context.Context, pullErr error) {
	c.mu.Lock()
	cons := c.cons
	c.mu.Unlock()
	if cons == nil || ctx.Err() != nil {
		return
	}
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := cons.Info(ictx)
	cancel()
	gone := errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(pullErr, jetstream.ErrConsumerDeleted)
	if !gone {
		return
	}
	c.log.Error("the consumer is gone", "stream", c.o.Stream.Name, "consumer", c.o.Stream.Consumer, "err", err)
	c.setBindErr(fmt.Errorf("consumer %q on stream %q is gone", c.o.Stream.Consumer, c.o.Stream.Name))
	c.rebind(ctx)
}

// rebind tries once to bind again; Ready reports why while it fails.
func (c *Consumer) rebind(ctx context.Context) {
	if err := c.bindOnce(ctx); err != nil {
		c.setBindErr(err)
		c.log.Error("cannot bind to the consumer", "err", err)
	}
}

func (c *Consumer) compareStream(got jetstream.StreamConfig) {
	want := c.o.Stream.streamConfig()
	var diffs []any
	if !slices.Equal(got.Subjects, want.Subjects) {
		diffs = append(diffs, "subjects", wouldCreate(got.Subjects, want.Subjects))
	}
	diffs = differs(diffs, "duplicate_window", got.Duplicates, want.Duplicates)
	diffs = differs(diffs, "replicas", got.Replicas, want.Replicas)
	diffs = differs(diffs, "max_age", got.MaxAge, want.MaxAge)
	c.logDiffs("stream", got.Name, diffs)
	if min := c.o.Stream.MinDuplicateWindow; min > 0 && got.Duplicates < min {
		c.log.Warn("the stream's duplicate window is shorter than KOMBO_RETRY_MAX_ELAPSED + 2×ACK_WAIT: a result re-published after a crash may be stored twice",
			"stream", got.Name, "duplicate_window", got.Duplicates, "needed", min)
	}
}

func (c *Consumer) compareConsumer(got jetstream.ConsumerConfig) {
	want := c.o.Stream.consumerConfig(0)
	var diffs []any
	diffs = differs(diffs, "ack_wait", got.AckWait, want.AckWait)
	diffs = differs(diffs, "max_deliver", got.MaxDeliver, want.MaxDeliver)
	diffs = differs(diffs, "max_ack_pending", got.MaxAckPending, want.MaxAckPending)
	c.logDiffs("consumer", got.Durable, diffs)
}

// differs appends to diffs, when got and want differ, the setting's name and what
// wouldCreate says of them.
func differs[T comparable](diffs []any, setting string, got, want T) []any {
	if got == want {
		return diffs
	}
	return append(diffs, setting, wouldCreate(got, want))
}

// wouldCreate describes an existing setting got that differs from the want this daemon
// would create.
func wouldCreate(got, want any) string { return fmt.Sprintf("%v (would create %v)", got, want) }

// logDiffs logs the settings in which the existing stream or consumer (what) named name
// differs from what this daemon would create, if any: the daemon leaves it as it is.
func (c *Consumer) logDiffs(what, name string, diffs []any) {
	if len(diffs) > 0 {
		c.log.Info("existing "+what+" differs from what this daemon would create; leaving it alone",
			append([]any{what, name}, diffs...)...)
	}
}

// usable says why an existing consumer cannot be used as it is: it must be a pull consumer
// with explicit ack whose filter is exactly the request subject (a wider one would deliver
// the daemon's own results as requests).
func usable(cfg jetstream.ConsumerConfig, o StreamOptions) error {
	if cfg.DeliverSubject != "" || cfg.AckPolicy != jetstream.AckExplicitPolicy {
		return fmt.Errorf("%w: %q must be a pull consumer with explicit ack", errUnusable, o.Consumer)
	}
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append([]string{cfg.FilterSubject}, filters...)
	}
	if len(filters) != 1 || filters[0] != o.RequestSubject {
		return fmt.Errorf("%w: consumer %q must be filtered on exactly REQUEST_SUBJECT %q, its filter is %q: it would deliver other messages (results) as requests",
			errUnusable, o.Consumer, o.RequestSubject, strings.Join(filters, ","))
	}
	return nil
}
