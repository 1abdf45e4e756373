// Package daemon runs integration-deleter: it wires config, logger, Kombo client, NATS,
// consumer and HTTP server, in that order, and shuts them down in the reverse one.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/consumer"
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
	// Registry receives the metrics; nil means a new one with Go and process collectors.
	Registry *prometheus.Registry
}

// Run runs the daemon until ctx is done, then shuts down in the fixed order: stop
// pulling, finish calls in flight (within SHUTDOWN_TIMEOUT), nak what waits, drain NATS,
// stop the HTTP server. It returns nil after a clean shutdown.
func Run(ctx context.Context, cfg *config.Config, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	log.Info("starting integration-deleter", "version", o.Version, "config", cfg)

	kc, err := kombo.New(kombo.Options{
		BaseURL:   cfg.KomboBaseURL,
		APIKey:    cfg.KomboAPIKey.Reveal(),
		UserAgent: "integration-deleter/" + o.Version,
		Timeout:   cfg.KomboTimeout,
	})
	if err != nil {
		return fmt.Errorf("daemon: kombo client: %w", err)
	}

	natsURL := cfg.NATSURL
	if cfg.NATSEmbedded {
		emb, err := StartEmbedded(cfg.NATSURL, cfg.NATSEmbeddedDir, log)
		if err != nil {
			return err
		}
		defer emb.Shutdown()
		natsURL = emb.ClientURL()
	}
	nc, closed, err := Connect(natsURL, cfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("daemon: jetstream: %w", err)
	}

	reg := o.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
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
		ShutdownTimeout:   cfg.ShutdownTimeout * 4 / 5, // the rest is for draining NATS
		Logger:            log,
		Metrics:           consumer.NewMetrics(reg),
	})
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}

	var shuttingDown atomic.Bool
	stopFlag := context.AfterFunc(ctx, func() { shuttingDown.Store(true) })
	defer stopFlag()
	ready := func() error {
		switch {
		case shuttingDown.Load():
			return errors.New("shutting down")
		case !nc.IsConnected():
			return fmt.Errorf("not connected to NATS (%s)", nc.Status())
		}
		return cons.Ready()
	}

	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("daemon: listen on HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	srv := &http.Server{Handler: Handler(ready, reg), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server failed", "err", err)
		}
	})
	log.Info("serving /healthz, /readyz, /metrics", "addr", ln.Addr().String())
	if o.OnListen != nil {
		o.OnListen(ln.Addr().String())
	}

	runErr := cons.Run(ctx)

	// Drain NATS: pending acks and publishes are flushed before the connection closes.
	if err := nc.Drain(); err == nil {
		select {
		case <-closed:
		case <-time.After(max(cfg.ShutdownTimeout/5, 2*time.Second)):
			log.Warn("NATS drain did not finish in time")
		}
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("HTTP server shutdown", "err", err)
	}
	wg.Wait()
	if runErr != nil {
		return fmt.Errorf("daemon: %w", runErr)
	}
	log.Info("stopped cleanly")
	return nil
}

// Handler serves /healthz (200 while the process works), /readyz (200 only while ready
// returns nil, else 503 with the reason) and /metrics.
func Handler(ready func() error, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
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
		return nil, nil, fmt.Errorf("daemon: connect to NATS at %s: %w", redactURL(url), redactErr(url, err))
	}
	log.Info("connected to NATS", "server", nc.ConnectedUrlRedacted())
	return nc, closed, nil
}
