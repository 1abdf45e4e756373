package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
)

// maxDeliveriesAdvisory is the part of JetStream's MAX_DELIVERIES advisory used here.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// watchMaxDeliveries publishes a failed result for each request the server stops
// delivering (MaxDeliver reached), so that no request ends silently. Every replica
// listens; the ledger keeps their outcomes one.
func (c *Consumer) watchMaxDeliveries(ctx context.Context) (*nats.Subscription, error) {
	subject := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + c.o.Stream.Name + "." + c.o.Stream.Consumer
	return c.js.Conn().Subscribe(subject, func(m *nats.Msg) {
		var adv maxDeliveriesAdvisory
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			c.log.Warn("unreadable MAX_DELIVERIES advisory", "err", err)
			return
		}
		c.undeliverable(ctx, adv)
	})
}

// undeliverable records and publishes the failed outcome of a request the server stopped
// delivering, unless it has an outcome. The advisory is not stored: this retries what can
// get better (the ledger or the result stream not answering, the last delivery's claim not
// expired yet) until ctx ends.
func (c *Consumer) undeliverable(ctx context.Context, adv maxDeliveriesAdvisory) {
	wait := 100 * time.Millisecond
	for {
		done, err := c.undeliverableOnce(ctx, adv)
		if done {
			return
		}
		if err != nil {
			c.log.Warn("cannot settle a request the server stopped delivering yet; retrying", "stream_seq", adv.StreamSeq,
				"err", err, "retry_in", wait)
		}
		if sleep(ctx, wait) != nil {
			c.log.Error("shutting down before the request the server stopped delivering got its result", "stream_seq", adv.StreamSeq)
			return
		}
		wait = min(2*wait, 5*time.Second)
	}
}

func (c *Consumer) undeliverableOnce(ctx context.Context, adv maxDeliveriesAdvisory) (done bool, _ error) {
	gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	stream, err := c.js.Stream(gctx, c.o.Stream.Name)
	var raw *jetstream.RawStreamMsg
	if err == nil {
		raw, err = stream.GetMsg(gctx, adv.StreamSeq)
	}
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		c.log.Error("the request the server stopped delivering is no longer in the stream", "stream_seq", adv.StreamSeq)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	req, _ := decodeRequest(raw.Data, raw.Header, c.o.Stream.Name, raw.Sequence)
	id := c.ledgerID(req)
	res := c.failed(req, 0, &ResultError{Code: codeMaxDeliveries, Title: "Delivery limit reached",
		Message: fmt.Sprintf("JetStream stopped delivering the request after %d deliveries (MAX_DELIVER)", adv.Deliveries)})
	res.CompletedAt = completedAt(c.now())
	cur, _, err := c.ledger.Lookup(gctx, id)
	if err != nil {
		return false, err
	}
	res.Attempts = cur.Calls
	data, _ := json.Marshal(res)
	rec, busyUntil, err := c.ledger.RecordUnclaimed(gctx, ledger.Entry{RequestID: req.RequestID, Scope: id.Scope,
		IntegrationID: req.IntegrationID, Status: ledger.Failed, Calls: res.Attempts, Code: codeMaxDeliveries,
		CompletedAt: res.CompletedAt, Subject: c.o.FailedSubject, Result: data}, c.now())
	switch {
	case err != nil:
		return false, err
	case !busyUntil.IsZero():
		// A claim holds: its holder may still record an outcome; once it expired, ask
		// again.
		_ = sleep(ctx, busyUntil.Sub(c.now()))
		return false, nil
	}
	if err := c.storeResult(gctx, rec, raw.Header); err != nil {
		return false, err
	}
	if string(rec.Result) == string(data) {
		c.m.requests.WithLabelValues("failed").Inc()
		c.log.Warn("request failed", "request_id", req.RequestID, "integration_id", req.IntegrationID,
			"attempts", res.Attempts, "kombo_code", codeMaxDeliveries, "outcome", "failed")
	}
	return true, nil
}
