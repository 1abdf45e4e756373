package faults

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// Case 1: kill -9 of the daemon three times at random moments under load, restarted each
// time. Nothing is lost (unacked requests are redelivered), nothing is stored twice (the
// results' Nats-Msg-Id), every request ends deleted.
func TestCase1Kill9(t *testing.T) {
	suite(t)
	r := rng(t)
	const n = 2000
	w, reqs, d := usualCase(t, "kill", n, "daemon-1", nil)

	began := time.Now()
	publish(t, w.js, reqs)
	thresholds := []int{n * (10 + r.IntN(15)) / 100, n * (35 + r.IntN(15)) / 100, n * (60 + r.IntN(20)) / 100}
	var kills []string
	for i, th := range thresholds {
		testkit.WaitFor(t, 2*time.Minute, fmt.Sprintf("%d results before kill %d", th, i+1), func() bool { return resultCount(w.js) >= th })
		time.Sleep(time.Duration(r.IntN(50)) * time.Millisecond) // a random moment, not a wait for a condition
		inFlight := w.fake.Stats().InFlight
		d.kill()
		kills = append(kills, fmt.Sprintf("%d results/%d calls in flight", resultCount(w.js), inFlight))
		d = w.start(fmt.Sprintf("daemon-%d", i+2), nil)
	}
	tl, took := w.finish(t, reqs, began)

	if d.exited() {
		t.Errorf("the last daemon exited: %s", d.state)
	}
	st := w.fake.Stats()
	report(t, w.figures("1 kill -9 ×3 under load", tl, n, took,
		fmt.Sprintf("kills at %s; %s; Kombo 404 (repeat after a kill) %d", strings.Join(kills, ", "),
			formatCounts(outcomes(tl)), st.ByCode["PLATFORM.INTEGRATION_NOT_FOUND"])))
}

// Case 2: the NATS server stops mid-load and starts again on the same port and store. The
// daemon reports not ready meanwhile, reconnects, and finishes.
func TestCase2NATSRestart(t *testing.T) {
	const n = 2000
	w, reqs, d := usualCase(t, "natsrestart", n, "daemon", nil)

	began := time.Now()
	before := w.publishUntil30(reqs)
	inFlight := w.fake.Stats().InFlight
	w.nats.stop()
	down := time.Now()
	var readyz string
	testkit.WaitFor(t, 15*time.Second, "/readyz to answer 503 while NATS is down", func() bool {
		code, body := d.get("/readyz")
		readyz = strings.TrimSpace(body)
		return code == http.StatusServiceUnavailable
	})
	if code, body := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while NATS is down: %d %s, want 200", code, body)
	}
	time.Sleep(time.Second) // the outage itself
	w.nats.start()
	outage := time.Since(down)
	d.waitReady(30 * time.Second)
	backAfter := time.Since(down)
	tl, took := w.finish(t, reqs, began)

	report(t, w.figures("2 NATS restart mid-load", tl, n, took,
		fmt.Sprintf("stopped at %d results/%d calls in flight, down %.1fs, ready again after %.1fs (%q while down); %s",
			before, inFlight, outage.Seconds(), backAfter.Seconds(), readyz, formatCounts(outcomes(tl)))))
}

// Case 3a: the consumer is deleted under a running daemon with JETSTREAM_PROVISION=true: it
// recreates it and continues. The new consumer starts again at the stream's first request,
// so finished requests are called again (Kombo answers not found) and their results are
// deduplicated.
func TestCase3ConsumerDeletedProvision(t *testing.T) {
	const n = 2000
	w, reqs, d := usualCase(t, "consdel", n, "daemon", nil)

	began := time.Now()
	at := w.publishUntil30(reqs)
	w.deleteConsumer()
	deleted := time.Now()
	testkit.WaitFor(t, 30*time.Second, "the daemon to recreate the consumer", w.consumerExists)
	recreated := time.Since(deleted)
	tl, took := w.finish(t, reqs, began)
	d.waitReady(10 * time.Second)

	report(t, w.figures("3a consumer deleted, provisioning on", tl, n, took,
		fmt.Sprintf("deleted at %d results, recreated after %.1fs; the new consumer replays the stream: %s",
			at, recreated.Seconds(), formatCounts(outcomes(tl)))))
}

// Case 3b: the consumer is deleted under a running daemon with JETSTREAM_PROVISION=false: it
// does not recreate it, reports not ready and says why; once the operator has recreated
// it, the daemon binds again by itself and finishes.
func TestCase3ConsumerDeletedNoProvision(t *testing.T) {
	const n = 2000
	w := newWorld(t, usualKombo, nil)
	w.provision()
	reqs := requests("consdelnp", n)
	noProvision := map[string]string{"JETSTREAM_PROVISION": "false"}
	d := w.start("daemon", noProvision)

	began := time.Now()
	at := w.publishUntil30(reqs)
	w.deleteConsumer()
	var readyz string
	testkit.WaitFor(t, 30*time.Second, "/readyz to answer 503 naming the consumer", func() bool {
		code, body := d.get("/readyz")
		readyz = strings.TrimSpace(body)
		return code == http.StatusServiceUnavailable && strings.Contains(readyz, "consumer")
	})
	t.Logf("/readyz: %s", readyz)
	if !strings.Contains(readyz, testkit.ConsumerName) {
		t.Errorf("/readyz %q does not name the consumer %q", readyz, testkit.ConsumerName)
	}
	if w.consumerExists() {
		t.Errorf("the consumer exists again although JETSTREAM_PROVISION=false")
	}
	stalled := resultCount(w.js)

	// The operator recreates the consumer.
	w.createConsumer(consumerConfig())
	recreated := time.Now()
	resumed := "by itself"
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := d.get("/readyz"); code == http.StatusOK {
			resumed = fmt.Sprintf("by itself after %.1fs", time.Since(recreated).Seconds())
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("the daemon did not bind again within 30s after the consumer was recreated " +
				"(JETSTREAM_PROVISION=false): it stays not ready for ever; restarting it to count the rest")
			resumed = "NO: stuck until restarted"
			d.kill()
			d = w.start("daemon-restarted", noProvision)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	tl, took := w.finish(t, reqs, began)

	report(t, w.figures("3b consumer deleted, provisioning off", tl, n, took,
		fmt.Sprintf("deleted at %d results (%d when recreated); /readyz %q; resumed %s", at, stalled, readyz, resumed)))
}

// Case 4: Kombo fails about 30% of the calls: 500 UNKNOWN_ERROR, 502/503 text and HTML,
// empty 500s, calls that hang past KOMBO_TIMEOUT, answers that come after it, and
// connections reset in the middle of a response. Every request ends deleted.
func TestCase4KomboFailures(t *testing.T) {
	suite(t)
	r := rng(t)
	const n = 2000
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond, FailureRate: 0.2}, nil)
	proxy, proxied := startResetProxy(t, w.komboURL, r, 200, 3000)
	reqs := requests("failing", n)
	const html502 = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
	scripted := map[string]int{}
	for _, q := range reqs {
		switch x := r.IntN(100); {
		case x < 2:
			w.fake.Script(q.IntegrationID, kombotest.Answer{Hang: true})
			scripted["hang"]++
		case x < 4:
			w.fake.Script(q.IntegrationID, kombotest.OK().WithDelay(time.Second)) // deleted, but answered too late
			scripted["late 200"]++
		case x < 7:
			w.fake.Script(q.IntegrationID, kombotest.Raw(http.StatusBadGateway, "text/html", html502))
			scripted["HTML 502"]++
		}
	}
	d := w.start("daemon", map[string]string{
		"KOMBO_BASE_URL":        proxied,
		"KOMBO_TIMEOUT":         "300ms",
		"KOMBO_MAX_ATTEMPTS":    "20",
		"KOMBO_MAX_CONCURRENCY": "32",
	})

	began := time.Now()
	publish(t, w.js, reqs)
	tl, took := w.finish(t, reqs, began)

	deletes, bad := 0, 0
	byStatus := map[string]int{}
	for _, cs := range w.deleteCalls() {
		for _, c := range cs {
			deletes++
			byStatus[fmt.Sprint(c.Status)]++
			if c.Status != http.StatusOK && c.Status != http.StatusNotFound {
				bad++
			}
		}
	}
	t.Logf("DELETE answers by status: %s", formatCounts(byStatus))
	resets := int(proxy.resets.Load())
	share := float64(bad+resets) / float64(max(deletes, 1))
	if share < 0.2 {
		t.Errorf("only %.0f%% of the calls failed: the case does not test what it says", 100*share)
	}
	if st := w.fake.Stats(); st.Deleted < n {
		t.Errorf("Kombo deleted %d integrations, want at least %d", st.Deleted, n)
	}
	noAnswer := d.metric("integration_deleter_kombo_calls_total", `status="0"`)
	report(t, w.figures("4 Kombo fails ~30% (5xx, HTML, hangs, resets)", tl, n, took,
		fmt.Sprintf("%.0f%% of %d calls failed: %d error answers or no answer, %d connections reset mid-response; "+
			"scripted %s; daemon saw %.0f calls without answer; %s",
			100*share, deletes, bad, resets, formatCounts(scripted), noAnswer, formatCounts(outcomes(tl)))))
}

// Case 5: Kombo rejects the key for a while (401), then accepts it again. No failed result,
// no DELETE while paused, a handful of probes, everything deleted after.
func TestCase5KeyRejected(t *testing.T) {
	const n = 2000
	const probeInterval = time.Second
	const outage = 5 * time.Second
	w, reqs, d := usualCase(t, "key", n, "daemon", map[string]string{"AUTH_PROBE_INTERVAL": probeInterval.String()})

	began := time.Now()
	w.publishUntil30(reqs)
	if err := w.fake.Update(func(o *kombotest.Options) { o.RejectKey = true }); err != nil {
		t.Fatal(err)
	}
	rejected := time.Now()
	var readyz string
	testkit.WaitFor(t, 10*time.Second, "/readyz to answer 503 (paused)", func() bool {
		code, body := d.get("/readyz")
		readyz = strings.TrimSpace(body)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "paused")
	})
	paused := time.Now()
	atPause := resultCount(w.js)
	probesBefore := w.fake.Stats().CheckAPIKey
	time.Sleep(outage) // the outage itself
	if err := w.fake.Update(func(o *kombotest.Options) { o.RejectKey = false }); err != nil {
		t.Fatal(err)
	}
	accepted := time.Now()
	probes := w.fake.Stats().CheckAPIKey - probesBefore
	atResume := resultCount(w.js)
	d.waitReady(10 * probeInterval)
	resumedAfter := time.Since(accepted)
	tl, took := w.finish(t, reqs, began)

	var rejected401, duringPause int
	for _, cs := range w.deleteCalls() {
		for _, c := range cs {
			if c.Status == http.StatusUnauthorized {
				rejected401++
			}
			// Calls that had passed the daemon's gate when it paused may still arrive a moment later.
			if c.Start.After(paused.Add(200*time.Millisecond)) && c.Start.Before(accepted) {
				duringPause++
			}
		}
	}
	if duringPause > 0 {
		t.Errorf("%d DELETEs reached Kombo while the daemon was paused, want none (probes only)", duringPause)
	}
	if maxProbes := int(outage/probeInterval) + 2; probes > maxProbes {
		t.Errorf("%d key probes in a %s outage with AUTH_PROBE_INTERVAL %s, want at most %d", probes, outage, probeInterval, maxProbes)
	}
	if probes == 0 {
		t.Errorf("no key probe during a %s outage", outage)
	}
	report(t, w.figures("5 key rejected for 5s, then accepted", tl, n, took,
		fmt.Sprintf("paused %.1fs after the switch (%q); %d DELETEs answered 401 (in flight at the switch), %d DELETEs while paused, "+
			"%d probes in %s, results %d→%d while paused (calls answered before the switch); ready %.1fs after the key was accepted; %s",
			paused.Sub(rejected).Seconds(), readyz, rejected401, duringPause, probes, outage, atPause, atResume,
			resumedAfter.Seconds(), formatCounts(outcomes(tl)))))
}

// Case 6: two daemon replicas share the consumer while Kombo's concurrency limit is below
// the sum of their caps. No request is called by both at once, all are deleted, and the
// share of calls Kombo rejects is reported.
func TestCase6TwoReplicas(t *testing.T) {
	const n = 2000
	const limit = 12
	w := newWorld(t, kombotest.Options{Latency: 10 * time.Millisecond, LatencyJitter: 10 * time.Millisecond, ConcurrencyLimit: limit}, nil)
	reqs := requests("replicas", n)
	a := w.start("replica-a", nil)
	b := w.start("replica-b", nil)

	began := time.Now()
	publish(t, w.js, reqs)
	tl, took := w.finish(t, reqs, began)

	overlaps, twice := 0, 0
	for id, cs := range w.deleteCalls() {
		slices.SortFunc(cs, func(x, y kombotest.Call) int { return x.Start.Compare(y.Start) })
		ok := 0
		for i, c := range cs {
			if c.Status == http.StatusOK {
				ok++
			}
			if i > 0 && (cs[i-1].End.IsZero() || c.Start.Before(cs[i-1].End)) {
				overlaps++
				if overlaps <= 5 {
					t.Errorf("integration %s: two DELETEs at once (%s–%s and from %s)", id,
						cs[i-1].Start.Format("15:04:05.000"), cs[i-1].End.Format("15:04:05.000"), c.Start.Format("15:04:05.000"))
				}
			}
		}
		if ok > 1 {
			twice++
		}
	}
	if overlaps > 0 {
		t.Errorf("%d times a request was called by both replicas at once", overlaps)
	}
	if twice > 0 {
		t.Errorf("%d integrations were deleted twice (two 200 answers)", twice)
	}
	st := w.fake.Stats()
	// The replicas asked for more than Kombo allows: it was full at some point. (Refusals
	// may be none: admission follows the limit and the room Kombo states.)
	if st.MaxInFlight < limit {
		t.Errorf("at most %d calls in flight at Kombo, never its limit %d: the case does not test what it says", st.MaxInFlight, limit)
	}
	doneA := a.metric("integration_deleter_requests_total")
	doneB := b.metric("integration_deleter_requests_total")
	redeliveries := a.metric("integration_deleter_redeliveries_total") + b.metric("integration_deleter_redeliveries_total")
	report(t, w.figures("6 two replicas, Kombo limit 12 < 2×16", tl, n, took,
		fmt.Sprintf("finished by a/b %.0f/%.0f; %d of %d calls rejected for concurrency (%.0f%%); at most %d in flight at Kombo; "+
			"caps at the end %.0f/%.0f; %d calls of one request at once; %.0f redeliveries",
			doneA, doneB, st.RejectedConcurrency, st.Deletes, 100*float64(st.RejectedConcurrency)/float64(max(st.Deletes, 1)),
			st.MaxInFlight, a.metric("integration_deleter_concurrency_cap"), b.metric("integration_deleter_concurrency_cap"),
			overlaps, redeliveries)))
}

// Case 7: the handler panics on one payload (ids starting with "panic:", in -tags faultinject
// builds). The process survives, that request gets failed DELETER.INTERNAL, the rest go on.
func TestCase7Panic(t *testing.T) {
	const n = 2000
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond, LatencyJitter: 5 * time.Millisecond}, nil)
	reqs := requests("pan", n)
	panicky := map[string]bool{}
	for _, i := range []int{1, n / 2, n - 1} {
		reqs[i].IntegrationID = "panic:" + reqs[i].IntegrationID
		panicky[reqs[i].ID] = true
	}
	d := w.start("daemon", nil)
	pid := d.cmd.Process.Pid

	began := time.Now()
	publish(t, w.js, reqs)
	tl := waitDone(t, w.js, ids(reqs), 3*time.Minute)
	took := time.Since(began)

	checkTally(t, tl, n)
	for _, q := range reqs {
		rs := tl.byID[q.ID]
		if len(rs) != 1 {
			continue // reported by checkTally
		}
		res := rs[0]
		switch {
		case panicky[q.ID]:
			if res.Status != "failed" || res.Code() != "DELETER.INTERNAL" || res.Attempts != 0 || res.Error.Message == "" ||
				res.IntegrationID != q.IntegrationID {
				t.Errorf("request %s (panics): got %s, want failed DELETER.INTERNAL with a message, attempts 0", q.ID, res.raw)
			}
			if c := len(w.fake.CallsFor(q.IntegrationID)); c != 0 {
				t.Errorf("Kombo got %d DELETEs of %s, want none", c, q.IntegrationID)
			}
		case res.Status != "deleted":
			t.Errorf("request %s: got %s, want deleted", q.ID, res.raw)
		}
	}
	if d.exited() || d.cmd.Process.Pid != pid {
		t.Fatalf("the daemon exited after the panic: %s", d.state)
	}
	if code, body := d.get("/healthz"); code != http.StatusOK {
		t.Errorf("/healthz after the panic: %d %s", code, body)
	}
	if code, body := d.get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the panic: %d %s", code, body)
	}
	logged := len(d.out.logLines("panic while handling a request"))
	if logged != len(panicky) {
		t.Errorf("%d panics logged, want %d", logged, len(panicky))
	}
	report(t, w.figures("7 handler panic on 3 payloads", tl, n, took,
		fmt.Sprintf("same process (pid %d) alive and ready after; %d panics logged; %s", pid, logged, formatCounts(outcomes(tl)))))
}

// Case 8: a request whose processing is crashed again and again (kill -9 while its DELETE
// hangs) reaches MAX_DELIVER=2; the server stops delivering it and the daemon still
// publishes failed DELETER.MAX_DELIVERIES from the advisory. Requests published after it are
// deleted.
func TestCase8MaxDeliver(t *testing.T) {
	const n = 500
	w := newWorld(t, kombotest.Options{Latency: 5 * time.Millisecond}, nil)
	maxDeliver := map[string]string{"MAX_DELIVER": "2"}
	const poison = "personio:crashes-the-daemon"
	w.fake.Script(poison, kombotest.Answer{Hang: true}, kombotest.Answer{Hang: true}, kombotest.Answer{Hang: true})
	d := w.start("daemon-1", maxDeliver)

	began := time.Now()
	publish(t, w.js, []request{{ID: "poison", IntegrationID: poison}})
	for i := 1; i <= 2; i++ {
		testkit.WaitFor(t, 30*time.Second, fmt.Sprintf("DELETE %d of %s to hang at Kombo", i, poison), func() bool {
			return len(w.fake.CallsFor(poison)) >= i
		})
		d.kill()
		d = w.start(fmt.Sprintf("daemon-%d", i+1), maxDeliver)
	}
	reqs := requests("after", n)
	publish(t, w.js, reqs)
	all := append(ids(reqs), "poison")
	tl := waitDone(t, w.js, all, 2*time.Minute)
	took := time.Since(began)

	checkTally(t, tl, n+1)
	poisonRes := tl.byID["poison"]
	if len(poisonRes) == 1 {
		res := poisonRes[0]
		if res.Status != "failed" || res.Code() != "DELETER.MAX_DELIVERIES" || res.IntegrationID != poison || res.Attempts != 2 {
			t.Errorf("the request the server gave up on: got %s, want failed DELETER.MAX_DELIVERIES, attempts 2", res.raw)
		}
	}
	for _, q := range reqs {
		if rs := tl.byID[q.ID]; len(rs) == 1 && rs[0].Status != "deleted" {
			t.Errorf("request %s: got %s, want deleted", q.ID, rs[0].raw)
		}
	}
	if c := len(w.fake.CallsFor(poison)); c != 2 {
		t.Errorf("Kombo got %d DELETEs of %s, want 2 (one per delivery)", c, poison)
	}
	res := ""
	if len(poisonRes) > 0 {
		res = poisonRes[0].Code()
	}
	report(t, w.figures("8 MaxDeliver=2 reached by kill -9 ×2", tl, n+1, took,
		fmt.Sprintf("the crashing request ends failed %s after 2 deliveries, %d requests published after it; %s",
			res, n, formatCounts(outcomes(tl)))))
}

// Case 9: SIGTERM under load. The daemon turns not ready at once, lets the calls in flight
// finish and publish, hands the rest back, and exits 0 within SHUTDOWN_TIMEOUT; a new process
// takes over and nothing is lost or done twice.
func TestCase9SIGTERM(t *testing.T) {
	const n = 2000
	const shutdownTimeout = 10 * time.Second
	env := map[string]string{"SHUTDOWN_TIMEOUT": shutdownTimeout.String()}
	w, reqs, d := usualCase(t, "sigterm", n, "daemon-1", env)

	began := time.Now()
	w.publishUntil30(reqs)
	// Slow calls from now on, so that calls are in flight when SIGTERM comes.
	const slow = 800 * time.Millisecond
	if err := w.fake.Update(func(o *kombotest.Options) { o.Latency, o.LatencyJitter = slow, 0 }); err != nil {
		t.Fatal(err)
	}
	switched := time.Now()
	var inFlight []string
	testkit.WaitFor(t, 10*time.Second, "only slow calls in flight", func() bool {
		inFlight = nil
		for _, c := range w.fake.Calls() {
			if c.Method == http.MethodDelete && c.End.IsZero() {
				if c.Start.Before(switched) {
					return false
				}
				inFlight = append(inFlight, c.ID)
			}
		}
		return len(inFlight) > 0
	})
	inFlight = w.inFlightIDs()
	atSignal := resultCount(w.js)
	d.signal(syscall.SIGTERM)
	signalled := time.Now()
	var notReadyAfter time.Duration = -1
	for !d.exited() {
		if code, _ := d.get("/readyz"); code == http.StatusServiceUnavailable {
			notReadyAfter = time.Since(signalled)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	code := d.wait(shutdownTimeout + 5*time.Second)
	exitAfter := time.Since(signalled)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if exitAfter > shutdownTimeout {
		t.Errorf("exited %s after SIGTERM, want within SHUTDOWN_TIMEOUT %s", exitAfter, shutdownTimeout)
	}
	if notReadyAfter < 0 || notReadyAfter > 500*time.Millisecond {
		t.Errorf("/readyz did not answer 503 within 500ms of SIGTERM (after %s)", notReadyAfter)
	}
	afterExit := resultCount(w.js)
	// The calls in flight at SIGTERM finished, and their results were stored before the exit.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored, err := storedResults(ctx, w.js)
	if err != nil {
		t.Fatal(err)
	}
	byIntegration := map[string]bool{}
	for _, r := range stored {
		byIntegration[r.IntegrationID] = true
	}
	unfinished := 0
	for _, id := range inFlight {
		if !byIntegration[id] {
			unfinished++
		}
	}
	if unfinished > 0 {
		t.Errorf("%d of the %d calls in flight at SIGTERM have no stored result when the process has exited", unfinished, len(inFlight))
	}

	if err := w.fake.Update(func(o *kombotest.Options) { o.Latency, o.LatencyJitter = 10*time.Millisecond, 10*time.Millisecond }); err != nil {
		t.Fatal(err)
	}
	w.start("daemon-2", env)
	tl, took := w.finish(t, reqs, began)

	calls := w.deleteCalls()
	twice := 0
	for _, id := range inFlight {
		if len(calls[id]) != 1 {
			twice++
		}
	}
	if twice > 0 {
		t.Errorf("%d of the calls in flight at SIGTERM were made again by the next process", twice)
	}
	repeated := 0
	for _, cs := range calls {
		if len(cs) > 1 {
			repeated++
		}
	}
	report(t, w.figures("9 SIGTERM under load, new process takes over", tl, n, took,
		fmt.Sprintf("exit %d after %.2fs (SHUTDOWN_TIMEOUT %s), not ready after %dms; %d calls in flight at SIGTERM all stored "+
			"(%d→%d results); %d requests called twice; %s",
			code, exitAfter.Seconds(), shutdownTimeout, notReadyAfter.Milliseconds(), len(inFlight), atSignal, afterExit, repeated,
			formatCounts(outcomes(tl)))))
}

// usualCase makes a world with the usual Kombo and n requests named after prefix, and
// starts a daemon called name with the env overrides.
func usualCase(t *testing.T, prefix string, n int, name string, env map[string]string) (*world, []request, *daemon) {
	w := newWorld(t, usualKombo, nil)
	return w, requests(prefix, n), w.start(name, env)
}

// finish waits for the results of reqs, published from began on, checks that each request
// has one result and that all are deleted, and returns the tally and the time taken.
func (w *world) finish(t *testing.T, reqs []request, began time.Time) (tally, time.Duration) {
	t.Helper()
	tl := waitDone(t, w.js, ids(reqs), 3*time.Minute)
	took := time.Since(began)
	checkTally(t, tl, len(reqs))
	requireAllDeleted(t, tl)
	return tl, took
}

// figures is the figures row of a case that ran n requests.
func (w *world) figures(name string, tl tally, n int, took time.Duration, notes string) row {
	return row{Case: name, In: tl.in, Stored: tl.stored, Lost: tl.lost, Dup: tl.dup,
		CallsPerReq: deletesPerRequest(w.fake, n), Took: took, Notes: notes}
}
