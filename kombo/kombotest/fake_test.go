package kombotest_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

const (
	successBody = `{"status":"success","data":{}}`
	notFound    = "PLATFORM.INTEGRATION_NOT_FOUND"
	unknown     = "PLATFORM.UNKNOWN_ERROR"
	authInvalid = "PLATFORM.AUTHENTICATION_INVALID"
	rateLimit   = "PLATFORM.RATE_LIMIT_EXCEEDED"
	concurrency = "PLATFORM.CONCURRENCY_LIMIT_EXCEEDED"
	inputBad    = "PLATFORM.INPUT_INVALID"
)

func TestDeleteSingleAnswer(t *testing.T) {
	tests := []struct {
		name     string
		opts     kombotest.Options
		setup    func(f *kombotest.Fake)
		path     string // after the base URL
		key      string
		want     outcome
		wantBody string // "" = do not compare
		wantID   string
	}{
		{name: "success", opts: kombotest.Options{APIKey: testKey}, path: "/integrations/personio:abc", key: testKey,
			want: outcome{200, ""}, wantBody: successBody, wantID: "personio:abc"},
		{name: "escaped id is recorded decoded", path: "/integrations/personio%3Aa%2Fb%20c", key: testKey,
			want: outcome{200, ""}, wantID: "personio:a/b c"},
		{name: "any key when none is configured", path: "/integrations/x", key: "whatever",
			want: outcome{200, ""}, wantID: "x"},
		{name: "wrong key", opts: kombotest.Options{APIKey: testKey}, path: "/integrations/x", key: "ks_other",
			want: outcome{401, authInvalid}, wantID: "x"},
		{name: "missing key", opts: kombotest.Options{APIKey: testKey}, path: "/integrations/x", key: "",
			want: outcome{401, authInvalid}, wantID: "x"},
		{name: "missing key, none configured", path: "/integrations/x", key: "",
			want: outcome{401, authInvalid}, wantID: "x"},
		{name: "reject key", opts: kombotest.Options{APIKey: testKey, RejectKey: true}, path: "/integrations/x", key: testKey,
			want: outcome{401, authInvalid}, wantID: "x"},
		{name: "missing: convention", path: "/integrations/missing:abc", key: testKey,
			want: outcome{404, notFound}, wantID: "missing:abc"},
		{name: "invalid: convention", path: "/integrations/invalid:abc", key: testKey,
			want: outcome{400, inputBad}, wantID: "invalid:abc"},
		{name: "flaky: convention", path: "/integrations/flaky:abc", key: testKey,
			want: outcome{500, unknown}, wantID: "flaky:abc"},
		{name: "marked missing", setup: func(f *kombotest.Fake) { f.MarkMissing("gone", "also") },
			path: "/integrations/gone", key: testKey, want: outcome{404, notFound}, wantID: "gone"},
		{name: "script beats convention", setup: func(f *kombotest.Fake) { f.Script("missing:x", kombotest.OK()) },
			path: "/integrations/missing:x", key: testKey, want: outcome{200, ""}, wantBody: successBody, wantID: "missing:x"},
		{name: "reject key beats script", opts: kombotest.Options{RejectKey: true},
			setup: func(f *kombotest.Fake) { f.Script("x", kombotest.OK()) },
			path:  "/integrations/x", key: testKey, want: outcome{401, authInvalid}, wantID: "x"},
		{name: "script beats failure rate", opts: kombotest.Options{FailureRate: 1},
			setup: func(f *kombotest.Fake) { f.Script("x", kombotest.InputInvalid()) },
			path:  "/integrations/x", key: testKey, want: outcome{400, inputBad}, wantID: "x"},
		{name: "scripted error without code", setup: func(f *kombotest.Fake) { f.Script("x", kombotest.Answer{Status: 418}) },
			path: "/integrations/x", key: testKey, want: outcome{418, ""},
			wantBody: `{"status":"error","error":{"code":null,"title":null,"message":"418 I'm a teapot","log_url":null}}`, wantID: "x"},
		{name: "scripted raw body", setup: func(f *kombotest.Fake) { f.Script("x", kombotest.Raw(502, "text/plain", "upstream down")) },
			path: "/integrations/x", key: testKey, want: outcome{502, ""}, wantBody: "upstream down", wantID: "x"},
		{name: "without /v1", path: "/../integrations/x", key: testKey, want: outcome{200, ""}, wantID: "x"},
		{name: "id with slash is no route", path: "/integrations/a/b", key: testKey, want: outcome{404, ""}},
		{name: "dot-dot id is no route", path: "/integrations/..", key: testKey, want: outcome{404, ""}},
		{name: "empty id is no route", path: "/integrations/", key: testKey, want: outcome{404, ""}},
		{name: "unknown path", path: "/employees", key: testKey, want: outcome{404, ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, base := kombotest.NewServer(t, tt.opts)
			if tt.setup != nil {
				tt.setup(f)
			}
			url := base + tt.path
			if strings.HasPrefix(tt.path, "/../") {
				url = strings.TrimSuffix(base, "/v1") + tt.path[len("/.."):]
			}
			got := mustDo(t, http.MethodDelete, url, tt.key)
			if diff := cmp.Diff(tt.want, outcomeOf(got)); diff != "" {
				t.Errorf("answer (-want +got):\n%s\nbody: %s", diff, got.Body)
			}
			if tt.wantBody != "" && got.Body != tt.wantBody {
				t.Errorf("body = %s, want %s", got.Body, tt.wantBody)
			}
			if ct := got.Header.Get("Content-Type"); got.Status != 502 && ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			calls := f.Calls()
			if len(calls) != 1 {
				t.Fatalf("recorded %d calls, want 1", len(calls))
			}
			if calls[0].ID != tt.wantID || calls[0].Status != tt.want.Status || calls[0].Code != tt.want.Code {
				t.Errorf("recorded id %q status %d code %q, want %q %d %q",
					calls[0].ID, calls[0].Status, calls[0].Code, tt.wantID, tt.want.Status, tt.want.Code)
			}
		})
	}
}

func TestErrorBodyShape(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{})
	f.MarkMissing("gone")
	got := del(t, base, "gone")
	var body struct {
		Status string
		Error  struct {
			Code, Title, Message *string
			LogURL               *string `json:"log_url"`
		}
	}
	if err := json.Unmarshal([]byte(got.Body), &body); err != nil {
		t.Fatalf("body %s: %v", got.Body, err)
	}
	if body.Status != "error" || body.Error.Code == nil || *body.Error.Code != notFound ||
		body.Error.Title == nil || body.Error.Message == nil || *body.Error.Message == "" || body.Error.LogURL == nil {
		t.Fatalf("error body = %s, want status error and code, title, message, log_url all set", got.Body)
	}
	// log_url points at the call in /_fake/calls.
	logged := mustDo(t, http.MethodGet, *body.Error.LogURL, "")
	var calls []kombotest.Call
	if err := json.Unmarshal([]byte(logged.Body), &calls); err != nil {
		t.Fatalf("log_url %s answered %s: %v", *body.Error.LogURL, logged.Body, err)
	}
	if len(calls) != 1 || calls[0].ID != "gone" || calls[0].Status != 404 {
		t.Errorf("log_url %s shows %+v, want the one call for gone", *body.Error.LogURL, calls)
	}
}

func TestDeleteSequences(t *testing.T) {
	tests := []struct {
		name   string
		script []kombotest.Answer
		id     string
		want   []outcome
	}{
		{name: "delete then not found", id: "personio:1",
			want: []outcome{{200, ""}, {404, notFound}, {404, notFound}}},
		{name: "flaky fails twice then deletes", id: "flaky:1",
			want: []outcome{{500, unknown}, {500, unknown}, {200, ""}, {404, notFound}}},
		{name: "flaky missing combines", id: "flaky:missing:1",
			want: []outcome{{500, unknown}, {500, unknown}, {404, notFound}}},
		{name: "script in order then fallback", id: "s",
			script: []kombotest.Answer{kombotest.UnknownError(), kombotest.TaskTimedOut(), kombotest.IPNotWhitelisted(),
				kombotest.ConcurrencyLimited(), kombotest.AuthInvalid(), kombotest.NotFound()},
			want: []outcome{{500, unknown}, {504, "PLATFORM.TASK_TIMED_OUT"}, {403, "PLATFORM.IP_NOT_WHITELISTED"},
				{429, concurrency}, {401, authInvalid}, {404, notFound}, {200, ""}, {404, notFound}}},
		{name: "scripted success deletes", id: "s", script: []kombotest.Answer{kombotest.OK()},
			want: []outcome{{200, ""}, {404, notFound}}},
		{name: "scripted hint", id: "s", script: []kombotest.Answer{kombotest.RateLimited(3)},
			want: []outcome{{429, rateLimit}, {200, ""}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, base := kombotest.NewServer(t, kombotest.Options{APIKey: testKey})
			f.Script(tt.id, tt.script...)
			var got []outcome
			for range tt.want {
				got = append(got, outcomeOf(del(t, base, tt.id)))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("answers (-want +got):\n%s", diff)
			}
			if !f.IsDeleted(tt.id) && tt.want[len(tt.want)-1].Code == notFound && !strings.Contains(tt.id, "missing:") {
				t.Errorf("IsDeleted(%q) = false after the answers", tt.id)
			}
		})
	}
}

func TestScriptedAnswerDetails(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{})
	f.Script("x",
		kombotest.RateLimited(3),
		kombotest.Redirect("https://elsewhere.example/v1/integrations/x"),
		kombotest.Answer{Status: 400, Code: "PLATFORM.SOMETHING_NEW", Title: "T", Message: "M", LogURL: "https://l"},
		kombotest.Raw(500, "", ""),
		kombotest.UnknownError().WithHeader("Retry-After", "7"),
	)
	if got := del(t, base, "x"); got.Header.Get("ratelimit-reset") != "3" {
		t.Errorf("RateLimited(3): ratelimit-reset = %q, want 3", got.Header.Get("ratelimit-reset"))
	}
	if got := del(t, base, "x"); got.Status != 302 || got.Header.Get("Location") != "https://elsewhere.example/v1/integrations/x" {
		t.Errorf("Redirect: %d Location %q", got.Status, got.Header.Get("Location"))
	}
	want := `{"status":"error","error":{"code":"PLATFORM.SOMETHING_NEW","title":"T","message":"M","log_url":"https://l"}}`
	if got := del(t, base, "x"); got.Body != want {
		t.Errorf("custom error body = %s, want %s", got.Body, want)
	}
	got := del(t, base, "x")
	if _, ok := got.Header["Content-Type"]; got.Status != 500 || got.Body != "" || ok {
		t.Errorf("empty 500: status %d body %q Content-Type %v", got.Status, got.Body, got.Header["Content-Type"])
	}
	if got := del(t, base, "x"); got.Header.Get("Retry-After") != "7" || got.code() != unknown {
		t.Errorf("WithHeader: Retry-After %q code %q", got.Header.Get("Retry-After"), got.code())
	}
	if calls := f.CallsFor("x"); len(calls) != 5 {
		t.Errorf("CallsFor(x) has %d calls, want 5", len(calls))
	}
}

func TestCheckAPIKey(t *testing.T) {
	tests := []struct {
		name  string
		opts  kombotest.Options
		setup func(f *kombotest.Fake)
		key   string
		want  outcome
		body  string
	}{
		{name: "ok", opts: kombotest.Options{APIKey: testKey}, key: testKey, want: outcome{200, ""},
			body: `{"status":"success","data":{"environment_id":"env_fake"}}`},
		{name: "wrong key", opts: kombotest.Options{APIKey: testKey}, key: "nope", want: outcome{401, authInvalid}},
		{name: "no key", key: "", want: outcome{401, authInvalid}},
		{name: "reject key", opts: kombotest.Options{RejectKey: true}, key: testKey, want: outcome{401, authInvalid}},
		{name: "scripted", setup: func(f *kombotest.Fake) { f.ScriptCheckAPIKey(kombotest.Raw(503, "text/html", "<html></html>")) },
			key: testKey, want: outcome{503, ""}, body: "<html></html>"},
		{name: "scripted ok reports the environment", setup: func(f *kombotest.Fake) { f.ScriptCheckAPIKey(kombotest.OK()) },
			key: testKey, want: outcome{200, ""}, body: `{"status":"success","data":{"environment_id":"env_fake"}}`},
		{name: "scripts do not beat the key check", opts: kombotest.Options{RejectKey: true},
			setup: func(f *kombotest.Fake) { f.ScriptCheckAPIKey(kombotest.OK()) }, key: testKey, want: outcome{401, authInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, base := kombotest.NewServer(t, tt.opts)
			if tt.setup != nil {
				tt.setup(f)
			}
			got := mustDo(t, http.MethodGet, base+"/check-api-key", tt.key)
			if diff := cmp.Diff(tt.want, outcomeOf(got)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if tt.body != "" && got.Body != tt.body {
				t.Errorf("body = %s, want %s", got.Body, tt.body)
			}
			if s := f.Stats(); s.CheckAPIKey != 1 || s.Deletes != 0 {
				t.Errorf("stats: %d key checks, %d deletes; want 1, 0", s.CheckAPIKey, s.Deletes)
			}
		})
	}
}

func TestRejectKeyAtRunTime(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{APIKey: testKey})
	n := 0
	check := func(want int) {
		t.Helper()
		n++
		if got := mustDo(t, http.MethodGet, base+"/check-api-key", testKey); got.Status != want {
			t.Errorf("check-api-key: %d, want %d", got.Status, want)
		}
		if got := del(t, base, "id-"+strconv.Itoa(n)); got.Status != want {
			t.Errorf("delete: %d, want %d", got.Status, want)
		}
	}
	check(200)
	f.SetRejectKey(true)
	check(401)
	f.SetRejectKey(false)
	check(200)
	f.SetAPIKey("ks_rotated")
	check(401)
}

func TestMethodsAndRecording(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{})
	if got := mustDo(t, http.MethodPost, base+"/integrations/x", testKey); got.Status != 405 || got.Header.Get("Allow") != "GET, DELETE" {
		t.Errorf("POST integration: %d Allow %q, want 405 GET, DELETE", got.Status, got.Header.Get("Allow"))
	}
	if got := mustDo(t, http.MethodPost, base+"/check-api-key", testKey); got.Status != 405 {
		t.Errorf("POST check-api-key: %d, want 405", got.Status)
	}
	del(t, base, "personio%3Aabc")
	calls := f.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	c := calls[2]
	want := kombotest.Call{Seq: 3, Method: "DELETE", Path: "/v1/integrations/personio:abc",
		RawURI: "/v1/integrations/personio%3Aabc", ID: "personio:abc", Body: "{}", Status: 200, InFlight: 1}
	if diff := cmp.Diff(want, c, cmpopts.IgnoreFields(kombotest.Call{}, "Header", "Start", "End")); diff != "" {
		t.Errorf("call (-want +got):\n%s", diff)
	}
	if got := c.Header.Get("Authorization"); got != "Bearer [redacted]" {
		t.Errorf("recorded Authorization = %q, want it redacted", got)
	}
	if got := c.Header.Get("Content-Type"); got != "application/json" {
		t.Errorf("recorded Content-Type = %q", got)
	}
	if c.Start.IsZero() || c.End.Before(c.Start) {
		t.Errorf("Start %v End %v", c.Start, c.End)
	}
}

func TestConcurrencyLimit(t *testing.T) {
	const limit = 3
	f, base := kombotest.NewServer(t, kombotest.Options{ConcurrencyLimit: limit})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, limit)
	for i := range limit {
		id := "hang-" + strconv.Itoa(i)
		f.Script(id, kombotest.Answer{Hang: true})
		wg.Go(func() {
			_, err := do(t, ctx, http.MethodDelete, base+"/integrations/"+id, testKey)
			errs <- err
		})
	}
	testkit.WaitFor(t, 10*time.Second, "3 calls in flight", func() bool { return f.Stats().InFlight == limit })

	got := del(t, base, "one-too-many")
	if diff := cmp.Diff(outcome{429, concurrency}, outcomeOf(got)); diff != "" {
		t.Errorf("over the limit (-want +got):\n%s", diff)
	}
	if l, r := got.Header.Get("Concurrency-Limit"), got.Header.Get("Concurrency-Remaining"); l != "3" || r != "0" {
		t.Errorf("headers Concurrency-Limit %q Concurrency-Remaining %q, want 3 and 0", l, r)
	}
	if c := f.CallsFor("one-too-many"); len(c) != 1 || c[0].InFlight != limit+1 {
		t.Errorf("recorded %+v, want one call with InFlight %d", c, limit+1)
	}

	cancel() // the clients give up: the slots free up
	wg.Wait()
	for range limit {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("hanging call ended with %v, want context.Canceled", err)
		}
	}
	testkit.WaitFor(t, 10*time.Second, "no call in flight", func() bool { return f.Stats().InFlight == 0 })

	got = del(t, base, "after")
	if got.Status != 200 || got.Header.Get("Concurrency-Limit") != "3" || got.Header.Get("Concurrency-Remaining") != "2" {
		t.Errorf("after: %d Concurrency-Limit %q Concurrency-Remaining %q, want 200, 3, 2",
			got.Status, got.Header.Get("Concurrency-Limit"), got.Header.Get("Concurrency-Remaining"))
	}
	s := f.Stats()
	if s.MaxInFlight != limit || s.RejectedConcurrency != 1 || s.Unanswered != limit || s.ByStatus[429] != 1 {
		t.Errorf("stats %+v: want MaxInFlight 3, RejectedConcurrency 1, Unanswered 3, one 429", s)
	}
	for _, c := range f.Calls()[:limit] {
		if c.Status != 0 || c.End.IsZero() {
			t.Errorf("hung call %s: status %d end %v, want 0 and set", c.ID, c.Status, c.End)
		}
	}

	// Without a limit, no headers.
	f.SetConcurrencyLimit(0)
	if got := del(t, base, "unlimited"); got.Header.Get("Concurrency-Limit") != "" {
		t.Errorf("no limit: Concurrency-Limit %q, want none", got.Header.Get("Concurrency-Limit"))
	}
}

func TestDelayedAnswerHoldsSlot(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{ConcurrencyLimit: 1})
	f.Script("held", kombotest.OK().WithDelay(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := do(t, ctx, http.MethodDelete, base+"/integrations/held", testKey)
		done <- err
	}()
	testkit.WaitFor(t, 10*time.Second, "the delayed call in flight", func() bool { return f.Stats().InFlight == 1 })
	if got := del(t, base, "other"); got.Status != 429 {
		t.Errorf("second call: %d, want 429", got.Status)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("delayed call: %v", err)
	}
	// The delete took effect when the call was admitted, though the client gave up.
	if !f.IsDeleted("held") {
		t.Error("held is not deleted")
	}
}

func TestRateLimitHints(t *testing.T) {
	// 0.01 per second: after the burst of 2, the next token is ~100 s away.
	tests := []struct {
		hint  string
		check func(t *testing.T, h http.Header)
	}{
		{kombotest.HintRateLimitReset, func(t *testing.T, h http.Header) {
			want := http.Header{"Ratelimit-Reset": {"100"}, "Ratelimit-Limit": {"2"}, "Ratelimit-Remaining": {"0"}}
			if diff := cmp.Diff(want, pick(h, "Ratelimit-Reset", "Ratelimit-Limit", "Ratelimit-Remaining", "Retry-After", "Retry-After-Ms")); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		}},
		{"", func(t *testing.T, h http.Header) {
			if h.Get("ratelimit-reset") != "100" {
				t.Errorf("default hint: ratelimit-reset %q, want 100", h.Get("ratelimit-reset"))
			}
		}},
		{kombotest.HintRetryAfter, func(t *testing.T, h http.Header) {
			want := http.Header{"Retry-After": {"100"}}
			if diff := cmp.Diff(want, pick(h, "Ratelimit-Reset", "Ratelimit-Limit", "Retry-After", "Retry-After-Ms")); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		}},
		{kombotest.HintRetryAfterMS, func(t *testing.T, h http.Header) {
			ms, err := strconv.Atoi(h.Get("retry-after-ms"))
			if err != nil || ms < 99_000 || ms > 100_000 || h.Get("Retry-After") != "" || h.Get("ratelimit-reset") != "" {
				t.Errorf("retry-after-ms %q (Retry-After %q, ratelimit-reset %q), want ~100000 alone",
					h.Get("retry-after-ms"), h.Get("Retry-After"), h.Get("ratelimit-reset"))
			}
		}},
		{kombotest.HintRetryAfterDate, func(t *testing.T, h http.Header) {
			at, err := http.ParseTime(h.Get("Retry-After"))
			if d := time.Until(at); err != nil || d < 97*time.Second || d > 101*time.Second {
				t.Errorf("Retry-After %q is %v away (%v), want ~100s", h.Get("Retry-After"), d, err)
			}
		}},
		{kombotest.HintNone, func(t *testing.T, h http.Header) {
			if got := pick(h, "Ratelimit-Reset", "Ratelimit-Limit", "Retry-After", "Retry-After-Ms"); len(got) != 0 {
				t.Errorf("hints %v, want none", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run("hint="+tt.hint, func(t *testing.T) {
			f, base := kombotest.NewServer(t, kombotest.Options{RateLimit: 0.01, RateBurst: 2, RateLimitHeader: tt.hint})
			f.Script("s", kombotest.UnknownError())
			got := []outcome{outcomeOf(del(t, base, "a")), outcomeOf(del(t, base, "b"))}
			last := del(t, base, "s")
			got = append(got, outcomeOf(last))
			want := []outcome{{200, ""}, {200, ""}, {429, rateLimit}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("answers (-want +got):\n%s", diff)
			}
			tt.check(t, last.Header)
			// The rate check comes before scripts: the script is still there.
			f.SetRateLimit(0, 0)
			if got := del(t, base, "s"); got.Status != 500 {
				t.Errorf("after lifting the rate limit: %d, want the scripted 500", got.Status)
			}
			if s := f.Stats(); s.RejectedRate != 1 {
				t.Errorf("RejectedRate = %d, want 1", s.RejectedRate)
			}
		})
	}
}

// pick returns the headers of h named in names (canonical), for comparing.
func pick(h http.Header, names ...string) http.Header {
	out := http.Header{}
	for _, n := range names {
		if v, ok := h[n]; ok {
			out[n] = v
		}
	}
	return out
}

func TestEarlyForRateLimit(t *testing.T) {
	tests := []struct {
		name      string
		opts      kombotest.Options
		script    []kombotest.Answer
		wantEarly []bool
	}{
		{name: "built-in limit", opts: kombotest.Options{RateLimit: 0.01},
			wantEarly: []bool{false, false, true, true}},
		{name: "grace covers calls right after the 429", opts: kombotest.Options{RateLimit: 0.01, EarlyGrace: time.Hour},
			wantEarly: []bool{false, false, false, false}},
		{name: "no hint, nothing announced", opts: kombotest.Options{RateLimit: 0.01, RateLimitHeader: kombotest.HintNone},
			wantEarly: []bool{false, false, false, false}},
		{name: "scripted hint counts", script: []kombotest.Answer{kombotest.OK(), kombotest.RateLimited(100)},
			wantEarly: []bool{false, false, true, true}},
		{name: "scripted 429 without hint", script: []kombotest.Answer{kombotest.OK(), kombotest.RateLimited(0)},
			wantEarly: []bool{false, false, false, false}},
		{name: "concurrency 429 announces nothing", script: []kombotest.Answer{kombotest.OK(), kombotest.ConcurrencyLimited()},
			wantEarly: []bool{false, false, false, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, base := kombotest.NewServer(t, tt.opts)
			f.Script("x", tt.script...)
			var got []bool
			for range tt.wantEarly {
				del(t, base, "x")
			}
			for _, c := range f.Calls() {
				got = append(got, c.EarlyForRateLimit)
			}
			if diff := cmp.Diff(tt.wantEarly, got); diff != "" {
				t.Errorf("EarlyForRateLimit per call (-want +got):\n%s", diff)
			}
			n := 0
			for _, e := range tt.wantEarly {
				if e {
					n++
				}
			}
			if s := f.Stats(); s.EarlyForRateLimit != n {
				t.Errorf("Stats.EarlyForRateLimit = %d, want %d", s.EarlyForRateLimit, n)
			}
		})
	}
}

func TestRateLimitRefills(t *testing.T) {
	// 50 per second: a refused call is told 1 s (rounded up); the token comes after 20 ms.
	f, base := kombotest.NewServer(t, kombotest.Options{RateLimit: 50, RateLimitHeader: kombotest.HintRetryAfterMS})
	// Call until the bucket is empty: on a slow machine a token may come back between two
	// calls, but not between a hundred.
	var got answer
	refused := -1
	for i := range 100 {
		if got = del(t, base, "a"+strconv.Itoa(i)); got.Status != 200 {
			refused = i
			break
		}
	}
	if refused < 0 {
		t.Fatal("100 calls in a row at 50 per second, none refused")
	}
	ms, _ := strconv.Atoi(got.Header.Get("retry-after-ms"))
	if ms < 1 || ms > 20 {
		t.Fatalf("retry-after-ms %q, want 1..20", got.Header.Get("retry-after-ms"))
	}
	testkit.WaitFor(t, 10*time.Second, "the token to come back", func() bool {
		if time.Since(f.Calls()[refused].End) < time.Duration(ms)*time.Millisecond {
			return false
		}
		return del(t, base, "c").Status == 200
	})
	for _, c := range f.Calls() {
		if c.EarlyForRateLimit {
			t.Errorf("call %d (%s) counted early, though it waited the hint", c.Seq, c.ID)
		}
	}
}

func TestFailureRate(t *testing.T) {
	type shape struct {
		Status      int
		ContentType string
		Code        string
		Body        string // for the non-JSON ones
	}
	html := "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n" +
		"<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"
	allShapes := map[shape]bool{
		{500, "application/json", unknown, ""}:                true,
		{502, "text/plain; charset=utf-8", "", "Bad Gateway"}: true,
		{503, "text/html", "", html}:                          true,
		{500, "", "", ""}:                                     true,
	}
	tests := []struct {
		name        string
		rate        float64
		wantShapes  int
		wantSuccess bool
	}{
		{name: "always", rate: 1, wantShapes: 4},
		{name: "never", rate: 0, wantShapes: 0, wantSuccess: true},
		{name: "half", rate: 0.5, wantShapes: 4, wantSuccess: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, base := kombotest.NewServer(t, kombotest.Options{FailureRate: tt.rate, Seed: 42})
			seen := map[shape]bool{}
			success := false
			for i := range 80 {
				got := del(t, base, "id-"+strconv.Itoa(i))
				if got.Status == 200 {
					success = true
					continue
				}
				s := shape{Status: got.Status, ContentType: got.Header.Get("Content-Type"), Code: got.code()}
				if s.Code == "" {
					s.Body = got.Body
				}
				if !allShapes[s] {
					t.Errorf("unexpected failure shape %+v", s)
				}
				seen[s] = true
			}
			if len(seen) != tt.wantShapes || success != tt.wantSuccess {
				t.Errorf("saw %d failure shapes (%v) and success %v; want %d and %v", len(seen), seen, success, tt.wantShapes, tt.wantSuccess)
			}
		})
	}
}

func TestFailureRateIsReproducible(t *testing.T) {
	run := func() []int {
		_, base := kombotest.NewServer(t, kombotest.Options{FailureRate: 0.5, Seed: 7})
		var statuses []int
		for i := range 30 {
			statuses = append(statuses, del(t, base, "id-"+strconv.Itoa(i)).Status)
		}
		return statuses
	}
	if diff := cmp.Diff(run(), run()); diff != "" {
		t.Errorf("same seed, different answers (-first +second):\n%s", diff)
	}
}

func TestLatency(t *testing.T) {
	tests := []struct {
		name     string
		opts     kombotest.Options
		id       string
		min, max time.Duration
	}{
		{name: "latency", opts: kombotest.Options{Latency: 50 * time.Millisecond}, id: "a", min: 50 * time.Millisecond, max: 5 * time.Second},
		{name: "jitter", opts: kombotest.Options{Latency: 10 * time.Millisecond, LatencyJitter: 20 * time.Millisecond, Seed: 1},
			id: "a", min: 10 * time.Millisecond, max: 5 * time.Second},
		{name: "slow: convention", id: "slow:a", min: time.Second, max: 6 * time.Second},
		{name: "no latency", id: "a", min: 0, max: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, base := kombotest.NewServer(t, tt.opts)
			start := time.Now()
			if got := del(t, base, tt.id); got.Status != 200 {
				t.Fatalf("status %d", got.Status)
			}
			took := time.Since(start)
			c := f.Calls()[0]
			if took < tt.min || took > tt.max || c.End.Sub(c.Start) < tt.min {
				t.Errorf("took %v (recorded %v), want %v..%v", took, c.End.Sub(c.Start), tt.min, tt.max)
			}
		})
	}
}

func TestLatencyEndsWhenClientGivesUp(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{Latency: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := do(t, ctx, http.MethodDelete, base+"/integrations/a", testKey); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	testkit.WaitFor(t, 10*time.Second, "the call to end", func() bool { return !f.Calls()[0].End.IsZero() })
	if s := f.Stats(); s.Unanswered != 1 || s.InFlight != 0 || len(s.ByStatus) != 0 {
		t.Errorf("stats %+v, want one unanswered call", s)
	}
}

func TestCloseEndsHangingCalls(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{})
	f.Script("h", kombotest.Answer{Hang: true})
	done := make(chan error, 1)
	go func() {
		_, err := do(t, context.Background(), http.MethodDelete, base+"/integrations/h", testKey)
		done <- err
	}()
	testkit.WaitFor(t, 10*time.Second, "the call to hang", func() bool { return f.Stats().InFlight == 1 })
	f.Close()
	if err := <-done; err == nil {
		t.Error("hanging call got an answer after Close, want a dropped connection")
	}
	if f.IsDeleted("h") {
		t.Error("a hung call deleted the integration")
	}
}

func TestReset(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{RateLimit: 0.01})
	f.MarkMissing("m")
	f.Script("s", kombotest.UnknownError())
	del(t, base, "a")
	del(t, base, "b") // rate limited
	f.Reset()
	if s := f.Stats(); s.Calls != 0 || len(f.Calls()) != 0 {
		t.Fatalf("after Reset: stats %+v, %d calls", s, len(f.Calls()))
	}
	got := []outcome{outcomeOf(del(t, base, "a"))}
	f.SetRateLimit(0, 0)
	got = append(got, outcomeOf(del(t, base, "m")), outcomeOf(del(t, base, "s")))
	want := []outcome{{200, ""}, {200, ""}, {200, ""}} // bucket refilled, a not deleted, m not missing, no script
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after Reset (-want +got):\n%s", diff)
	}
	if c := f.Calls(); c[0].Seq != 1 || c[0].EarlyForRateLimit {
		t.Errorf("first call after Reset: %+v", c[0])
	}
}

func TestMaxCalls(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{MaxCalls: 3})
	for i := range 10 {
		del(t, base, "id-"+strconv.Itoa(i))
	}
	var seqs []int
	for _, c := range f.Calls() {
		seqs = append(seqs, c.Seq)
	}
	if diff := cmp.Diff([]int{8, 9, 10}, seqs); diff != "" {
		t.Errorf("kept calls (-want +got):\n%s", diff)
	}
	if s := f.Stats(); s.Calls != 10 || s.Deleted != 10 {
		t.Errorf("stats count %d calls, %d deleted; want 10, 10", s.Calls, s.Deleted)
	}
}

func TestOptionsValidation(t *testing.T) {
	tests := []struct {
		name string
		opts kombotest.Options
		want []string // fields named in the error
	}{
		{name: "zero is valid", opts: kombotest.Options{}},
		{name: "everything wrong", opts: kombotest.Options{Latency: -1, LatencyJitter: -1, ConcurrencyLimit: -1,
			RateLimit: math.Inf(1), RateBurst: -1, RateLimitHeader: "x-rate", FailureRate: 1.5, EarlyGrace: -1, MaxCalls: -1},
			want: []string{"Latency", "LatencyJitter", "ConcurrencyLimit", "RateLimit", "RateBurst", "RateLimitHeader",
				"FailureRate", "EarlyGrace", "MaxCalls"}},
		{name: "NaN failure rate", opts: kombotest.Options{FailureRate: math.NaN()}, want: []string{"FailureRate"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if (err != nil) != (len(tt.want) > 0) {
				t.Fatalf("Validate() = %v", err)
			}
			for _, field := range tt.want {
				if !strings.Contains(err.Error(), "kombotest: "+field+":") {
					t.Errorf("error %q does not name %s", err, field)
				}
			}
			f := kombotest.New(kombotest.Options{Latency: time.Second})
			if err := f.SetOptions(tt.opts); (err != nil) != (len(tt.want) > 0) {
				t.Errorf("SetOptions() = %v", err)
			}
			if len(tt.want) > 0 && f.Options().Latency != time.Second {
				t.Errorf("invalid SetOptions changed the options to %+v", f.Options())
			}
		})
	}
}
