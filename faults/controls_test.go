package faults

// The cases of issue 12: the operator's controls (pause, the fuse, protect, expect, dry
// run, and the commands to look back and retry), each proven against the real binary with
// several replicas, from what a user sees.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// dryRunSubject is DRY_RUN_SUBJECT's default.
const dryRunSubject = "integration.delete.dry_run"

// Case C4: "expect" with a real daemon, and a dry-run daemon beside it on the same stream
// under its own consumer. A field that differs from what Kombo shows fails the request
// DELETER.MISMATCH with no DELETE; a match deletes; a missing integration is deleted
// not_found. The dry run makes GETs only, never a DELETE, and publishes its would-be
// results on DRY_RUN_SUBJECT: alone first (all would_delete), then beside the real daemon.
func TestControlsExpectAndDryRun(t *testing.T) {
	const n = 40
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, nil)
	began := time.Now()
	dry := w.start("dry-run", map[string]string{"DRY_RUN": "true", "CONSUMER_NAME": "integration-deleter-dry"})

	// The dry run alone: n requests, n GETs, n would_delete results, no DELETE.
	alone := requests("dryalone", n)
	publish(t, w.js, alone)
	testkit.WaitFor(t, time.Minute, "the dry run's results of the first batch", func() bool { return w.subjectCount(dryRunSubject) >= n })
	aloneDeletes, aloneGets := len(w.callsOf(http.MethodDelete)), len(w.callsOf(http.MethodGet))
	if aloneDeletes != 0 || aloneGets != n {
		t.Errorf("the dry run alone made %d DELETE and %d GET calls for %d requests, want 0 and %d", aloneDeletes, aloneGets, n, n)
	}
	if c := resultCount(w.js); c != 0 {
		t.Errorf("the dry run stored %d results on the real result subjects, want 0", c)
	}

	// The real daemon starts beside it; the first batch is now deleted, and a second batch
	// and the expect cases go to both.
	real := w.start("real", nil)
	w.fake.SetIntegration("personio:exp-origin", integration("personio:exp-origin", "cust-42"))
	w.fake.SetIntegration("personio:exp-match", integration("personio:exp-match", "cust-43"))
	type expectCase struct {
		id, integration string
		expect          map[string]string
		status, code    string // the real daemon's result
		notFound        bool
		inMsg           string
		deletes         int
	}
	cases := []expectCase{
		{"exp-origin", "personio:exp-origin", map[string]string{"origin_id": "cust-41"}, "failed", "DELETER.MISMATCH", false, `origin_id: expected "cust-41", Kombo shows "cust-42"`, 0},
		{"exp-tool", "personio:exp-tool", map[string]string{"tool": "bamboohr"}, "failed", "DELETER.MISMATCH", false, `tool: expected "bamboohr", Kombo shows "personio"`, 0},
		{"exp-match", "personio:exp-match", map[string]string{"origin_id": "cust-43", "tool": "personio"}, "deleted", "", false, "", 1},
		{"exp-gone", "missing:exp-gone", map[string]string{"origin_id": "cust-44"}, "deleted", "", true, "", 0},
	}
	for _, c := range cases {
		w.publishEvent(c.id, map[string]any{"integration_id": c.integration, "expect": c.expect})
	}
	beside := requests("drybeside", n)
	publish(t, w.js, beside)
	all := append(ids(alone), ids(beside)...)
	for _, c := range cases {
		all = append(all, c.id)
	}
	tl := waitDone(t, w.js, all, time.Minute)
	testkit.WaitFor(t, time.Minute, "the dry run's results of every request", func() bool {
		return w.subjectCount(dryRunSubject) >= len(all)
	})
	took := time.Since(began)

	checkTally(t, tl, len(all))
	for _, c := range cases {
		rs := tl.byID[c.id]
		if len(rs) != 1 {
			continue // reported by checkTally
		}
		r := rs[0]
		msg := ""
		if r.Error != nil {
			msg = r.Error.Message
		}
		if r.Status != c.status || r.Code() != c.code || r.WasNotFound() != c.notFound || !strings.Contains(msg, c.inMsg) {
			t.Errorf("expect %v on %s: got %s, want %s %s not_found=%v with %q", c.expect, c.integration, r.raw, c.status, c.code, c.notFound, c.inMsg)
		}
		if d := len(w.callsOf(http.MethodDelete, c.integration)); d != c.deletes {
			t.Errorf("expect %v on %s: %d DELETE calls, want %d", c.expect, c.integration, d, c.deletes)
		}
		if g := len(w.callsOf(http.MethodGet, c.integration)); g != 2 { // the real daemon's and the dry run's
			t.Errorf("expect %v on %s: %d GET calls, want 2 (one per daemon)", c.expect, c.integration, g)
		}
	}
	var plain []string
	for _, q := range append(alone, beside...) {
		plain = append(plain, q.IntegrationID)
		if rs := tl.byID[q.ID]; len(rs) == 1 && rs[0].Status != "deleted" {
			t.Errorf("request %s: got %s, want deleted", q.ID, rs[0].raw)
		}
	}
	// One DELETE per plain request, all by the real daemon: a DELETE by the dry run would be
	// a second call of the same integration.
	deletes := w.callsOf(http.MethodDelete, plain...)
	perID := map[string]int{}
	for _, c := range deletes {
		perID[c.ID]++
	}
	for _, id := range plain {
		if perID[id] != 1 {
			t.Errorf("integration %s: %d DELETE calls, want 1 (the real daemon's)", id, perID[id])
		}
	}
	if g := len(w.callsOf(http.MethodGet, plain...)); g != 2*n {
		t.Errorf("%d GET calls for the %d plain requests, want %d (the dry run's only)", g, 2*n, 2*n)
	}

	dryOut := checkDryResults(t, w.subjectResults(dryRunSubject), alone, beside, cases[0].id, cases[1].id)
	if c := dry.metric("integration_deleter_kombo_calls_total"); c != float64(2*n+len(cases)) {
		t.Errorf("the dry run counted %.0f Kombo calls, want %d (one GET per request)", c, 2*n+len(cases))
	}
	report(t, row{Case: "C4 expect ×4 and a dry run beside the real daemon", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, len(all)), Took: took,
		Notes: fmt.Sprintf("dry run alone: %d requests → %d GET, %d DELETE; expect: origin_id and tool mismatch failed DELETER.MISMATCH "+
			"with 0 DELETE, match deleted after 1 GET, missing deleted not_found; real daemon %s; dry run on %s (0 DELETE): %s; "+
			"real daemon finished %.0f requests",
			n, aloneGets, aloneDeletes, formatCounts(outcomes(tl)), dryRunSubject, formatCounts(dryOut),
			real.metric("integration_deleter_requests_total"))})
}

// integration is what the fake shows of id: DefaultIntegration's with origin id origin.
func integration(id, origin string) kombotest.Integration {
	in := kombotest.DefaultIntegration(id)
	in.EndUser.OriginID = origin
	return in
}

// checkDryResults checks the dry run's results: one per request, with Nats-Msg-Id
// dryrun-<request id>; would_delete for the batch it handled alone, would_delete or
// not_found beside the real daemon (whichever came first), failed DELETER.MISMATCH for the
// mismatched expectations. It returns the results counted by status and code.
func checkDryResults(t *testing.T, res []result, alone, beside []request, mismatched ...string) map[string]int {
	t.Helper()
	byID := map[string][]result{}
	out := map[string]int{}
	for _, r := range res {
		byID[r.RequestID] = append(byID[r.RequestID], r)
		out[strings.TrimSuffix(r.Status+"/"+r.Code(), "/")]++
		if want := "dryrun-" + r.RequestID; r.msgID != want {
			t.Errorf("dry-run result of %s has Nats-Msg-Id %q, want %q", r.RequestID, r.msgID, want)
		}
	}
	one := func(id string, ok func(result) bool, want string) {
		switch rs := byID[id]; {
		case len(rs) != 1:
			t.Errorf("request %s: %d dry-run results, want 1", id, len(rs))
		case !ok(rs[0]):
			t.Errorf("request %s: dry-run result %s, want %s", id, rs[0].raw, want)
		}
	}
	for _, q := range alone {
		one(q.ID, func(r result) bool {
			return r.Status == "would_delete" && strings.Contains(string(r.raw), `"tool":"dryalone"`)
		},
			"would_delete showing the integration")
	}
	for _, q := range beside {
		one(q.ID, func(r result) bool { return r.Status == "would_delete" || r.Status == "not_found" }, "would_delete or not_found")
	}
	for _, id := range mismatched {
		one(id, func(r result) bool { return r.Status == "failed" && r.Code() == "DELETER.MISMATCH" }, "failed DELETER.MISMATCH")
	}
	return out
}

// Case C2: DELETE_FUSE=20/1m with three replicas and 100 requests. Exactly 20 DELETE calls
// are made, then the consumer is paused with a "fuse: " reason, which every replica shows
// (/readyz 200 with the reason, integration_deleter_fuse_tripped 1). Each `resume` re-arms
// the fuse with a fresh window: exactly 20 more calls, and a trip again while requests are
// left; after the fourth resume the last 20 requests use the last 20 tokens and the fuse
// does not trip. 100 DELETE calls in all, every request deleted once.
func TestControlsFuse(t *testing.T) {
	suite(t)
	const n, fuse = 100, 20
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, nil)
	env := map[string]string{"DELETE_FUSE": fmt.Sprintf("%d/1m", fuse)}
	replicas := []*daemon{w.start("replica-a", env), w.start("replica-b", env), w.start("replica-c", env)}
	reqs := requests("fuse", n)

	began := time.Now()
	publish(t, w.js, reqs)
	var trips []string
	for k := 1; ; k++ {
		want := min(k*fuse, n)
		testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("%d DELETE calls", want), func() bool {
			return len(w.callsOf(http.MethodDelete)) >= want
		})
		if want == n {
			break
		}
		tripped := w.waitTrip(replicas, k)
		// Calls in flight at the trip have ended; none more may start while paused.
		testkit.WaitFor(t, 10*time.Second, "no DELETE in flight", func() bool { return len(w.inFlightIDs()) == 0 })
		if got := len(w.callsOf(http.MethodDelete)); got != want {
			t.Fatalf("trip %d: %d DELETE calls, want exactly %d (DELETE_FUSE %d/1m, %d resumes)", k, got, want, fuse, k-1)
		}
		trips = append(trips, fmt.Sprintf("%d calls, trip seen %.2fs after the last call", want, tripped.Sub(lastStart(w.callsOf(http.MethodDelete))).Seconds()))
		w.mustCLI("resume")
	}
	tl := waitDone(t, w.js, ids(reqs), time.Minute)
	took := time.Since(began)

	checkTally(t, tl, n)
	requireAllDeleted(t, tl)
	if got := len(w.callsOf(http.MethodDelete)); got != n {
		t.Errorf("%d DELETE calls in all, want %d", got, n)
	}
	for _, d := range replicas {
		if v := d.metric("integration_deleter_fuse_tripped"); v != 0 {
			t.Errorf("%s: integration_deleter_fuse_tripped %.0f after the last resume, want 0 (the last %d requests fit the fresh window)", d.name, v, fuse)
		}
	}
	if st := w.pauseState(); st.Paused {
		t.Errorf("the consumer is paused at the end: %+v", st)
	}
	report(t, row{Case: "C2 DELETE_FUSE=20/1m, 3 replicas, 100 requests", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
		Notes: fmt.Sprintf("%d trips, each after exactly 20 more calls and seen by all 3 replicas: %s; after the 4th resume the last 20 "+
			"finished without a trip; %s", len(trips), strings.Join(trips, "; "), formatCounts(outcomes(tl)))})
}

// waitTrip waits until the consumer is paused by the fuse on the server and every replica
// shows it; it returns when.
func (w *world) waitTrip(replicas []*daemon, k int) time.Time {
	w.t.Helper()
	testkit.WaitFor(w.t, 10*time.Second, fmt.Sprintf("trip %d shown by every replica", k), func() bool {
		if st := w.pauseState(); !st.Fuse() {
			return false
		}
		for _, d := range replicas {
			if d.metric("integration_deleter_fuse_tripped") != 1 || d.metric("integration_deleter_consumer_paused") != 1 ||
				!readyzSays(d, "paused", control.FusePrefix) {
				return false
			}
		}
		return true
	})
	return time.Now()
}

// Case C1: `pause` mid-load with two replicas (300 requests, Kombo's latency 20 ms and its
// concurrency limit 4). No DELETE starts more than 1 s after the command returned; a replica
// restarted while paused stays paused (no DELETE, /readyz 200 saying paused, the metric
// integration_deleter_consumer_paused 1); after `resume` every request has one result.
func TestControlsPause(t *testing.T) {
	const n = 300
	const reason = "faults: stop mid-load"
	w := newWorld(t, kombotest.Options{Latency: 20 * time.Millisecond, ConcurrencyLimit: 4}, nil)
	reqs := requests("pause", n)
	a, b := w.start("replica-a", nil), w.start("replica-b", nil)

	began := time.Now()
	publish(t, w.js, reqs)
	testkit.WaitFor(t, time.Minute, "20% of the results", func() bool { return resultCount(w.js) >= n/5 })
	pause := w.mustCLI("pause", "--reason", reason)
	atPause, inFlight := resultCount(w.js), len(w.inFlightIDs())
	cut := pause.ended.Add(time.Second) // the contract: within 1 s no replica starts a DELETE
	var shownAfter time.Duration
	testkit.WaitFor(t, 5*time.Second, "both replicas to show the pause", func() bool {
		shownAfter = time.Since(pause.ended)
		return pausedShown(a, reason) && pausedShown(b, reason)
	})

	// The calls in flight finish; then a replica restarted while paused stays paused.
	testkit.WaitFor(t, 5*time.Second, "the DELETEs in flight at the pause to finish", func() bool { return len(w.inFlightIDs()) == 0 })
	drained := time.Since(pause.ended)
	b.kill()
	b = w.start("replica-b2", nil)
	code, body := b.get("/readyz")
	restarted := fmt.Sprintf("%d %q", code, strings.TrimSpace(body))
	if !pausedShown(b, reason) {
		t.Errorf("the replica restarted while paused: /readyz %d %q, integration_deleter_consumer_paused %.0f; want 200 saying paused, 1",
			code, strings.TrimSpace(body), b.metric("integration_deleter_consumer_paused"))
	}
	// Held for 2 s past the contract's second, with a replica that started during the pause.
	time.Sleep(time.Until(cut.Add(2 * time.Second)))
	atResume := resultCount(w.js)
	deletes := w.callsOf(http.MethodDelete)
	resume := w.mustCLI("resume")
	late := 0
	for _, c := range deletes {
		if c.Start.After(cut) && c.Start.Before(resume.began) {
			late++
		}
	}
	tl := waitDone(t, w.js, ids(reqs), time.Minute)
	took := time.Since(began)

	checkTally(t, tl, n)
	requireAllDeleted(t, tl)
	if late > 0 {
		t.Errorf("%d DELETE calls started more than 1 s after `pause` returned, want 0", late)
	}
	inSecond := startedAfter(deletes, pause.ended) - late
	lastBefore := lastStart(deletes)
	if st := w.pauseState(); st.Paused {
		t.Errorf("the consumer is still paused after resume: %+v", st)
	}
	for _, d := range []*daemon{a, b} {
		if v := d.metric("integration_deleter_consumer_paused"); v != 0 {
			t.Errorf("%s: integration_deleter_consumer_paused %.0f after resume, want 0", d.name, v)
		}
	}
	report(t, row{Case: "C1 pause mid-load, 2 replicas, one restarted while paused", In: tl.in, Stored: tl.stored, Lost: tl.lost,
		Dup: tl.dup, CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
		Notes: fmt.Sprintf("`pause` took %dms, at %d results and %d calls in flight (all ended %dms after); both replicas showed it %dms after; "+
			"DELETEs started within its 1 s: %d "+
			"(the last at %+dms from its return), after the 1 s: %d; paused %.1fs with a replica restarted (/readyz %s); results %d→%d while paused; "+
			"`resume` took %dms; %s",
			pause.ended.Sub(pause.began).Milliseconds(), atPause, inFlight, drained.Milliseconds(), shownAfter.Milliseconds(), inSecond,
			lastBefore.Sub(pause.ended).Milliseconds(), late, resume.began.Sub(pause.ended).Seconds(), restarted,
			atPause, atResume, resume.ended.Sub(resume.began).Milliseconds(), formatCounts(outcomes(tl)))})
}

// pausedShown reports whether d shows the consumer paused for reason: /readyz 200 with it
// in the body, and integration_deleter_consumer_paused 1.
func pausedShown(d *daemon, reason string) bool {
	return readyzSays(d, "paused", reason) && d.metric("integration_deleter_consumer_paused") == 1
}

// Case C3: `protect add` while two replicas run. From 1 s after the command returned (the
// contract's bound), every request for a protected id (an exact id and a wildcard pattern)
// ends failed DELETER.PROTECTED with no Kombo call, on both replicas, without a restart;
// the other requests of the same batches are deleted.
func TestControlsProtectLive(t *testing.T) {
	suite(t)
	const batches, perBatch = 5, 8
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, nil)
	a, b := w.start("replica-a", nil), w.start("replica-b", nil)
	pids := []int{a.cmd.Process.Pid, b.cmd.Process.Pid}
	warm := requests("warm", 20)
	publish(t, w.js, warm)
	waitDone(t, w.js, ids(warm), time.Minute)

	began := time.Now()
	add := w.mustCLI("protect", "add", "personio:vip-1", "vipco:*", "--reason", "faults: legal hold")
	time.Sleep(time.Until(add.ended.Add(time.Second))) // the contract's bound for every replica to apply it
	// Batches one after the other, so that both replicas pull some.
	var protected, others []request
	all := ids(warm)
	for i := range batches {
		var batch []request
		for j := range perBatch {
			k := i*perBatch + j
			switch j % 4 {
			case 0:
				batch = append(batch, request{ID: fmt.Sprintf("vip1-%02d", k), IntegrationID: "personio:vip-1"})
				protected = append(protected, batch[len(batch)-1])
			case 1:
				batch = append(batch, request{ID: fmt.Sprintf("vipco-%02d", k), IntegrationID: fmt.Sprintf("vipco:%02d", k)})
				protected = append(protected, batch[len(batch)-1])
			default:
				batch = append(batch, request{ID: fmt.Sprintf("plain-%02d", k), IntegrationID: fmt.Sprintf("personio:plain-%02d", k)})
				others = append(others, batch[len(batch)-1])
			}
		}
		publish(t, w.js, batch)
		all = append(all, ids(batch)...)
		waitDone(t, w.js, all, time.Minute)
	}
	tl := count(t, w.js, all)
	took := time.Since(began)

	checkTally(t, tl, len(all))
	var protectedIDs []string
	for _, q := range protected {
		protectedIDs = append(protectedIDs, q.IntegrationID)
		rs := tl.byID[q.ID]
		if len(rs) == 1 && (rs[0].Status != "failed" || rs[0].Code() != "DELETER.PROTECTED" || rs[0].Attempts != 0 ||
			!strings.Contains(rs[0].Error.Message, "faults: legal hold")) {
			t.Errorf("request %s for %s: got %s, want failed DELETER.PROTECTED, attempts 0, naming the reason", q.ID, q.IntegrationID, rs[0].raw)
		}
	}
	for _, q := range others {
		if rs := tl.byID[q.ID]; len(rs) == 1 && rs[0].Status != "deleted" {
			t.Errorf("request %s: got %s, want deleted", q.ID, rs[0].raw)
		}
	}
	calls := len(w.callsOf(http.MethodDelete, protectedIDs...)) + len(w.callsOf(http.MethodGet, protectedIDs...))
	if calls != 0 {
		t.Errorf("Kombo got %d calls for protected ids, want 0", calls)
	}
	by := handledBy(ids(protected), a, b)
	if by[a.name] == 0 || by[b.name] == 0 {
		t.Errorf("protected requests handled by replica: %v; want some by each (the case does not show every replica applies it)", by)
	}
	if a.cmd.Process.Pid != pids[0] || b.cmd.Process.Pid != pids[1] || a.exited() || b.exited() {
		t.Errorf("a replica was restarted or exited")
	}
	report(t, row{Case: "C3 protect add while 2 replicas run", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, len(all)), Took: took,
		Notes: fmt.Sprintf("`protect add` (an id and a wildcard) took %dms; %d requests for protected ids from 1 s after it: "+
			"%d Kombo calls, handled by a/b %d/%d, no restart; %s",
			add.ended.Sub(add.began).Milliseconds(), len(protected), calls, by[a.name], by[b.name], formatCounts(outcomes(tl)))})
}

// Case C5: looking back and retrying. A batch where a third of the integrations fail at
// once (Kombo answers 400 to their first DELETE); `failed --since 1h --json` lists exactly
// those; `retry --failed --json` re-requests each as <id>.retry1 with retry_of, and Kombo
// now deletes them; `status --json` shows the originals failed and the retries deleted.
func TestControlsFailedRetry(t *testing.T) {
	const n = 30
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond}, nil)
	reqs := requests("look", n)
	failing := map[string]request{}
	for i, q := range reqs {
		if i%3 == 0 {
			w.fake.Script(q.IntegrationID, kombotest.InputInvalid()) // the first call only; later ones succeed
			failing[q.ID] = q
		}
	}
	w.start("daemon", nil)

	began := time.Now()
	publish(t, w.js, reqs)
	tl := waitDone(t, w.js, ids(reqs), time.Minute)
	for id := range failing {
		if rs := tl.byID[id]; len(rs) != 1 || rs[0].Status != "failed" {
			t.Fatalf("request %s: got %v, want one failed result", id, tl.byID[id])
		}
	}

	failed := w.mustCLI("failed", "--since", "1h", "--json")
	listed := map[string]bool{}
	for _, l := range jsonLines(t, failed) {
		id, _ := l["request_id"].(string)
		if _, ok := failing[id]; !ok || l["status"] != "failed" || listed[id] {
			t.Errorf("`failed` lists %v: not one of the %d failed requests, or twice", l, len(failing))
		}
		listed[id] = true
	}
	if len(listed) != len(failing) {
		t.Errorf("`failed --since 1h` lists %d requests, want the %d that failed\n%s", len(listed), len(failing), failed)
	}

	retry := w.mustCLI("retry", "--failed", "--json")
	var retries []string
	for _, l := range jsonLines(t, retry) {
		id, _ := l["request_id"].(string)
		of, _ := l["retry_of"].(string)
		if _, ok := failing[of]; !ok || id != of+".retry1" {
			t.Errorf("`retry --failed` printed %v, want {request_id: <failed id>.retry1, retry_of: <failed id>}", l)
		}
		retries = append(retries, id)
	}
	if len(retries) != len(failing) {
		t.Fatalf("`retry --failed` re-requested %d, want %d\n%s", len(retries), len(failing), retry)
	}
	all := append(ids(reqs), retries...)
	tl = waitDone(t, w.js, all, time.Minute)
	for _, id := range retries {
		rs := tl.byID[id]
		of := strings.TrimSuffix(id, ".retry1")
		if len(rs) == 1 && (rs[0].Status != "deleted" || rs[0].IntegrationID != failing[of].IntegrationID ||
			!strings.Contains(string(rs[0].raw), fmt.Sprintf(`"retry_of":%q`, of))) {
			t.Errorf("retry %s: got %s, want deleted %s with retry_of %q", id, rs[0].raw, failing[of].IntegrationID, of)
		}
		if c := len(w.callsOf(http.MethodDelete, failing[of].IntegrationID)); c != 2 {
			t.Errorf("integration %s: %d DELETE calls, want 2 (the failed one and the retry's)", failing[of].IntegrationID, c)
		}
	}

	var asked []string
	for id := range failing {
		asked = append(asked, id)
	}
	asked = append(asked, retries...)
	status := w.mustCLI(append([]string{"status", "--json"}, asked...)...)
	shown := map[string]string{}
	for _, l := range jsonLines(t, status) {
		id, _ := l["request_id"].(string)
		st, _ := l["status"].(string)
		shown[id] = st
	}
	for _, id := range asked {
		want := "failed"
		if strings.HasSuffix(id, ".retry1") {
			want = "deleted"
		}
		if shown[id] != want {
			t.Errorf("`status` of %s: %q, want %q\n%s", id, shown[id], want, status)
		}
	}
	took := time.Since(began)
	checkTally(t, tl, len(all))
	report(t, row{Case: "C5 failed → retry --failed → status", In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, n), Took: took,
		Notes: fmt.Sprintf("%d of %d failed (400 on the first call); `failed --since 1h` listed %d (%dms); `retry --failed` published %d "+
			"<id>.retry1 (%dms), all deleted with retry_of; `status` of %d ids (%dms): originals failed, retries deleted; %s",
			len(failing), n, len(listed), failed.ended.Sub(failed.began).Milliseconds(), len(retries),
			retry.ended.Sub(retry.began).Milliseconds(), len(asked), status.ended.Sub(status.began).Milliseconds(), formatCounts(outcomes(tl)))})
}

// Case C6: bad input to each operator command, run as the binary: a usage error exits 2
// (also with NATS unreachable: it is found before anything connects) and changes nothing on
// the server; a command that cannot reach NATS exits 1 with a message, and does not hang.
func TestControlsBadInput(t *testing.T) {
	w := newWorld(t, kombotest.Options{}, nil)
	w.start("daemon", nil) // creates the consumer and the buckets the commands act on
	// Something for the commands to change: a protection, and requests with their results.
	w.mustCLI("protect", "add", "personio:kept", "--reason", "faults: already there")
	done := requests("done", 3)
	publish(t, w.js, done)
	tl := waitDone(t, w.js, ids(done), 30*time.Second)
	before := w.serverState()
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	// Each usage error and a part of what stderr must say (the flag or value it refuses).
	usage := []struct {
		args []string
		says string
	}{
		{[]string{"pause", "--reason", "x", "--bogus"}, "bogus"},
		{[]string{"pause"}, "reason"},
		{[]string{"pause", "--reason", "x", "--for", "soon"}, "soon"},
		{[]string{"pause", "--reason", "x", "--for", "1h", "--until", future}, "until"},
		{[]string{"pause", "--reason", "x", "--until", "2001-02-03T04:05:06Z"}, "2001-02-03"},
		{[]string{"pause", "--reason", "x", "--until", "tomorrow"}, "tomorrow"},
		{[]string{"resume", "--bogus"}, "bogus"},
		{[]string{"protect", "add", "*"}, "--all"},
		{[]string{"protect", "add", "**", "--reason", "x"}, "--all"},
		{[]string{"protect", "add", "personio:ok", "*", "--reason", "x"}, "--all"}, // one bad pattern: none written
		{[]string{"protect", "add", ""}, "empty"},
		{[]string{"protect", "add"}, "pattern"},
		{[]string{"protect", "rm"}, "pattern"},
		{[]string{"protect", "frob", "x"}, "frob"},
		{[]string{"protect", "ls", "--bogus"}, "bogus"},
		{[]string{"status"}, "request"},
		{[]string{"status", "--bogus", "x"}, "bogus"},
		{[]string{"failed", "--since", "yesterday"}, "yesterday"},
		{[]string{"failed", "--bogus"}, "bogus"},
		{[]string{"retry"}, "--failed"},
		{[]string{"retry", "--failed", "--since", "1x"}, "1x"},
		{[]string{"retry", "--bogus", "x"}, "bogus"},
		{[]string{"check"}, "id"},
		{[]string{"check", "--bogus", "x"}, "bogus"},
	}
	began := time.Now()
	var bad []string
	for _, u := range usage {
		if r := w.cli(nil, u.args...); r.code != 2 || !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(u.says)) {
			bad = append(bad, fmt.Sprintf("%s\nwant exit 2 with a message on stderr naming %q", r, u.says))
		}
	}
	unreachable := map[string]string{"NATS_URL": fmt.Sprintf("nats://127.0.0.1:%d", testkit.FreePort(t))}
	if r := w.cli(unreachable, "protect", "add", "*"); r.code != 2 {
		bad = append(bad, fmt.Sprintf("%s\nwant exit 2 before connecting to NATS", r))
	}
	runtime := [][]string{
		{"pause", "--reason", "x"}, {"resume"}, {"protect", "add", "personio:x"}, {"protect", "rm", "personio:x"},
		{"protect", "ls"}, {"status", "x"}, {"failed"}, {"retry", "x"},
	}
	var slowest time.Duration
	for _, args := range runtime {
		r := w.cli(unreachable, args...)
		slowest = max(slowest, r.ended.Sub(r.began))
		if r.code != 1 || !strings.Contains(strings.ToLower(r.stderr), "nats") {
			bad = append(bad, fmt.Sprintf("%s\nwant exit 1 with a message naming NATS", r))
		}
	}
	for _, b := range bad {
		t.Error(b)
	}
	after := w.serverState()
	if after != before {
		t.Errorf("the server changed:\nbefore %s\nafter  %s", before, after)
	}
	report(t, row{Case: "C6 bad input to the operator's commands", In: tl.in, Stored: tl.stored, Took: time.Since(began),
		Notes: fmt.Sprintf("%d usage errors → exit 2 (one with NATS unreachable), %d commands with NATS unreachable → exit 1 (slowest %.1fs); "+
			"%d wrong; server unchanged: %v (%s)", len(usage), len(runtime), slowest.Seconds(), len(bad), after == before, after)})
}

// serverState is what the operator's commands could change on the server, as one string:
// the pause, the protect list and the stream's messages.
func (w *world) serverState() string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := control.OpenProtect(ctx, w.js, protectBucket, 1, false)
	if err != nil {
		w.t.Fatalf("open the protect list: %v", err)
	}
	list, err := p.List(ctx)
	if err != nil {
		w.t.Fatalf("list the protect list: %v", err)
	}
	s, err := w.js.Stream(ctx, testkit.StreamName)
	if err != nil {
		w.t.Fatalf("read the stream: %v", err)
	}
	st := w.pauseState()
	return fmt.Sprintf("paused %v %q; %d protected; stream: %d messages, last seq %d",
		st.Paused, st.Reason, len(list), s.CachedInfo().State.Msgs, s.CachedInfo().State.LastSeq)
}

// jsonLines decodes stdout as one JSON object per line.
func jsonLines(t *testing.T, r cliRun) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.Lines(r.stdout) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s\na line is not JSON: %v", r, err)
		}
		out = append(out, m)
	}
	return out
}
