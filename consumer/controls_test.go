package consumer

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testwait"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

const dryRunSubject = "integration.delete.dry_run"

// calls returns how many calls of method the fake received for integration id ("": any
// integration; key checks are not counted).
func (e *env) calls(method, id string) int {
	n := 0
	for _, c := range e.fake.Calls() {
		if c.Method == method && c.ID != "" && (id == "" || c.ID == id) {
			n++
		}
	}
	return n
}

// requestJSON publishes a request event given as JSON.
func (e *env) requestJSON(body string) { e.t.Helper(); e.publish([]byte(body), nil) }

// protect opens the protect list (bucket PROTECTED) with pattern in it.
func (e *env) protect(pattern, reason string) *control.Protect {
	e.t.Helper()
	ctx := context.Background()
	p, err := control.OpenProtect(ctx, e.js, "PROTECTED", 1, true)
	if err == nil {
		err = p.Add(ctx, control.Protection{Pattern: pattern, Reason: reason, By: "ops", AddedAt: time.Now()})
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func TestProtectedIDsFailWithoutACall(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kombotest.Options{})
	ctx := context.Background()
	e.protect("acme:*", "customer stays")
	r := e.start(nil, func(o *Options) { o.Controls.ProtectBucket = "PROTECTED" })
	e.request("acme:1")
	e.request("other:1")
	got := e.waitResults(2)
	if r := got["r-acme:1"]; r.Status != StatusFailed || r.Error.Code != codeProtected || r.Attempts != 0 ||
		!strings.Contains(r.Error.Message, `"acme:*"`) || !strings.Contains(r.Error.Message, "customer stays") {
		t.Errorf("protected request: %+v (error %+v), want failed DELETER.PROTECTED naming the pattern and reason, 0 attempts", r, r.Error)
	}
	if r := got["r-other:1"]; r.Status != StatusDeleted {
		t.Errorf("unprotected request: %+v, want deleted", r)
	}

	// Added while running, on another connection: the next request for it is refused.
	other, err := control.OpenProtect(ctx, e.js, "PROTECTED", 1, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Add(ctx, control.Protection{Pattern: "late:7", Reason: "legal hold", By: "ops", AddedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "the protection applied", func() bool { _, ok := r.c.protect.Match("late:7"); return ok })
	e.request("late:7")
	if r := e.waitResults(3)["r-late:7"]; r.Status != StatusFailed || r.Error.Code != codeProtected {
		t.Errorf("request protected while running: %+v, want failed DELETER.PROTECTED", r)
	}
	if n := e.calls("DELETE", "acme:1") + e.calls("DELETE", "late:7"); n != 0 {
		t.Errorf("Kombo received %d DELETEs of protected ids, want 0", n)
	}
}

func TestExpectChecksBeforeTheDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kombotest.Options{})
	for _, id := range []string{"personio:a", "personio:b", "personio:c"} {
		in := kombotest.DefaultIntegration(id)
		in.EndUser.OriginID = "acme-1"
		e.fake.SetIntegration(id, in)
	}
	e.fake.MarkMissing("personio:gone")
	e.start(nil)
	e.requestJSON(`{"integration_id":"personio:a","request_id":"match","expect":{"origin_id":"acme-1","tool":"personio"}}`)
	e.requestJSON(`{"integration_id":"personio:b","request_id":"origin","expect":{"origin_id":"acme-2"}}`)
	e.requestJSON(`{"integration_id":"personio:c","request_id":"tool","expect":{"tool":"workday"}}`)
	e.requestJSON(`{"integration_id":"personio:gone","request_id":"gone","expect":{"tool":"personio"}}`)
	e.requestJSON(`{"integration_id":"personio:a","request_id":"typo","expect":{"orign_id":"acme-1"}}`)
	got := e.waitResults(5)

	for id, field := range map[string]string{"origin": `origin_id: expected "acme-2", Kombo shows "acme-1"`,
		"tool": `tool: expected "workday", Kombo shows "personio"`} {
		if r := got[id]; r.Status != StatusFailed || r.Error.Code != codeMismatch || !strings.Contains(r.Error.Message, field) {
			t.Errorf("%s: %+v (error %+v), want failed DELETER.MISMATCH saying %s", id, r, r.Error, field)
		}
	}
	if r := got["match"]; r.Status != StatusDeleted || r.Attempts != 1 {
		t.Errorf("match: %+v, want deleted after one DELETE", r)
	}
	if r := got["gone"]; r.Status != StatusDeleted || r.NotFound == nil || !*r.NotFound || r.Attempts != 0 {
		t.Errorf("gone: %+v, want deleted, not_found, 0 DELETEs", r)
	}
	if r := got["typo"]; r.Status != StatusFailed || r.Error.Code != codeEventInvalid {
		t.Errorf("typo: %+v, want EVENT.INVALID (an expectation that cannot be read is never skipped)", r)
	}
	if gets, dels := e.calls("GET", ""), e.calls("DELETE", ""); gets != 4 || dels != 1 {
		t.Errorf("Kombo received %d GETs and %d DELETEs, want 4 and 1 (only the match deleted)", gets, dels)
	}
}

func TestDryRunNeverDeletes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kombotest.Options{})
	e.protect("kept:1", "r")
	e.fake.MarkMissing("gone:1")
	e.start(nil, func(o *Options) {
		o.DryRun, o.DryRunSubject, o.Controls.ProtectBucket = true, dryRunSubject, "PROTECTED"
		o.Stream.Consumer = "integration-deleter-dry-run"
	})
	for _, id := range []string{"personio:1", "gone:1", "kept:1", kombotest.PrefixInvalid + "1"} {
		e.request(id)
	}
	e.requestJSON(`{"integration_id":"personio:2","request_id":"r-mismatch","expect":{"tool":"workday"}}`)
	var got map[string]Result
	testwait.For(t, 20*time.Second, "5 dry-run results", func() bool { got = e.dryResults(); return len(got) == 5 })
	want := map[string]string{"r-personio:1": statusWouldDelete, "r-gone:1": statusNotFound, "r-kept:1": StatusFailed,
		"r-" + kombotest.PrefixInvalid + "1": StatusFailed, "r-mismatch": StatusFailed}
	for id, status := range want {
		if got[id].Status != status {
			t.Errorf("%s: %+v, want %s", id, got[id], status)
		}
	}
	if in := got["r-personio:1"].Integration; in == nil || in.Tool != "personio" || in.OriginID != "origin-personio:1" {
		t.Errorf("would_delete tells %+v of the integration, want its tool and origin id", in)
	}
	if n := e.calls("DELETE", ""); n != 0 {
		t.Errorf("a dry run made %d DELETE calls, want 0", n)
	}
	if rs := e.storedResults(); len(rs) != 0 {
		t.Errorf("a dry run stored real results %+v", rs)
	}
}

// dryResults reads the dry-run results by request id, checking their message ids.
func (e *env) dryResults() map[string]Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	oc, err := e.js.OrderedConsumer(ctx, streamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{dryRunSubject}})
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]Result{}
	for {
		batch, err := oc.FetchNoWait(100)
		if err != nil {
			e.t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			var r Result
			if err := json.Unmarshal(m.Data(), &r); err != nil {
				e.t.Fatal(err)
			}
			if got := m.Headers().Get(jetstream.MsgIDHeader); got != "dryrun-"+r.RequestID {
				e.t.Errorf("dry-run result %s has Nats-Msg-Id %q", r.RequestID, got)
			}
			out[r.RequestID] = r
		}
		if n == 0 {
			return out
		}
	}
}

func TestFuseStopsTheCallThatWouldExceedIt(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kombotest.Options{Latency: 5 * time.Millisecond})
	ctx := context.Background()
	r := e.start(nil, func(o *Options) {
		o.Controls = Controls{FuseStream: streamName + "_FUSE", FuseCalls: 5, FuseWindow: time.Hour}
	})
	for i := range 8 {
		e.request("fused:" + string(rune('a'+i)))
	}
	testwait.For(t, 10*time.Second, "the fuse to trip", func() bool { return r.c.PauseState().Fuse() })
	st, err := control.ReadPause(ctx, e.js, "LEDGER", streamName, "integration-deleter")
	if err != nil || !st.Paused || !strings.HasPrefix(st.Reason, control.FusePrefix) {
		t.Fatalf("on the server: %+v, %v; want paused with the fuse's reason", st, err)
	}
	if v := gaugeValue(t, r.c.m.fuseTripped); v != 1 {
		t.Errorf("fuse_tripped = %v, want 1", v)
	}
	if n := e.calls("DELETE", ""); n != 5 {
		t.Errorf("Kombo received %d DELETEs, want exactly the fuse's 5", n)
	}

	// resume re-arms the fuse with a fresh window: the rest finish.
	if err := control.ResetFuse(ctx, e.js, streamName+"_FUSE"); err != nil {
		t.Fatal(err)
	}
	e.resumeAndFinish(8)
	if v := gaugeValue(t, r.c.m.fuseTripped); v != 0 {
		t.Errorf("fuse_tripped after resume = %v, want 0", v)
	}
}

func TestPauseStopsCallsOfHeldMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kombotest.Options{Latency: 50 * time.Millisecond, ConcurrencyLimit: 1})
	ctx := context.Background()
	r := e.start(nil, func(o *Options) { o.MaxConcurrency = 1 })
	for i := range 6 {
		e.request("held:" + string(rune('a'+i)))
	}
	testwait.For(t, 10*time.Second, "the first DELETE", func() bool { return e.calls("DELETE", "") > 0 })
	if _, err := control.Pause(ctx, e.js, "LEDGER", streamName, "integration-deleter", "incident 42", "ops", time.Time{}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, time.Second, "the pause seen", func() bool { return r.c.PauseState().Paused })
	if err := r.c.Ready(); err != nil {
		t.Errorf("Ready() while paused by an operator = %v, want nil (healthy, paused)", err)
	}
	// The call in flight when the pause was seen may finish; none starts after (watched
	// for half a second: an absence has no event to wait for).
	atPause := e.calls("DELETE", "")
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if n := e.calls("DELETE", ""); n > atPause+1 {
			t.Fatalf("%d DELETEs started after the pause was seen (%d then)", n, atPause)
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.resumeAndFinish(6)
	if v := gaugeValue(t, r.c.m.consumerPaused); v != 0 {
		t.Errorf("consumer_paused after resume = %v, want 0", v)
	}
}

// resumeAndFinish resumes the consumer and waits for n results, all deleted.
func (e *env) resumeAndFinish(n int) {
	e.t.Helper()
	if _, err := control.Resume(context.Background(), e.js, "LEDGER", streamName, "integration-deleter"); err != nil {
		e.t.Fatal(err)
	}
	for id, res := range e.waitResults(n) {
		if res.Status != StatusDeleted {
			e.t.Errorf("%s after resume: %+v, want deleted", id, res)
		}
	}
}

func TestRetryOfIsEchoed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kombotest.Options{})
	e.start(nil)
	e.requestJSON(`{"integration_id":"personio:r","request_id":"orig.retry1","retry_of":"orig"}`)
	if r := e.waitResults(1)["orig.retry1"]; r.RetryOf != "orig" {
		t.Errorf("result %+v, want retry_of orig", r)
	}
}

// TestFuseStreamDeletedIsCreatedAgain: the fuse's stream deleted under a running consumer
// (provisioning on) is created again, and requests go on; none is lost meanwhile.
func TestFuseStreamDeletedIsCreatedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, kombotest.Options{})
	e.start(nil, func(o *Options) {
		o.Controls = Controls{FuseStream: streamName + "_FUSE", FuseCalls: 100, FuseWindow: time.Hour}
	})
	e.request("fz:1")
	e.waitResults(1)
	if err := e.js.DeleteStream(context.Background(), streamName+"_FUSE"); err != nil {
		t.Fatal(err)
	}
	e.request("fz:2")
	e.request("fz:3")
	for id, r := range e.waitResults(3) {
		if r.Status != StatusDeleted {
			t.Errorf("%s: %+v, want deleted", id, r)
		}
	}
	if _, err := e.js.Stream(context.Background(), streamName+"_FUSE"); err != nil {
		t.Errorf("the fuse's stream after: %v, want it there again", err)
	}
}
