package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// storedResult is one result event read back from the stream.
type storedResult struct {
	requestID string // from Nats-Msg-Id result-<request id>
	seq       uint64
	subject   string
	data      []byte
}

// scanResults reads the result events stored since since (zero: all of them), in every
// stream that stores a result subject, and calls fn with each until fn returns false
// (headersOnly: without their data).
func (c *Consumer) scanResults(ctx context.Context, since time.Time, headersOnly bool, fn func(storedResult) bool) error {
	byStream := map[string][]string{}
	for _, subject := range []string{c.o.DeletedSubject, c.o.FailedSubject} {
		name, err := c.js.StreamNameBySubject(ctx, subject)
		if err != nil {
			return fmt.Errorf("consumer: which stream stores %q: %w", subject, err)
		}
		byStream[name] = append(byStream[name], subject)
	}
	for name, subjects := range byStream {
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, HeadersOnly: headersOnly}
		if !since.IsZero() {
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
		}
		oc, err := c.js.OrderedConsumer(ctx, name, cfg)
		if err != nil {
			return fmt.Errorf("consumer: read results in %q: %w", name, err)
		}
		if more, err := readAll(ctx, oc, fn); err != nil || !more {
			return err
		}
	}
	return nil
}

// readAll calls fn with each message of oc until none is pending; more is false when fn
// asked to stop.
func readAll(ctx context.Context, oc jetstream.Consumer, fn func(storedResult) bool) (more bool, err error) {
	pending := oc.CachedInfo().NumPending
	for pending > 0 {
		batch, err := oc.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return false, fmt.Errorf("consumer: read results: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := m.Metadata()
			if err != nil {
				continue
			}
			pending = meta.NumPending
			id, ok := strings.CutPrefix(m.Headers().Get(jetstream.MsgIDHeader), "result-")
			if ok && !fn(storedResult{requestID: id, seq: meta.Sequence.Stream, subject: m.Subject(), data: m.Data()}) {
				return false, nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return false, fmt.Errorf("consumer: read results: %w", err)
		}
		if got == 0 {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			// Nothing came: either nothing is left (messages aged out meanwhile) or
			// the server is slow; ask it rather than guess.
			info, err := oc.Info(ctx)
			if err != nil {
				return false, fmt.Errorf("consumer: read results: %w", err)
			}
			if pending = info.NumPending; pending > 0 {
				return false, fmt.Errorf("consumer: read results: %d pending, none came within 2s", pending)
			}
		}
	}
	return true, nil
}

// backfillLogged is backfill, logging what it recorded.
func (c *Consumer) backfillLogged(ctx context.Context) error {
	n, err := c.backfill(ctx)
	if err != nil {
		return fmt.Errorf("consumer: record the stored results in the ledger: %w", err)
	}
	if n > 0 {
		c.log.Warn("recorded in the ledger the outcomes of results stored before it knew them", "results", n)
	}
	return nil
}

// backfill records in the ledger the outcome of every result already stored (a new
// ledger, or a new consumer that starts at the start of the stream), so that no request
// finished before the ledger knew it is called again. It returns how many it recorded.
func (c *Consumer) backfill(ctx context.Context) (int, error) {
	n := 0
	var werr error
	err := c.scanResults(ctx, time.Time{}, false, func(r storedResult) bool {
		var res Result
		if json.Unmarshal(r.data, &res) != nil || res.RequestID != r.requestID {
			return true // not a result this daemon wrote
		}
		e := ledger.Entry{RequestID: res.RequestID, Scope: c.ledgerID(request{RequestID: res.RequestID}).Scope,
			IntegrationID: res.IntegrationID, Status: ledger.Deleted,
			Calls: res.Attempts, CompletedAt: res.CompletedAt, Subject: r.subject, Result: r.data, ResultSeq: r.seq}
		if res.Status == StatusFailed {
			e.Status = ledger.Failed
			if res.Error != nil {
				e.Code = res.Error.Code
			}
		}
		added, err := c.ledger.Adopt(ctx, e, c.now())
		if err != nil {
			werr = err
			return false
		}
		if added {
			n++
		}
		return true
	})
	return n, errors.Join(err, werr)
}

// findStored looks in the stream for the result of requestID stored since since; seq 0
// means none is stored.
func (c *Consumer) findStored(ctx context.Context, requestID string, since time.Time) (seq uint64, err error) {
	err = c.scanResults(ctx, since, true, func(r storedResult) bool {
		if r.requestID == requestID {
			seq = r.seq
			return false
		}
		return true
	})
	return seq, err
}
