// Package daemon runs integration-deleter: it wires config, logger, Kombo client, NATS,
// consumer and HTTP server, in that order, runs them as one group and shuts them down in
// a fixed order within SHUTDOWN_TIMEOUT.
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/kombo"
)

var _ consumer.Deleter = (*kombo.Client)(nil)

// Options are what Run needs besides the configuration.
type Options struct {
	// Version is reported in the User-Agent and in logs; "" means "dev".
	Version string
	// Logger receives every log line; nil discards them.
	Logger *slog.Logger
	// OnListen, when set, is called with the HTTP server's address once it listens.
	OnListen func(addr string)

	// listen makes the HTTP listener; nil means net.Listen. Tests set it to break or
	// watch the listener.
	listen func(network, address string) (net.Listener, error)
}

// budgets are the shares of SHUTDOWN_TIMEOUT the steps of the shutdown may take, in
// their order. consumer, drain and http add up to the whole, so that the daemon has
// stopped within SHUTDOWN_TIMEOUT of the signal.
type budgets struct {
	calls    time.Duration // calls in flight finish (consumer.Options.ShutdownTimeout)…
	consumer time.Duration // …then the consumer naks what they leave and returns
	drain    time.Duration // NATS drains: acks and publishes still buffered are flushed
	http     time.Duration // the HTTP server ends the requests it is serving
}

// shutdownBudgets shares total out: 75% to the consumer (70% for calls in flight, 5% to
// hand back what they leave), 15% to the NATS drain, 10% to the HTTP server. A share not
// used up is not passed on: the steps are bounded one by one.
func shutdownBudgets(total time.Duration) budgets {
	b := budgets{drain: total * 15 / 100, http: total / 10}
	b.consumer = total - b.drain - b.http
	b.calls = total * 7 / 10
	return b
}

// Run runs the daemon until ctx is done or one of its parts fails (the consumer cannot
// bind, the NATS connection closes, the HTTP listener dies). Then it shuts down in the
// fixed order — stop pulling, finish calls in flight, nak what waits, drain NATS, stop the
// HTTP server — within SHUTDOWN_TIMEOUT. It returns nil after a clean shutdown asked for
// by ctx, else an error naming the part that failed or did not stop in time.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	version := cmp.Or(o.Version, "dev")
	log.Info("starting integration-deleter", "version", version, "config", cfg)
	b := shutdownBudgets(cfg.ShutdownTimeout)

	nc, closed, stopNATS, err := connectNATS(cfg, log)
	if err != nil {
		return err
	}
	defer stopNATS()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cons, err := newConsumer(nc, cfg, version, b.calls, log, reg)
	if err != nil {
		return err
	}
	listen := o.listen
	if listen == nil {
		listen = net.Listen
	}
	ln, err := listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("daemon: listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	log.Info("serving /healthz, /readyz, /metrics", "addr", ln.Addr().String())
	if o.OnListen != nil {
		o.OnListen(ln.Addr().String())
	}

	if err := serve(ctx, b, log, cons, nc, closed, ln, reg); err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	log.Info("stopped cleanly")
	return nil
}

// connectNATS connects to NATS_URL, or first starts the embedded server when
// NATS_EMBEDDED asks for it. stop closes the connection and stops that server.
func connectNATS(cfg *config.Config, log *slog.Logger) (nc *nats.Conn, closed <-chan struct{}, stop func(), err error) {
	if !cfg.NATSEmbedded {
		nc, closed, err = Connect(cfg.NATSURL, cfg, log)
		if err != nil {
			return nil, nil, nil, err
		}
		return nc, closed, nc.Close, nil
	}
	emb, err := StartEmbedded(cfg.NATSURL, cfg.NATSEmbeddedDir, log)
	if err != nil {
		return nil, nil, nil, err
	}
	nc, closed, err = Connect(emb.ClientURL(), cfg, log)
	if err != nil {
		emb.Shutdown()
		return nil, nil, nil, err
	}
	return nc, closed, func() { nc.Close(); emb.Shutdown() }, nil
}

// newConsumer makes the Kombo client and the consumer that calls it, with its metrics in
// reg; calls in flight get callsBudget to finish at shutdown.
func newConsumer(nc *nats.Conn, cfg *config.Config, version string, callsBudget time.Duration,
	log *slog.Logger, reg *prometheus.Registry,
) (*consumer.Consumer, error) {
	kc, err := kombo.New(kombo.Options{
		BaseURL:   cfg.KomboBaseURL,
		APIKey:    cfg.KomboAPIKey.Reveal(),
		UserAgent: "integration-deleter/" + version,
		Timeout:   cfg.KomboTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: kombo client: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("daemon: jetstream: %w", err)
	}
	cons, err := consumer.New(js, kc, consumer.Options{
		Stream: consumer.StreamOptions{
			Provision:          cfg.JetStreamProvision,
			Name:               cfg.StreamName,
			Subjects:           cfg.StreamSubjects,
			Consumer:           cfg.ConsumerName,
			RequestSubject:     cfg.RequestSubject,
			Replicas:           cfg.StreamReplicas,
			MaxAge:             cfg.StreamMaxAge,
			DuplicateWindow:    cfg.DuplicateWindow,
			MinDuplicateWindow: cfg.KomboRetryMaxElapsed + 2*cfg.AckWait,
			AckWait:            cfg.AckWait,
			MaxDeliver:         cfg.MaxDeliver,
			MaxAckPending:      cfg.MaxAckPending,
		},
		Ledger: ledger.Options{
			Bucket:    cfg.LedgerBucket,
			Provision: cfg.JetStreamProvision,
			Replicas:  cfg.StreamReplicas,
			MaxAge:    cfg.LedgerMaxAge,
			MinMaxAge: cfg.StreamMaxAge,
		},
		DeletedSubject:    cfg.DeletedSubject,
		FailedSubject:     cfg.FailedSubject,
		MaxConcurrency:    cfg.KomboMaxConcurrency,
		MaxAttempts:       cfg.KomboMaxAttempts,
		RetryMaxElapsed:   cfg.KomboRetryMaxElapsed,
		BackoffInitial:    cfg.KomboBackoffInitial,
		BackoffMax:        cfg.KomboBackoffMax,
		AuthProbeInterval: cfg.AuthProbeInterval,
		Controls:          controls(cfg),
		DryRun:            cfg.DryRun,
		DryRunSubject:     cfg.DryRunSubject,
		ShutdownTimeout:   callsBudget,
		Logger:            log,
		Metrics:           consumer.NewMetrics(reg),
	})
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	return cons, nil
}

// controls says where the operator's levers live: the protect list in PROTECT_BUCKET, and
// DELETE_FUSE's count in a stream named after STREAM_NAME (no fuse when off, or in a dry
// run, which deletes nothing).
func controls(cfg *config.Config) consumer.Controls {
	c := consumer.Controls{ProtectBucket: cfg.ProtectBucket}
	if !cfg.DeleteFuse.Off() && !cfg.DryRun {
		c.FuseStream, c.FuseCalls, c.FuseWindow = FuseStream(cfg.StreamName), cfg.DeleteFuse.Calls, cfg.DeleteFuse.Window
	}
	return c
}

// FuseStream is the name of the stream that counts DELETE calls for DELETE_FUSE.
func FuseStream(streamName string) string { return streamName + "_FUSE" }

// serve runs the consumer, the NATS connection and the HTTP server as one group until
// ctx is done or one of them returns, then stops them in that order, each within its
// budget: the consumer stops pulling, lets calls in flight finish and naks what waits;
// NATS drains; the HTTP server, which answered /readyz 503 from the start of the
// shutdown, stops last with a context of its own.
func serve(ctx context.Context, b budgets, log *slog.Logger, cons *consumer.Consumer, nc *nats.Conn,
	closed <-chan struct{}, ln net.Listener, reg *prometheus.Registry,
) error {
	var stopping atomic.Bool
	ready := func() (string, error) {
		switch {
		case stopping.Load():
			return "", errors.New("shutting down")
		case !nc.IsConnected():
			return "", fmt.Errorf("not connected to NATS (%s)", nc.Status())
		}
		if err := cons.Ready(); err != nil {
			return "", err
		}
		return pausedNote(cons.PauseState()), nil
	}
	srv := &http.Server{Handler: handler(ready, reg), ReadHeaderTimeout: 5 * time.Second}

	var g group
	consCtx, stopConsumer := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsumer()
	g.add("consumer", b.consumer, func() error { return cons.Run(consCtx) }, func(context.Context) {
		stopping.Store(true)
		stopConsumer()
	})
	var draining atomic.Bool
	g.add("NATS", b.drain, func() error {
		<-closed
		if !draining.Load() {
			return errors.New("NATS connection closed")
		}
		return nil
	}, func(context.Context) {
		draining.Store(true)
		if err := nc.Drain(); err != nil {
			nc.Close() // not connected: nothing to flush
		}
	})
	g.add("HTTP server", b.http, func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("HTTP server: %w", err)
		}
		return nil
	}, func(ctx context.Context) {
		if err := srv.Shutdown(ctx); err != nil {
			log.Warn("HTTP server: requests still served at the end of its shutdown budget; closing them", "err", err)
			_ = srv.Close()
		}
	})
	return g.run(ctx)
}

// pausedNote is what /readyz adds for a consumer paused by an operator or the fuse: the
// daemon is healthy and ready, and says why no DELETE starts.
func pausedNote(st control.PauseState) string {
	if !st.Paused {
		return ""
	}
	until := "resume"
	if !st.Until.IsZero() {
		until = st.Until.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("; paused until %s: %s (by %s)", until, st.Reason, cmp.Or(st.By, "unknown"))
}

// handler serves /healthz (200 while the process works), /readyz (200 only while ready
// returns no error, else 503 with the reason; a note of a pause after "ready") and /metrics.
func handler(ready func() (string, error), reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		note, err := ready()
		if err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready"+note)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// Connect connects to NATS with the configured authentication and TLS, and returns the
// connection and a channel closed when the connection is finally closed.
func Connect(url string, cfg *config.Config, log *slog.Logger) (*nats.Conn, <-chan struct{}, error) {
	closed := make(chan struct{})
	opts := []nats.Option{
		nats.Name("integration-deleter"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS error", "subject", subject, "err", err)
		}),
	}
	if cfg.NATSCredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.NATSCredsFile))
	}
	if cfg.NATSNKeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NATSNKeyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("daemon: NATS_NKEY_FILE: %w", err)
		}
		opts = append(opts, opt)
	}
	if cfg.NATSUser != "" {
		opts = append(opts, nats.UserInfo(cfg.NATSUser, cfg.NATSPassword.Reveal()))
	}
	if cfg.NATSToken != "" {
		opts = append(opts, nats.Token(cfg.NATSToken.Reveal()))
	}
	if cfg.NATSTLSCAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.NATSTLSCAFile))
	}
	if cfg.NATSTLSCertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.NATSTLSCertFile, cfg.NATSTLSKeyFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("daemon: connect to NATS at %s: %w", config.RedactURL(url), redactErr(url, err))
	}
	log.Info("connected to NATS", "server", nc.ConnectedUrlRedacted())
	return nc, closed, nil
}
