package consumer

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/testwait"
	"github.com/kombo-ops/integration-deleter/kombo"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// requestWith publishes a request for integration id with the given request_id, under its
// own Nats-Msg-Id (so the stream does not deduplicate a second event with the same id).
func (e *env) requestWith(id, reqID, msgID string) {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"integration_id": id, "request_id": reqID})
	e.publish(body, map[string]string{jetstream.MsgIDHeader: msgID})
}

// TestSameRequestIDCalledOnce: events that share a request id, in flight at once, make one
// DELETE call and one stored result; the second event waits for the first's outcome.
func TestSameRequestIDCalledOnce(t *testing.T) {
	e := newEnv(t, kombotest.Options{Latency: 50 * time.Millisecond})
	for i := range 5 {
		for copy := range 3 {
			e.requestWith(fmt.Sprintf("personio:twice-%d", i), fmt.Sprintf("twice-%d", i), fmt.Sprintf("m-%d-%d", i, copy))
		}
	}
	e.start(nil)
	results := e.waitResults(5)
	e.settled()
	for i := range 5 {
		id := fmt.Sprintf("personio:twice-%d", i)
		if n := len(e.fake.CallsFor(id)); n != 1 {
			t.Errorf("%s: %d DELETE calls, want 1", id, n)
		}
		if r := results[fmt.Sprintf("twice-%d", i)]; r.Status != "deleted" || r.Attempts != 1 {
			t.Errorf("result %+v, want deleted after 1 attempt", r)
		}
	}
}

// TestReplayCallsNothing: an operator recreates the consumer to deliver the whole stream
// again: every request already has an outcome, so Kombo gets no call and the stream no
// second result.
func TestReplayCallsNothing(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	var ids []string
	for i := range 10 {
		ids = append(ids, e.request(fmt.Sprintf("personio:replay-%d", i)))
	}
	e.fake.Script("personio:replay-3", kombotest.Answer{Status: 400, Code: "PLATFORM.INPUT_INVALID", Message: "bad"})
	ctx := context.Background()
	cfg := e.opts.Stream.consumerConfig(0) // DeliverAll
	if _, err := e.js.CreateConsumer(ctx, streamName, cfg); err != nil {
		t.Fatal(err)
	}
	r := e.start(nil, func(o *Options) { o.Stream.Provision = false; o.Ledger.Provision = true })
	e.waitResults(10)
	e.settled()
	calls := e.fake.Stats().Deletes
	if err := e.js.DeleteConsumer(ctx, streamName, "integration-deleter"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateConsumer(ctx, streamName, cfg); err != nil { // a full replay
		t.Fatal(err)
	}
	e.settled() // every replayed request acked
	if got := e.fake.Stats().Deletes; got != calls {
		t.Errorf("the replay made %d DELETE calls, want 0", got-calls)
	}
	results := e.waitResults(10)
	if results[ids[3]].Status != "failed" {
		t.Errorf("result of %s = %+v, want the failed one kept", ids[3], results[ids[3]])
	}
	if err := r.c.Ready(); err != nil {
		t.Errorf("Ready() = %v", err)
	}
}

// TestRecreatedConsumerStartsAfterAckFloor: a consumer deleted under a running daemon is
// recreated after the ack floor it had reached, not at the start of the stream.
func TestRecreatedConsumerStartsAfterAckFloor(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	for i := range 5 {
		e.request(fmt.Sprintf("personio:floor-%d", i))
	}
	e.start(nil)
	e.waitResults(5)
	e.settled()
	// The daemon saves the ack floor every 2 s: wait until the ledger holds it.
	kv, err := e.js.KeyValue(context.Background(), "LEDGER")
	if err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "the ack floor saved", func() bool {
		keys, err := kv.ListKeys(context.Background())
		if err != nil {
			return false
		}
		for k := range keys.Keys() {
			if strings.HasPrefix(k, "floor.") {
				v, err := kv.Get(context.Background(), k)
				return err == nil && string(v.Value()) != "0"
			}
		}
		return false
	})
	if err := e.js.DeleteConsumer(context.Background(), streamName, "integration-deleter"); err != nil {
		t.Fatal(err)
	}
	after := e.request("personio:floor-after")
	if got := e.waitResults(6)[after]; got.Status != "deleted" {
		t.Errorf("request after the recreation: %+v, want deleted", got)
	}
	c, err := e.js.Consumer(context.Background(), streamName, "integration-deleter")
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.CachedInfo().Config
	if cfg.DeliverPolicy != jetstream.DeliverByStartSequencePolicy || cfg.OptStartSeq <= 5 {
		t.Errorf("recreated consumer delivers %v from %d, want by start sequence after the 5 acked requests",
			cfg.DeliverPolicy, cfg.OptStartSeq)
	}
	if n := e.fake.Stats().Deletes; n != 6 {
		t.Errorf("%d DELETE calls, want 6", n)
	}
}

// TestStoredResultsBackfillTheLedger: a stream that holds requests and their results from
// before the ledger existed: the new consumer replays the requests, but the results are
// recorded first, so none is called again.
func TestStoredResultsBackfillTheLedger(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	old := e.request("personio:before-ledger")
	res, _ := json.Marshal(Result{RequestID: old, IntegrationID: "personio:before-ledger", Status: StatusDeleted,
		Attempts: 1, CompletedAt: "2026-11-01T00:00:00.000Z"})
	m := nats.NewMsg(deletedSubject)
	m.Data = res
	m.Header.Set(jetstream.MsgIDHeader, "result-"+old)
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	fresh := e.request("personio:after-ledger")
	e.start(nil)
	got := e.waitResults(2)
	e.settled()
	if got[fresh].Status != "deleted" {
		t.Errorf("%+v, want deleted", got[fresh])
	}
	if n := len(e.fake.CallsFor("personio:before-ledger")); n != 0 {
		t.Errorf("the request finished before the ledger got %d DELETE calls, want 0", n)
	}
}

// TestRefusesWhileResultsCannotBeStored: when the stream stops storing the result subjects,
// the consumer turns not ready naming the subject and starts no DELETE; once they are
// stored again it goes on.
func TestRefusesWhileResultsCannotBeStored(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	r := e.start(nil)
	ctx := context.Background()
	cfg := e.opts.Stream.streamConfig()
	narrow := cfg
	narrow.Subjects = []string{requestSubject}
	if _, err := e.js.UpdateStream(ctx, narrow); err != nil {
		t.Fatal(err)
	}
	e.refusesUntilRepaired(t, r, "DELETED_SUBJECT", "personio:while-unstored", func() error {
		_, err := e.js.UpdateStream(ctx, cfg)
		return err
	})
}

// refusesUntilRepaired checks what the consumer does while its stream or consumer is set up
// wrong: it turns not ready naming setting and starts no DELETE for a request of
// integrationID; once repair ran, the request is deleted.
func (e *env) refusesUntilRepaired(t *testing.T, r *running, setting, integrationID string, repair func() error) {
	t.Helper()
	testwait.For(t, 10*time.Second, "not ready naming "+setting, func() bool {
		err := r.c.Ready()
		return err != nil && strings.Contains(err.Error(), setting)
	})
	id := e.request(integrationID)
	e.requireNoCallsFor(t, integrationID)
	if err := repair(); err != nil {
		t.Fatal(err)
	}
	if got := e.waitResults(1)[id]; got.Status != "deleted" {
		t.Errorf("%+v, want deleted once repaired", got)
	}
}

// TestRefusesAWidenedFilter: an operator widens the consumer's filter to every subject of
// the stream (results included): the consumer stops pulling and says why; narrowed back,
// it goes on.
func TestRefusesAWidenedFilter(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	r := e.start(nil)
	ctx := context.Background()
	cfg := e.opts.Stream.consumerConfig(0)
	wide := cfg
	wide.FilterSubject = "integration.delete.>"
	if _, err := e.js.UpdateConsumer(ctx, streamName, wide); err != nil {
		t.Fatal(err)
	}
	e.refusesUntilRepaired(t, r, "REQUEST_SUBJECT", "personio:while-wide", func() error {
		_, err := e.js.UpdateConsumer(ctx, streamName, cfg)
		return err
	})
}

// requireNoCallsFor checks, over three watch intervals, that Kombo gets no call for id.
func (e *env) requireNoCallsFor(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(3 * 2 * time.Second)
	for time.Now().Before(deadline) {
		if n := len(e.fake.CallsFor(id)); n != 0 {
			t.Fatalf("%s got %d DELETE calls while outcomes could not be stored", id, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// panicky is a Deleter whose DELETE panics for one id, as a bug in the call path would.
type panicky struct {
	Deleter
	id string
}

func (p panicky) DeleteIntegration(ctx context.Context, id string) (kombo.DeleteResult, error) {
	if id == p.id {
		panic("a bug in the call path")
	}
	return p.Deleter.DeleteIntegration(ctx, id)
}

// TestPanicInTheCallReleasesTheSlot: a panic while a call holds the only Kombo slot ends that
// request DELETER.INTERNAL and gives the slot back: the requests after it are deleted.
func TestPanicInTheCallReleasesTheSlot(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	bad := e.request("personio:panics")
	var after []string
	for i := range 3 {
		after = append(after, e.request(fmt.Sprintf("personio:after-panic-%d", i)))
	}
	e.start(panicky{Deleter: e.client, id: "personio:panics"}, func(o *Options) { o.MaxConcurrency = 1 })
	results := e.waitResults(4)
	if r := results[bad]; r.Status != "failed" || r.Error == nil || r.Error.Code != codeInternal || r.Attempts != 1 {
		t.Errorf("the panicking request: %+v, want failed %s after 1 attempt", r, codeInternal)
	}
	for _, id := range after {
		if results[id].Status != "deleted" {
			t.Errorf("%s: %+v, want deleted (the slot must be free again)", id, results[id])
		}
	}
}
