package natstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// clusterWithStream starts a 3-node cluster (CLUSTER=1) with an R3 stream name and n
// publishes acknowledged in it.
func clusterWithStream(t *testing.T, name string, n int) (*natstest.Cluster, jetstream.JetStream, *ledger) {
	t.Helper()
	natstest.SkipUnlessCluster(t)
	c := natstest.StartCluster(t, 3)
	js := clusterClient(t, c.URLs())
	createStream(t, js, name)
	l := newLedger(js, name)
	l.publishN(t, n)
	return c, js, l
}

// restart restarts node i and logs how long it took to be back and healthy.
func restart(t *testing.T, c *natstest.Cluster, i int) {
	t.Helper()
	start := time.Now()
	c.Restart(i)
	t.Logf("n%d back and healthy after %s", i, time.Since(start))
}

// A client of the whole cluster, reconnecting quickly to another node when its node dies.
func clusterClient(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	_, js := testkit.JetStream(t, url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	return js
}

func createStream(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
}

// ledger counts the publishes a stream acknowledged, by message ID.
type ledger struct {
	js     jetstream.JetStream
	stream string
	acked  map[string]bool
}

func newLedger(js jetstream.JetStream, stream string) *ledger {
	return &ledger{js: js, stream: stream, acked: map[string]bool{}}
}

// publish publishes one message, retrying until it is acknowledged, and returns how long that
// took (the stall a writer sees).
func (l *ledger) publish(t *testing.T) time.Duration {
	t.Helper()
	id := fmt.Sprintf("m%d", len(l.acked))
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := l.js.Publish(ctx, l.stream+".x", []byte(id), jetstream.WithMsgID(id))
		cancel()
		if err == nil {
			l.acked[id] = true
			return time.Since(start)
		}
		if time.Since(start) > natstest.ReadyTimeout {
			t.Fatalf("publish %s: not acknowledged after %s: %v", id, time.Since(start), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (l *ledger) publishN(t *testing.T, n int) {
	t.Helper()
	for range n {
		l.publish(t)
	}
}

// check reads the stream back, message by message: every acknowledged ID once, nothing else.
func (l *ledger) check(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := l.js.Stream(ctx, l.stream)
	if err != nil {
		t.Fatal(err)
	}
	state := s.CachedInfo().State
	if state.Msgs != uint64(len(l.acked)) {
		t.Fatalf("%s holds %d messages, %d acknowledged", l.stream, state.Msgs, len(l.acked))
	}
	seen := map[string]bool{}
	for seq := state.FirstSeq; seq <= state.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("%s seq %d: %v", l.stream, seq, err)
		}
		id := string(m.Data)
		if seen[id] || !l.acked[id] {
			t.Fatalf("%s: unexpected or duplicate message %q", l.stream, id)
		}
		seen[id] = true
	}
}

func TestClusterStartsHealthyOnLoopback(t *testing.T) {
	natstest.SkipUnlessCluster(t)
	start := time.Now()
	c := natstest.StartCluster(t, 3)
	t.Logf("3 nodes healthy after %s; URLs %s", time.Since(start), c.URLs())
	if m := c.Leader(natstest.Meta, "", ""); m < 0 {
		t.Fatal("no meta leader after StartCluster")
	}
	for i := range 3 {
		if n := c.Node(i).NumRoutes(); n < 2 {
			t.Fatalf("n%d has %d routes", i, n)
		}
	}
}

func TestClusterStreamSurvivesItsLeaderStop(t *testing.T) {
	c, _, l := clusterWithStream(t, "S", 10)

	leader := c.WaitLeader(natstest.Stream, "S", "")
	url := c.URL(leader)
	c.Stop(leader)
	t.Logf("stream leader n%d stopped: first publish acknowledged after %s", leader, l.publish(t))
	l.publishN(t, 10)

	restart(t, c, leader)
	if c.URL(leader) != url {
		t.Fatalf("n%d came back on %s, was %s", leader, c.URL(leader), url)
	}
	direct := newLedger(clusterClient(t, url), "S")
	direct.acked = l.acked
	direct.publishN(t, 10) // through the restarted node itself
	direct.check(t)
}

func TestClusterConsumerDeliversThroughItsLeaderStop(t *testing.T) {
	c, js, l := clusterWithStream(t, "C", 20)
	ctx, cancel := context.WithTimeout(context.Background(), 2*natstest.ReadyTimeout)
	defer cancel()
	cons, err := js.CreateConsumer(ctx, "C", jetstream.ConsumerConfig{Durable: "work", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 2 * time.Second, Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	receive := func(n int) {
		for len(got) < n {
			batch, err := cons.Fetch(5, jetstream.FetchMaxWait(time.Second))
			if err != nil {
				if ctx.Err() != nil {
					t.Fatalf("received %d of %d: %v", len(got), n, err)
				}
				continue // the consumer is between leaders
			}
			for m := range batch.Messages() {
				if m.Ack() == nil {
					got[string(m.Data())] = true
				}
			}
		}
	}
	receive(5)

	leader := c.WaitLeader(natstest.Consumer, "C", "work")
	c.Stop(leader)
	start := time.Now()
	receive(20)
	t.Logf("consumer leader n%d stopped: the rest delivered in %s", leader, time.Since(start))
	c.Restart(leader)
	l.publishN(t, 5)
	receive(25)
}

func TestClusterKVSurvivesItsLeaderStop(t *testing.T) {
	natstest.SkipUnlessCluster(t)
	c := natstest.StartCluster(t, 3)
	js := clusterClient(t, c.URLs())
	ctx, cancel := context.WithTimeout(context.Background(), 2*natstest.ReadyTimeout)
	defer cancel()
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "B", Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.PutString(ctx, "before", "1"); err != nil {
		t.Fatal(err)
	}
	leader := c.WaitLeader(natstest.KV, "B", "")
	c.Stop(leader)
	start := time.Now()
	put := func(key string) { // each try bounded: a request in flight when a leader goes may get no reply
		for {
			try, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := kv.PutString(try, key, "1")
			cancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("put %s: %v", key, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	put("during")
	t.Logf("kv leader n%d stopped: a put acknowledged after %s", leader, time.Since(start))
	c.Restart(leader)
	put("after")
	// KV reads are direct gets, answered by any replica: one a write has not reached yet
	// answers "not found" (no read-your-writes), so each key only has to show up.
	for _, key := range []string{"before", "during", "after"} {
		testkit.Eventually(t, 10*time.Second, "get "+key, func() (bool, string) {
			try, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			_, err := kv.Get(try, key)
			return err == nil, fmt.Sprint(err)
		})
	}
}

func TestClusterRollingRestart(t *testing.T) {
	c, _, l := clusterWithStream(t, "R", 5)
	for i := range 3 {
		c.Stop(i)
		stall := l.publish(t)
		l.publishN(t, 4)
		start := time.Now()
		c.Restart(i)
		t.Logf("n%d: publish acknowledged %s after stop; healthy %s after restart", i, stall, time.Since(start))
		l.publishN(t, 5)
	}
	l.check(t)
}

// Isolating the stream leader: a client of that node stays connected but its publishes fail
// (no quorum behind it); the other two elect a leader and take publishes; after Heal the
// node's client publishes again, and nothing acknowledged is lost or doubled.
func TestClusterIsolateAndHeal(t *testing.T) {
	c, _, l := clusterWithStream(t, "P", 5)

	x := c.WaitLeader(natstest.Stream, "P", "")
	nc, jsx := testkit.JetStream(t, c.URL(x))
	c.Isolate(x)
	start := time.Now()
	testkit.WaitFor(t, natstest.ReadyTimeout, "the isolated node to lose its routes", func() bool {
		return c.Node(x).NumRoutes() == 0
	})
	other := newLedger(clusterClient(t, c.URL((x+1)%3)), "P")
	other.acked = l.acked
	t.Logf("n%d isolated: the majority acknowledged a publish after %s", x, other.publish(t))

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_, err := jsx.Publish(ctx, "P.x", []byte("cut"), jetstream.WithMsgID("cut"))
	if err == nil {
		t.Fatal("a publish through the isolated node was acknowledged")
	}
	if !nc.IsConnected() || nc.ConnectedUrl() != c.URL(x) {
		t.Fatalf("client of n%d: connected %v to %s", x, nc.IsConnected(), nc.ConnectedUrl())
	}
	t.Logf("publish through isolated n%d: %v (%s into the cut)", x, err, time.Since(start))

	c.Heal(x)
	start = time.Now()
	c.WaitHealthy()
	t.Logf("n%d healed: healthy after %s", x, time.Since(start))
	through := newLedger(jsx, "P")
	through.acked = l.acked
	through.publishN(t, 5)
	l.check(t)
}

// Crashing the stream leader: no leadership is handed over, so writers wait for an election.
func TestClusterStreamSurvivesItsLeaderCrash(t *testing.T) {
	c, _, l := clusterWithStream(t, "K", 5)

	leader := c.WaitLeader(natstest.Stream, "K", "")
	c.Crash(leader)
	t.Logf("stream leader n%d crashed: first publish acknowledged after %s", leader, l.publish(t))
	l.publishN(t, 5)
	restart(t, c, leader)
	l.publishN(t, 5)
	l.check(t)
}
