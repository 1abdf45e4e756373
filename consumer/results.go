package consumer

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publish stores a result in JetStream with Nats-Msg-Id msgID (result-<request id>, or
// dryrun-<request id>), retrying until it is stored or ctx ends, and returns the stream
// sequence it is stored at (dup: the stream had it already, at that sequence).
func (c *Consumer) publish(ctx context.Context, subject, msgID string, data []byte, reqHdr nats.Header) (seq uint64, dup bool, _ error) {
	m := nats.NewMsg(subject)
	m.Data = data
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	if parent, state := traceHeaders(reqHdr); parent != "" {
		m.Header.Set("traceparent", parent)
		if state != "" {
			m.Header.Set("tracestate", state)
		}
	}
	wait := 50 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, publishTry)
		ack, err := c.js.PublishMsg(pctx, m)
		cancel()
		if err == nil {
			if ack.Duplicate {
				c.log.Debug("result was already stored (duplicate)", "msg_id", msgID)
			}
			c.publishFailed(nil)
			return ack.Sequence, ack.Duplicate, nil
		}
		c.m.publishFailures.Inc()
		c.publishFailed(fmt.Errorf("cannot store results on %s: %w", subject, err))
		c.log.Warn("publish result failed; retrying", "msg_id", msgID, "err", err, "retry_in", wait)
		if sleep(ctx, wait) != nil {
			return 0, false, fmt.Errorf("consumer: publish result %s: %w", msgID, err)
		}
		wait = min(2*wait, 250*time.Millisecond) // a new leader gets the next try soon after its election
	}
}

// publishTry bounds one try of a result's publish. A publish in flight when a stream's
// leader goes away may get no reply at all; the next try, with the same Nats-Msg-Id, is
// deduplicated by the stream, so a short try costs nothing and ends the wait sooner.
const publishTry = 500 * time.Millisecond

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
