package kombotest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// post sends a JSON body to a control endpoint.
func post(t *testing.T, url, body string) answer {
	t.Helper()
	resp, err := client.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

func decode[T any](t *testing.T, a answer) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(a.Body), &v); err != nil {
		t.Fatalf("decode %s: %v", a.Body, err)
	}
	return v
}

func TestControlConfig(t *testing.T) {
	tests := []struct {
		name       string
		body       string
		wantStatus int
		want       func(o *kombotest.Options) // edits the starting options into the expected ones
	}{
		{name: "reject key", body: `{"RejectKey":true}`, wantStatus: 200,
			want: func(o *kombotest.Options) { o.RejectKey = true }},
		{name: "every field, any spelling", wantStatus: 200,
			body: `{"api_key":"k2","latency":"250ms","LatencyJitter":1000,"concurrency-limit":4,"RATE_LIMIT":2.5,
				"rateBurst":3,"rate_limit_header":"retry-after","failure_rate":0.25,"reject_key":false,"seed":9,
				"early_grace":"20ms","max_calls":100}`,
			want: func(o *kombotest.Options) {
				*o = kombotest.Options{APIKey: "k2", Latency: 250 * time.Millisecond, LatencyJitter: time.Microsecond,
					ConcurrencyLimit: 4, RateLimit: 2.5, RateBurst: 3, RateLimitHeader: "retry-after", FailureRate: 0.25,
					Seed: 9, EarlyGrace: 20 * time.Millisecond, MaxCalls: 100}
			}},
		{name: "empty object changes nothing", body: `{}`, wantStatus: 200, want: func(*kombotest.Options) {}},
		{name: "unknown field", body: `{"Latnecy":"1s"}`, wantStatus: 400, want: func(*kombotest.Options) {}},
		{name: "bad duration", body: `{"Latency":"soon"}`, wantStatus: 400, want: func(*kombotest.Options) {}},
		{name: "invalid value changes nothing", body: `{"Latency":"1s","FailureRate":2}`, wantStatus: 400,
			want: func(*kombotest.Options) {}},
		{name: "wrong type", body: `{"ConcurrencyLimit":"many"}`, wantStatus: 400, want: func(*kombotest.Options) {}},
		{name: "not an object", body: `[1]`, wantStatus: 400, want: func(*kombotest.Options) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := kombotest.Options{APIKey: testKey, ConcurrencyLimit: 8}
			f, base := kombotest.NewServer(t, start)
			root := strings.TrimSuffix(base, "/v1")
			got := post(t, root+"/_fake/config", tt.body)
			if got.Status != tt.wantStatus {
				t.Fatalf("status %d (%s), want %d", got.Status, got.Body, tt.wantStatus)
			}
			if got.Status != 200 && !strings.Contains(got.Body, `"error"`) {
				t.Errorf("error answer %s has no error message", got.Body)
			}
			want := start
			tt.want(&want)
			if diff := cmp.Diff(want, f.Options()); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
}

func TestControlConfigView(t *testing.T) {
	_, base := kombotest.NewServer(t, kombotest.Options{APIKey: "secret-key", Latency: time.Second, RateLimit: 1})
	root := strings.TrimSuffix(base, "/v1")
	got := mustDo(t, http.MethodGet, root+"/_fake/config", "")
	if strings.Contains(got.Body, "secret-key") {
		t.Fatalf("config shows the API key: %s", got.Body)
	}
	view := decode[map[string]any](t, got)
	want := map[string]any{
		"APIKeySet": true, "Latency": "1s", "LatencyJitter": "0s", "ConcurrencyLimit": 0.0, "RateLimit": 1.0,
		"RateBurst": 0.0, "RateLimitHeader": "ratelimit-reset", "FailureRate": 0.0, "RejectKey": false, "Seed": 0.0,
		"EarlyGrace": "0s", "MaxCalls": 0.0,
	}
	if diff := cmp.Diff(want, view); diff != "" {
		t.Errorf("GET /_fake/config (-want +got):\n%s", diff)
	}
	// A POST answers the same view.
	posted := decode[map[string]any](t, post(t, root+"/_fake/config", `{"RejectKey":true}`))
	want["RejectKey"] = true
	if diff := cmp.Diff(want, posted); diff != "" {
		t.Errorf("POST /_fake/config (-want +got):\n%s", diff)
	}
	// And the change shows over HTTP.
	if got := mustDo(t, http.MethodDelete, base+"/integrations/x", "secret-key"); got.Status != 401 {
		t.Errorf("after RejectKey: %d, want 401", got.Status)
	}
}

func TestControlScript(t *testing.T) {
	_, base := kombotest.NewServer(t, kombotest.Options{})
	root := strings.TrimSuffix(base, "/v1")
	body := `{"id":"personio:1","answers":[
		{"Status":500,"Code":"PLATFORM.UNKNOWN_ERROR"},
		{"status":429,"code":"PLATFORM.RATE_LIMIT_EXCEEDED","header":{"Retry-After":"2","X-Multi":["a","b"]}},
		{"Status":503,"Body":"<html>down</html>","content_type":"text/html"},
		{"Status":400,"Message":"no code here"},
		{"Delay":"1ms"}
	]}`
	if got := post(t, root+"/_fake/script", body); got.Status != 204 {
		t.Fatalf("script: %d %s", got.Status, got.Body)
	}
	if got := post(t, root+"/_fake/script", `{"endpoint":"check-api-key","answers":[{"Status":401,"Code":"PLATFORM.AUTHENTICATION_INVALID"}]}`); got.Status != 204 {
		t.Fatalf("script check-api-key: %d %s", got.Status, got.Body)
	}
	var got []outcome
	var answers []answer
	for range 6 {
		a := del(t, base, "personio%3A1")
		answers = append(answers, a)
		got = append(got, outcomeOf(a))
	}
	want := []outcome{{500, unknown}, {429, rateLimit}, {503, ""}, {400, ""}, {200, ""}, {404, notFound}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	if h := answers[1].Header; h.Get("Retry-After") != "2" || len(h.Values("X-Multi")) != 2 {
		t.Errorf("scripted headers: %v", h)
	}
	if answers[2].Body != "<html>down</html>" || answers[2].Header.Get("Content-Type") != "text/html" {
		t.Errorf("raw answer: %q %q", answers[2].Body, answers[2].Header.Get("Content-Type"))
	}
	if !strings.Contains(answers[3].Body, `"message":"no code here"`) {
		t.Errorf("message answer: %s", answers[3].Body)
	}
	if a := mustDo(t, http.MethodGet, base+"/check-api-key", testKey); a.Status != 401 {
		t.Errorf("scripted check-api-key: %d", a.Status)
	}
	if a := mustDo(t, http.MethodGet, base+"/check-api-key", testKey); a.Status != 200 {
		t.Errorf("check-api-key after its script: %d", a.Status)
	}

	for _, bad := range []string{
		`{"answers":[{}]}`,                       // no id
		`{"id":"x","answers":[{"Stauts":500}]}`,  // typo
		`{"id":"x","answers":[{"Status":42}]}`,   // not a status
		`{"id":"x","answers":[{"Delay":"-1s"}]}`, // negative delay
		`{"id":"x","endpoint":"employees","answers":[]}`,
		`{"id":"x","answers":[{"Header":{"A":1}}]}`,
	} {
		if got := post(t, root+"/_fake/script", bad); got.Status != 400 {
			t.Errorf("script %s: %d, want 400", bad, got.Status)
		}
	}
}

func TestControlCallsStatsResetMissing(t *testing.T) {
	f, base := kombotest.NewServer(t, kombotest.Options{APIKey: testKey})
	root := strings.TrimSuffix(base, "/v1")
	if got := post(t, root+"/_fake/missing", `{"ids":["gone"]}`); got.Status != 204 {
		t.Fatalf("missing: %d %s", got.Status, got.Body)
	}
	del(t, base, "gone")
	del(t, base, "a")
	mustDo(t, http.MethodGet, base+"/check-api-key", "wrong")

	calls := decode[[]kombotest.Call](t, mustDo(t, http.MethodGet, root+"/_fake/calls", ""))
	if diff := cmp.Diff(f.Calls(), calls); diff != "" {
		t.Errorf("/_fake/calls differs from Calls() (-Calls +endpoint):\n%s", diff)
	}
	byID := decode[[]kombotest.Call](t, mustDo(t, http.MethodGet, root+"/_fake/calls?id=gone", ""))
	if len(byID) != 1 || byID[0].Status != 404 {
		t.Errorf("/_fake/calls?id=gone: %+v", byID)
	}

	stats := decode[kombotest.Stats](t, mustDo(t, http.MethodGet, root+"/_fake/stats", ""))
	want := kombotest.Stats{Calls: 3, Deletes: 2, CheckAPIKey: 1, Deleted: 1, MaxInFlight: 1,
		ByStatus: map[int]int{200: 1, 404: 1, 401: 1},
		ByCode:   map[string]int{notFound: 1, authInvalid: 1}}
	if diff := cmp.Diff(want, stats); diff != "" {
		t.Errorf("/_fake/stats (-want +got):\n%s", diff)
	}

	if got := post(t, root+"/_fake/reset", ""); got.Status != 204 {
		t.Fatalf("reset: %d", got.Status)
	}
	if n := len(decode[[]kombotest.Call](t, mustDo(t, http.MethodGet, root+"/_fake/calls", ""))); n != 0 {
		t.Errorf("%d calls after reset", n)
	}
	if got := del(t, base, "gone"); got.Status != 200 {
		t.Errorf("after reset, gone answers %d, want 200", got.Status)
	}
}

func TestControlRouting(t *testing.T) {
	_, base := kombotest.NewServer(t, kombotest.Options{})
	root := strings.TrimSuffix(base, "/v1")
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/_fake/healthz", 200},
		{"GET", "/_fake/calls", 200},
		{"GET", "/_fake/stats", 200},
		{"GET", "/_fake/config", 200},
		{"GET", "/_fake/reset", 405},
		{"POST", "/_fake/calls", 405},
		{"DELETE", "/_fake/config", 405},
		{"GET", "/_fake/nope", 404},
		{"GET", "/_fake", 404},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			if got := mustDo(t, tt.method, root+tt.path, ""); got.Status != tt.want {
				t.Errorf("%d (%s), want %d", got.Status, got.Body, tt.want)
			}
		})
	}
}
