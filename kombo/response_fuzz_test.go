package kombo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo"
)

// fuzzHeaders are the response headers FuzzResponse sets to a fuzzed value, one per case.
var fuzzHeaders = []string{"Retry-After", "Retry-After-Ms", "Ratelimit-Reset", "Concurrency-Limit", "Content-Type", "Location"}

// fuzzAnswer is what the server answers to one fuzz case.
type fuzzAnswer struct {
	status int
	header string
	value  string
	body   []byte
}

// FuzzResponse answers a DELETE with a fuzzed status (200–599), one fuzzed header value and a
// fuzzed body, through a real HTTP server and the real client. The client never panics; a 200
// is a success; every other answer is a *kombo.Error with that status, a non-empty Message,
// a Code only when the body is Kombo's error JSON carrying it, a RetryAfter within [0, 1h],
// and never the API key.
func FuzzResponse(f *testing.F) {
	var answers sync.Map // integration id → fuzzAnswer
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, ok := answers.Load(strings.TrimPrefix(r.URL.Path, "/v1/integrations/"))
		if !ok {
			http.Error(w, "unknown case", http.StatusTeapot)
			return
		}
		a := v.(fuzzAnswer)
		w.Header()[a.header] = []string{a.value}
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	}))
	f.Cleanup(srv.Close)
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	client, err := kombo.New(kombo.Options{BaseURL: srv.URL + "/v1", APIKey: testKey, Timeout: 10 * time.Second,
		Now: func() time.Time { return now }})
	if err != nil {
		f.Fatal(err)
	}
	var seq atomic.Int64

	f.Add(200, uint8(4), "application/json", []byte(`{"status":"success","data":{}}`))
	f.Add(404, uint8(4), "application/json", []byte(`{"status":"error","error":{"code":"PLATFORM.INTEGRATION_NOT_FOUND","title":"Not found","message":"The integration does not exist.","log_url":"https://app.kombo.dev/logs/1"}}`))
	f.Add(429, uint8(2), "7", []byte(`{"status":"error","error":{"code":"PLATFORM.RATE_LIMIT_EXCEEDED","title":null,"message":"slow down","log_url":null}}`))
	f.Add(429, uint8(0), "Fri, 27 Nov 2026 12:00:30 GMT", []byte(`{"status":"error","error":{"code":null,"message":"rate limited"}}`))
	f.Add(429, uint8(1), "1500.5", []byte("Too Many Requests"))
	f.Add(502, uint8(4), "text/html", []byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
	f.Add(500, uint8(4), "", []byte(""))
	f.Add(503, uint8(0), "99999999999999999999", []byte(`{"status":"error","error":{"code":"PLATFORM.UNKNOWN_ERROR","message":""}}`))
	f.Add(429, uint8(3), "4", []byte(`{"status":"error","error":{"code":"PLATFORM.CONCURRENCY_LIMIT_EXCEEDED","message":"too many"}}`))
	f.Add(302, uint8(5), "https://elsewhere.example/v1/integrations/x", []byte(""))
	f.Add(400, uint8(4), "text/plain", []byte("you sent Authorization: Bearer "+testKey))
	f.Add(401, uint8(4), "application/json", []byte(`{"status":"error","error":{"code":7,"message":"bad"}}`))
	f.Add(204, uint8(4), "application/json", []byte(`{"status":"success"}`))
	f.Add(418, uint8(4), "application/json; charset=\"", []byte(`{"error":{"code":"X","message":"`+testKey+`"}}`))

	f.Fuzz(func(t *testing.T, status int, which uint8, value string, body []byte) {
		if status < 0 {
			status = -(status + 1)
		}
		status = 200 + status%400
		if !validHeaderValue(value) {
			return // Go's server would not send it as it is
		}
		a := fuzzAnswer{status: status, header: fuzzHeaders[int(which)%len(fuzzHeaders)], value: value, body: body}
		id := fmt.Sprintf("case-%d", seq.Add(1))
		answers.Store(id, a)
		defer answers.Delete(id)

		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err := client.DeleteIntegration(ctx, id)
		if status == http.StatusOK {
			if err != nil {
				t.Fatalf("200 with %s: %q and body %q: got %v, want success", a.header, value, body, err)
			}
			return
		}
		var kerr *kombo.Error
		if !errors.As(err, &kerr) {
			t.Fatalf("%d with %s: %q and body %q: got %T %v, want a *kombo.Error", status, a.header, value, body, err, err)
		}
		if kerr.Status != status {
			t.Fatalf("Status %d, want %d", kerr.Status, status)
		}
		if strings.TrimSpace(kerr.Message) == "" {
			t.Fatalf("%d with body %q: empty Message (%+v)", status, body, kerr)
		}
		if want := strings.ReplaceAll(jsonCode(body), testKey, "[redacted]"); kerr.Code != "" && kerr.Code != want {
			t.Fatalf("%d with body %q: Code %q does not come from the JSON body", status, body, kerr.Code)
		}
		if status >= 300 && status < 400 && kerr.Code != "" {
			t.Fatalf("redirect %d with Code %q", status, kerr.Code)
		}
		if kerr.RetryAfter < 0 || kerr.RetryAfter > time.Hour {
			t.Fatalf("%s: %q: RetryAfter %v, want within [0, 1h]", a.header, value, kerr.RetryAfter)
		}
		if kerr.ConcurrencyLimit < 0 {
			t.Fatalf("%s: %q: ConcurrencyLimit %d", a.header, value, kerr.ConcurrencyLimit)
		}
		if strings.Contains(kerr.Error(), testKey) || strings.Contains(kerr.Title, testKey) {
			t.Fatalf("the API key appears in the error: %q", kerr.Error())
		}
	})
}

// jsonCode returns error.code of a Kombo error body read the way encoding/json reads it, or "".
func jsonCode(body []byte) string {
	var v struct {
		Error *struct {
			Code *string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &v) != nil || v.Error == nil || v.Error.Code == nil {
		return ""
	}
	return *v.Error.Code
}

// validHeaderValue reports whether s can be sent as an HTTP header value as is: no control
// characters other than tab.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if b := s[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}
