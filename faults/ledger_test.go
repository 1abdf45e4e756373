package faults

// The cases of issue 9: the request id is an idempotency key, once and for ever. For one
// request id Kombo's DELETE is called until an outcome is recorded in the ledger and never
// after, and the stream holds exactly one result per request id — also after the stream's
// duplicate window, which these cases keep short (shortWindow) and wait out, so that it is
// the ledger and not the stream's deduplication that keeps the promise.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// with returns a copy of env with kv added (pairs of name and value).
func with(env map[string]string, kv ...string) map[string]string {
	out := maps.Clone(env)
	if out == nil {
		out = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

const alreadyRecorded = `outcome="already_recorded"`

// Case 1: the consumer is deleted after the duplicate window has passed, provisioning on.
// The daemon recreates it after the ack floor it saved in the ledger, so the first batch is
// not delivered again; a second batch is then done. No request of the first batch is called
// again, and every request id has one result.
func TestLedgerConsumerDeletedAfterWindow(t *testing.T) {
	const n = 500
	w := newWindowWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, shortWindow)
	first, second := requests("afterwin-a", n), requests("afterwin-b", n)
	all := slices.Concat(first, second)
	d := w.start("daemon", nil)

	began := time.Now()
	publish(t, w.js, first)
	waitDone(t, w.js, ids(first), 2*time.Minute)
	finished := time.Now()
	// The daemon saves the consumer's ack floor every 2 s: wait until the saved one is the
	// floor of the finished batch.
	key := w.floorKey()
	info := w.consumerInfo()
	if info == nil {
		t.Fatal("cannot read the consumer")
	}
	floor := info.AckFloor.Stream
	testkit.WaitFor(t, 15*time.Second, fmt.Sprintf("the daemon to save the ack floor %d in the ledger", floor),
		func() bool { return w.savedFloor(key) >= floor })
	waitPastWindow(finished, shortWindow)

	w.deleteConsumer()
	deleted := time.Now()
	testkit.WaitFor(t, 30*time.Second, "the daemon to recreate the consumer", w.consumerExists)
	recreatedAfter := time.Since(deleted)
	start := "?"
	if ci := w.consumerInfo(); ci != nil {
		start = fmt.Sprintf("%s from %d", ci.Config.DeliverPolicy, ci.Config.OptStartSeq)
	}
	publish(t, w.js, second)
	tl, ok := waitDoneOr(t, w.js, ids(all), 2*time.Minute)
	took := time.Since(began)

	f := figuresOf(w, all, tl, deleted)
	firstAgain := f.callsAfterOf(first)
	report(t, row{Case: "L1 consumer deleted after the window, provisioning on", In: tl.in, Stored: tl.stored, Lost: tl.lost,
		Dup: tl.dup, CallsPerReq: deletesPerRequest(w.fake, len(all)), Took: took,
		Notes: fmt.Sprintf("%s; %d batches of %d, window %s waited out; saved floor %d; recreated after %.1fs (%s); "+
			"DELETE calls of the first batch after the deletion: %d; %s",
			f, 2, n, shortWindow, floor, recreatedAfter.Seconds(), start, firstAgain, formatCounts(outcomes(tl)))})
	checkAllDeleted(t, tl, ok, len(all), "2m")
	f.check(t, nil)
	if firstAgain != 0 {
		t.Errorf("%d DELETE calls for requests of the first batch after the consumer was recreated, want 0", firstAgain)
	}
	if d.exited() {
		t.Errorf("the daemon exited: %s", d.state)
	}
}

// Case 2: the same with provisioning off: the operator recreates the consumer with
// DeliverAllPolicy, so the whole stream is delivered again. Every replayed request finds its
// outcome in the ledger: no DELETE, no second result.
func TestLedgerConsumerReplayedNoProvision(t *testing.T) {
	const n = 500
	w := newWindowWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, shortWindow)
	w.provision()
	first, second := requests("replay-a", n), requests("replay-b", n)
	all := slices.Concat(first, second)
	d := w.start("daemon", map[string]string{"JETSTREAM_PROVISION": "false"})

	began := time.Now()
	publish(t, w.js, first)
	waitDone(t, w.js, ids(first), 2*time.Minute)
	waitPastWindow(time.Now(), shortWindow)

	w.deleteConsumer()
	readyz, _ := waitNotReady(t, d, 15*time.Second)
	// The operator recreates it as it was first: from the start of the stream.
	w.createConsumer(consumerConfig())
	recreated := time.Now()
	d.waitReady(30 * time.Second)
	readyAfter := time.Since(recreated)
	publish(t, w.js, second)
	tl, ok := waitDoneOr(t, w.js, ids(all), 2*time.Minute)
	took := time.Since(began)

	f := figuresOf(w, all, tl, recreated)
	firstAgain := f.callsAfterOf(first)
	already := d.metric("integration_deleter_requests_total", alreadyRecorded)
	report(t, row{Case: "L2 consumer recreated DeliverAll (replay), provisioning off", In: tl.in, Stored: tl.stored, Lost: tl.lost,
		Dup: tl.dup, CallsPerReq: deletesPerRequest(w.fake, len(all)), Took: took,
		Notes: fmt.Sprintf("%s; %d batches of %d, window %s waited out; /readyz %q while the consumer was gone, ready %.1fs after the recreation; "+
			"replayed %d of the first batch as already recorded; DELETE calls of the first batch after the recreation: %d; %s",
			f, 2, n, shortWindow, readyz, readyAfter.Seconds(), int(already), firstAgain, formatCounts(outcomes(tl)))})
	checkAllDeleted(t, tl, ok, len(all), "2m")
	f.check(t, nil)
	if firstAgain != 0 {
		t.Errorf("%d DELETE calls for requests of the first batch after the replay, want 0", firstAgain)
	}
	if int(already) != n {
		t.Errorf("%.0f requests settled as already recorded, want %d (the whole first batch, replayed)", already, n)
	}
}

// Case 3: the same request ids are published again "hours later" (after the duplicate
// window), with other Nats-Msg-Ids or none: no DELETE, no second result, and the messages
// are acknowledged.
func TestLedgerSameRequestIDAfterWindow(t *testing.T) {
	const n = 200
	w := newWindowWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, shortWindow)
	reqs := requests("again", n)
	d := w.start("daemon", nil)

	began := time.Now()
	publish(t, w.js, reqs)
	waitDone(t, w.js, ids(reqs), 2*time.Minute)
	waitPastWindow(time.Now(), shortWindow)

	evs := make([]event, n)
	withID := 0
	for i, r := range reqs {
		evs[i] = event{req: r}
		if i%2 == 0 {
			evs[i].msgID = "again-" + r.ID
			withID++
		}
	}
	republished := time.Now()
	last := publishEvents(t, w.js, evs)
	w.waitConsumerPast(last, time.Minute)
	settledAfter := time.Since(republished)
	tl := count(t, w.js, ids(reqs))
	took := time.Since(began)

	f := figuresOf(w, reqs, tl, republished)
	already := d.metric("integration_deleter_requests_total", alreadyRecorded)
	report(t, row{Case: "L3 same request ids again after the window", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
		Notes: fmt.Sprintf("%s; %d request ids published again %s after their results (%d with a new Nats-Msg-Id, %d without), "+
			"all acknowledged %.1fs later: %d DELETE calls, %.0f settled as already recorded",
			f, n, shortWindow, withID, n-withID, settledAfter.Seconds(), f.totalAfter, already)})
	checkTally(t, tl, 2*n)
	requireAllDeleted(t, tl)
	f.check(t, nil)
	if f.totalAfter != 0 {
		t.Errorf("%d DELETE calls for request ids published again, want 0", f.totalAfter)
	}
	if int(already) != n {
		t.Errorf("%.0f requests settled as already recorded, want %d", already, n)
	}
}

// Case 4: a request fails for good (500 until KOMBO_MAX_ATTEMPTS=2), its failed result is
// stored and noted, and the process dies before the ack. The redelivery, to a second daemon
// after the duplicate window, while Kombo would now answer 200, makes no DELETE: the one
// stored result stays the failed one.
func TestLedgerFailedStoredAckLost(t *testing.T) {
	w := newWindowWorld(t, kombotest.Options{Latency: 5 * time.Millisecond}, shortWindow)
	req := request{ID: "fails-then-ack-lost", IntegrationID: "crash:fails-then-ok"}
	reqs := []request{req}
	w.fake.Script(req.IntegrationID, kombotest.UnknownError(), kombotest.UnknownError()) // then 200
	env := map[string]string{"KOMBO_MAX_ATTEMPTS": "2"}
	a := w.start("daemon-a", with(env, "FAULT_CRASH_AT", "stored"))

	began := time.Now()
	publish(t, w.js, reqs)
	a.wait(30 * time.Second)
	died := time.Now()
	if how := killedBy(a); how != "SIGKILL" {
		t.Fatalf("daemon-a ended with %s, want SIGKILL at FAULT_CRASH_AT=stored:\n%s", how, a.out.tail(20))
	}
	callsA := len(w.fake.CallsFor(req.IntegrationID))
	entry := w.ledgerEntries()[req.ID]
	atDeath := resultCount(w.js)
	waitPastWindow(died, shortWindow) // a second publish of the result would now be stored
	b := w.start("daemon-b", env)
	tl, ok := waitDoneOr(t, w.js, ids(reqs), time.Minute)
	took := time.Since(began)

	f := figuresOf(w, reqs, tl, died)
	already := b.metric("integration_deleter_requests_total", alreadyRecorded)
	redelivered := b.metric("integration_deleter_redeliveries_total")
	got := "none"
	if rs := tl.byID[req.ID]; len(rs) > 0 {
		got = fmt.Sprintf("%s %s attempts %d", rs[0].Status, rs[0].Code(), rs[0].Attempts)
	}
	report(t, row{Case: "L4 failed stored, ack lost (kill -9 at stored)", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, 1), Took: took,
		Notes: fmt.Sprintf("%s; daemon-a made %d calls (500, 500: KOMBO_MAX_ATTEMPTS=2), ledger at its death %s result_seq %d, %d result stored; "+
			"daemon-b after the window (%.0f redelivery, %.0f already recorded) made %d calls while Kombo would answer 200; stored result: %s",
			f, callsA, entry.Status, entry.ResultSeq, atDeath, redelivered, already, f.totalAfter, got)})
	if !ok {
		t.Errorf("not done after 1m: the redelivered request was not settled")
	}
	checkTally(t, tl, 1)
	f.check(t, func(string) bool { return true }) // two calls before the outcome, by design
	if callsA != 2 {
		t.Errorf("daemon-a made %d DELETE calls, want 2 (KOMBO_MAX_ATTEMPTS)", callsA)
	}
	if entry.Status != "failed" || entry.ResultSeq == 0 {
		t.Errorf("ledger at daemon-a's death: %+v, want failed with the result's stream sequence noted", entry)
	}
	if f.totalAfter != 0 {
		t.Errorf("%d DELETE calls after the failed outcome was recorded, want 0", f.totalAfter)
	}
	if rs := tl.byID[req.ID]; len(rs) == 1 && (rs[0].Status != "failed" || rs[0].Code() != "PLATFORM.UNKNOWN_ERROR" || rs[0].Attempts != 2) {
		t.Errorf("stored result %s, want failed PLATFORM.UNKNOWN_ERROR with attempts 2", rs[0].raw)
	}
	if already != 1 {
		t.Errorf("daemon-b settled %.0f requests as already recorded, want 1 (the redelivery)", already)
	}
}

// Case 5: kill -9 at each write of the order (claim → call → record → publish → note →
// ack), at the first "crash:" request the daemon reaches; a second daemon takes over after
// the duplicate window. A request whose outcome was recorded before the kill is never called
// again; one whose call was answered but not recorded (point "called") is called once more,
// since its outcome is unknown; every request id has one stored result.
// A deleted outcome is written result first (claimed, called, published, recorded); a
// failed one outcome first (claimed, called, recorded, published, stored): each point of
// each order is a subtest, the failed ones on crash ids that Kombo refuses (400).
func TestLedgerCrashAtEachWrite(t *testing.T) {
	suite(t)
	for _, tc := range []struct {
		point string
		fail  bool
	}{
		{"claimed", false}, {"called", false}, {"published", false}, {"recorded", false},
		{"recorded", true}, {"published", true}, {"stored", true},
	} {
		name := tc.point + "/deleted"
		if tc.fail {
			name = tc.point + "/failed"
		}
		t.Run(name, func(t *testing.T) { crashAt(t, tc.point, tc.fail) })
	}
}

func crashAt(t *testing.T, point string, fail bool) {
	const n, crashes = 200, 5
	w := newWindowWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, shortWindow)
	reqs := requests("at-"+point, n+crashes)
	crash := map[string]bool{}
	for i := range crashes {
		k := (i + 1) * (n + crashes) / (crashes + 1)
		reqs[k].IntegrationID = "crash:" + reqs[k].IntegrationID
		crash[reqs[k].ID] = true
		if fail {
			// Kombo refuses the same input every time: a call repeated by daemon-b after the
			// kill (its claim open, daemon-a's answer not recorded) must meet the refusal too.
			refused := kombotest.Answer{Status: 400, Code: "PLATFORM.INPUT_INVALID", Message: "refused by the test"}
			w.fake.Script(reqs[k].IntegrationID, refused, refused, refused, refused)
		}
	}
	a := w.start("daemon-a", map[string]string{"FAULT_CRASH_AT": point})

	began := time.Now()
	publish(t, w.js, reqs)
	a.wait(time.Minute)
	died := time.Now()
	if how := killedBy(a); how != "SIGKILL" {
		t.Fatalf("daemon-a ended with %s, want SIGKILL at FAULT_CRASH_AT=%s:\n%s", how, point, a.out.tail(20))
	}
	atKill := w.ledgerEntries()
	resultsAtKill := resultCount(w.js)
	waitPastWindow(died, shortWindow) // a second publish of any result would now be stored
	w.start("daemon-b", nil)
	tl, ok := waitDoneOr(t, w.js, ids(reqs), 2*time.Minute)
	took := time.Since(began)

	f := figuresOf(w, reqs, tl, died)
	// What the kill left: outcomes recorded (never to be called again), and claims without
	// an outcome (calls in flight or waiting: their outcome is unknown).
	recorded, open := map[string]bool{}, map[string]bool{}
	for id, e := range atKill {
		if e.final() {
			recorded[id] = true
		} else {
			open[id] = true
		}
	}
	var afterOutcome []string // recorded at the kill, called after it
	var crashNotes []string
	var crashedOn []string // the crash ids the ledger knew at the kill
	overCounted, underCounted := 0, 0
	var wrongAttempts []string
	for _, r := range reqs {
		if recorded[r.ID] && f.callsAfter[r.ID] > 0 {
			afterOutcome = append(afterOutcome, r.ID)
		}
		rs := tl.byID[r.ID]
		if len(rs) != 1 {
			continue
		}
		att, calls := rs[0].Attempts, f.calls[r.ID]
		switch {
		case att > calls:
			overCounted++
		case att < calls:
			underCounted++
			if underCounted <= 5 {
				t.Errorf("request %s: attempts %d in its result, but Kombo got %d DELETEs", r.ID, att, calls)
			}
		}
		if !crash[r.ID] {
			continue
		}
		e, known := atKill[r.ID]
		state := "unseen"
		if known {
			state = e.Status
			if e.final() && e.ResultSeq != 0 {
				state += "+noted"
			}
		}
		if known {
			crashedOn = append(crashedOn, r.ID)
		}
		crashNotes = append(crashNotes, fmt.Sprintf("%s: %s at the kill, %d calls (%d after), attempts %d",
			strings.TrimPrefix(r.ID, "at-"+point+"-"), state, calls, f.callsAfter[r.ID], att))
		// A crash id whose outcome was recorded, or the one the kill hit after its call
		// (point called), has exact attempts; one only claimed at the kill (waiting for a
		// slot) may count one call that was never made (README, "Not guaranteed").
		exact := known && (e.final() || (point == "called" && calls > 1))
		if exact && att != calls {
			wrongAttempts = append(wrongAttempts, fmt.Sprintf("%s attempts %d, calls %d", r.ID, att, calls))
		}
	}
	var repeatedCrash, repeatedOther int
	for _, id := range f.multiIDs {
		if crash[id] {
			repeatedCrash++
		} else {
			repeatedOther++
		}
	}
	outcome := "deleted"
	if fail {
		outcome = "failed"
	}
	report(t, row{Case: "L5 kill -9 at " + point + " (" + outcome + ")", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, len(reqs)), Took: took,
		Notes: fmt.Sprintf("%s (crash ids %d, others %d: all claimed without outcome at the kill); "+
			"at the kill %d outcomes recorded, %d claims open, %d results stored; DELETE calls after the kill for recorded outcomes: %d; "+
			"attempts over the real calls for %d ids; crash ids [%s]; %s",
			f, repeatedCrash, repeatedOther, len(recorded), len(open), resultsAtKill, len(afterOutcome), overCounted,
			strings.Join(crashNotes, "; "), formatCounts(outcomes(tl)))})
	if !ok {
		t.Errorf("not done after 2m: %d of %d requests have no result (e.g. %v)", tl.lost, len(reqs), tl.missing)
	}
	checkTally(t, tl, len(reqs))
	for id, rs := range tl.byID {
		want := "deleted"
		if fail && crash[id] {
			want = "failed"
		}
		if len(rs) == 1 && rs[0].Status != want {
			t.Errorf("request %s: got %s, want %s", id, rs[0].raw, want)
		}
	}
	// Called more than once only when the kill left the request claimed without an outcome.
	f.check(t, func(id string) bool { return open[id] })
	if len(afterOutcome) > 0 {
		t.Errorf("%d requests whose outcome was recorded before the kill were called again (e.g. %v)",
			len(afterOutcome), afterOutcome[:min(5, len(afterOutcome))])
	}
	if len(crashedOn) == 0 {
		t.Errorf("no crash: request was being handled at the kill: the case does not test what it says")
	}
	if point == "called" && repeatedCrash == 0 {
		t.Errorf("at point called, no crash: request was called a second time: the case does not test what it says")
	}
	if len(wrongAttempts) > 0 {
		t.Errorf("attempts in the results of crash ids differ from the real DELETE calls: %v", wrongAttempts)
	}
}

// Case 6: two replicas get events with the same request id at once (pairs with different
// Nats-Msg-Ids, side by side, Kombo slow enough that they overlap): one DELETE and one
// stored result per request id.
func TestLedgerTwoReplicasSameRequestID(t *testing.T) {
	const n = 200
	w := newWorld(t, kombotest.Options{Latency: 50 * time.Millisecond, LatencyJitter: 10 * time.Millisecond}, nil)
	reqs := requests("pair", n)
	a := w.start("replica-a", nil)
	b := w.start("replica-b", nil)

	evs := make([]event, 0, 2*n)
	for _, r := range reqs {
		evs = append(evs, event{req: r, msgID: "a-" + r.ID}, event{req: r, msgID: "b-" + r.ID})
	}
	began := time.Now()
	publishEvents(t, w.js, evs)
	tl, ok := waitDoneOr(t, w.js, ids(reqs), 2*time.Minute)
	took := time.Since(began)

	f := figuresOf(w, reqs, tl, time.Time{})
	overlaps := 0
	for _, cs := range w.deleteCalls() {
		for i := 1; i < len(cs); i++ {
			if cs[i-1].End.IsZero() || cs[i].Start.Before(cs[i-1].End) {
				overlaps++
			}
		}
	}
	doneA := a.metric("integration_deleter_requests_total")
	doneB := b.metric("integration_deleter_requests_total")
	alreadyA := a.metric("integration_deleter_requests_total", alreadyRecorded)
	alreadyB := b.metric("integration_deleter_requests_total", alreadyRecorded)
	report(t, row{Case: "L6 two replicas, same request id twice at once", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
		Notes: fmt.Sprintf("%s; %d pairs of events (same request_id, other Nats-Msg-Id) side by side, Kombo 50–60ms; "+
			"settled by a/b %.0f/%.0f, of them already recorded %.0f/%.0f; %d DELETEs of one request id at once; %s",
			f, n, doneA, doneB, alreadyA, alreadyB, overlaps, formatCounts(outcomes(tl)))})
	if !ok {
		t.Errorf("not done after 2m: %d of %d requests have no result (e.g. %v)", tl.lost, n, tl.missing)
	}
	checkTally(t, tl, 2*n)
	requireAllDeleted(t, tl)
	f.check(t, nil)
	if overlaps > 0 {
		t.Errorf("%d times one request id was called twice at once", overlaps)
	}
	if alreadyA+alreadyB != n {
		t.Errorf("%.0f events settled as already recorded, want %d (the second of each pair)", alreadyA+alreadyB, n)
	}
}

// Case 7: the consumer's filter is wider than REQUEST_SUBJECT (it would deliver results as
// requests): (a) at start the daemon exits 1 naming REQUEST_SUBJECT; (b) changed under a
// running daemon, it turns not ready naming REQUEST_SUBJECT and starts no DELETE, then goes
// on once the filter is restored.
func TestLedgerWrongFilter(t *testing.T) {
	suite(t)
	const wide = "integration.delete.>"

	t.Run("at_start", func(t *testing.T) {
		const n = 10
		w := newWorld(t, kombotest.Options{}, nil)
		cfg := consumerConfig()
		cfg.FilterSubject = wide
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := w.js.CreateConsumer(ctx, testkit.StreamName, cfg); err != nil {
			t.Fatalf("create the consumer: %v", err)
		}
		reqs := requests("widestart", n)
		publish(t, w.js, reqs)
		began := time.Now()
		code, out := runToExit(t, w.env(nil), 30*time.Second)
		took := time.Since(began)
		tl := count(t, w.js, ids(reqs))
		calls := callsOf(w, reqs)
		report(t, row{Case: "L7a consumer filter integration.delete.> at start", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
			CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
			Notes: fmt.Sprintf("DELETE calls per request id: max %d (refused to run); stored results per request id: %d (the requests stay in the stream); "+
				"exit %d: %s", calls, tl.stored, code, lastLine(out))})
		if code != 1 {
			t.Errorf("exit code %d, want 1; output:\n%s", code, out)
		}
		if !strings.Contains(out, "REQUEST_SUBJECT") {
			t.Errorf("the output does not name REQUEST_SUBJECT:\n%s", out)
		}
		if calls != 0 || tl.stored != 0 {
			t.Errorf("%d DELETE calls and %d results, want none", calls, tl.stored)
		}
	})

	t.Run("while_running", func(t *testing.T) {
		outageWhileRunning(t, outage{
			prefix: "filter", row: "L7b consumer filter widened while running, then restored",
			naming: "REQUEST_SUBJECT", while: "the filter was wrong", restored: "the filter was restored",
			cause: func(ctx context.Context, w *world) func() {
				info := w.consumerInfo()
				if info == nil {
					t.Fatal("cannot read the consumer")
				}
				cfg := info.Config
				cfg.FilterSubject, cfg.FilterSubjects = wide, nil
				if _, err := w.js.UpdateConsumer(ctx, testkit.StreamName, cfg); err != nil {
					t.Fatalf("widen the consumer's filter: %v", err)
				}
				return func() {
					cfg.FilterSubject = testkit.RequestSubject
					if _, err := w.js.UpdateConsumer(ctx, testkit.StreamName, cfg); err != nil {
						t.Fatalf("restore the consumer's filter: %v", err)
					}
				}
			},
		})
	})
}

// Case 8: no stream stores the result subjects: (a) at start the daemon exits 1 naming
// DELETED_SUBJECT; (b) the stream's subjects changed under a running daemon: not ready
// naming the subject, no DELETE starts, and once the subjects are restored every request
// finishes with one result.
func TestLedgerResultsNotStored(t *testing.T) {
	suite(t)

	t.Run("at_start", func(t *testing.T) {
		const n = 10
		w := newBareWorld(t, kombotest.Options{})
		w.createStreamCfg(jetstream.StreamConfig{Name: testkit.StreamName, Subjects: []string{testkit.RequestSubject},
			Storage: jetstream.FileStorage, Duplicates: 5 * time.Minute})
		reqs := requests("noresults", n)
		publish(t, w.js, reqs)
		began := time.Now()
		code, out := runToExit(t, w.env(nil), 30*time.Second)
		took := time.Since(began)
		calls := callsOf(w, reqs)
		consumer := w.consumerExists()
		report(t, row{Case: "L8a stream stores only the request subject, at start", In: n, Stored: 0, Lost: n,
			CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
			Notes: fmt.Sprintf("DELETE calls per request id: max %d (refused to run); stored results per request id: 0 (nowhere to store them); "+
				"consumer created: %v; exit %d: %s", calls, consumer, code, lastLine(out))})
		if code != 1 {
			t.Errorf("exit code %d, want 1; output:\n%s", code, out)
		}
		if !strings.Contains(out, "DELETED_SUBJECT") {
			t.Errorf("the output does not name DELETED_SUBJECT:\n%s", out)
		}
		if calls != 0 {
			t.Errorf("%d DELETE calls, want none", calls)
		}
	})

	t.Run("while_running", func(t *testing.T) {
		outageWhileRunning(t, outage{
			prefix: "stored", row: "L8b result subjects dropped from the stream while running, then restored",
			naming: testkit.DeletedSubject, while: "results could not be stored", restored: "the subjects were restored",
			cause: func(ctx context.Context, w *world) func() {
				s, err := w.js.Stream(ctx, testkit.StreamName)
				if err != nil {
					t.Fatal(err)
				}
				cfg := s.CachedInfo().Config
				subjects := cfg.Subjects
				cfg.Subjects = []string{testkit.RequestSubject}
				if _, err := w.js.UpdateStream(ctx, cfg); err != nil {
					t.Fatalf("narrow the stream's subjects: %v", err)
				}
				return func() {
					cfg.Subjects = subjects
					if _, err := w.js.UpdateStream(ctx, cfg); err != nil {
						t.Fatalf("restore the stream's subjects: %v", err)
					}
				}
			},
		})
	})
}

// outage is a configuration change under a running daemon that it must not work through
// (L7b, L8b).
type outage struct {
	prefix, row string // request id prefix and report row
	naming      string // what /readyz is to name meanwhile
	while       string // "the filter was wrong", for the messages
	restored    string // "the filter was restored", for the notes
	// cause makes the change and returns the function that undoes it.
	cause func(ctx context.Context, w *world) (restore func())
}

// outageWhileRunning runs o: 100 requests finish; then o.cause; the daemon is to turn not
// ready naming o.naming, and 100 requests published then get no DELETE and no result for 3 s
// (more than one of the daemon's checks); once restored, every request finishes with one
// result.
func outageWhileRunning(t *testing.T, o outage) {
	const n = 100
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond}, nil)
	before, during := requests(o.prefix+"-before", n), requests(o.prefix+"-during", n)
	all := slices.Concat(before, during)
	d := w.start("daemon", nil)
	began := time.Now()
	publish(t, w.js, before)
	waitDone(t, w.js, ids(before), time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	restore := o.cause(ctx, w)
	readyz, noticed := waitNotReady(t, d, 10*time.Second, o.naming)
	resultsThen := resultCount(w.js)
	publish(t, w.js, during)
	time.Sleep(3 * time.Second)
	callsDuring := callsOf(w, during)
	resultsDuring := resultCount(w.js) - resultsThen
	code, _ := d.get("/readyz")

	restore()
	restored := time.Now()
	d.waitReady(30 * time.Second)
	readyAfter := time.Since(restored)
	tl, ok := waitDoneOr(t, w.js, ids(all), time.Minute)
	took := time.Since(began)

	f := figuresOf(w, all, tl, time.Time{})
	report(t, row{Case: o.row, In: tl.in, Stored: tl.stored, Lost: tl.lost,
		Dup: tl.dup, CallsPerReq: deletesPerRequest(w.fake, len(all)), Took: took,
		Notes: fmt.Sprintf("%s; not ready %.1fs after the change (%q); %d requests published then: %d DELETE calls and %d results in 3s (/readyz %d); "+
			"ready %.1fs after %s; %s",
			f, noticed.Seconds(), readyz, n, callsDuring, resultsDuring, code, readyAfter.Seconds(), o.restored, formatCounts(outcomes(tl)))})
	if !ok {
		t.Errorf("not done after 1m: %d of %d requests have no result (e.g. %v)", tl.lost, len(all), tl.missing)
	}
	if callsDuring != 0 {
		t.Errorf("%d DELETE calls for requests published while %s, want 0", callsDuring, o.while)
	}
	if resultsDuring != 0 {
		t.Errorf("%d results stored while %s, want 0", resultsDuring, o.while)
	}
	if code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d while %s, want 503", code, o.while)
	}
	checkTally(t, tl, len(all))
	requireAllDeleted(t, tl)
	f.check(t, nil)
}

// Case 9: the ledger bucket is deleted under load, provisioning on: the daemon reports not
// ready, creates the bucket again and finishes; nothing is lost and every request id has one
// result. A request whose claim vanished in flight may be called twice: counted, not hidden.
func TestLedgerBucketDeletedUnderLoad(t *testing.T) {
	const n = 2000
	w := newWorld(t, usualKombo, nil)
	reqs := requests("bucketgone", n)
	d := w.start("daemon", nil)
	rw := watchReady(d)

	began := time.Now()
	at := w.publishUntil30(reqs)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.js.DeleteKeyValue(ctx, testkit.LedgerBucket); err != nil {
		t.Fatalf("delete the ledger bucket: %v", err)
	}
	deleted := time.Now()
	var recreatedAfter time.Duration = -1
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := w.js.KeyValue(cctx, testkit.LedgerBucket)
		ccancel()
		if err == nil {
			recreatedAfter = time.Since(deleted)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	tl, ok := waitDoneOr(t, w.js, ids(reqs), max(time.Until(deleted.Add(30*time.Second)), 5*time.Second))
	took := time.Since(began)
	ready := rw.end()
	code, body := d.get("/readyz")

	f := figuresOf(w, reqs, tl, deleted)
	recreated := "NOT recreated within 15s"
	if recreatedAfter >= 0 {
		recreated = fmt.Sprintf("recreated after %.1fs", recreatedAfter.Seconds())
	}
	notReadyAfter := "never not ready"
	if ready.polls > 0 {
		notReadyAfter = fmt.Sprintf("not ready %.1fs after the deletion (%d polls of 25ms), reasons %q", ready.first.Sub(deleted).Seconds(), ready.polls, ready.reasons)
	}
	report(t, row{Case: "L9 ledger bucket deleted under load, provisioning on", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
		Notes: fmt.Sprintf("%s (claims vanished in flight); deleted at %d results; bucket %s; %s; /readyz at the end %d %q; "+
			"%d DELETE calls after the deletion for %d ids; %s",
			f, at, recreated, notReadyAfter, code, strings.TrimSpace(body), f.totalAfter, f.idsWithAfter, formatCounts(outcomes(tl)))})
	if recreatedAfter < 0 {
		t.Errorf("the daemon did not create the ledger bucket again within 15s (JETSTREAM_PROVISION=true)")
	}
	if ready.polls == 0 {
		t.Errorf("/readyz never answered 503 after the ledger bucket was deleted")
	}
	if !ok {
		t.Errorf("not done 30s after the deletion: %d of %d requests have no result (e.g. %v); /readyz %d %q",
			tl.lost, n, tl.missing, code, strings.TrimSpace(body))
	}
	checkTally(t, tl, n)
	requireAllDeleted(t, tl)
	f.check(t, func(string) bool { return true }) // counted in the row: a vanished claim may be called again
}
