package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/internal/cli"
)

// defaultSince is how far back failed and retry --failed look without --since.
const defaultSince = 24 * time.Hour

// failedResult is one stored failed result: as published, and decoded.
type failedResult struct {
	raw json.RawMessage
	consumer.Result
}

// defineSince adds --since and --code; set says whether either was given.
func defineSince(fs *flag.FlagSet, since *time.Duration, code *string, set *bool) {
	*since = defaultSince
	fs.Func("since", "look at the failed results stored within this long (default 24h)", func(s string) error {
		d, err := time.ParseDuration(s)
		if err == nil && d <= 0 {
			err = errors.New("must be positive")
		}
		*since, *set = d, true
		return err
	})
	fs.Func("code", "only the failed results with this error code (e.g. PLATFORM.INPUT_INVALID)", func(s string) error {
		*code, *set = s, true
		return nil
	})
}

func runFailed(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var since time.Duration
	var code string
	var set, asJSON bool
	args, err := parseFlags("failed [--since DURATION] [--code CODE] [--json]", `Print the failed results stored on FAILED_SUBJECT within --since (default 24h), oldest
first, newest last. --json prints each result event as published.`, args, stdout, stderr, func(fs *flag.FlagSet) {
		defineSince(fs, &since, &code, &set)
		fs.BoolVar(&asJSON, "json", false, "print the result events as published, one per line")
	})
	if err != nil {
		return helpOK(err)
	}
	if len(args) > 0 {
		return cli.UsageError{Err: fmt.Errorf("failed takes no arguments, got %q", args)}
	}
	cfg, err := loadClientConfig(lookupEnv)
	if err != nil {
		return err
	}
	c, err := connect("failed", cfg, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	results, err := readFailed(ctx, c, since, code)
	if err != nil {
		return fmt.Errorf("failed: %w", err)
	}
	printFailed(stdout, results, since, asJSON)
	return nil
}

// readFailed reads the failed results stored within since, with the code when not "",
// through an ordered consumer; it stops once it has read up to the stream's end.
func readFailed(ctx context.Context, c *client, since time.Duration, code string) ([]failedResult, error) {
	start := time.Now().Add(-since)
	s, err := c.js.Stream(ctx, c.cfg.StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", c.cfg.StreamName, hintMissing(err))
	}
	last, err := s.GetLastMsgForSubject(ctx, c.cfg.FailedSubject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("stream %s: last failed result: %w", c.cfg.StreamName, err)
	case last.Time.Before(start):
		return nil, nil // none within since: the consumer would wait for one
	}
	oc, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{c.cfg.FailedSubject},
		DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start})
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", c.cfg.StreamName, err)
	}
	it, err := oc.Messages()
	if err != nil {
		return nil, fmt.Errorf("read stream %s: %w", c.cfg.StreamName, err)
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	var out []failedResult
	for {
		m, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", c.cfg.StreamName, errors.Join(ctx.Err(), err))
		}
		meta, err := m.Metadata()
		if err != nil {
			return nil, fmt.Errorf("read stream %s: %w", c.cfg.StreamName, err)
		}
		var r failedResult
		if json.Unmarshal(m.Data(), &r.Result) == nil && (code == "" || r.Error != nil && r.Error.Code == code) {
			var buf bytes.Buffer
			if json.Compact(&buf, m.Data()) == nil {
				r.raw = buf.Bytes()
				out = append(out, r)
			}
		}
		if meta.NumPending == 0 {
			return out, nil
		}
	}
}

func printFailed(w io.Writer, results []failedResult, since time.Duration, asJSON bool) {
	if asJSON {
		for _, r := range results {
			fmt.Fprintln(w, string(r.raw))
		}
		return
	}
	if len(results) == 0 {
		fmt.Fprintf(w, "no failed results within %s\n", since)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPLETED_AT\tREQUEST_ID\tINTEGRATION_ID\tCODE\tATTEMPTS\tMESSAGE")
	for _, r := range results {
		code, msg := "-", "-"
		if r.Error != nil {
			code, msg = r.Error.Code, strings.Join(strings.Fields(r.Error.Message), " ") // one line
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.CompletedAt, r.RequestID, r.IntegrationID, code, strconv.Itoa(r.Attempts), msg)
	}
	_ = tw.Flush()
}
