package main

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// startDaemon runs the daemon in-process on s and a fake Kombo until t ends.
func startDaemon(t *testing.T, s *server) *kombotest.Fake {
	t.Helper()
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	daemonEnv := map[string]string{"KOMBO_API_KEY": apiKey, "KOMBO_BASE_URL": base, "HTTP_ADDR": "127.0.0.1:0",
		"LOG_LEVEL": "debug", "LOG_FORMAT": "json", "SHUTDOWN_TIMEOUT": "5s", "KOMBO_BACKOFF_INITIAL": "10ms"}
	for k, v := range daemonEnv {
		s.env[k] = v
	}
	var logs testkit.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"run"}, s.with(nil), io.Discard, &logs) }()
	t.Cleanup(func() {
		if err := testkit.StopRun(t, cancel, done, 15*time.Second); err != nil {
			t.Errorf("the daemon: %v", err)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs.String())
		}
	})
	addr := waitListening(t, &logs, done)
	if err := testkit.WaitReady(ctx, "http://"+addr+"/readyz", 10*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	return fake
}

// TestFailedRetryStatus is the round trip: a batch with failures, failed lists them, retry
// --failed re-requests them (Kombo now succeeds), status shows the originals failed and
// the retries deleted; a second retry finds nothing to do.
func TestFailedRetryStatus(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	fake := startDaemon(t, s)
	fake.Script("acme:f1", kombotest.InputInvalid())
	fake.Script("acme:f2", kombotest.Raw(http.StatusConflict, "application/json", `{"status":"error","error":{"code":"INTEGRATION.LOCKED","message":"locked"}}`))

	o := runIn(t, s.with(nil), "request", "--wait", "--timeout", "20s", "--reason", "offboarding", "acme:ok", "acme:f1", "acme:f2")
	if o.exit() != 1 {
		t.Fatalf("request --wait = %v, want exit 1 (two failed)\n%s", o.err, o.stdout)
	}
	first := resultLines(t, o.stdout) // acme:f1, acme:f2, acme:ok
	orig := map[string]string{}
	for _, r := range first {
		orig[r.IntegrationID] = r.RequestID
	}

	// failed lists the two, oldest first; --code selects.
	lines := jsonLines(t, s.mustRun(t, "failed", "--since", "1h", "--json"))
	var listed []string
	for _, l := range lines {
		listed = append(listed, l["request_id"].(string))
		if l["status"] != "failed" || l["reason"] != "offboarding" || l["error"] == nil {
			t.Errorf("failed --json printed %v, want the failed result as published", l)
		}
	}
	if want := []string{orig["acme:f1"], orig["acme:f2"]}; !sameSet(listed, want) {
		t.Fatalf("failed listed %q, want %q", listed, want)
	}
	if out := s.mustRun(t, "failed", "--code", "PLATFORM.INPUT_INVALID"); !strings.Contains(out, orig["acme:f1"]) || strings.Contains(out, orig["acme:f2"]) {
		t.Errorf("failed --code PLATFORM.INPUT_INVALID printed:\n%s", out)
	}
	if out := s.mustRun(t, "failed", "--since", "1h", "--code", "NOPE", "--json"); out != "" {
		t.Errorf("failed --code NOPE printed %q", out)
	}

	// retry --failed: new ids, then their results, deleted and carrying retry_of.
	o = runIn(t, s.with(nil), "retry", "--failed", "--since", "1h", "--wait", "--timeout", "20s", "--json")
	if o.err != nil {
		t.Fatalf("retry --failed --wait = %v\nstdout:\n%s\nstderr:\n%s", o.err, o.stdout, o.stderr)
	}
	out := strings.SplitAfter(o.stdout, "\n")
	if len(out) < 2 {
		t.Fatalf("retry printed %q", o.stdout)
	}
	ids := jsonLines(t, strings.Join(out[:2], ""))
	for _, id := range ids {
		if len(id) != 2 || id["request_id"] != id["retry_of"].(string)+".retry1" {
			t.Errorf("retry printed %v, want {request_id: <original>.retry1, retry_of: <original>}", id)
		}
	}
	for _, r := range resultLines(t, strings.Join(out[2:], "")) {
		if r.Status != consumer.StatusDeleted || r.RetryOf != orig[r.IntegrationID] || r.RequestID != r.RetryOf+".retry1" ||
			r.Reason != "offboarding" || r.RequestedBy != "integration-deleter-cli" {
			t.Errorf("the retry's result %+v: want deleted, retry_of the original, reason and requested_by carried over", r)
		}
	}
	if n := len(fake.CallsFor("acme:f1")); n != 2 {
		t.Errorf("%d calls for acme:f1, want 2 (the failed one and the retry)", n)
	}

	// status: the originals failed, the retries deleted; unknown for what was never sent.
	lines = jsonLines(t, s.mustRun(t, "status", "--json", orig["acme:f1"], orig["acme:f1"]+".retry1", orig["acme:ok"], "never-sent"))
	want := []map[string]any{
		{"request_id": orig["acme:f1"], "status": "failed", "integration_id": "acme:f1", "code": "PLATFORM.INPUT_INVALID", "attempts": 1.0},
		{"request_id": orig["acme:f1"] + ".retry1", "status": "deleted", "integration_id": "acme:f1", "code": nil, "attempts": 1.0},
		{"request_id": orig["acme:ok"], "status": "deleted", "integration_id": "acme:ok", "code": nil, "attempts": 1.0},
		{"request_id": "never-sent", "status": "unknown", "integration_id": nil, "code": nil, "attempts": nil, "completed_at": nil},
	}
	for i, l := range lines {
		if i < 3 {
			if _, err := time.Parse(time.RFC3339, l["completed_at"].(string)); err != nil {
				t.Errorf("status %v: completed_at: %v", l, err)
			}
			delete(l, "completed_at")
		}
		if i >= len(want) || !equalJSON(l, want[i]) {
			t.Errorf("status line %d = %v, want %v", i, l, want)
		}
	}
	if out := s.mustRun(t, "status", orig["acme:f2"]); !strings.Contains(out, "failed") || !strings.Contains(out, "INTEGRATION.LOCKED") {
		t.Errorf("status printed:\n%s", out)
	}

	// Nothing left to retry: skipped (retried already), exit 0, nothing published.
	o = runIn(t, s.with(nil), "retry", "--failed", "--since", "1h")
	if o.err != nil || o.stdout != "" || strings.Count(o.stderr, "retried already as") != 2 {
		t.Errorf("a second retry --failed = %v, stdout %q, stderr %q; want both skipped", o.err, o.stdout, o.stderr)
	}
	// Not failed: refused, exit 1.
	for _, id := range []string{orig["acme:ok"], "never-sent", orig["acme:f1"] + ".retry1"} {
		o = runIn(t, s.with(nil), "retry", id)
		if o.exit() != 1 || o.stdout != "" || !strings.Contains(o.stderr, "is not retried") {
			t.Errorf("retry %s = %v, stdout %q, stderr %q; want exit 1, refused", id, o.err, o.stdout, o.stderr)
		}
	}
	if n := len(fake.CallsFor("acme:f1")); n != 2 {
		t.Errorf("%d calls for acme:f1 after the refused retries, want 2", n)
	}
}

// TestStatusPendingAndScoped: a claimed request without an outcome is pending, and a
// "<stream>-<seq>" request id is found under the current incarnation of the stream.
func TestStatusPendingAndScoped(t *testing.T) {
	t.Parallel()
	s := provisioned(t)
	ctx := t.Context()
	l, _, err := ledger.Open(ctx, s.js, ledger.Options{Bucket: ledgerBucket})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.js.Stream(ctx, streamName)
	if err != nil {
		t.Fatal(err)
	}
	scoped := ledger.IDOf(streamName+"-7", streamName, ledger.Incarnation(st.CachedInfo().Created))
	if scoped.Scope == "" {
		t.Fatal("the fallback id is not scoped")
	}
	for _, id := range []ledger.ID{{Request: "req-1"}, scoped} {
		if _, err := l.Claim(ctx, id, "personio:a", "test", time.Now(), time.Minute, true); err != nil {
			t.Fatal(err)
		}
	}
	lines := jsonLines(t, s.mustRun(t, "status", "--json", "req-1", streamName+"-7", streamName+"-8"))
	want := []map[string]any{
		{"request_id": "req-1", "status": "pending", "integration_id": "personio:a", "code": nil, "attempts": 1.0, "completed_at": nil},
		{"request_id": streamName + "-7", "status": "pending", "integration_id": "personio:a", "code": nil, "attempts": 1.0, "completed_at": nil},
		{"request_id": streamName + "-8", "status": "unknown", "integration_id": nil, "code": nil, "attempts": nil, "completed_at": nil},
	}
	for i := range want {
		if i >= len(lines) || !equalJSON(lines[i], want[i]) {
			t.Errorf("status printed %v, want %v", lines, want)
			break
		}
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

func equalJSON(a, b map[string]any) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range b {
		if w, ok := a[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRetryNeverDropsAnExpectation: a request that failed DELETER.MISMATCH is not retried (a
// retry would carry no "expect" and delete the integration Kombo showed); named, it is
// refused with exit 1; in a sweep of --failed it is skipped; either way nothing is published
// and Kombo gets no DELETE.
func TestRetryNeverDropsAnExpectation(t *testing.T) {
	t.Parallel()
	s := startServer(t)
	fake := startDaemon(t, s)
	if _, err := s.js.Publish(t.Context(), "integration.delete.requested",
		[]byte(`{"integration_id":"acme:m","request_id":"mm-1","expect":{"tool":"workday"}}`)); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 20*time.Second, "mm-1 to fail", func() bool {
		return strings.Contains(s.mustRun(t, "status", "mm-1"), "DELETER.MISMATCH")
	})

	o := runIn(t, s.with(nil), "retry", "mm-1")
	if o.exit() != 1 || !strings.Contains(o.stderr, "never retried") || !strings.Contains(o.stderr, "expect") {
		t.Errorf("retry mm-1: exit %d, stderr %q; want exit 1 saying it is never retried and why", o.exit(), o.stderr)
	}
	o = runIn(t, s.with(nil), "retry", "--failed", "--since", "1h")
	if o.err != nil || o.stdout != "" || !strings.Contains(o.stderr, "mm-1 is skipped: never retried") {
		t.Errorf("retry --failed: %v, stdout %q, stderr %q; want mm-1 skipped, nothing published", o.err, o.stdout, o.stderr)
	}
	if st := s.mustRun(t, "status", "mm-1.retry1"); !strings.Contains(st, "unknown") {
		t.Errorf("status mm-1.retry1:\n%s\nwant unknown (never published)", st)
	}
	for _, c := range fake.Calls() {
		if c.Method == "DELETE" && c.ID == "acme:m" {
			t.Errorf("Kombo received a DELETE of acme:m: %+v", c)
		}
	}
}
