package faults

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// shortWindow is the duplicate window of the stream in the ledger cases: short, so that a
// case can wait it out and show that the ledger, not the stream's deduplication, keeps a
// request id to one DELETE and one result. The daemon's DUPLICATE_WINDOW (baseEnv) only has
// to validate; an existing stream's window is what the daemon works with.
const shortWindow = 2 * time.Second

// newWindowWorld is newWorld with a stream whose duplicate window is dup.
func newWindowWorld(t *testing.T, fo kombotest.Options, dup time.Duration) *world {
	t.Helper()
	suite(t)
	w := &world{t: t}
	w.nats = startNATS(t, nil)
	w.nc, w.js = w.nats.connect()
	w.createStreamCfg(jetstream.StreamConfig{Name: testkit.StreamName, Subjects: []string{"integration.delete.>"},
		Storage: jetstream.FileStorage, Duplicates: dup})
	w.fake, w.komboURL = newFake(t, fo)
	return w
}

// newBareWorld starts NATS and the fake without any stream (the case creates its own).
func newBareWorld(t *testing.T, fo kombotest.Options) *world {
	t.Helper()
	w := &world{t: t}
	w.nats = startNATS(t, nil)
	w.nc, w.js = w.nats.connect()
	w.fake, w.komboURL = newFake(t, fo)
	return w
}

func (w *world) createStreamCfg(cfg jetstream.StreamConfig) {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := w.js.CreateStream(ctx, cfg); err != nil {
		w.t.Fatalf("create stream: %v", err)
	}
}

// waitPastWindow waits until the stream's duplicate window that began at since is over (a
// bounded sleep: nothing is to happen meanwhile, time only has to pass).
func waitPastWindow(since time.Time, window time.Duration) {
	time.Sleep(time.Until(since.Add(window + 500*time.Millisecond)))
}

// event is one request event as published: a request and its Nats-Msg-Id ("" sends none).
type event struct {
	req   request
	msgID string
}

// publishEvents stores the events in the stream, waits for every PubAck and returns the
// stream sequence of the last one stored.
func publishEvents(t *testing.T, js jetstream.JetStream, evs []event) uint64 {
	t.Helper()
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	for _, e := range evs {
		body, _ := json.Marshal(map[string]string{"integration_id": e.req.IntegrationID, "request_id": e.req.ID,
			"requested_by": "faults", "reason": t.Name()})
		m := nats.NewMsg(testkit.RequestSubject)
		m.Data = body
		if e.msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, e.msgID)
		}
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatalf("publish %s: %v", e.req.ID, err)
		}
		futures = append(futures, f)
	}
	var last uint64
	timeout := time.After(30 * time.Second)
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				t.Fatalf("publish %s (Nats-Msg-Id %q): the stream took it for a duplicate", evs[i].req.ID, evs[i].msgID)
			}
			last = max(last, ack.Sequence)
		case err := <-f.Err():
			t.Fatalf("publish %s: %v", evs[i].req.ID, err)
		case <-timeout:
			t.Fatalf("publish: no PubAck for %s within 30s", evs[i].req.ID)
		}
	}
	return last
}

// waitDoneOr is waitDone that reports a timeout instead of failing, so that the case can
// still report its figures.
func waitDoneOr(t *testing.T, js jetstream.JetStream, want []string, timeout time.Duration) (tally, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		done := false
		if _, results, err := streamCounts(ctx, js); err == nil && results >= len(want) {
			if res, err := storedResults(ctx, js); err == nil {
				in, _, _ := streamCounts(ctx, js)
				done = tallyOf(in, res, want).lost == 0 && settled(ctx, js)
			}
		}
		cancel()
		if done {
			return count(t, js, want), true
		}
		if time.Now().After(deadline) {
			return count(t, js, want), false
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// consumerInfo returns the durable consumer's info, or nil when it cannot be read.
func (w *world) consumerInfo() *jetstream.ConsumerInfo {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := w.js.Consumer(ctx, testkit.StreamName, testkit.ConsumerName)
	if err != nil {
		return nil
	}
	info, err := c.Info(ctx)
	if err != nil {
		return nil
	}
	return info
}

// waitConsumerPast waits until the durable consumer has acknowledged everything up to the
// stream sequence seq and holds nothing.
func (w *world) waitConsumerPast(seq uint64, timeout time.Duration) {
	w.t.Helper()
	var last string
	deadline := time.Now().Add(timeout)
	for {
		info := w.consumerInfo()
		if info != nil {
			last = fmt.Sprintf("ack floor %d, pending %d, unacknowledged %d, redelivered %d",
				info.AckFloor.Stream, info.NumPending, info.NumAckPending, info.NumRedelivered)
			if info.AckFloor.Stream >= seq && info.NumPending == 0 && info.NumAckPending == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("the consumer did not acknowledge everything up to stream sequence %d within %s (%s)", seq, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// floorKey is the ledger key under which the daemon saves its consumer's ack floor for the
// stream as it exists now: floor.<base64url(consumer@stream@created unix nanos)>.
func (w *world) floorKey() string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, testkit.StreamName)
	if err != nil {
		w.t.Fatalf("look up the stream: %v", err)
	}
	name := testkit.ConsumerName + "@" + testkit.StreamName + "@" + strconv.FormatInt(s.CachedInfo().Created.UnixNano(), 10)
	return "floor." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// savedFloor returns the ack floor the daemon saved in the ledger (0: none or unreadable).
func (w *world) savedFloor(key string) uint64 {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := w.js.KeyValue(ctx, testkit.LedgerBucket)
	if err != nil {
		return 0
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseUint(string(e.Value()), 10, 64)
	return n
}

// ledgerEntry is what the suite reads of a request's entry in the ledger.
type ledgerEntry struct {
	RequestID string `json:"request_id"`
	Status    string `json:"status"` // claimed, deleted, failed
	Calls     int    `json:"calls"`
	ResultSeq uint64 `json:"result_seq"`
}

func (e ledgerEntry) final() bool { return e.Status == "deleted" || e.Status == "failed" }

// ledgerEntries reads every request entry of the ledger, by request id.
func (w *world) ledgerEntries() map[string]ledgerEntry {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kv, err := w.js.KeyValue(ctx, testkit.LedgerBucket)
	if err != nil {
		w.t.Fatalf("open the ledger bucket: %v", err)
	}
	out := map[string]ledgerEntry{}
	lister, err := kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return out
	}
	if err != nil {
		w.t.Fatalf("list the ledger's keys: %v", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "r.") {
			continue
		}
		kve, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			w.t.Fatalf("read ledger key %s: %v", k, err)
		}
		var e ledgerEntry
		if err := json.Unmarshal(kve.Value(), &e); err != nil {
			w.t.Fatalf("ledger key %s is not an entry: %v: %q", k, err, kve.Value())
		}
		out[e.RequestID] = e
	}
	return out
}

// onceFigures are a ledger case's figures per request id: the DELETE calls Kombo got for
// its integration, and its stored results.
type onceFigures struct {
	calls, results           map[string]int
	maxCalls, multi          int      // the most calls of one request id; how many ids had more than one
	multiIDs                 []string // those ids, sorted
	minResults, maxResults   int
	callsAfter               map[string]int // calls that started after the case's cut time
	totalAfter, idsWithAfter int
}

// callsAfterOf is how many DELETE calls for the requests reqs started after the cut.
func (f onceFigures) callsAfterOf(reqs []request) int {
	n := 0
	for _, r := range reqs {
		n += f.callsAfter[r.ID]
	}
	return n
}

// checkAllDeleted checks the tally of a case that waited (up to within) for its n requests:
// that it did not time out (ok), every request has one result, and all were deleted.
func checkAllDeleted(t *testing.T, tl tally, ok bool, n int, within string) {
	t.Helper()
	if !ok {
		t.Errorf("not done after %s: %d of %d requests have no result (e.g. %v)", within, tl.lost, n, tl.missing)
	}
	checkTally(t, tl, n)
	requireAllDeleted(t, tl)
}

// figuresOf counts the figures of reqs (one integration id per request id) from the fake's
// record and the tally; calls that started after cut are also counted apart (zero cut:
// none).
func figuresOf(w *world, reqs []request, tl tally, cut time.Time) onceFigures {
	f := onceFigures{calls: map[string]int{}, results: map[string]int{}, callsAfter: map[string]int{}, minResults: -1}
	byIntegration := w.deleteCalls()
	for _, r := range reqs {
		if _, seen := f.calls[r.ID]; seen {
			continue
		}
		cs := byIntegration[r.IntegrationID]
		f.calls[r.ID] = len(cs)
		for _, c := range cs {
			if !cut.IsZero() && c.Start.After(cut) {
				f.callsAfter[r.ID]++
				f.totalAfter++
			}
		}
		if f.callsAfter[r.ID] > 0 {
			f.idsWithAfter++
		}
		f.maxCalls = max(f.maxCalls, len(cs))
		if len(cs) > 1 {
			f.multi++
			f.multiIDs = append(f.multiIDs, r.ID)
		}
		n := len(tl.byID[r.ID])
		f.results[r.ID] = n
		if f.minResults < 0 || n < f.minResults {
			f.minResults = n
		}
		f.maxResults = max(f.maxResults, n)
	}
	slices.Sort(f.multiIDs)
	return f
}

// String is the figures as the Notes of a row say them.
func (f onceFigures) String() string {
	return fmt.Sprintf("DELETE calls per request id: max %d, %d ids >1; stored results per request id: min %d, max %d (expected 1 and 1)",
		f.maxCalls, f.multi, f.minResults, f.maxResults)
}

// check fails t for each request id without exactly one stored result, and for each one
// called more than once unless mayRepeat says it may be (nil: none may).
func (f onceFigures) check(t *testing.T, mayRepeat func(id string) bool) {
	t.Helper()
	if f.minResults != 1 || f.maxResults != 1 {
		bad := 0
		for id, n := range f.results {
			if n != 1 {
				bad++
				if bad <= 5 {
					t.Errorf("request id %s: %d stored results, want 1", id, n)
				}
			}
		}
		t.Errorf("stored results per request id: min %d, max %d, want 1 and 1 (%d ids off)", f.minResults, f.maxResults, bad)
	}
	bad := 0
	for _, id := range f.multiIDs {
		if mayRepeat != nil && mayRepeat(id) {
			continue
		}
		bad++
		if bad <= 5 {
			t.Errorf("request id %s: %d DELETE calls, want 1", id, f.calls[id])
		}
	}
	if bad > 0 {
		t.Errorf("%d request ids got more than one DELETE call (max %d)", bad, f.maxCalls)
	}
}

// killedBy says how a process ended: "SIGKILL", another signal, or "exit N".
func killedBy(d *daemon) string {
	if d.state == nil {
		return "running"
	}
	if ws, ok := d.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		if ws.Signal() == syscall.SIGKILL {
			return "SIGKILL"
		}
		return ws.Signal().String()
	}
	return fmt.Sprintf("exit %d", d.state.ExitCode())
}

// readyWatch polls a daemon's /readyz every 25 ms until stopped and remembers the polls not
// answered 200 (503, or no answer).
type readyWatch struct {
	mu      sync.Mutex
	seen    readySeen
	reasons map[string]int
	stop    chan struct{}
	done    chan struct{}
}

// readySeen is what a readyWatch saw.
type readySeen struct {
	polls    int           // not answered 200
	notReady time.Duration // each such poll counts the time since the poll before
	first    time.Time     // the first such poll
	reasons  []string      // the bodies they gave, sorted
	top      string        // the most frequent of them
}

func watchReady(d *daemon) *readyWatch {
	rw := &readyWatch{reasons: map[string]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		last := time.Now()
		for {
			select {
			case <-rw.stop:
				return
			case <-tick.C:
			}
			code, body := d.get("/readyz")
			now := time.Now()
			rw.mu.Lock()
			if code != http.StatusOK {
				if rw.seen.polls == 0 {
					rw.seen.first = now
				}
				rw.seen.polls++
				rw.seen.notReady += now.Sub(last)
				rw.reasons[strings.TrimSpace(body)]++
			}
			rw.mu.Unlock()
			last = now
		}
	}()
	return rw
}

// end stops the polls and returns what they saw.
func (rw *readyWatch) end() readySeen {
	close(rw.stop)
	<-rw.done
	rw.mu.Lock()
	defer rw.mu.Unlock()
	seen, n := rw.seen, 0
	for r, c := range rw.reasons {
		seen.reasons = append(seen.reasons, r)
		if c > n || (c == n && r < seen.top) {
			seen.top, n = r, c
		}
	}
	slices.Sort(seen.reasons)
	return seen
}

// waitNotReady polls /readyz until it answers 503 with a body containing each of want; it
// returns the body and how long it took.
func waitNotReady(t *testing.T, d *daemon, timeout time.Duration, want ...string) (string, time.Duration) {
	t.Helper()
	began := time.Now()
	var body string
	var code int
	for {
		code, body = d.get("/readyz")
		body = strings.TrimSpace(body)
		ok := code == http.StatusServiceUnavailable
		for _, s := range want {
			ok = ok && strings.Contains(body, s)
		}
		if ok {
			return body, time.Since(began)
		}
		if d.exited() {
			t.Fatalf("%s exited (%s) while the case waited for /readyz 503:\n%s", d.name, d.state, d.out.tail(30))
		}
		if time.Since(began) > timeout {
			t.Fatalf("/readyz did not answer 503 naming %q within %s; last: %d %q", want, timeout, code, body)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// callsOf counts the fake's DELETE calls of the integrations of reqs.
func callsOf(w *world, reqs []request) int {
	n := 0
	byIntegration := w.deleteCalls()
	for _, r := range reqs {
		n += len(byIntegration[r.IntegrationID])
	}
	return n
}
