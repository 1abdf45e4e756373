package faults

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// world is one case's setting: an embedded NATS server with the stream, the fake Kombo, and
// the daemon's configuration.
type world struct {
	t        *testing.T
	nats     *natsServer
	nc       *nats.Conn
	js       jetstream.JetStream
	fake     *kombotest.Fake
	komboURL string
}

// usualKombo is the fake Kombo of most cases: 10–20 ms a call, no limits.
var usualKombo = kombotest.Options{Latency: 10 * time.Millisecond, LatencyJitter: 10 * time.Millisecond}

// newWorld skips t outside the suite (FAULTS=1), starts NATS (changed by natsMod when set),
// creates the stream and starts the fake with options fo. The test's own NATS connection
// uses clientOpts (TLS, authentication).
func newWorld(t *testing.T, fo kombotest.Options, natsMod func(*server.Options), clientOpts ...nats.Option) *world {
	t.Helper()
	suite(t)
	w := &world{t: t}
	w.nats = startNATS(t, natsMod)
	w.nc, w.js = w.nats.connect(clientOpts...)
	createStream(t, w.js)
	w.fake, w.komboURL = newFake(t, fo)
	return w
}

// env is the daemon's environment in this world, with overrides.
func (w *world) env(overrides map[string]string) map[string]string {
	env := baseEnv(w.nats.url(), w.komboURL)
	maps.Copy(env, overrides)
	return env
}

// start starts a daemon process and waits until it is ready.
func (w *world) start(name string, overrides map[string]string) *daemon {
	w.t.Helper()
	d := startDaemon(w.t, name, w.env(overrides))
	d.waitReady(30 * time.Second)
	return d
}

// consumerConfig is the durable consumer as the daemon would create it with baseEnv.
func consumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: testkit.ConsumerName, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 2 * time.Second, MaxDeliver: -1, MaxAckPending: 256, FilterSubject: testkit.RequestSubject,
	}
}

// provision creates the consumer, the ledger bucket and the protect bucket as a team owning
// the NATS resources would, for a daemon with JETSTREAM_PROVISION=false.
func (w *world) provision() {
	w.t.Helper()
	w.createConsumer(consumerConfig())
	w.createLedger()
	w.createProtect()
}

// protectBucket is PROTECT_BUCKET's default.
const protectBucket = "INTEGRATION_DELETE_PROTECTED"

// createProtect creates the protect bucket as an operator's tooling would (with
// JETSTREAM_PROVISION=false the daemon refuses to start without it).
func (w *world) createProtect() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := control.OpenProtect(ctx, w.js, protectBucket, 1, true); err != nil {
		w.t.Fatalf("create the protect bucket: %v", err)
	}
}

// createLedger creates the ledger bucket as a team owning the NATS resources would (with
// JETSTREAM_PROVISION=false the daemon only binds to it).
func (w *world) createLedger() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: testkit.LedgerBucket, History: 1,
		Storage: jetstream.FileStorage}); err != nil {
		w.t.Fatalf("create the ledger bucket: %v", err)
	}
}

// createConsumer creates the durable consumer with cfg, as an operator would.
func (w *world) createConsumer(cfg jetstream.ConsumerConfig) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.CreateConsumer(ctx, testkit.StreamName, cfg); err != nil {
		w.t.Fatalf("create the consumer: %v", err)
	}
}

// deleteConsumer deletes the durable consumer.
func (w *world) deleteConsumer() {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.js.DeleteConsumer(ctx, testkit.StreamName, testkit.ConsumerName); err != nil {
		w.t.Fatalf("delete the consumer: %v", err)
	}
}

// publishUntil30 publishes reqs and waits until 30% of them have a result, for a fault
// mid-load; it returns how many results there are then.
func (w *world) publishUntil30(reqs []request) int {
	w.t.Helper()
	publish(w.t, w.js, reqs)
	n := len(reqs)
	testkit.WaitFor(w.t, 2*time.Minute, "30% of the results", func() bool { return resultCount(w.js) >= n*30/100 })
	return resultCount(w.js)
}

// consumerExists reports whether the durable consumer exists.
func (w *world) consumerExists() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := w.js.Consumer(ctx, testkit.StreamName, testkit.ConsumerName)
	return err == nil
}

// deleteCalls returns the fake's DELETE calls grouped by integration id, in arrival order.
func (w *world) deleteCalls() map[string][]kombotest.Call {
	out := map[string][]kombotest.Call{}
	for _, c := range w.fake.Calls() {
		if c.Method == http.MethodDelete {
			out[c.ID] = append(out[c.ID], c)
		}
	}
	return out
}

// inFlightIDs returns the ids of DELETE calls the fake has not answered yet.
func (w *world) inFlightIDs() []string {
	var out []string
	for _, c := range w.fake.Calls() {
		if c.Method == http.MethodDelete && c.End.IsZero() {
			out = append(out, c.ID)
		}
	}
	slices.Sort(out)
	return out
}
