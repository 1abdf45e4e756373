package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/cli"
)

// commandTimeout bounds what an operator's command asks of NATS or Kombo (waiting for
// results aside): a command never hangs on a server that does not answer.
const commandTimeout = 30 * time.Second

// client is an operator command's connection to NATS.
type client struct {
	cfg *config.Config
	nc  *nats.Conn
	js  jetstream.JetStream
}

// loadClientConfig reads the NATS settings of the daemon's environment; a bad one is a
// usage error (exit 2, nothing connected).
func loadClientConfig(lookupEnv lookupFunc) (*config.Config, error) {
	cfg, err := config.LoadClient(lookupEnv)
	if err != nil {
		return nil, cli.UsageError{Err: fmt.Errorf("configuration:\n%w", err)}
	}
	return cfg, nil
}

// connect connects to NATS as cfg says. Only warnings and errors of the connection are
// logged (to stderr): stdout is the command's answer.
func connect(cmd string, cfg *config.Config, stderr io.Writer) (*client, error) {
	quiet := *cfg
	quiet.LogLevel = "warn"
	nc, _, err := daemon.Connect(cfg.NATSURL, cfg, daemon.NewLogger(&quiet, stderr))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return &client{cfg: cfg, nc: nc, js: js}, nil
}

func (c *client) Close() { c.nc.Close() }

// withClient runs an operator command's body with a connection to NATS as the environment
// says and a context that ends after commandTimeout; it closes the connection after.
func withClient(ctx context.Context, cmd string, lookupEnv lookupFunc, stderr io.Writer,
	body func(ctx context.Context, c *client) error,
) error {
	cfg, err := loadClientConfig(lookupEnv)
	if err != nil {
		return err
	}
	c, err := connect(cmd, cfg, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	return body(ctx, c)
}

// hintMissing adds to err, when it says a stream, consumer or bucket is missing, what
// usually causes that.
func hintMissing(err error) error {
	if errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrConsumerNotFound) ||
		errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w (has the daemon run on this server with these STREAM_NAME, CONSUMER_NAME, LEDGER_BUCKET?)", err)
	}
	return err
}

// printJSON prints v as one JSON line.
func printJSON(w io.Writer, v any) {
	b, _ := json.Marshal(v)
	fmt.Fprintln(w, string(b))
}

// operator is who runs the command, as --by defaults to: $USER@hostname.
func operator(lookupEnv lookupFunc) string {
	user, _ := lookupEnv("USER")
	if user == "" {
		user, _ = lookupEnv("LOGNAME")
	}
	if user == "" {
		user = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return user + "@" + host
}

// rfc3339 formats t in UTC, or returns nil for the zero time (JSON null).
func rfc3339(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

// orDash returns *s, or "-" for nil or "" (an empty cell of a table).
func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}
