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
	"github.com/kombo-ops/integration-deleter/kombo"
)

// publish stores a result in JetStream with Nats-Msg-Id result-<request id>, retrying
// until it is stored or ctx ends, and returns the stream sequence it is stored at (dup:
// the stream had it already, at that sequence).
func (c *Consumer) publish(ctx context.Context, subject, requestID string, data []byte, reqHdr nats.Header) (seq uint64, dup bool, _ error) {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, "result-"+requestID)
	if parent, state := traceHeaders(reqHdr); parent != "" {
		m.Header.Set("traceparent", parent)
		if state != "" {
			m.Header.Set("tracestate", state)
		}
	}
	wait := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := c.js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			if ack.Duplicate {
				c.log.Debug("result was already stored (duplicate)", "request_id", requestID)
			}
			c.publishFailed(nil)
			return ack.Sequence, ack.Duplicate, nil
		}
		c.m.publishFailures.Inc()
		c.publishFailed(fmt.Errorf("cannot store results on %s: %w", subject, err))
		c.log.Warn("publish result failed; retrying", "request_id", requestID, "err", err, "retry_in", wait)
		if sleep(ctx, wait) != nil {
			return 0, false, fmt.Errorf("consumer: request %s: publish result: %w", requestID, err)
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// keyRejected reports whether err says Kombo rejects the API key.
func keyRejected(err error) bool {
	var kerr *kombo.Error
	return errors.As(err, &kerr) && classify(kerr.Code, kerr.Status) == actionPause
}

// pauseFor pauses admission (no call starts) because Kombo rejected the key.
func (c *Consumer) pauseFor(err error) {
	reason := "key rejected"
	var kerr *kombo.Error
	if errors.As(err, &kerr) {
		reason = kerr.EffectiveCode()
	}
	if c.adm.Pause(reason) {
		c.m.paused.Set(1)
		c.log.Error("Kombo rejects the API key: intake paused, messages kept; probing GET /check-api-key",
			"kombo_code", reason, "probe_interval", c.o.AuthProbeInterval, "err", err)
	}
}

// checkKeyAtStart checks the key once: a rejected key starts the daemon paused; any other
// failure is logged and the daemon starts normally.
func (c *Consumer) checkKeyAtStart(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	info, err := c.kombo.CheckAPIKey(cctx)
	switch {
	case err == nil:
		c.m.authProbes.WithLabelValues("accepted").Inc()
		c.log.Info("Kombo accepts the API key", "environment_id", info.EnvironmentID)
	case keyRejected(err):
		c.m.authProbes.WithLabelValues("rejected").Inc()
		c.pauseFor(err)
	default:
		c.m.authProbes.WithLabelValues("error").Inc()
		c.log.Warn("cannot check the API key at start; starting anyway", "err", err)
	}
}

// probeLoop checks the key every AuthProbeInterval while paused and resumes when Kombo
// accepts it again.
func (c *Consumer) probeLoop(ctx context.Context) {
	t := time.NewTicker(c.o.AuthProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if paused, _ := c.adm.Paused(); !paused {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, c.o.AuthProbeInterval)
		info, err := c.kombo.CheckAPIKey(pctx)
		cancel()
		switch {
		case err == nil:
			c.m.authProbes.WithLabelValues("accepted").Inc()
			if c.adm.Resume() {
				c.m.paused.Set(0)
				c.log.Info("Kombo accepts the API key again: resuming", "environment_id", info.EnvironmentID)
				c.kick()
			}
		case keyRejected(err):
			c.m.authProbes.WithLabelValues("rejected").Inc()
			c.log.Warn("Kombo still rejects the API key", "err", err)
		default:
			c.m.authProbes.WithLabelValues("error").Inc()
			c.log.Warn("API key probe failed; still paused", "err", err)
		}
	}
}

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

// storedResult reads the result stored at seq in the stream that stores subject.
func (c *Consumer) storedResult(ctx context.Context, subject string, seq uint64) ([]byte, error) {
	name, err := c.js.StreamNameBySubject(ctx, subject)
	var stream jetstream.Stream
	if err == nil {
		stream, err = c.js.Stream(ctx, name)
	}
	var raw *jetstream.RawStreamMsg
	if err == nil {
		raw, err = stream.GetMsg(ctx, seq)
	}
	if err != nil {
		return nil, fmt.Errorf("consumer: read the stored result at %d: %w", seq, err)
	}
	return raw.Data, nil
}
