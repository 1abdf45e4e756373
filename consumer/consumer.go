// Package consumer reads delete requests from a JetStream durable consumer, deletes the
// integrations through Kombo and publishes exactly one result event per request.
//
// Its files: consumer.go (Options, New, Ready, Run); intake.go (the goroutines of a
// running consumer: pulling, workers, the order of shutdown); request.go (one request's
// path from its message to its result); outcome.go (the ledger claim and the write order
// of an outcome); decide.go (what an answer from Kombo comes to); alive.go (keeping held
// messages alive); event.go (request and result events); stream.go and storage.go
// (binding, and what refuses to run); results.go (publishing results); keypause.go (the
// pause while Kombo rejects the API key); advisory.go (requests the server stopped
// delivering); scan.go (reading stored results back); metrics.go.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kombo-ops/integration-deleter/internal/admission"
	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/kombo"
)

// Deleter is what the consumer needs from the Kombo client.
type Deleter interface {
	DeleteIntegration(ctx context.Context, id string) (kombo.DeleteResult, error)
	GetIntegration(ctx context.Context, id string) (kombo.Integration, error)
	CheckAPIKey(ctx context.Context) (kombo.KeyInfo, error)
}

// Options configure a Consumer. Every duration must be positive unless its comment says
// what zero means.
type Options struct {
	// Stream says which stream and durable consumer to bind, and how to provision them.
	Stream StreamOptions
	// Ledger says where outcomes are recorded.
	Ledger ledger.Options
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
	// Controls says where the operator's levers live.
	Controls Controls
	// DryRun calls GET /integrations/{id} instead of DELETE and publishes would-be
	// results to DryRunSubject; it keeps no ledger.
	DryRun        bool
	DryRunSubject string
	// ShutdownTimeout bounds how long calls in flight may take after Run's context ends.
	ShutdownTimeout time.Duration
	// pullWait is how long one pull request waits on the server; 0 means 2s, or an
	// eighth of ShutdownTimeout when that is less (tests shorten it).
	pullWait time.Duration
	// Logger receives the consumer's logs; nil discards them.
	Logger *slog.Logger
	// Metrics receive the consumer's metrics; nil means unregistered ones.
	Metrics *Metrics
}

// Controls says where the operator's levers live (internal/control); Run opens them once
// bound, created when missing while provisioning (Stream.Provision, Stream.Replicas).
type Controls struct {
	// ProtectBucket is the KV bucket of protected integration ids: a protected id fails
	// DELETER.PROTECTED with no call, and no call starts while the list cannot be read.
	// "" means no protect list.
	ProtectBucket string
	// FuseStream counts DELETE calls: at most FuseCalls within any FuseWindow, across
	// replicas (DELETE_FUSE). FuseCalls 0 means no fuse.
	FuseStream string
	FuseCalls  int
	FuseWindow time.Duration
}

// handBackDelay is the redelivery delay of a message handed back at shutdown. It is short,
// so that another replica soon takes it, but never zero: a bare Nak redelivers at once,
// which a crash-looping process could turn into a busy loop.
const handBackDelay = time.Second

// Consumer is the JetStream loop: pull what free Kombo slots can start (and a little
// ahead), call Kombo, decide, publish the result, ack.
type Consumer struct {
	js    jetstream.JetStream
	kombo Deleter
	o     Options
	log   *slog.Logger
	m     *Metrics
	now   func() time.Time
	adm   *admission.Controller // when a Kombo call may start
	// protect and fuse are the operator's levers, opened by Run before the intake starts
	// (nil: none), read-only after (written under mu: Ready may read them before).
	protect *control.Protect
	fuse    *control.Fuse
	alive   aliveSet
	// records are the outcomes recordStored is writing in the background.
	records sync.WaitGroup
	// holdLogged is the end of the latest rate-limit hold logged, in Unix ns.
	holdLogged atomic.Int64

	// okCalls and deleted are the metrics of the common case, looked up once.
	okCalls, deleted prometheus.Counter

	mu          sync.Mutex
	cons        jetstream.Consumer
	ackWait     time.Duration
	maxPending  int
	bindErr     error // why the consumer is not bound; nil when bound
	ledger      *ledger.Ledger
	storage     storageState  // whether outcomes can be stored now
	unanswered  time.Time     // since when JetStream has not answered a write or a check (zero: it answers)
	moved       time.Time     // when the daemon last moved to another server (see moveAway)
	floorSaved  uint64        // the ack floor last saved in the ledger
	dupWindow   time.Duration // the duplicate window of the stream storing the results
	incarnation string        // the stream's creation time: scopes "<stream>-<seq>" request ids
	stopping    bool
	checking    bool               // the API key check at start has not answered yet
	pause       control.PauseState // the consumer's pause as last read from the server

	// What pullable counts, kept by the intake and the request path.
	held        atomic.Int64  // messages being handled
	outstanding atomic.Int64  // messages asked for by pulls not yet answered
	wanting     atomic.Int64  // messages that want a Kombo slot now: received and not yet called, or retrying
	pullWake    chan struct{} // wakePull: wakes the pull loop

	// crashAfterPublish, set by tests, makes ack skip the ack of the request ids it
	// returns true for, as a process that crashed between publishing and acking would.
	crashAfterPublish func(requestID string) bool
}

// New returns a consumer; Run starts it.
func New(js jetstream.JetStream, d Deleter, o Options) (*Consumer, error) {
	if o.MaxConcurrency < 1 || o.MaxAttempts < 1 {
		return nil, errors.New("consumer: MaxConcurrency and MaxAttempts must be at least 1")
	}
	if o.pullWait == 0 {
		// At shutdown the last pull is read until it expires (what arrives is handed
		// back): that must fit well within ShutdownTimeout.
		o.pullWait = min(2*time.Second, max(100*time.Millisecond, o.ShutdownTimeout/8))
	}
	c := &Consumer{
		js:       js,
		kombo:    d,
		o:        o,
		log:      o.Logger,
		m:        o.Metrics,
		now:      time.Now,
		pullWake: make(chan struct{}, 1),
		bindErr:  errors.New("not bound to the consumer yet"),
		checking: true,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.m == nil {
		c.m = NewMetrics(nil)
	}
	c.adm = admission.New(admission.Options{Max: o.MaxConcurrency, Now: c.now})
	pace := func() float64 { return c.adm.Stats().Pace }
	c.m.pace.Store(&pace)
	c.okCalls = c.m.komboCalls.WithLabelValues("200", "")
	c.deleted = c.m.requests.WithLabelValues("deleted")
	c.m.concurrencyCap.Set(float64(c.adm.Stats().Cap))
	return c, nil
}

// Ready returns nil while the consumer is bound, not paused and not shutting down, and
// otherwise an error saying why not.
func (c *Consumer) Ready() error {
	c.mu.Lock()
	stopping, checking := c.stopping, c.checking
	c.mu.Unlock()
	if stopping {
		return errors.New("shutting down")
	}
	if err := c.blocked(); err != nil {
		return err
	}
	if paused, why := c.adm.PausedFor(admission.KeyRejected); paused {
		return fmt.Errorf("paused: Kombo rejects the API key (%s)", why)
	}
	if checking {
		return errors.New("starting: checking the API key with Kombo")
	}
	return nil
}

// Run binds the consumer, checks the API key, and processes requests until ctx is done.
// Then it stops pulling, naks what waits, lets calls in flight finish within
// ShutdownTimeout, and returns nil. It fails only when it cannot bind at start for a
// reason retrying cannot fix (stream or consumer missing with provisioning off). It
// leaves no goroutine behind.
func (c *Consumer) Run(ctx context.Context) error {
	if err := c.bindAtStart(ctx); err != nil || ctx.Err() != nil {
		return err // (nil when shutdown came before the consumer was bound)
	}
	if err := c.openControls(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	c.startPaused(ctx)
	c.checkKeyAtStart(ctx)
	c.mu.Lock()
	c.checking = false
	c.mu.Unlock()

	in := c.startIntake(ctx)
	<-ctx.Done()
	in.stop()
	c.log.Info("consumer stopped")
	return nil
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
