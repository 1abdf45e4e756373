package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// request is a delete request event.
type request struct {
	IntegrationID string `json:"integration_id"`
	RequestID     string `json:"request_id,omitempty"`
	RequestedBy   string `json:"requested_by,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// result is a result event as read from the stream, with its subject and headers.
type result struct {
	testkit.Result
	subject string
	header  nats.Header
}

// bus is the test's own JetStream client: it publishes requests and reads results, as the
// services around the daemon would.
type bus struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// connect connects to n, reconnecting for as long as the test runs.
func connect(t *testing.T, n *natsServer) *bus {
	t.Helper()
	nc, js := testkit.JetStream(t, n.url(), nats.Name("e2e "+t.Name()),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(5*time.Second))
	return &bus{nc: nc, js: js}
}

// publish publishes one message on the request subject, retrying while NATS is away, and
// returns the stream sequence it got.
func (b *bus) publish(t *testing.T, ctx context.Context, data []byte, header nats.Header) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		msg := &nats.Msg{Subject: testkit.RequestSubject, Data: data, Header: header}
		ack, err := b.js.PublishMsg(ctx, msg)
		if err == nil {
			return ack.Sequence
		}
		select {
		case <-ctx.Done():
			t.Fatalf("publish %q: %v", data, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// request publishes r as JSON.
func (b *bus) request(t *testing.T, ctx context.Context, r request) uint64 {
	t.Helper()
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b.publish(t, ctx, data, nil)
}

// burst publishes rs as fast as JetStream takes them (asynchronously), and waits for every
// acknowledgement: the daemon sees them arrive at once.
func (b *bus) burst(t *testing.T, ctx context.Context, rs []request) {
	t.Helper()
	for _, r := range rs {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.js.PublishAsync(testkit.RequestSubject, data); err != nil {
			t.Fatalf("publish %s: %v", data, err)
		}
	}
	select {
	case <-b.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatalf("publish %d requests: %v", len(rs), ctx.Err())
	}
}

// resultCount returns how many result events the stream holds.
func (b *bus) resultCount(ctx context.Context) (int, error) {
	s, err := b.js.Stream(ctx, testkit.StreamName)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("integration.delete.>"))
	if err != nil {
		return 0, err
	}
	return int(info.State.Subjects[testkit.DeletedSubject] + info.State.Subjects[testkit.FailedSubject]), nil
}

// results reads the n result events the stream holds, in order.
func (b *bus) results(ctx context.Context, n int) ([]result, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cons, err := b.js.OrderedConsumer(ctx, testkit.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{testkit.DeletedSubject, testkit.FailedSubject},
	})
	if err != nil {
		return nil, err
	}
	var out []result
	for len(out) < n {
		batch, err := cons.Fetch(n-len(out), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return out, err
		}
		for msg := range batch.Messages() {
			var r result
			if err := json.Unmarshal(msg.Data(), &r.Result); err != nil {
				return out, fmt.Errorf("result on %s is not JSON: %w: %s", msg.Subject(), err, msg.Data())
			}
			r.subject, r.header = msg.Subject(), msg.Headers()
			out = append(out, r)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return out, err
		}
		if ctx.Err() != nil {
			return out, fmt.Errorf("read %d of %d results: %w", len(out), n, ctx.Err())
		}
	}
	return out, nil
}

// waitSomeResults waits up to a minute until the stream holds at least min result events:
// the daemon is at work.
func (b *bus) waitSomeResults(t *testing.T, ctx context.Context, min int) {
	t.Helper()
	testkit.Eventually(t, time.Minute, fmt.Sprintf("at least %d results", min), func() (bool, string) {
		n, err := b.resultCount(ctx)
		if err != nil {
			return false, err.Error()
		}
		return n >= min, fmt.Sprintf("%d results", n)
	})
}

// waitResults waits until the stream holds want result events, and returns them by request
// id. It fails the test when more arrive, or when a request id has two of them: every request
// gets exactly one result.
func (b *bus) waitResults(t *testing.T, ctx context.Context, within time.Duration, want int) map[string]result {
	t.Helper()
	testkit.Eventually(t, within, fmt.Sprintf("%d results", want), func() (bool, string) {
		n, err := b.resultCount(ctx)
		if err != nil {
			return false, err.Error()
		}
		if n > want {
			t.Fatalf("the stream holds %d results for %d requests", n, want)
		}
		return n == want, fmt.Sprintf("%d results", n)
	})
	rs, err := b.results(ctx, want)
	if err != nil {
		t.Fatalf("read results: %v", err)
	}
	byID := map[string]result{}
	for _, r := range rs {
		if prev, dup := byID[r.RequestID]; dup {
			t.Fatalf("two results for request %q:\n%+v\n%+v", r.RequestID, prev, r)
		}
		byID[r.RequestID] = r
	}
	return byID
}

// waitIdle waits until the daemon's durable consumer has nothing pending and nothing
// unacknowledged: every request was taken and acknowledged.
func (b *bus) waitIdle(t *testing.T, ctx context.Context, within time.Duration) {
	t.Helper()
	testkit.Eventually(t, within, "the consumer to have nothing pending", func() (bool, string) {
		c, err := b.js.Consumer(ctx, testkit.StreamName, testkit.ConsumerName)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(ctx)
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0,
			fmt.Sprintf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
	})
}
