package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// clusterSuite skips t unless CLUSTER=1 and FAULTS=1 (make test-cluster): the cluster cases
// start a 3-node JetStream cluster each and wait out leader elections, so they stay out of
// make test-faults.
func clusterSuite(t *testing.T) {
	t.Helper()
	natstest.SkipUnlessCluster(t)
	suite(t)
}

// clusterWorld is a case's setting on a 3-node JetStream cluster: the stream at R3 created
// as its team would, daemons given every node's URL with STREAM_REPLICAS=3 (they provision
// the consumer, the ledger and the protect bucket at R3), and the fake Kombo.
type clusterWorld struct {
	*world
	c *natstest.Cluster
}

// newClusterWorld starts the cluster, creates the R3 stream and starts the fake with fo.
func newClusterWorld(t *testing.T, fo kombotest.Options) *clusterWorld {
	t.Helper()
	clusterSuite(t)
	cw := &clusterWorld{world: &world{t: t}}
	cw.c = natstest.StartCluster(t, 3)
	cw.nc, cw.js = testkit.JetStream(t, cw.c.URLs(), nats.Name("faults"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cw.js.CreateStream(ctx, jetstream.StreamConfig{
		Name: testkit.StreamName, Subjects: []string{"integration.delete.>"}, Storage: jetstream.FileStorage,
		Duplicates: 5 * time.Minute, Replicas: 3,
	}); err != nil {
		t.Fatalf("create the R3 stream: %v", err)
	}
	cw.fake, cw.komboURL = newFake(t, fo)
	return cw
}

// env is the daemon's environment on the cluster: baseEnv with all three URLs and R3.
func (cw *clusterWorld) env(overrides map[string]string) map[string]string {
	env := baseEnv(cw.c.URLs(), cw.komboURL)
	env["STREAM_REPLICAS"] = "3"
	maps.Copy(env, overrides)
	return env
}

// startReplicas starts n daemon replicas, the first alone (it provisions the consumer and
// the buckets at R3), and waits until each is ready.
func (cw *clusterWorld) startReplicas(n int) []*daemon {
	cw.t.Helper()
	ds := make([]*daemon, n)
	for i := range ds {
		ds[i] = startDaemon(cw.t, fmt.Sprintf("replica-%c", 'a'+i), cw.env(nil))
		if i == 0 {
			ds[0].waitReady(60 * time.Second)
		}
	}
	for _, d := range ds[1:] {
		d.waitReady(60 * time.Second)
	}
	return ds
}

// nodeOf names the node a daemon connected to first ("n0"…), from its log.
func (cw *clusterWorld) nodeOf(d *daemon) string {
	lines := d.out.logLines("connected to NATS")
	if len(lines) == 0 {
		return "?"
	}
	srv, _ := lines[0]["server"].(string)
	for i := range cw.c.N() {
		if strings.TrimSuffix(srv, "/") == cw.c.URL(i) {
			return fmt.Sprintf("n%d", i)
		}
	}
	return srv
}

// leaders says which node leads the stream, the consumer and the ledger's KV stream.
func (cw *clusterWorld) leaders() string {
	name := func(i int) string {
		if i < 0 {
			return "none"
		}
		return fmt.Sprintf("n%d", i)
	}
	return fmt.Sprintf("stream %s, consumer %s, ledger %s",
		name(cw.c.Leader(natstest.Stream, testkit.StreamName, "")),
		name(cw.c.Leader(natstest.Consumer, testkit.StreamName, testkit.ConsumerName)),
		name(cw.c.Leader(natstest.KV, testkit.LedgerBucket, "")))
}

// ---------------------------------------------------------------------------------------
// what the cluster cases measure

// stall is the longest time between two results stored one after the other, by the
// stream's timestamps.
type stall struct {
	gap         time.Duration
	from        time.Time            // the result before it
	before      int                  // results stored up to it
	first, last time.Time            // the first and the last result
	at          map[string]time.Time // when each request id's (first) result was stored
	ts          []time.Time          // every result's, in stream order
}

// beyond returns, of the gaps between stored results, the longest once the time some group
// had no leader within it is taken off (the daemons' own share of a stall: an election
// leaves nothing to store results with for nats-server's election timeout, 4–9 s), with
// that gap's length and the leaderless time within it.
func (s stall) beyond(none *leaderless) (own, gap, without time.Duration) {
	for i := 1; i < len(s.ts); i++ {
		g := s.ts[i].Sub(s.ts[i-1])
		w := none.within(s.ts[i-1], s.ts[i])
		if g-w > own {
			own, gap, without = g-w, g, w
		}
	}
	return own, gap, without
}

// leaderless samples, every 25 ms from watchLeaders until end, whether the stream, the
// consumer or the ledger had no leader that the other nodes follow.
type leaderless struct {
	mu    sync.Mutex
	spans [][2]time.Time // [from, to) without a leader
	stop  chan struct{}
	done  chan struct{}
}

func (cw *clusterWorld) watchLeaders() *leaderless {
	l := &leaderless{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		var since time.Time // zero while every group has a leader
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			now := time.Now()
			led := true
			for _, g := range []group{streamGroup, consumerGroup, ledgerGroup} {
				i := cw.c.Leader(g.kind, g.name, g.consumer)
				led = led && i >= 0 && !cw.c.Isolated(i)
			}
			l.mu.Lock()
			switch {
			case !led && since.IsZero():
				since = now
			case led && !since.IsZero():
				l.spans = append(l.spans, [2]time.Time{since, now})
				since = time.Time{}
			}
			l.mu.Unlock()
			select {
			case <-l.stop:
				if !since.IsZero() {
					l.mu.Lock()
					l.spans = append(l.spans, [2]time.Time{since, time.Now()})
					l.mu.Unlock()
				}
				return
			case <-tick.C:
			}
		}
	}()
	return l
}

func (l *leaderless) end() {
	close(l.stop)
	<-l.done
}

// within returns how long no leader was between from and to.
func (l *leaderless) within(from, to time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, sp := range l.spans {
		if a, b := maxTime(sp[0], from), minTime(sp[1], to); b.After(a) {
			d += b.Sub(a)
		}
	}
	return d
}

// total returns how long no leader was, in all.
func (l *leaderless) total() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var d time.Duration
	for _, sp := range l.spans {
		d += sp[1].Sub(sp[0])
	}
	return d
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// retried runs read until it succeeds, for up to 45 s (a node just restarted may not answer
// JetStream requests yet), and fails t with its last error.
func retried(t *testing.T, what string, read func(ctx context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err := read(ctx)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// longestStall reads the stored results' stream timestamps and finds the longest gap.
func longestStall(t *testing.T, js jetstream.JetStream) stall {
	t.Helper()
	var s stall
	retried(t, "read the results' timestamps", func(ctx context.Context) (err error) {
		s, err = readStall(ctx, js)
		return err
	})
	return s
}

func readStall(ctx context.Context, js jetstream.JetStream) (stall, error) {
	_, want, err := streamCounts(ctx, js)
	if err != nil {
		return stall{}, err
	}
	oc, err := js.OrderedConsumer(ctx, testkit.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{testkit.DeletedSubject, testkit.FailedSubject},
	})
	if err != nil {
		return stall{}, err
	}
	var ts []time.Time
	at := map[string]time.Time{}
	for len(ts) < want && ctx.Err() == nil {
		batch, err := oc.Fetch(min(want-len(ts), 1000), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return stall{}, err
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return stall{}, err
			}
			ts = append(ts, md.Timestamp)
			var r struct {
				RequestID string `json:"request_id"`
			}
			if json.Unmarshal(m.Data(), &r) == nil {
				if _, seen := at[r.RequestID]; !seen {
					at[r.RequestID] = md.Timestamp
				}
			}
		}
	}
	if len(ts) < want {
		return stall{}, fmt.Errorf("read %d of %d results", len(ts), want)
	}
	s := stall{at: at, ts: ts}
	if len(ts) == 0 {
		return s, nil
	}
	s.first, s.last = ts[0], ts[len(ts)-1]
	for i := 1; i < len(ts); i++ {
		if g := ts[i].Sub(ts[i-1]); g > s.gap {
			s.gap, s.from, s.before = g, ts[i-1], i
		}
	}
	return s, nil
}

// clusterWaitDone is waitDoneOr whose final count is retried: a read right after a node
// restarted may get no responders.
func clusterWaitDone(t *testing.T, js jetstream.JetStream, want []string, timeout time.Duration) (tally, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	done := false
	for !done && time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, results, err := streamCounts(ctx, js); err == nil && results >= len(want) {
			if res, err := storedResults(ctx, js); err == nil {
				in, _, _ := streamCounts(ctx, js)
				done = tallyOf(in, res, want).lost == 0 && settled(ctx, js)
			}
		}
		cancel()
		if !done {
			time.Sleep(200 * time.Millisecond)
		}
	}
	var tl tally
	retried(t, "read the results", func(ctx context.Context) error {
		in, _, err := streamCounts(ctx, js)
		if err != nil {
			return err
		}
		res, err := storedResults(ctx, js)
		if err != nil {
			return err
		}
		tl = tallyOf(in, res, want)
		return nil
	})
	return tl, done
}

// recordedOutcome is a request id's outcome as the ledger holds it, and when the ledger
// stored it (the stream timestamp of the key's last revision).
type recordedOutcome struct {
	status string
	calls  int
	stored time.Time
}

// ledgerOutcomes reads the last revision of every request key of the ledger through an
// ordered consumer on its stream (the stream leader's view, not a direct get from a replica
// that may lag), by request id.
func ledgerOutcomes(t *testing.T, js jetstream.JetStream) map[string]recordedOutcome {
	t.Helper()
	var out map[string]recordedOutcome
	retried(t, "read the ledger", func(ctx context.Context) (err error) {
		out, err = readLedger(ctx, js)
		return err
	})
	return out
}

func readLedger(ctx context.Context, js jetstream.JetStream) (map[string]recordedOutcome, error) {
	oc, err := js.OrderedConsumer(ctx, "KV_"+testkit.LedgerBucket, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$KV." + testkit.LedgerBucket + ".r.>"},
		DeliverPolicy:  jetstream.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return nil, err
	}
	out := map[string]recordedOutcome{}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		batch, err := oc.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		more := false
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			var e ledgerEntry
			if err := json.Unmarshal(m.Data(), &e); err != nil {
				return nil, fmt.Errorf("ledger %s is not an entry: %v: %q", m.Subject(), err, m.Data())
			}
			out[e.RequestID] = recordedOutcome{status: e.Status, calls: e.Calls, stored: md.Timestamp}
			more = md.NumPending > 0
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if !more {
			return out, nil
		}
	}
}

// afterRecord counts, for reqs, the DELETE calls the fake got after the request id's
// outcome was stored in the ledger (there must be none), and the ids called more than once
// (allowed only before an outcome: a claim taken over after its holder lost its server).
// A deleted outcome is recorded after its result is stored, in the background
// (docs/LEDGER.md): a record cut off by shutdown leaves a claim and a stored result,
// which a later delivery may call again (the stream deduplicates the result); those ids are
// counted apart. A failed result must always have its outcome recorded first.
type afterRecord struct {
	calls      int      // DELETE calls that started after the outcome was stored in the ledger
	ids        []string // their request ids (the first few)
	multi      int      // ids with more than one DELETE call
	maxCalls   int
	entryCall  int      // ids whose ledger call count is below the calls Kombo got
	unrecorded int      // deleted results whose outcome the ledger does not hold (record lost)
	lateCalls  int      // of those, DELETE calls that started after the result was stored
	failedOpen []string // failed results without a recorded outcome (must be none)
	// held is the longest time from Kombo's last answer for a request to its stored result;
	// heldOver how many requests waited longer than maxStall so (a stall of some requests,
	// which the gap between results hides while others are still being stored).
	held     time.Duration
	heldOver int
}

func callsAfterRecord(w *world, reqs []request, outcomes map[string]recordedOutcome, resultAt map[string]time.Time, tl tally) afterRecord {
	var a afterRecord
	byIntegration := w.deleteCalls()
	for _, r := range reqs {
		cs := byIntegration[r.IntegrationID]
		if at, ok := resultAt[r.ID]; ok && len(cs) > 0 {
			var answered time.Time
			for _, c := range cs {
				if c.End.After(answered) && !c.End.After(at) {
					answered = c.End
				}
			}
			if !answered.IsZero() {
				h := at.Sub(answered)
				a.held = max(a.held, h)
				if h > maxStall {
					a.heldOver++
				}
			}
		}
		a.maxCalls = max(a.maxCalls, len(cs))
		if len(cs) > 1 {
			a.multi++
		}
		o, ok := outcomes[r.ID]
		if !ok || (o.status != "deleted" && o.status != "failed") {
			if rs := tl.byID[r.ID]; len(rs) > 0 && rs[0].Status != "deleted" {
				a.failedOpen = append(a.failedOpen, fmt.Sprintf("%s: ledger %q", r.ID, o.status))
				continue
			}
			a.unrecorded++
			for _, c := range cs {
				if at, ok := resultAt[r.ID]; ok && c.Start.After(at) {
					a.lateCalls++
				}
			}
			continue
		}
		if o.calls < len(cs) {
			a.entryCall++
		}
		for _, c := range cs {
			if c.Start.After(o.stored) {
				a.calls++
				if len(a.ids) < 5 {
					a.ids = append(a.ids, r.ID)
				}
			}
		}
	}
	return a
}

// ---------------------------------------------------------------------------------------
// a cluster case

// clusterCase is one fault injected into a loaded cluster world with three replicas.
type clusterCase struct {
	name string // the table's case
	n    int    // requests
	// fault injects the fault once 30% of the results are stored and returns what it did.
	// It may return before the cluster is whole again; end, when set, runs once every
	// request has its result (a node stopped for good is started again there).
	fault func(cw *clusterWorld) (notes string, end func() string)
	// alone, when set, names the group whose leader the fault hits: before the load, the
	// other groups' leaders are moved off that node, so that the fault hits that one only.
	alone *group
	// election says that the fault leaves a group without a leader until the other nodes
	// elect one (nats-server's election timeout, 4–9 s, not settable from a client): the
	// stall is reported, with its part beyond the time without a leader, not held to 1.5 s.
	election bool
}

// maxStall is the longest stall between two stored results the issue allows (issue 13).
const maxStall = 1500 * time.Millisecond

func runClusterCase(t *testing.T, cc clusterCase) {
	cw := newClusterWorld(t, usualKombo)
	ds := cw.startReplicas(3)
	nodes := make([]string, len(ds))
	for i, d := range ds {
		nodes[i] = cw.nodeOf(d)
	}
	alone := ""
	if cc.alone != nil {
		alone = cw.leadAlone(*cc.alone) + "; "
	}
	before := cw.leaders()
	watches := make([]*readyWatch, len(ds))
	for i, d := range ds {
		watches[i] = watchReady(d)
	}
	reqs := requests(strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"), cc.n)

	began := time.Now()
	none := cw.watchLeaders()
	at := cw.publishUntil30(reqs)
	faultAt := time.Now()
	notes, end := cc.fault(cw)
	faultTook := time.Since(faultAt)
	tl, ok := clusterWaitDone(t, cw.js, ids(reqs), 3*time.Minute)
	took := time.Since(began)
	none.end()
	st := longestStall(t, cw.js)
	a := callsAfterRecord(cw.world, reqs, ledgerOutcomes(t, cw.js), st.at, tl)
	endNotes := ""
	if end != nil {
		endNotes = end()
	}
	notReady := make([]string, len(ds))
	var reasons []string
	for i, rw := range watches {
		seen := rw.end()
		notReady[i] = fmt.Sprintf("%.2fs", seen.notReady.Seconds())
		if why := seen.top; why != "" {
			if len(why) > 90 {
				why = why[:90] + "…"
			}
			reasons = append(reasons, fmt.Sprintf("%s %q", ds[i].name, why))
		}
	}

	checkAllDeleted(t, tl, ok, cc.n, "3m")
	if a.calls > 0 {
		t.Errorf("%d DELETE calls started after the request id's outcome was stored in the ledger (e.g. %v)", a.calls, a.ids)
	}
	if len(a.failedOpen) > 0 {
		t.Errorf("%d failed results without their outcome recorded in the ledger first (e.g. %v)", len(a.failedOpen), a.failedOpen[:min(5, len(a.failedOpen))])
	}
	if a.entryCall > 0 {
		t.Errorf("%d request ids: the ledger counts fewer DELETE calls than Kombo got", a.entryCall)
	}
	for _, d := range ds {
		if d.exited() {
			t.Errorf("%s exited: %s", d.name, d.state)
		}
	}
	own, ownGap, without := st.beyond(none)
	stallNote := fmt.Sprintf("; no leader for %.2fs in all; the longest stall beyond that %.2fs (a gap of %.2fs, %.2fs of it without a leader)",
		none.total().Seconds(), own.Seconds(), ownGap.Seconds(), without.Seconds())
	if st.gap > maxStall && !cc.election {
		t.Errorf("longest stall between two stored results %.2fs, want at most %s", st.gap.Seconds(), maxStall)
		stallNote += " (OVER 1.5 s)"
	}
	var already, redelivered float64
	for _, d := range ds {
		already += d.metric("integration_deleter_requests_total", alreadyRecorded)
		redelivered += d.metric("integration_deleter_redeliveries_total")
	}
	slices.Sort(reasons)
	report(t, row{Case: cc.name, In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(cw.fake, cc.n), Took: took,
		Notes: fmt.Sprintf("3 replicas on %s; %sleaders %s; fault at %d results: %s (took %.1fs)%s; "+
			"longest stall %.2fs, from %+.2fs after the fault (%d results before it)%s; "+
			"Kombo's answer → stored result at most %.2fs, over 1.5 s for %d requests; /readyz not 200 a/b/c %s%s; "+
			"DELETE calls after the outcome was recorded %d; ids called more than once %d (max %d calls); "+
			"deleted results whose record the ledger lost %d (calls after their result: %d); "+
			"%.0f settled as already recorded, %.0f redeliveries; %s",
			strings.Join(nodes, "/"), alone, before, at, notes, faultTook.Seconds(), prefixed("; ", endNotes),
			st.gap.Seconds(), st.from.Sub(faultAt).Seconds(), st.before, stallNote, a.held.Seconds(), a.heldOver, strings.Join(notReady, "/"),
			prefixed(", ", strings.Join(reasons, ", ")), a.calls, a.multi, a.maxCalls, a.unrecorded, a.lateCalls, already, redelivered,
			formatCounts(outcomes(tl)))})
}

func prefixed(prefix, s string) string {
	if s == "" {
		return ""
	}
	return prefix + s
}

// healthyAfter waits up to timeout for the cluster to be whole (natstest's Healthy) and says
// how long after since it was, or why it was not: a case reports it rather than fails on it
// (it is the cluster's, not the daemon's).
func (cw *clusterWorld) healthyAfter(since time.Time, timeout time.Duration) string {
	var last error
	err := testkit.Poll(context.Background(), 50*time.Millisecond, timeout, func() (bool, string, error) {
		last = cw.c.Healthy()
		return last == nil, "", nil
	})
	if err != nil {
		cw.t.Logf("the cluster was not healthy %s after the heal: %v", timeout, last)
		return fmt.Sprintf("cluster NOT healthy %.0fs after the heal (%v)", time.Since(since).Seconds(), last)
	}
	return fmt.Sprintf("cluster healthy %.1fs after the heal; leaders then %s", time.Since(since).Seconds(), cw.leaders())
}

// group is a Raft group of the daemon's: the stream, the consumer or the ledger's KV stream.
type group struct {
	kind           natstest.Kind
	name, consumer string
}

var (
	streamGroup   = group{natstest.Stream, testkit.StreamName, ""}
	consumerGroup = group{natstest.Consumer, testkit.StreamName, testkit.ConsumerName}
	ledgerGroup   = group{natstest.KV, testkit.LedgerBucket, ""}
)

func (g group) String() string { return [...]string{"meta", "stream", "consumer", "ledger"}[g.kind] }

func (cw *clusterWorld) leader(g group) int { return cw.c.Leader(g.kind, g.name, g.consumer) }

// moveLeader asks g's leader to step down in favour of node to and waits until it leads.
func (cw *clusterWorld) moveLeader(g group, to int) {
	cw.t.Helper()
	subject := "$JS.API.STREAM.LEADER.STEPDOWN." + g.name
	switch g.kind {
	case natstest.KV:
		subject = "$JS.API.STREAM.LEADER.STEPDOWN.KV_" + g.name
	case natstest.Consumer:
		subject = "$JS.API.CONSUMER.LEADER.STEPDOWN." + g.name + "." + g.consumer
	}
	body := fmt.Sprintf(`{"placement":{"preferred":"n%d"}}`, to)
	testkit.WaitFor(cw.t, 30*time.Second, fmt.Sprintf("the %s leader moved to n%d", g, to), func() bool {
		if cw.leader(g) == to {
			return true
		}
		msg, err := cw.nc.Request(subject, []byte(body), 5*time.Second)
		if err != nil {
			return false
		}
		var resp struct {
			Error *struct {
				Description string `json:"description"`
			} `json:"error"`
		}
		if json.Unmarshal(msg.Data, &resp) == nil && resp.Error != nil {
			cw.t.Logf("step down %s: %s", g, resp.Error.Description)
		}
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && cw.leader(g) != to {
			time.Sleep(20 * time.Millisecond)
		}
		return cw.leader(g) == to
	})
}

// leadAlone moves the leaders of the groups other than g off the node that leads g, each to
// another node, so that a fault of that node hits g's leader only; it says what it did.
func (cw *clusterWorld) leadAlone(g group) string {
	cw.t.Helper()
	l := cw.c.WaitLeader(g.kind, g.name, g.consumer)
	next := 1
	var moved []string
	for _, o := range []group{streamGroup, consumerGroup, ledgerGroup} {
		if o == g || cw.c.WaitLeader(o.kind, o.name, o.consumer) != l {
			continue
		}
		to := (l + next) % cw.c.N()
		next++
		cw.moveLeader(o, to)
		moved = append(moved, fmt.Sprintf("%s n%d→n%d", o, l, to))
	}
	if len(moved) == 0 {
		return fmt.Sprintf("n%d leads the %s alone", l, g)
	}
	return fmt.Sprintf("n%d leads the %s alone (moved before the load: %s)", l, g, strings.Join(moved, ", "))
}
