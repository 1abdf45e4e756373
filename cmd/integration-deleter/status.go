package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

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
	cfg, err := loadClientConfig(lookupEnv)
	if err != nil {
		return err
	}
	c, err := connect("status", cfg, stderr)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
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
