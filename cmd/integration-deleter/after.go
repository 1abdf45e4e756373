// The commands for after the fact: status (the ledger's outcome of a request), failed (the
// stored failed results) and retry (a new request for a failed one).

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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/internal/cli"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// outcomes reads the ledger of the request stream.
type outcomes struct {
	l                   *ledger.Ledger
	stream, incarnation string
}

// openOutcomes opens the ledger bucket (never creating it) and reads the request stream's
// incarnation, which scopes "<stream>-<seq>" request ids.
func openOutcomes(ctx context.Context, c *client) (*outcomes, error) {
	s, err := c.js.Stream(ctx, c.cfg.StreamName)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", c.cfg.StreamName, hintMissing(err))
	}
	l, _, err := ledger.Open(ctx, c.js, ledger.Options{Bucket: c.cfg.LedgerBucket})
	if err != nil {
		return nil, fmt.Errorf("%w (has the daemon run on this server with this LEDGER_BUCKET?)", err)
	}
	return &outcomes{l: l, stream: c.cfg.StreamName, incarnation: ledger.Incarnation(s.CachedInfo().Created)}, nil
}

// lookup returns the ledger's entry of the request id; ok is false when it has none.
func (o *outcomes) lookup(ctx context.Context, requestID string) (e ledger.Entry, ok bool, err error) {
	return o.l.Lookup(ctx, ledger.IDOf(requestID, o.stream, o.incarnation))
}

// The statuses status prints besides deleted and failed.
const (
	statusPending = "pending" // claimed, no outcome yet
	statusUnknown = "unknown" // nothing recorded
)

// statusJSON is the --json line of status; what the ledger does not know is null.
type statusJSON struct {
	RequestID     string  `json:"request_id"`
	Status        string  `json:"status"`
	IntegrationID *string `json:"integration_id"`
	Code          *string `json:"code"`
	Attempts      *int    `json:"attempts"`
	CompletedAt   *string `json:"completed_at"`
}

// statusOf says what the ledger's entry e (ok: there is one) tells of requestID.
func statusOf(requestID string, e ledger.Entry, ok bool) statusJSON {
	if !ok {
		return statusJSON{RequestID: requestID, Status: statusUnknown}
	}
	s := statusJSON{RequestID: requestID, Status: statusPending, IntegrationID: &e.IntegrationID, Attempts: &e.Calls}
	if !e.Final() {
		return s
	}
	s.Status = string(e.Status)
	var r consumer.Result
	if json.Unmarshal(e.Result, &r) == nil && r.Status == s.Status {
		s.Attempts = &r.Attempts // as published
	}
	if e.Code != "" {
		s.Code = &e.Code
	}
	if e.CompletedAt != "" {
		s.CompletedAt = &e.CompletedAt
	}
	return s
}

func runStatus(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var asJSON bool
	ids, err := parseFlags("status [--json] REQUEST_ID…", `Print the outcome the ledger recorded for each request id: deleted or failed (with code,
attempts, completed_at), pending (a replica handles it, no outcome yet) or unknown (nothing
recorded: never received, or forgotten after LEDGER_MAX_AGE).`, args, stdout, stderr, func(fs *flag.FlagSet) {
		fs.BoolVar(&asJSON, "json", false, `print {"request_id","status","integration_id","code","attempts","completed_at"} per id`)
	})
	if err != nil {
		return helpOK(err)
	}
	if len(ids) == 0 {
		return cli.UsageError{Err: errors.New("status: give at least one request id")}
	}
	return withClient(ctx, "status", lookupEnv, stderr, func(ctx context.Context, c *client) error {
		o, err := openOutcomes(ctx, c)
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		var rows []statusJSON
		for _, id := range ids {
			e, ok, err := o.lookup(ctx, id)
			if err != nil {
				return fmt.Errorf("status: %w", err)
			}
			rows = append(rows, statusOf(id, e, ok))
		}
		printStatuses(stdout, rows, asJSON)
		return nil
	})
}

func printStatuses(w io.Writer, rows []statusJSON, asJSON bool) {
	if asJSON {
		for _, r := range rows {
			printJSON(w, r)
		}
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST_ID\tSTATUS\tINTEGRATION_ID\tCODE\tATTEMPTS\tCOMPLETED_AT")
	for _, r := range rows {
		attempts := "-"
		if r.Attempts != nil {
			attempts = strconv.Itoa(*r.Attempts)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.RequestID, r.Status, orDash(r.IntegrationID), orDash(r.Code), attempts, orDash(r.CompletedAt))
	}
	_ = tw.Flush()
}

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
	return withClient(ctx, "failed", lookupEnv, stderr, func(ctx context.Context, c *client) error {
		results, err := readFailed(ctx, c, since, code)
		if err != nil {
			return fmt.Errorf("failed: %w", err)
		}
		printFailed(stdout, results, since, asJSON)
		return nil
	})
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

// maxRetries bounds the retries of one request: <original>.retry1 … .retry100.
const maxRetries = 100

// retryFlags are the flags of the retry command.
type retryFlags struct {
	failed, wait, json bool
	since              time.Duration
	code               string
	sinceSet           bool // --since or --code given
	timeout            time.Duration
}

func (f *retryFlags) define(fs *flag.FlagSet) {
	fs.BoolVar(&f.failed, "failed", false, "retry the failed results stored within --since (with --code: only those)")
	defineSince(fs, &f.since, &f.code, &f.sinceSet)
	fs.BoolVar(&f.wait, "wait", false, "wait for each new request's result and print it (as request --wait)")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "how long --wait waits for all results")
	fs.BoolVar(&f.json, "json", false, `print {"request_id","retry_of"} per new request`)
}

// check finds what is wrong with the command line before anything connects.
func (f *retryFlags) check(ids []string) error {
	switch {
	case f.failed && len(ids) > 0:
		return errors.New("retry: give request ids or --failed, not both")
	case !f.failed && len(ids) == 0:
		return errors.New("retry: give at least one request id, or --failed")
	case !f.failed && f.sinceSet:
		return errors.New("retry: --since and --code select failed results: they need --failed")
	case f.timeout <= 0:
		return errors.New("retry: --timeout must be positive")
	}
	return nil
}

// retryRequest is a new request that retries a failed one.
type retryRequest struct {
	IntegrationID string `json:"integration_id"`
	RequestID     string `json:"request_id"`
	RequestedBy   string `json:"requested_by"`
	Reason        string `json:"reason"`
	RetryOf       string `json:"retry_of"`
}

func runRetry(ctx context.Context, args []string, lookupEnv lookupFunc, stdout, stderr io.Writer) error {
	var f retryFlags
	ids, err := parseFlags("retry REQUEST_ID… | retry --failed [--since DURATION] [--code CODE] [--wait]", `Publish a new request for each failed request: request id <original>.retry<n> (n the first
not used yet), "retry_of": "<original>", the integration id, requested_by and reason of the
failed one. A request that is deleted, pending or unknown is not retried (exit code 1); one
whose retry is already deleted or pending is skipped (said on stderr). --failed retries the
failed results within --since (default 24h). Prints the new request ids; with --wait, then
each result as request --wait does (exit code 1 when one failed or did not come in time).`,
		args, stdout, stderr, f.define)
	if err != nil {
		return helpOK(err)
	}
	if err := f.check(ids); err != nil {
		return cli.UsageError{Err: err}
	}
	// Planning has commandTimeout; publishing (and --wait) its own, from ctx.
	return withClient(ctx, "retry", lookupEnv, stderr, func(lctx context.Context, c *client) error {
		plans, refused, err := planRetries(lctx, c, ids, f, stderr)
		if err != nil {
			return fmt.Errorf("retry: %w", err)
		}
		err = publishRetries(ctx, c, plans, f, stdout, stderr)
		if refused > 0 {
			err = errors.Join(err, fmt.Errorf("retry: %d request(s) could not be retried", refused))
		}
		return err
	})
}

// planRetries finds what to retry: the new request of each original that can be retried.
// It says on stderr why the others are not, and counts those refused (not failed).
func planRetries(ctx context.Context, c *client, ids []string, f retryFlags, stderr io.Writer) ([]retryRequest, int, error) {
	o, err := openOutcomes(ctx, c)
	if err != nil {
		return nil, 0, err
	}
	known := map[string]*consumer.Result{}
	if f.failed {
		results, err := readFailed(ctx, c, f.since, f.code)
		if err != nil {
			return nil, 0, err
		}
		for _, r := range results {
			ids = append(ids, r.RequestID)
			known[r.RequestID] = &r.Result
		}
		if len(ids) == 0 {
			fmt.Fprintf(stderr, "retry: no failed results within %s\n", f.since)
		}
	}
	var plans []retryRequest
	refused, roots := 0, map[string]bool{}
	for _, id := range ids {
		req, why, err := planRetry(ctx, o, id, known[id])
		switch {
		case err != nil:
			return nil, 0, err
		case f.failed && strings.HasPrefix(why, notRetriablePrefix):
			// a sweep of the failed results leaves these out without failing itself
			fmt.Fprintf(stderr, "retry: %s is skipped: %s\n", id, why)
		case why != "" && req.RetryOf == "":
			refused++
			fmt.Fprintf(stderr, "retry: %s is not retried: %s\n", id, why)
		case roots[req.RetryOf]:
			// another failed attempt of the same original: retried once
		case why != "":
			fmt.Fprintf(stderr, "retry: %s is skipped: %s\n", id, why)
		default:
			plans = append(plans, req)
		}
		if req.RetryOf != "" {
			roots[req.RetryOf] = true
		}
	}
	return plans, refused, nil
}

// planRetry returns the new request that retries the request id, or why it is not
// retried: with RetryOf "" when it cannot be (not failed), with RetryOf set when the
// original was retried already (a retry is deleted or pending). known is its failed
// result when read from the stream.
func planRetry(ctx context.Context, o *outcomes, id string, known *consumer.Result) (retryRequest, string, error) {
	e, ok, err := o.lookup(ctx, id)
	if err != nil {
		return retryRequest{}, "", err
	}
	r := known
	switch st := statusOf(id, e, ok).Status; {
	case ok && e.Status == ledger.Failed:
		r = &consumer.Result{}
		if err := json.Unmarshal(e.Result, r); err != nil {
			return retryRequest{}, "its failed result in the ledger cannot be read: " + err.Error(), nil
		}
	case !ok && known != nil: // forgotten by the ledger, still in the stream
	case st == statusUnknown:
		return retryRequest{}, "unknown: nothing is recorded for it", nil
	default:
		return retryRequest{}, st + ": only a failed request is retried", nil
	}
	if r.IntegrationID == "" {
		return retryRequest{}, "its failed result has no integration id (the event could not be read)", nil
	}
	if why := notRetriable(r); why != "" {
		return retryRequest{}, why, nil
	}
	root := id
	if r.RetryOf != "" {
		root = r.RetryOf
	}
	if len(root)+len(fmt.Sprintf(".retry%d", maxRetries)) > maxRequestIDLength {
		return retryRequest{}, fmt.Sprintf("its request id is too long to name a retry (<id>.retry<n> must be at most %d bytes)", maxRequestIDLength), nil
	}
	req := retryRequest{IntegrationID: r.IntegrationID, RequestedBy: r.RequestedBy, Reason: r.Reason, RetryOf: root}
	for n := 1; n <= maxRetries; n++ {
		req.RequestID = fmt.Sprintf("%s.retry%d", root, n)
		e, ok, err := o.lookup(ctx, req.RequestID)
		switch st := statusOf(req.RequestID, e, ok).Status; {
		case err != nil:
			return retryRequest{}, "", err
		case !ok:
			return req, "", nil
		case st != string(ledger.Failed):
			return req, fmt.Sprintf("retried already as %s, which is %s", req.RequestID, st), nil
		}
	}
	return retryRequest{}, fmt.Sprintf("retried %d times already", maxRetries), nil
}

// notRetriablePrefix starts the reason a failed request is never retried: a retry would
// delete without a check the original asked for.
const notRetriablePrefix = "never retried: "

// maxRequestIDLength is the longest request id the daemon accepts (CONTRACT.md).
const maxRequestIDLength = 256

// notRetriable says why the failed result r must not be retried, or "". A retry carries
// the integration id, who and why, but not the original's "expect": a request that failed
// DELETER.MISMATCH (Kombo showed another integration than expected) or EVENT.INVALID (its
// event, "expect" included, could not be read exactly) would be retried without its check.
func notRetriable(r *consumer.Result) string {
	if r.Error == nil {
		return ""
	}
	switch r.Error.Code {
	case "DELETER.MISMATCH":
		return notRetriablePrefix + "it failed DELETER.MISMATCH (" + r.Error.Message + "); a retry would delete " +
			"without that check: publish a new request with the right \"expect\" if it must go"
	case "EVENT.INVALID":
		return notRetriablePrefix + "its event could not be read (EVENT.INVALID: " + r.Error.Message + "); a retry " +
			"could drop what it asked for: publish a correct request instead"
	}
	return ""
}

// publishRetries publishes the new requests and prints their ids; with --wait, then their
// results.
func publishRetries(ctx context.Context, c *client, plans []retryRequest, f retryFlags, stdout, stderr io.Writer) error {
	if len(plans) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout+commandTimeout)
	defer cancel()
	got, stop, err := listenResults(ctx, c.js, c.cfg, f.wait, len(plans))
	if err != nil {
		return err
	}
	defer stop()
	want := map[string]string{}
	for _, req := range plans {
		published, err := publishRetry(ctx, c, req)
		switch {
		case err != nil:
			return fmt.Errorf("retry: publish %s: %w", req.RequestID, err)
		case !published:
			fmt.Fprintf(stderr, "retry: %s is skipped: retried already as %s, published and not handled yet\n", req.RetryOf, req.RequestID)
			continue
		case f.json:
			printJSON(stdout, struct {
				RequestID string `json:"request_id"`
				RetryOf   string `json:"retry_of"`
			}{req.RequestID, req.RetryOf})
		default:
			fmt.Fprintf(stdout, "published request_id=%s retry_of=%s integration_id=%s\n", req.RequestID, req.RetryOf, req.IntegrationID)
		}
		want[req.RequestID] = req.IntegrationID
	}
	if !f.wait || len(want) == 0 {
		return nil
	}
	ctx, cancelWait := context.WithTimeout(ctx, f.timeout)
	defer cancelWait()
	return printResults(ctx, "retry", got, want, f.timeout, stdout)
}

// publishRetry publishes req with its request id as Nats-Msg-Id. published is false when
// the stream had it already (a duplicate within DUPLICATE_WINDOW: the same retry, published
// before and not yet recorded).
func publishRetry(ctx context.Context, c *client, req retryRequest) (published bool, err error) {
	body, _ := json.Marshal(req)
	m := nats.NewMsg(c.cfg.RequestSubject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, req.RequestID)
	ack, err := c.js.PublishMsg(ctx, m)
	if err != nil {
		return false, err
	}
	return !ack.Duplicate, nil
}
