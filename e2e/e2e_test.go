package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// TestMixedBatch: a batch of requests of every kind ends in the right deleted and failed
// events, one per request, and Kombo sees exactly the calls it should.
func TestMixedBatch(t *testing.T) {
	ctx := begin(t, 3*time.Minute, natsImage, fakeImage, deleterImage)

	n := startNATS(t, ctx)
	f := startFake(t, ctx, nil)
	d := startDeleter(t, ctx, n, f, nil)
	b := connect(t, n)

	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	type want struct {
		integrationID string
		status        string // deleted or failed
		notFound      bool
		code          string // error.code of a failed result
		httpStatus    int
		attempts      int
		deletes       int // DELETE calls Kombo receives for the integration id
	}
	wants := map[string]want{}
	for i := range 8 {
		id := fmt.Sprintf("ok-%02d", i)
		wants[id] = want{integrationID: "personio:" + id, status: "deleted", attempts: 1, deletes: 1}
		var h nats.Header
		if i == 0 {
			h = nats.Header{"traceparent": {"00-" + traceID + "-00f067aa0ba902b7-01"}}
		}
		b.publish(t, ctx, mustJSON(t, request{IntegrationID: "personio:" + id, RequestID: id,
			RequestedBy: "e2e", Reason: "mixed batch"}), h)
	}
	for id, w := range map[string]want{
		"missing": {integrationID: "missing:gone", status: "deleted", notFound: true, attempts: 1, deletes: 1},
		"invalid": {integrationID: "invalid:refused", status: "failed", code: "PLATFORM.INPUT_INVALID", httpStatus: 400, attempts: 1, deletes: 1},
		"flaky":   {integrationID: "flaky:twice", status: "deleted", attempts: 3, deletes: 3},
		// An id that would change the URL's path unless it is escaped as one segment.
		"escaped": {integrationID: "../a/b?c#d", status: "deleted", attempts: 1, deletes: 1},
		// Invalid events: nothing goes to Kombo.
		"ctrl": {integrationID: "personio:\u0007bell", status: "failed", code: "EVENT.INVALID", attempts: 0},
	} {
		wants[id] = w
		b.request(t, ctx, request{IntegrationID: w.integrationID, RequestID: id})
	}
	// The request id comes from Nats-Msg-Id when the event has none, ...
	b.publish(t, ctx, []byte(`{"integration_id": ""}`), nats.Header{"Nats-Msg-Id": {"bad-empty"}})
	wants["bad-empty"] = want{status: "failed", code: "EVENT.INVALID", attempts: 0}
	b.publish(t, ctx, []byte(`not json`), nats.Header{"Nats-Msg-Id": {"bad-json"}})
	wants["bad-json"] = want{status: "failed", code: "EVENT.INVALID", attempts: 0}
	// ... else from the stream and the sequence.
	seq := b.request(t, ctx, request{IntegrationID: "personio:by-seq"})
	bySeq := fmt.Sprintf("%s-%d", testkit.StreamName, seq)
	wants[bySeq] = want{integrationID: "personio:by-seq", status: "deleted", attempts: 1, deletes: 1}

	got := b.waitResults(t, ctx, time.Minute, len(wants))
	for id, w := range wants {
		r, ok := got[id]
		if !ok {
			t.Errorf("no result for request %q (results for %v)", id, keys(got))
			continue
		}
		if r.Status != w.status || r.IntegrationID != w.integrationID || r.WasNotFound() != w.notFound {
			t.Errorf("request %s: status %q, integration_id %q, not_found %v; want %q, %q, %v",
				id, r.Status, r.IntegrationID, r.WasNotFound(), w.status, w.integrationID, w.notFound)
		}
		if r.Attempts != w.attempts {
			t.Errorf("request %s: attempts = %d, want %d", id, r.Attempts, w.attempts)
		}
		wantSubject := map[string]string{"deleted": testkit.DeletedSubject, "failed": testkit.FailedSubject}[w.status]
		if r.subject != wantSubject {
			t.Errorf("request %s: result on %s, want %s", id, r.subject, wantSubject)
		}
		if got, want := r.header.Get("Nats-Msg-Id"), "result-"+id; got != want {
			t.Errorf("request %s: Nats-Msg-Id = %q, want %q", id, got, want)
		}
		if ts, err := time.Parse(time.RFC3339, r.CompletedAt); err != nil || !strings.HasSuffix(r.CompletedAt, "Z") || ts.IsZero() {
			t.Errorf("request %s: completed_at = %q, want RFC 3339 in UTC (Z)", id, r.CompletedAt)
		}
		switch {
		case w.status == "failed" && r.Error == nil:
			t.Errorf("request %s: failed without error", id)
		case w.status == "failed":
			if r.Error.Code != w.code || r.Error.Message == "" {
				t.Errorf("request %s: error %+v, want code %s and a message", id, *r.Error, w.code)
			}
			if w.httpStatus != 0 && r.Error.HTTPStatus != w.httpStatus {
				t.Errorf("request %s: error.http_status = %d, want %d", id, r.Error.HTTPStatus, w.httpStatus)
			}
		case r.Error != nil:
			t.Errorf("request %s: deleted with error %+v", id, *r.Error)
		}
	}
	if r := got["ok-03"]; r.RequestedBy != "e2e" || r.Reason != "mixed batch" {
		t.Errorf("requested_by %q, reason %q: not echoed", r.RequestedBy, r.Reason)
	}
	if tp := got["ok-00"].header.Get("traceparent"); !strings.Contains(tp, traceID) {
		t.Errorf("result traceparent = %q, want trace id %s kept", tp, traceID)
	}

	// What Kombo saw: the right DELETEs, each once (flaky: three times), none for invalid
	// events, and the trace carried.
	deletes := f.deletes(t)
	var total int
	for _, w := range wants {
		total += w.deletes
		if deletes[w.integrationID] != w.deletes && w.integrationID != "" {
			t.Errorf("Kombo got %d DELETEs of %q, want %d", deletes[w.integrationID], w.integrationID, w.deletes)
		}
	}
	var sum int
	for _, c := range deletes {
		sum += c
	}
	if sum != total {
		t.Errorf("Kombo got %d DELETEs, want %d: %v", sum, total, deletes)
	}
	for _, c := range f.calls(t) {
		if c.ID == "personio:ok-00" && !strings.Contains(c.Header.Get("Traceparent"), traceID) {
			t.Errorf("the DELETE of personio:ok-00 has traceparent %q, want trace id %s", c.Header.Get("Traceparent"), traceID)
		}
		if ua := c.Header.Get("User-Agent"); !strings.HasPrefix(ua, "integration-deleter/") {
			t.Errorf("User-Agent = %q, want integration-deleter/<version>", ua)
		}
	}

	b.waitIdle(t, ctx, 30*time.Second)
	if v := d.metric(t, "integration_deleter_requests_total"); int(v) != len(wants) {
		t.Errorf("integration_deleter_requests_total = %v, want %d", v, len(wants))
	}

	// The image's own CLI publishes requests and, with --wait, prints their results; a failed
	// one makes it exit 1.
	code, out := runOnce(t, ctx, "integration-deleter request", deleterImage, map[string]string{"NATS_URL": n.url()},
		"request", "--wait", "--timeout", "1m", "personio:cli-ok", "invalid:cli-refused")
	if code != 1 || !strings.Contains(out, `"status":"deleted"`) || !strings.Contains(out, `"status":"failed"`) {
		t.Errorf("request --wait personio:cli-ok invalid:cli-refused: exit %d, want 1 with a deleted and a failed result:\n%s", code, out)
	}
}

// TestConcurrencyLimitBelowCap: Kombo allows fewer calls at once than the daemon's cap. Every
// request is still deleted, and the daemon's cap shrinks.
func TestConcurrencyLimitBelowCap(t *testing.T) {
	ctx := begin(t, 3*time.Minute, natsImage, fakeImage, deleterImage)

	const maxCap, limit, requests = 8, 2, 30
	n := startNATS(t, ctx)
	f := startFake(t, ctx, map[string]string{
		"FAKE_KOMBO_CONCURRENCY_LIMIT": fmt.Sprint(limit),
		"FAKE_KOMBO_LATENCY":           "200ms",
	})
	// Two attempts only: answers that are not the request's fault must not use them up.
	d := startDeleter(t, ctx, n, f, map[string]string{
		"KOMBO_MAX_CONCURRENCY": fmt.Sprint(maxCap),
		"KOMBO_MAX_ATTEMPTS":    "2",
	})
	b := connect(t, n)
	if c := d.metric(t, "integration_deleter_concurrency_cap"); c != maxCap {
		t.Errorf("concurrency cap at start = %v, want %d", c, maxCap)
	}

	// Watch the cap while the batch runs.
	var (
		mu           sync.Mutex
		minCap       = float64(maxCap)
		maxSeen      float64
		stop         = make(chan struct{})
		watcherEnded sync.WaitGroup
	)
	watcherEnded.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			m, err := testkit.ScrapeMetrics(ctx, fmt.Sprintf("http://127.0.0.1:%d/metrics", d.httpPort))
			if v, ok := m.Sum("integration_deleter_concurrency_cap"); err == nil && ok {
				mu.Lock()
				minCap, maxSeen = min(minCap, v), max(maxSeen, v)
				mu.Unlock()
			}
		}
	})
	var batch []request
	for i := range requests {
		batch = append(batch, request{IntegrationID: fmt.Sprintf("personio:cap-%02d", i), RequestID: fmt.Sprintf("cap-%02d", i)})
	}
	b.burst(t, ctx, batch)
	got := b.waitResults(t, ctx, 2*time.Minute, requests)
	close(stop)
	watcherEnded.Wait()

	for id, r := range got {
		if r.Status != "deleted" || r.WasNotFound() {
			t.Errorf("request %s: %s (not_found %v, error %+v), want deleted", id, r.Status, r.WasNotFound(), r.Error)
		}
	}
	st := f.stats(t)
	// Kombo's answers carry Concurrency-Limit: a daemon may learn the limit from them without
	// ever being refused. Either way Kombo must never see more than its limit for long, and the
	// cap must come down to it.
	if st.MaxInFlight > limit && st.RejectedConcurrency == 0 {
		t.Errorf("Kombo saw %d calls in flight (limit %d) without refusing any: the fake did not limit", st.MaxInFlight, limit)
	}
	if st.Deleted != requests {
		t.Errorf("Kombo deleted %d integrations, want %d", st.Deleted, requests)
	}
	mu.Lock()
	defer mu.Unlock()
	if minCap > limit {
		t.Errorf("the concurrency cap never came down to Kombo's limit %d (lowest %v; Kombo rejected %d calls for concurrency)", limit, minCap, st.RejectedConcurrency)
	}
	if maxSeen > maxCap {
		t.Errorf("the concurrency cap reached %v, above KOMBO_MAX_CONCURRENCY %d", maxSeen, maxCap)
	}
	if st.RejectedConcurrency > 0 { // the series exists once such an answer came
		calls429 := d.metric(t, "integration_deleter_kombo_calls_total", `code="PLATFORM.CONCURRENCY_LIMIT_EXCEEDED"`)
		if int(calls429) != st.RejectedConcurrency {
			t.Errorf("the daemon counted %v calls with CONCURRENCY_LIMIT_EXCEEDED; Kombo answered %d", calls429, st.RejectedConcurrency)
		}
	}
	t.Logf("cap went down to %v; Kombo rejected %d of %d calls for concurrency, at most %d in flight",
		minCap, st.RejectedConcurrency, st.Deletes, st.MaxInFlight)
}

// TestStopUnderLoad: `docker stop` (SIGTERM) of the daemon in the middle of a batch exits 0
// in time; a new container takes over, and every request ends with one result and one DELETE.
func TestStopUnderLoad(t *testing.T) {
	ctx := begin(t, 3*time.Minute, natsImage, fakeImage, deleterImage)

	const requests = 40
	const shutdownTimeout = 10 * time.Second
	n := startNATS(t, ctx)
	f := startFake(t, ctx, map[string]string{"FAKE_KOMBO_LATENCY": "300ms"})
	env := map[string]string{"KOMBO_MAX_CONCURRENCY": "4", "SHUTDOWN_TIMEOUT": shutdownTimeout.String()}
	first := startDeleter(t, ctx, n, f, env)
	b := connect(t, n)
	for i := range requests {
		b.request(t, ctx, request{IntegrationID: fmt.Sprintf("personio:stop-%02d", i), RequestID: fmt.Sprintf("stop-%02d", i)})
	}
	b.waitSomeResults(t, ctx, 6)

	began := time.Now()
	grace := 30 * time.Second
	if err := first.ctr.Stop(ctx, &grace); err != nil {
		t.Fatalf("docker stop: %v", err)
	}
	took := time.Since(began)
	state, err := first.ctr.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if state.ExitCode != 0 || state.OOMKilled {
		t.Errorf("the daemon exited %d (OOM killed: %v) after SIGTERM, want 0", state.ExitCode, state.OOMKilled)
	}
	if took > shutdownTimeout+5*time.Second {
		t.Errorf("docker stop took %s, want within SHUTDOWN_TIMEOUT (%s) and a little", took, shutdownTimeout)
	}
	done, err := b.resultCount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if done >= requests {
		t.Fatalf("all %d requests were done before the stop: the test did not test", requests)
	}
	t.Logf("stopped in %s with %d of %d results published", took.Round(time.Millisecond), done, requests)

	startDeleter(t, ctx, n, f, env)
	got := b.waitResults(t, ctx, 2*time.Minute, requests)
	b.waitIdle(t, ctx, 30*time.Second)
	deletes := f.deletes(t)
	for i := range requests {
		id := fmt.Sprintf("stop-%02d", i)
		r := got[id]
		// A second DELETE of the same id would have answered not found.
		if r.Status != "deleted" || r.WasNotFound() {
			t.Errorf("request %s: %s (not_found %v, error %+v), want deleted", id, r.Status, r.WasNotFound(), r.Error)
		}
		if c := deletes["personio:"+id]; c != 1 {
			t.Errorf("Kombo got %d DELETEs of personio:%s, want 1", c, id)
		}
	}
}

// TestNATSRestart: the NATS container stops and starts again (same volume) while the daemon
// works. The daemon reports not ready meanwhile, recovers by itself, and nothing is lost.
func TestNATSRestart(t *testing.T) {
	ctx := begin(t, 3*time.Minute, natsImage, fakeImage, deleterImage)

	const before, after = 30, 10
	n := startNATS(t, ctx)
	f := startFake(t, ctx, map[string]string{"FAKE_KOMBO_LATENCY": "100ms"})
	d := startDeleter(t, ctx, n, f, map[string]string{"KOMBO_MAX_CONCURRENCY": "4"})
	b := connect(t, n)
	for i := range before {
		b.request(t, ctx, request{IntegrationID: fmt.Sprintf("personio:nats-%02d", i), RequestID: fmt.Sprintf("nats-%02d", i)})
	}
	b.waitSomeResults(t, ctx, 5)

	grace := 10 * time.Second
	if err := n.ctr.Stop(ctx, &grace); err != nil {
		t.Fatalf("stop NATS: %v", err)
	}
	testkit.Eventually(t, 30*time.Second, "/readyz to answer 503 while NATS is down", func() (bool, string) {
		status, body := d.get(t, "/readyz")
		return status == http.StatusServiceUnavailable, fmt.Sprintf("%d %s", status, body)
	})
	if status, body := d.get(t, "/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while NATS is down: %d %s, want 200 (the process works)", status, body)
	}
	if err := n.ctr.Start(ctx); err != nil { // waits for JetStream again
		t.Fatalf("start NATS again: %v", err)
	}
	testkit.Eventually(t, time.Minute, "/readyz to answer 200 after NATS is back", func() (bool, string) {
		status, body := d.get(t, "/readyz")
		return status == http.StatusOK, fmt.Sprintf("%d %s", status, body)
	})
	for i := range after {
		b.request(t, ctx, request{IntegrationID: fmt.Sprintf("personio:nats-after-%02d", i), RequestID: fmt.Sprintf("nats-after-%02d", i)})
	}

	got := b.waitResults(t, ctx, 2*time.Minute, before+after)
	b.waitIdle(t, ctx, 30*time.Second)
	for id, r := range got {
		if r.Status != "deleted" {
			t.Errorf("request %s: %s (error %+v), want deleted", id, r.Status, r.Error)
		}
	}
	if st := f.stats(t); st.Deleted != before+after {
		t.Errorf("Kombo deleted %d integrations, want %d", st.Deleted, before+after)
	}
}

// TestReadyzWhileKeyRejected: while Kombo rejects the key, /readyz (through the container's
// port) answers 503, the daemon probes the key instead of deleting, and publishes no failure;
// once the key is accepted again it is ready and the request is deleted.
func TestReadyzWhileKeyRejected(t *testing.T) {
	ctx := begin(t, 3*time.Minute, natsImage, fakeImage, deleterImage)

	n := startNATS(t, ctx)
	f := startFake(t, ctx, nil)
	d := startDeleter(t, ctx, n, f, map[string]string{"AUTH_PROBE_INTERVAL": "250ms"})
	b := connect(t, n)

	f.configure(t, map[string]any{"RejectKey": true})
	b.request(t, ctx, request{IntegrationID: "personio:auth-1", RequestID: "auth-1"})
	testkit.Eventually(t, 30*time.Second, "/readyz to answer 503 while the key is rejected", func() (bool, string) {
		status, body := d.get(t, "/readyz")
		return status == http.StatusServiceUnavailable, fmt.Sprintf("%d %s", status, body)
	})
	if status, body := d.get(t, "/healthz"); status != http.StatusOK {
		t.Errorf("/healthz while paused: %d %s, want 200", status, body)
	}
	probes := f.stats(t).CheckAPIKey
	testkit.Eventually(t, 30*time.Second, "the daemon to probe the key", func() (bool, string) {
		s := f.stats(t)
		return s.CheckAPIKey >= probes+2, fmt.Sprintf("%d key checks", s.CheckAPIKey)
	})
	if c := f.deletes(t)["personio:auth-1"]; c != 1 {
		t.Errorf("Kombo got %d DELETEs of personio:auth-1 while the key was rejected, want 1 (then key checks)", c)
	}
	if c, err := b.resultCount(ctx); err != nil || c != 0 {
		t.Errorf("%d results (%v) while the key is rejected, want none: it is not the request's fault", c, err)
	}

	f.configure(t, map[string]any{"RejectKey": false})
	testkit.Eventually(t, 30*time.Second, "/readyz to answer 200 once the key is accepted", func() (bool, string) {
		status, body := d.get(t, "/readyz")
		return status == http.StatusOK, fmt.Sprintf("%d %s", status, body)
	})
	got := b.waitResults(t, ctx, time.Minute, 1)
	if r := got["auth-1"]; r.Status != "deleted" || r.WasNotFound() {
		t.Errorf("request auth-1: %+v, want deleted", r)
	}
	b.waitIdle(t, ctx, 30*time.Second)
}

// TestExitCodes: a configuration error exits 2 before anything connects, and says which
// variable is wrong; `version` exits 0 and prints the version the image was built with.
func TestExitCodes(t *testing.T) {
	ctx := begin(t, time.Minute, deleterImage)

	version := imageLabel(t, deleterImage, "org.opencontainers.image.version")
	if version == "" {
		t.Fatalf("%s has no org.opencontainers.image.version label: rebuild it with `make images`", deleterImage)
	}
	for _, tc := range []struct {
		name     string
		cmd      []string
		env      map[string]string
		wantCode int
		wantLogs []string
	}{
		{"bad config", []string{"run"}, map[string]string{"KOMBO_MAX_CONCURRENCY": "0", "HTTP_ADDR": "127.0.0.1:0"},
			2, []string{"KOMBO_API_KEY", "KOMBO_MAX_CONCURRENCY"}},
		// The version stamped into the binary is the one the image is labelled with.
		{"version", []string{"version"}, nil, 0, []string{version}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runOnce(t, ctx, "integration-deleter "+tc.name, deleterImage, tc.env, tc.cmd...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			if strings.TrimSpace(out) == "" {
				t.Error("no output")
			}
			for _, w := range tc.wantLogs {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %s:\n%s", w, out)
				}
			}
		})
	}
}

// runOnce runs a container of image with cmd to its end, and returns its exit code and output.
func runOnce(t *testing.T, ctx context.Context, name, image string, env map[string]string, cmd ...string) (int, string) {
	t.Helper()
	ctr := start(t, ctx, name, image, testcontainers.WithCmd(cmd...), testcontainers.WithEnv(env),
		testcontainers.WithWaitStrategy(wait.ForExit().WithExitTimeout(time.Minute)))
	state, err := ctr.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return state.ExitCode, logs(ctr, 100)
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
