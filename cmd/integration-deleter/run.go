package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/cli"
)

// version is stamped at build time with -ldflags "-X main.version=…".
var version = "dev"

const usage = `integration-deleter deletes Kombo integrations on request from NATS JetStream.

Usage:
  integration-deleter [run]                 run the daemon (configured by environment variables)
  integration-deleter request [flags] ID…   publish delete requests (--wait prints each result)
  integration-deleter version               print the version
  integration-deleter healthcheck           GET this host's /healthz (for container health checks)

Stopping an irreversible job:
  integration-deleter pause --reason TEXT [--for D | --until T]   pause every replica
  integration-deleter resume                resume, and re-arm a tripped fuse
  integration-deleter protect add|rm PATTERN…, protect ls          ids that must never be deleted
  integration-deleter check ID…             what a delete would remove (GET from Kombo)

After the fact:
  integration-deleter status REQUEST_ID…    the recorded outcome of each request
  integration-deleter failed [--since D] [--code C]                the stored failed results
  integration-deleter retry REQUEST_ID… | retry --failed [--since D] [--code C] [--wait]

Every command takes --help; the operator's commands take --json (one JSON object per
line). They read the daemon's NATS settings from the environment (check needs
KOMBO_API_KEY instead); the variables are listed in the README and in
'integration-deleter run --help'. Exit codes: 0 success or clean shutdown, 2 configuration
or usage error (nothing done), 1 failure at run time.
`

// lookupFunc reads one environment variable, as os.LookupEnv does: a variable set to ""
// is set, and overrides its default.
type lookupFunc = func(string) (string, bool)

// run is the whole program; main only maps its error to an exit code. The environment
// comes in as lookupEnv, so that tests run it in parallel, each with its own. SIGINT and
// SIGTERM end ctx; a second one kills at once.
func run(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	cmd := "run"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usage)
			return nil
		}
		if !strings.HasPrefix(args[0], "-") {
			cmd, args = args[0], args[1:]
		}
	}
	runCmd, ok := commands[cmd]
	if !ok {
		fmt.Fprint(stderr, usage)
		return cli.UsageError{Err: fmt.Errorf("unknown command %q", cmd)}
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // the default handling again: a second signal kills
	return runCmd(ctx, args, lookupEnv, stdout, stderr)
}

// commands are the commands by name: each runs with the arguments after its name.
var commands = map[string]func(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error{
	"run":         runDaemon,
	"request":     runRequest,
	"version":     runVersion,
	"healthcheck": runHealthcheck,
	"pause":       runPause,
	"resume":      runResume,
	"protect":     runProtect,
	"check":       runCheck,
	"status":      runStatus,
	"failed":      runFailed,
	"retry":       runRetry,
}

func runVersion(_ context.Context, args []string, _ lookupFunc, stdout, stderr io.Writer) error {
	if _, err := parseFlags("version", "Print the version.", args, stdout, stderr, nil); err != nil {
		return helpOK(err)
	}
	fmt.Fprintln(stdout, "integration-deleter", version)
	return nil
}

// errHelp ends a command after --help printed its usage.
var errHelp = errors.New("help printed")

// parseFlags parses a command's flags; define (nil: none, and no arguments either) adds them.
func parseFlags(name, doc string, args []string, stdout, stderr io.Writer, define func(*flag.FlagSet)) ([]string, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if define != nil {
		define(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: integration-deleter %s\n\n%s\n", name, doc)
		fs.PrintDefaults()
	}
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, errHelp
		}
	}
	// Flags may come before, between or after the arguments (request ID… --wait); what
	// follows "--" is arguments only.
	var positional, rest []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, rest = args[:i], args[i+1:]
	}
	for {
		if err := fs.Parse(args); err != nil {
			return nil, cli.UsageError{Err: err}
		}
		if fs.NArg() == 0 {
			break
		}
		positional, args = append(positional, fs.Arg(0)), fs.Args()[1:]
	}
	positional = append(positional, rest...)
	if define == nil && len(positional) > 0 {
		return nil, cli.UsageError{Err: fmt.Errorf("%s takes no arguments, got %q", name, positional)}
	}
	return positional, nil
}

func helpOK(err error) error {
	if errors.Is(err, errHelp) {
		return nil
	}
	return err
}

func runDaemon(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	doc := `Run the daemon until SIGTERM or SIGINT. Configuration comes from environment variables:
` + strings.Join(config.Names(), ", ") + `.
See the README for their meaning and defaults.`
	if _, err := parseFlags("run", doc, args, stdout, stderr, nil); err != nil {
		return helpOK(err)
	}
	cfg, err := config.Load(lookupEnv)
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("configuration:\n%w", err)}
	}
	return daemon.Run(ctx, cfg, daemon.Options{Version: version, Logger: daemon.NewLogger(cfg, stderr)})
}

// requestFlags are the flags of the request command.
type requestFlags struct {
	wait        bool
	timeout     time.Duration
	requestedBy string
	reason      string
}

func runRequest(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var f requestFlags
	ids, err := parseFlags("request [flags] ID…", `Publish one delete request per integration id to REQUEST_SUBJECT (NATS settings from
the environment, as for the daemon; no Kombo key needed). Each request gets a new
request id, also used as its Nats-Msg-Id. With --wait, print each result as a JSON line
as it arrives; the exit code is then 1 when a request failed or a result did not come
in time.`, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&f.wait, "wait", false, "wait for each request's result and print it")
		fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "how long --wait waits for all results")
		fs.StringVar(&f.requestedBy, "requested-by", "integration-deleter-cli", "requested_by of the requests")
		fs.StringVar(&f.reason, "reason", "", "reason of the requests")
	})
	if err != nil {
		return helpOK(err)
	}
	if len(ids) == 0 {
		return cli.UsageError{Err: errors.New("request: give at least one integration id")}
	}
	// Publishing and --wait have --timeout, not commandTimeout.
	return withClient(ctx, "request", lookupEnv, stderr, func(_ context.Context, c *client) error {
		ctx, cancel := context.WithTimeout(ctx, f.timeout)
		defer cancel()
		// Listen before publishing so that no result is missed.
		got, stop, err := listenResults(ctx, c.js, c.cfg, f.wait, len(ids))
		if err != nil {
			return err
		}
		defer stop()
		want, err := publishRequests(ctx, c.js, c.cfg, ids, f, stdout)
		if err != nil || !f.wait {
			return err
		}
		return printResults(ctx, "request", got, want, f.timeout, stdout)
	})
}

// listenResults delivers the results stored from now on, until ctx ends or stop is called.
// Without wait (--wait) it listens to nothing: got is nil.
func listenResults(ctx context.Context, js jetstream.JetStream, cfg *config.Config, wait bool, buffer int) (got <-chan consumer.Result, stop func(), err error) {
	if !wait {
		return nil, func() {}, nil
	}
	oc, err := js.OrderedConsumer(ctx, cfg.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.DeletedSubject, cfg.FailedSubject},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("request: listen for results on stream %s: %w", cfg.StreamName, err)
	}
	results := make(chan consumer.Result, buffer)
	cc, err := oc.Consume(func(m jetstream.Msg) {
		var r consumer.Result
		if json.Unmarshal(m.Data(), &r) == nil {
			select {
			case results <- r:
			case <-ctx.Done(): // the command has returned
			}
		}
	})
	if err != nil {
		return nil, nil, fmt.Errorf("request: listen for results: %w", err)
	}
	return results, cc.Stop, nil
}

// publishRequests publishes one request per integration id and returns their request
// ids, each mapped to its integration id. Without --wait it prints each as published.
func publishRequests(ctx context.Context, js jetstream.JetStream, cfg *config.Config, ids []string,
	f requestFlags, stdout io.Writer,
) (map[string]string, error) {
	want := map[string]string{}
	for _, id := range ids {
		reqID := "cli-" + nuid.Next()
		body, _ := json.Marshal(map[string]string{"integration_id": id, "request_id": reqID,
			"requested_by": f.requestedBy, "reason": f.reason})
		m := nats.NewMsg(cfg.RequestSubject)
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, reqID)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return nil, fmt.Errorf("request: publish %q: %w", id, err)
		}
		want[reqID] = id
		if !f.wait {
			fmt.Fprintf(stdout, "published request_id=%s integration_id=%s\n", reqID, id)
		}
	}
	return want, nil
}

// printResults prints each result of the requests in want as a JSON line as it arrives. It
// fails when one of them failed or ctx ends before all arrived.
func printResults(ctx context.Context, cmd string, got <-chan consumer.Result, want map[string]string, timeout time.Duration, stdout io.Writer) error {
	n, failed := len(want), 0
	for len(want) > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %d result(s) did not arrive within %s", cmd, len(want), timeout)
		case r := <-got:
			if _, ok := want[r.RequestID]; !ok {
				continue
			}
			delete(want, r.RequestID)
			line, _ := json.Marshal(r)
			fmt.Fprintln(stdout, string(line))
			if r.Status != consumer.StatusDeleted {
				failed++
			}
		}
	}
	if failed > 0 {
		return fmt.Errorf("%s: %d of %d request(s) failed", cmd, failed, n)
	}
	return nil
}

func runHealthcheck(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	if _, err := parseFlags("healthcheck", "GET /healthz on this host's HTTP_ADDR port; exit 0 when it answers 200.",
		args, stdout, stderr, nil); err != nil {
		return helpOK(err)
	}
	cfg, err := config.LoadClient(lookupEnv)
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("configuration:\n%w", err)}
	}
	host, port, err := net.SplitHostPort(cfg.HTTPAddr)
	if err != nil {
		return cli.UsageError{Err: fmt.Errorf("HTTP_ADDR: %w", err)}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: /healthz answered %s", resp.Status)
	}
	fmt.Fprintln(stdout, "healthy")
	return nil
}
