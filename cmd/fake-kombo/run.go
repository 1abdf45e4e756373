package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

const shutdownTimeout = 5 * time.Second

// run runs the command line args (without the program name) and returns when the server has
// stopped: after SIGINT or SIGTERM, or when ctx is done.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "healthcheck" {
		return healthcheck(ctx, args[1:], getenv, stdout)
	}
	c, err := parseConfig(args, getenv)
	if errors.Is(err, errHelp) {
		printUsage(stdout)
		return nil
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	fake := kombotest.New(c.opts)
	if c.verbose {
		fake.OnCall(func(call kombotest.Call) {
			logger.Info("call", "method", call.Method, "uri", call.RawURI, "integration_id", call.ID,
				"status", call.Status, "kombo_code", call.Code, "in_flight", call.InFlight,
				"early_for_rate_limit", call.EarlyForRateLimit, "duration", call.End.Sub(call.Start))
		})
	}

	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           fake,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	url := "http://" + ln.Addr().String() + "/v1"
	logListening(logger, url, c)
	fmt.Fprintf(stdout, "listening on %s\n", url)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	fake.Close() // calls that wait (latency, hang) end now
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Warn("shutdown timed out; closing connections", "error", err)
		_ = srv.Close()
	}
	<-served
	logger.Info("stopped")
	return nil
}

// logListening logs the address and every setting the fake serves with.
func logListening(logger *slog.Logger, url string, c config) {
	o := c.opts
	logger.Info("fake-kombo listening", "url", url, "api_key_set", o.APIKey != "",
		"latency", o.Latency, "latency_jitter", o.LatencyJitter, "concurrency_limit", o.ConcurrencyLimit,
		"rate_limit", o.RateLimit, "rate_burst", o.RateBurst, "rate_limit_header", o.RateLimitHeader,
		"failure_rate", o.FailureRate, "reject_key", o.RejectKey, "seed", o.Seed,
		"early_grace", o.EarlyGrace, "max_calls", o.MaxCalls, "verbose", c.verbose)
}

// healthcheck GETs /_fake/healthz of the fake at --addr (or FAKE_KOMBO_ADDR): for container
// health checks, as images have no shell or curl.
func healthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	fs := flag.NewFlagSet("fake-kombo healthcheck", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addrFlag := fs.String("addr", "", "address of the fake")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stdout, "Usage: fake-kombo healthcheck [--addr HOST:PORT] [--timeout DURATION]\n"+
				"Exits 0 if the fake at --addr (or FAKE_KOMBO_ADDR, default %s) answers /_fake/healthz with 200.\n", defaultAddr)
			return nil
		}
		return usageError(err)
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Errorf("healthcheck: unexpected argument %q", fs.Arg(0)))
	}
	addr, source := defaultAddr, ""
	if e := getenv("FAKE_KOMBO_ADDR"); e != "" {
		addr, source = e, "FAKE_KOMBO_ADDR"
	}
	if *addrFlag != "" {
		addr, source = *addrFlag, "--addr"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usageError(fmt.Errorf("%s: %w", source, err))
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // a wildcard listener answers on loopback
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	url := "http://" + net.JoinHostPort(host, port) + "/_fake/healthz"
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}
