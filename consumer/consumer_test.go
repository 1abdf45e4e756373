package consumer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/internal/testwait"
	"github.com/kombo-ops/integration-deleter/kombo"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

const (
	deletedSubject = "integration.delete.deleted"
	failedSubject  = "integration.delete.failed"
	requestSubject = "integration.delete.requested"
	streamName     = "INTEGRATION_DELETE"
	apiKey         = "ks_test_secret"
)

// env is one test's world: a real NATS server, the fake Kombo over real HTTP, and a
// real Kombo client pointed at it.
type env struct {
	t      *testing.T
	nc     *nats.Conn
	js     jetstream.JetStream
	fake   *kombotest.Fake
	client *kombo.Client
	opts   Options
}

func newEnv(t *testing.T, fo kombotest.Options) *env {
	t.Helper()
	nc, js := testkit.JetStream(t, natstest.Start(t).ClientURL())
	fo.APIKey = apiKey
	fake, base := kombotest.NewServer(t, fo)
	client, err := kombo.New(kombo.Options{BaseURL: base, APIKey: apiKey, UserAgent: "integration-deleter/test", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, nc: nc, js: js, fake: fake, client: client, opts: testOptions(t)}
	// The stream exists before requests are published (the daemon only creates the
	// consumer here), as where another team owns it.
	if _, err := js.CreateStream(context.Background(), e.opts.Stream.streamConfig()); err != nil {
		t.Fatal(err)
	}
	return e
}

func testOptions(t *testing.T) Options {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return Options{
		Stream: StreamOptions{
			Provision: true, Name: streamName, Subjects: []string{"integration.delete.>"},
			Consumer: "integration-deleter", RequestSubject: requestSubject, Replicas: 1,
			DuplicateWindow: time.Minute, AckWait: 2 * time.Second, MaxDeliver: -1, MaxAckPending: 64,
		},
		Ledger:         ledger.Options{Bucket: "LEDGER", Provision: true, Replicas: 1},
		DeletedSubject: deletedSubject, FailedSubject: failedSubject,
		MaxConcurrency: 4, MaxAttempts: 3, RetryMaxElapsed: 20 * time.Second,
		BackoffInitial: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond,
		AuthProbeInterval: 50 * time.Millisecond, ShutdownTimeout: 5 * time.Second,
		pullWait: 500 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	}
}

// running is a consumer whose Run goes on in the background.
type running struct {
	c      *Consumer
	cancel context.CancelFunc
	done   chan error
}

func (e *env) start(d Deleter, mod ...func(*Options)) *running {
	e.t.Helper()
	return e.startPrepared(d, nil, mod...)
}

// startPrepared is start with prepare called on the consumer before Run.
func (e *env) startPrepared(d Deleter, prepare func(*Consumer), mod ...func(*Options)) *running {
	e.t.Helper()
	o := e.opts
	for _, m := range mod {
		m(&o)
	}
	if d == nil {
		d = e.client
	}
	c, err := New(e.js, d, o)
	if err != nil {
		e.t.Fatal(err)
	}
	if prepare != nil {
		prepare(c)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{c: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	e.t.Cleanup(func() { r.stop(e.t) })
	testwait.For(e.t, 10*time.Second, "consumer bound", func() bool { return c.Ready() == nil || isPaused(c) })
	return r
}

func isPaused(c *Consumer) bool {
	err := c.Ready()
	return err != nil && strings.Contains(err.Error(), "paused")
}

// stop cancels Run and returns its error; a second call returns nil.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	return testkit.StopRun(t, r.cancel, r.done, 15*time.Second)
}

// publish stores a raw request event with optional headers.
func (e *env) publish(payload []byte, hdr map[string]string) {
	e.t.Helper()
	m := nats.NewMsg(requestSubject)
	m.Data = payload
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
		e.t.Fatal(err)
	}
}

// request publishes a request for id with request_id "r-<id>" and returns that id.
func (e *env) request(id string) string {
	e.t.Helper()
	reqID := "r-" + id
	body, _ := json.Marshal(map[string]string{"integration_id": id, "request_id": reqID,
		"requested_by": "tester", "reason": "test"})
	e.publish(body, nil)
	return reqID
}

// storedResults reads every result stored in the stream, in order.
func (e *env) storedResults() []Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, streamName)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []Result
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		if m.Subject != deletedSubject && m.Subject != failedSubject {
			continue
		}
		var r Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			e.t.Fatalf("result at seq %d is not JSON: %v", seq, err)
		}
		if want := "result-" + r.RequestID; m.Header.Get(jetstream.MsgIDHeader) != want {
			e.t.Errorf("result %s has Nats-Msg-Id %q, want %q", r.RequestID, m.Header.Get(jetstream.MsgIDHeader), want)
		}
		if (m.Subject == deletedSubject) != (r.Status == StatusDeleted) {
			e.t.Errorf("result %s with status %q stored on %s", r.RequestID, r.Status, m.Subject)
		}
		out = append(out, r)
	}
	return out
}

// waitResults polls until n results are stored and returns them by request id, failing
// on a request with more than one result.
func (e *env) waitResults(n int) map[string]Result {
	e.t.Helper()
	var got []Result
	testwait.For(e.t, 20*time.Second, fmt.Sprintf("%d results", n), func() bool {
		got = e.storedResults()
		return len(got) >= n
	})
	byID := map[string]Result{}
	for _, r := range got {
		if _, dup := byID[r.RequestID]; dup {
			e.t.Errorf("request %s has more than one stored result", r.RequestID)
		}
		byID[r.RequestID] = r
	}
	if len(got) != n {
		e.t.Errorf("got %d results, want %d", len(got), n)
	}
	return byID
}

// settled waits until the consumer has nothing pending or unacknowledged.
func (e *env) settled() {
	e.t.Helper()
	testwait.For(e.t, 20*time.Second, "consumer settled", func() bool {
		c, err := e.js.Consumer(context.Background(), streamName, "integration-deleter")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
}

func TestTreatmentTable(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	rl := kombotest.Answer{Status: 429, Code: kombo.CodeRateLimitExceeded, Header: map[string][]string{"Retry-After-Ms": {"50"}}}
	tests := []struct {
		name         string
		answers      []kombotest.Answer
		wantStatus   string
		wantNotFound bool
		wantCode     string
		wantHTTP     int
		wantAttempts int
		wantInMsg    string
	}{
		{name: "200", wantStatus: "deleted", wantAttempts: 1},
		{name: "not found", answers: []kombotest.Answer{kombotest.NotFound()}, wantStatus: "deleted", wantNotFound: true, wantAttempts: 1},
		{name: "input invalid", answers: []kombotest.Answer{kombotest.InputInvalid()}, wantStatus: "failed", wantCode: kombo.CodeInputInvalid, wantHTTP: 400, wantAttempts: 1},
		{name: "unknown 4xx code", answers: []kombotest.Answer{{Status: 422, Code: "PLATFORM.SOMETHING_NEW"}}, wantStatus: "failed", wantCode: "PLATFORM.SOMETHING_NEW", wantHTTP: 422, wantAttempts: 1},
		{name: "4xx without code", answers: []kombotest.Answer{kombotest.Raw(404, "text/plain", "no such route")}, wantStatus: "failed", wantCode: "HTTP.404", wantHTTP: 404, wantAttempts: 1, wantInMsg: "no such route"},
		{name: "redirect", answers: []kombotest.Answer{kombotest.Redirect("https://elsewhere.example/v1/x")}, wantStatus: "failed", wantCode: "HTTP.3", wantAttempts: 1, wantInMsg: "elsewhere.example"},
		{name: "concurrency limit", answers: []kombotest.Answer{kombotest.ConcurrencyLimited()}, wantStatus: "deleted", wantAttempts: 2},
		{name: "concurrency limit does not use up attempts", answers: []kombotest.Answer{kombotest.ConcurrencyLimited(), kombotest.ConcurrencyLimited(), kombotest.ConcurrencyLimited(), kombotest.ConcurrencyLimited()}, wantStatus: "deleted", wantAttempts: 5},
		{name: "rate limit", answers: []kombotest.Answer{rl}, wantStatus: "deleted", wantAttempts: 2},
		{name: "rate limit does not use up attempts", answers: []kombotest.Answer{rl, rl, rl, rl}, wantStatus: "deleted", wantAttempts: 5},
		{name: "429 without code", answers: []kombotest.Answer{kombotest.Raw(429, "text/plain", "slow down")}, wantStatus: "deleted", wantAttempts: 2},
		{name: "unknown error", answers: []kombotest.Answer{kombotest.UnknownError()}, wantStatus: "deleted", wantAttempts: 2},
		{name: "task timed out", answers: []kombotest.Answer{kombotest.TaskTimedOut()}, wantStatus: "deleted", wantAttempts: 2},
		{name: "html 503", answers: []kombotest.Answer{kombotest.Raw(503, "text/html", "<html><body>Service Unavailable</body></html>")}, wantStatus: "deleted", wantAttempts: 2},
		{name: "empty 500 then plain 502", answers: []kombotest.Answer{kombotest.Raw(500, "", ""), kombotest.Raw(502, "text/plain", "Bad Gateway")}, wantStatus: "deleted", wantAttempts: 3},
		{name: "retries exhausted", answers: []kombotest.Answer{kombotest.UnknownError(), kombotest.TaskTimedOut(), kombotest.Raw(502, "text/plain", "Bad Gateway")}, wantStatus: "failed", wantCode: "HTTP.502", wantHTTP: 502, wantAttempts: 3, wantInMsg: "gave up after 3 attempts"},
	}
	ids := map[string]string{}
	for i, tt := range tests {
		id := fmt.Sprintf("personio:case%02d", i)
		e.fake.Script(id, tt.answers...)
		ids[tt.name] = e.request(id)
	}
	e.start(nil)
	results := e.waitResults(len(tests))
	e.settled()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := results[ids[tt.name]]
			if !ok {
				t.Fatalf("no result for %s", ids[tt.name])
			}
			if got.Status != tt.wantStatus || got.Attempts != tt.wantAttempts {
				t.Errorf("got status %q attempts %d, want %q attempts %d (%+v)", got.Status, got.Attempts, tt.wantStatus, tt.wantAttempts, got.Error)
			}
			if tt.wantStatus == "deleted" {
				if got.NotFound == nil || *got.NotFound != tt.wantNotFound || got.Error != nil {
					t.Errorf("got not_found %v error %+v, want not_found %v and no error", got.NotFound, got.Error, tt.wantNotFound)
				}
			} else {
				if got.Error == nil || !strings.HasPrefix(got.Error.Code, tt.wantCode) || got.NotFound != nil {
					t.Fatalf("got error %+v not_found %v, want code %q", got.Error, got.NotFound, tt.wantCode)
				}
				if tt.wantHTTP != 0 && got.Error.HTTPStatus != tt.wantHTTP {
					t.Errorf("got http_status %d, want %d", got.Error.HTTPStatus, tt.wantHTTP)
				}
				if !strings.Contains(got.Error.Message, tt.wantInMsg) || got.Error.Message == "" {
					t.Errorf("got message %q, want it to contain %q", got.Error.Message, tt.wantInMsg)
				}
			}
			if got.RequestedBy != "tester" || got.Reason != "test" {
				t.Errorf("got requested_by %q reason %q, want them echoed", got.RequestedBy, got.Reason)
			}
			if _, err := time.Parse(time.RFC3339, got.CompletedAt); err != nil || !strings.HasSuffix(got.CompletedAt, "Z") {
				t.Errorf("completed_at %q is not RFC 3339 UTC: %v", got.CompletedAt, err)
			}
			id := strings.TrimPrefix(ids[tt.name], "r-")
			if calls := len(e.fake.CallsFor(id)); calls != tt.wantAttempts {
				t.Errorf("Kombo got %d calls for %s, want %d", calls, id, tt.wantAttempts)
			}
		})
	}
}

func TestTransportErrorsExhaustRetries(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connections are refused
	client, err := kombo.New(kombo.Options{BaseURL: "http://" + addr + "/v1", APIKey: apiKey, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reqID := e.request("personio:unreachable")
	e.start(client)
	got := e.waitResults(1)[reqID]
	if got.Status != "failed" || got.Error == nil || got.Error.Code != codeRetriesExhausted || got.Attempts != 3 {
		t.Fatalf("got %+v (error %+v), want failed %s after 3 attempts", got, got.Error, codeRetriesExhausted)
	}
	if !strings.Contains(got.Error.Message, "gave up after 3 attempts") {
		t.Errorf("message %q does not say how many attempts", got.Error.Message)
	}
}

func TestInvalidEvents(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	big := `{"integration_id":"personio:big","request_id":"big","pad":"` + strings.Repeat("x", maxPayload) + `"}`
	exact := `{"integration_id":"personio:exact","request_id":"exact","pad":"`
	exact += strings.Repeat("y", maxPayload-len(exact)-2) + `"}`
	if len(exact) != maxPayload {
		t.Fatalf("exact payload is %d bytes", len(exact))
	}
	tests := []struct {
		name, payload string
		hdr           map[string]string
		wantReqID     string // "" = <stream>-<seq>
		wantIntID     string
		wantInMsg     string
	}{
		{name: "not json", payload: `{not json`, hdr: map[string]string{"Nats-Msg-Id": "hdr-1"}, wantReqID: "hdr-1", wantInMsg: "not a JSON object"},
		{name: "json array", payload: `["personio:x"]`, wantInMsg: "not a JSON object"},
		{name: "missing id", payload: `{"request_id":"inv-missing"}`, wantReqID: "inv-missing", wantInMsg: "integration_id is missing"},
		{name: "empty id", payload: `{"integration_id":"","request_id":"inv-empty"}`, wantReqID: "inv-empty", wantInMsg: "integration_id is empty"},
		{name: "null id", payload: `{"integration_id":null,"request_id":"inv-null"}`, wantReqID: "inv-null", wantInMsg: "null"},
		{name: "number id", payload: `{"integration_id":42,"request_id":"inv-num"}`, wantReqID: "inv-num", wantInMsg: "not a string"},
		{name: "257 bytes", payload: `{"integration_id":"` + strings.Repeat("a", 257) + `","request_id":"inv-long"}`, wantReqID: "inv-long", wantIntID: strings.Repeat("a", 257), wantInMsg: "257 bytes"},
		{name: "control character", payload: `{"integration_id":"a\u0007b","request_id":"inv-ctl"}`, wantReqID: "inv-ctl", wantIntID: "a\ab", wantInMsg: "control character"},
		{name: "C1 control character", payload: "{\"integration_id\":\"a\u0085b\",\"request_id\":\"inv-c1\"}", wantReqID: "inv-c1", wantIntID: "a\u0085b", wantInMsg: "control character"},
		{name: "invalid utf-8", payload: "{\"integration_id\":\"a\xffb\",\"request_id\":\"inv-utf8\"}", hdr: map[string]string{"Nats-Msg-Id": "hdr-utf8"}, wantReqID: "hdr-utf8", wantInMsg: "UTF-8"},
		{name: "over 64 KiB", payload: big, hdr: map[string]string{"Nats-Msg-Id": "hdr-big"}, wantReqID: "hdr-big", wantInMsg: "over the limit"},
	}
	for _, tt := range tests {
		e.publish([]byte(tt.payload), tt.hdr)
	}
	e.publish([]byte(exact), nil)
	e.publish([]byte(`{"integration_id":"personio:extra","request_id":"extra","unknown":{"nested":[1,2]}}`), nil)
	e.start(nil)
	results := e.waitResults(len(tests) + 2)
	e.settled()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.wantReqID
			if want == "" {
				want = fmt.Sprintf("%s-%d", streamName, i+1)
			}
			got, ok := results[want]
			if !ok {
				t.Fatalf("no result with request_id %q", want)
			}
			if got.Status != "failed" || got.Error == nil || got.Error.Code != codeEventInvalid || got.Attempts != 0 {
				t.Fatalf("got %+v error %+v, want failed EVENT.INVALID with 0 attempts", got, got.Error)
			}
			if !strings.Contains(got.Error.Message, tt.wantInMsg) {
				t.Errorf("message %q does not contain %q", got.Error.Message, tt.wantInMsg)
			}
			if got.IntegrationID != tt.wantIntID {
				t.Errorf("integration_id %q, want %q", got.IntegrationID, tt.wantIntID)
			}
		})
	}
	for _, ok := range []string{"exact", "extra"} {
		if r := results[ok]; r.Status != "deleted" {
			t.Errorf("request %s: got %+v, want deleted", ok, r)
		}
	}
	if got := e.fake.Stats().Deletes; got != 2 {
		t.Errorf("Kombo got %d DELETE calls, want 2 (invalid events must not reach Kombo)", got)
	}
}

// TestRedeliveryAfterCrashCallsNoMore: a process that stored the result and crashed before
// acking leaves the request to be redelivered; the redelivery finds the outcome in the
// ledger, makes no second DELETE call and stores no second result.
func TestRedeliveryAfterCrashCallsNoMore(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	e.opts.Stream.AckWait = time.Second
	reqID := e.request("personio:crashy")
	var crashes atomic.Int32
	e.startPrepared(nil, func(c *Consumer) {
		c.crashAfterPublish = func(string) bool { return crashes.Add(1) == 1 }
	})
	testwait.For(t, 20*time.Second, "the redelivery after the crash", func() bool { return crashes.Load() >= 2 })
	e.settled()
	got := e.waitResults(1)[reqID]
	if got.Status != "deleted" || *got.NotFound || got.Attempts != 1 {
		t.Errorf("stored result %+v, want deleted, not_found false, attempts 1", got)
	}
	if calls := e.fake.CallsFor("personio:crashy"); len(calls) != 1 {
		t.Errorf("Kombo got %d DELETE calls, want 1: the redelivery must find the outcome recorded", len(calls))
	}
}

// TestFirstAnswerSetsTheCap: with KOMBO_MAX_CONCURRENCY far above Kombo's limit, the very
// first call goes alone and its answer's Concurrency-Limit caps the calls after it, so
// Kombo refuses none of them for concurrency (no burst of MaxConcurrency calls at start).
func TestFirstAnswerSetsTheCap(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint("round ", round), func(t *testing.T) {
			e := newEnv(t, kombotest.Options{Latency: 10 * time.Millisecond, ConcurrencyLimit: 2})
			for i := range 40 {
				e.request(fmt.Sprintf("personio:cap-%02d", i))
			}
			e.start(nil, func(o *Options) { o.MaxConcurrency = 32 })
			for id, r := range e.waitResults(40) {
				if r.Status != "deleted" {
					t.Errorf("%s: %+v", id, r)
				}
			}
			if s := e.fake.Stats(); s.RejectedConcurrency != 0 || s.MaxInFlight > 2 {
				t.Errorf("Kombo refused %d calls for concurrency and had up to %d in flight, want 0 and at most 2",
					s.RejectedConcurrency, s.MaxInFlight)
			}
		})
	}
}

func TestRateLimitHoldsEveryWorker(t *testing.T) {
	e := newEnv(t, kombotest.Options{Latency: 20 * time.Millisecond})
	const hold = 400 * time.Millisecond
	e.fake.Script("personio:rl-00", kombotest.Answer{Status: 429, Code: kombo.CodeRateLimitExceeded,
		Header: map[string][]string{"Retry-After-Ms": {fmt.Sprint(hold.Milliseconds())}}})
	for i := range 24 {
		e.request(fmt.Sprintf("personio:rl-%02d", i))
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	if got := gaugeValue(t, m.paceGauge); got != 0 {
		t.Fatalf("pace gauge %v before any call, want 0", got)
	}
	e.start(nil, func(o *Options) { o.Metrics = m })
	results := e.waitResults(24)
	// The first refusal starts a probing pace that holds for seconds: the gauge shows it.
	if got := gaugeValue(t, m.paceGauge); got <= 0 {
		t.Errorf("pace gauge %v after a rate-limit answer, want > 0", got)
	}
	for id, r := range results {
		if r.Status != "deleted" {
			t.Errorf("%s: %+v", id, r)
		}
	}
	var limited kombotest.Call
	for _, c := range e.fake.Calls() {
		if c.Code == kombo.CodeRateLimitExceeded {
			limited = c
		}
	}
	if limited.End.IsZero() {
		t.Fatal("the rate-limited call was not recorded")
	}
	// Calls already on their way when the 429 was answered may still arrive a moment later
	// (the race detector slows the client down); no call may start once the client knew,
	// until the hold is over.
	const slack = 50 * time.Millisecond
	for _, c := range e.fake.Calls() {
		if c.Start.After(limited.End.Add(slack)) && c.Start.Before(limited.End.Add(hold-slack)) {
			t.Errorf("call %d for %s started %s after the 429, inside the %s hold", c.Seq, c.ID, c.Start.Sub(limited.End), hold)
		}
	}
	retried := e.fake.CallsFor("personio:rl-00")
	if len(retried) != 2 || retried[1].Start.Before(limited.End.Add(hold)) {
		t.Errorf("rate-limited request's calls %+v: want a retry no earlier than %s after the 429", retried, hold)
	}
	if s := e.fake.Stats(); s.Deletes != 25 {
		t.Errorf("Kombo got %d DELETEs, want 25", s.Deletes)
	}
}

// TestNotReadyUntilTheKeyCheckAnswers: between binding and the answer to the API key check
// at start, Ready says the consumer is starting (not ready, and not yet known to be paused).
func TestNotReadyUntilTheKeyCheckAnswers(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	e.fake.ScriptCheckAPIKey(kombotest.Answer{Status: 200, Hang: true})
	c, err := New(e.js, e.client, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	testwait.For(t, 10*time.Second, "the key check at start", func() bool { return e.fake.Stats().CheckAPIKey == 1 })
	if err := c.Ready(); err == nil || !strings.Contains(err.Error(), "checking the API key") {
		t.Errorf("Ready() = %v while the key check is unanswered, want starting: checking the API key", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run() = %v after cancel during the key check, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel during the key check")
	}
}

func TestPausesWhileKeyRejectedAndResumes(t *testing.T) {
	e := newEnv(t, kombotest.Options{RejectKey: true})
	var reqIDs []string
	for i := range 3 {
		reqIDs = append(reqIDs, e.request(fmt.Sprintf("personio:key-%d", i)))
	}
	r := e.start(nil)
	if !isPaused(r.c) {
		t.Fatalf("Ready() = %v, want paused after a rejected key at start", r.c.Ready())
	}
	testwait.For(t, 10*time.Second, "three key probes", func() bool { return e.fake.Stats().CheckAPIKey >= 3 })
	if s := e.fake.Stats(); s.Deletes != 0 {
		t.Fatalf("paused consumer made %d DELETE calls", s.Deletes)
	}
	if got := e.storedResults(); len(got) != 0 {
		t.Fatalf("paused consumer stored results %+v", got)
	}
	e.fake.SetRejectKey(false)
	results := e.waitResults(3)
	for _, id := range reqIDs {
		if results[id].Status != "deleted" {
			t.Errorf("%s: %+v", id, results[id])
		}
	}
	if err := r.c.Ready(); err != nil {
		t.Errorf("Ready() = %v after the key was accepted again", err)
	}

	// A key rejected mid-run: no failed result, the request is kept and done after resuming.
	e.fake.Script("personio:key-mid", kombotest.AuthInvalid())
	reqID := e.request("personio:key-mid")
	got := e.waitResults(4)[reqID]
	if got.Status != "deleted" || got.Attempts != 2 {
		t.Errorf("got %+v, want deleted after 2 attempts (one rejected)", got)
	}
}

func TestShutdownFinishesCallsInFlight(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	for i := range 8 {
		e.request(fmt.Sprintf("personio:sd-%d", i))
	}
	e.fake.SetLatency(300*time.Millisecond, 0)
	r := e.start(nil)
	testwait.For(t, 10*time.Second, "4 calls in flight", func() bool { return e.fake.Stats().InFlight == 4 })
	inFlight := map[string]bool{}
	for _, c := range e.fake.Calls() {
		if c.End.IsZero() {
			inFlight[c.ID] = true
		}
	}
	if err := r.stop(t); err != nil {
		t.Fatalf("Run returned %v, want nil after a clean shutdown", err)
	}
	stored := e.storedResults()
	if len(stored) < 4 {
		t.Fatalf("after shutdown %d results are stored, want at least the 4 calls in flight", len(stored))
	}
	done := map[string]bool{}
	for _, r := range stored {
		done[r.IntegrationID] = true
	}
	for id := range inFlight {
		if !done[id] {
			t.Errorf("call in flight for %s did not finish and publish before shutdown", id)
		}
	}
	// Whatever waited was handed back: a new process does the rest, nothing lost or doubled.
	e.fake.SetLatency(0, 0)
	e.start(nil)
	results := e.waitResults(8)
	e.settled()
	for id, r := range results {
		if r.Status != "deleted" {
			t.Errorf("%s: %+v", id, r)
		}
	}
}

func TestProvisionOffFailsWhenMissing(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	o := e.opts
	o.Stream.Provision = false
	c, err := New(e.js, e.client, o)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Run(context.Background())
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), streamName) {
		t.Fatalf("Run() = %v, want ErrMissing naming the stream", err)
	}
}

func TestRecreatesDeletedConsumer(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	first := e.request("personio:before")
	r := e.start(nil)
	e.waitResults(1)
	if err := e.js.DeleteConsumer(context.Background(), streamName, "integration-deleter"); err != nil {
		t.Fatal(err)
	}
	second := e.request("personio:after")
	results := e.waitResults(2)
	if results[first].Status != "deleted" || results[second].Status != "deleted" {
		t.Errorf("results %+v", results)
	}
	if err := r.c.Ready(); err != nil {
		t.Errorf("Ready() = %v after recreating the consumer", err)
	}
}

func TestUnboundWithoutProvisioningUntilRecreated(t *testing.T) {
	e := newEnv(t, kombotest.Options{})
	cfg := e.opts.Stream.consumerConfig(0)
	if _, err := e.js.CreateConsumer(context.Background(), streamName, cfg); err != nil {
		t.Fatal(err)
	}
	r := e.start(nil, func(o *Options) { o.Stream.Provision = false })
	if err := e.js.DeleteConsumer(context.Background(), streamName, "integration-deleter"); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "not ready, naming the consumer", func() bool {
		err := r.c.Ready()
		return err != nil && strings.Contains(err.Error(), "integration-deleter")
	})
	// An operator recreates it: the daemon binds again by itself and goes on.
	if _, err := e.js.CreateConsumer(context.Background(), streamName, cfg); err != nil {
		t.Fatal(err)
	}
	reqID := e.request("personio:after-recreate")
	if got := e.waitResults(1)[reqID]; got.Status != "deleted" {
		t.Errorf("got %+v, want deleted", got)
	}
	testwait.For(t, 10*time.Second, "ready again", func() bool { return r.c.Ready() == nil })
}

// gaugeValue reads a gauge as a scrape would.
func gaugeValue(t *testing.T, g prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := g.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetGauge().GetValue()
}
