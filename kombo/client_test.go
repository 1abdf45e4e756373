package kombo_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kombo-ops/integration-deleter/kombo"
)

const testKey = "ks_test_s3cr3t-0123456789abcdef"

// received is one request as the server saw it.
type received struct {
	Method     string
	RequestURI string
	Header     http.Header
	Body       string
}

// server is a real HTTP server that records what it receives.
type server struct {
	*httptest.Server
	conns atomic.Int64 // connections opened

	mu   sync.Mutex
	reqs []received
}

func newServer(t *testing.T, h http.HandlerFunc) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.reqs = append(s.reqs, received{r.Method, r.RequestURI, r.Header.Clone(), string(body)})
		s.mu.Unlock()
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *server) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.reqs...)
}

func newClient(t *testing.T, baseURL string, opts ...func(*kombo.Options)) *kombo.Client {
	t.Helper()
	o := kombo.Options{BaseURL: baseURL, APIKey: testKey, UserAgent: "integration-deleter/test"}
	for _, f := range opts {
		f(&o)
	}
	c, err := kombo.New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// reply writes a canned answer.
func reply(status int, header map[string]string, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

var testNow = time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)

func TestDeleteIntegrationError(t *testing.T) {
	const jsonCT = "application/json"
	html := "<!DOCTYPE html>\n<html>\n<head><title>503 Service Temporarily Unavailable</title></head>\n" +
		"<body>\n<center><h1>503 Service Temporarily Unavailable</h1></center>\n<hr><center>nginx</center>\n" +
		"</body>\n</html>\n" + strings.Repeat("<!-- padding -->\n", 10)
	huge := strings.Repeat("x", 1<<20)
	echo := "Authorization: Bearer " + testKey + "\n"
	numericCode := `{"status":"error","error":{"code":400,"message":"bad"}}`
	size := func(body string) string { return strconv.Itoa(len(body)) + " bytes" }

	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   *kombo.Error
		wantIs error // a sentinel the error must match, if any
	}{
		{
			name:   "JSON error with every field",
			status: 404,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"status":"error","error":{"code":"PLATFORM.INTEGRATION_NOT_FOUND","title":"Integration not found","message":"No integration with this ID exists.","log_url":"https://app.kombo.dev/logs/abc"}}`,
			want: &kombo.Error{Status: 404, Code: kombo.CodeIntegrationNotFound, Title: "Integration not found",
				Message: "No integration with this ID exists.", LogURL: "https://app.kombo.dev/logs/abc"},
			wantIs: kombo.ErrIntegrationNotFound,
		},
		{
			name:   "JSON error with null code, title and log_url",
			status: 500,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"status":"error","error":{"code":null,"title":null,"message":"Something went wrong.","log_url":null}}`,
			want:   &kombo.Error{Status: 500, Message: "Something went wrong."},
		},
		{
			name:   "JSON error with only a message",
			status: 400,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"status":"error","error":{"message":"integration_id is invalid"},"extra":[1,2]}`,
			want:   &kombo.Error{Status: 400, Message: "integration_id is invalid"},
		},
		{
			name:   "JSON error without a message uses the title",
			status: 403,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"status":"error","error":{"code":"PLATFORM.IP_NOT_WHITELISTED","title":"IP not whitelisted","message":null}}`,
			want:   &kombo.Error{Status: 403, Code: kombo.CodeIPNotWhitelisted, Title: "IP not whitelisted", Message: "IP not whitelisted"},
			wantIs: kombo.ErrIPNotWhitelisted,
		},
		{
			name:   "JSON error with nothing in it",
			status: 418,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"status":"error","error":{}}`,
			want:   &kombo.Error{Status: 418, Message: "HTTP 418 with a Kombo error without a message"},
		},
		{
			name:   "rate limit with several hints takes the longest",
			status: 429,
			header: map[string]string{"Content-Type": jsonCT, "Retry-After": "3", "Ratelimit-Reset": "5", "Retry-After-Ms": "4500"},
			body:   `{"status":"error","error":{"code":"PLATFORM.RATE_LIMIT_EXCEEDED","title":"Rate limit exceeded","message":"Slow down.","log_url":null}}`,
			want: &kombo.Error{Status: 429, Code: kombo.CodeRateLimitExceeded, Title: "Rate limit exceeded",
				Message: "Slow down.", RetryAfter: 5 * time.Second},
			wantIs: kombo.ErrRateLimitExceeded,
		},
		{
			name:   "rate limit with an HTTP date",
			status: 429,
			header: map[string]string{"Content-Type": jsonCT, "Retry-After": testNow.Add(90 * time.Second).Format(http.TimeFormat)},
			body:   `{"status":"error","error":{"code":"PLATFORM.RATE_LIMIT_EXCEEDED","title":null,"message":"Slow down.","log_url":null}}`,
			want:   &kombo.Error{Status: 429, Code: kombo.CodeRateLimitExceeded, Message: "Slow down.", RetryAfter: 90 * time.Second},
			wantIs: kombo.ErrRateLimitExceeded,
		},
		{
			name:   "concurrency limit with its header",
			status: 429,
			header: map[string]string{"Content-Type": jsonCT, "Concurrency-Limit": "10", "Concurrency-Remaining": "0"},
			body:   `{"status":"error","error":{"code":"PLATFORM.CONCURRENCY_LIMIT_EXCEEDED","title":null,"message":"Too many requests in flight.","log_url":null}}`,
			want: &kombo.Error{Status: 429, Code: kombo.CodeConcurrencyLimitExceeded, Message: "Too many requests in flight.",
				Limits: kombo.Limits{ConcurrencyLimit: 10, ConcurrencyRemaining: 0}},
			wantIs: kombo.ErrConcurrencyLimitExceeded,
		},
		{
			name:   "429 without a body",
			status: 429,
			header: map[string]string{"Retry-After": "7"},
			want:   &kombo.Error{Status: 429, Message: "HTTP 429 with an empty body", RetryAfter: 7 * time.Second},
		},
		{
			name:   "plain text 502",
			status: 502,
			header: map[string]string{"Content-Type": "text/plain; charset=utf-8"},
			body:   "Bad Gateway\n",
			want:   &kombo.Error{Status: 502, Message: `HTTP 502 with a non-JSON body (text/plain, 12 bytes): "Bad Gateway"`},
		},
		{
			name:   "HTML 503",
			status: 503,
			header: map[string]string{"Content-Type": "text/html"},
			body:   html,
			want: &kombo.Error{Status: 503, Message: `HTTP 503 with a non-JSON body (text/html, ` + size(html) + `): ` +
				`"<!DOCTYPE html> <html> <head><title>503 Service Temporarily Unavailable</title></head> ` +
				`<body> <center><h1>503 Service Temporarily Unavailable</h1></center> <hr><center>nginx</center> </body> </html> <…"`},
		},
		{
			name:   "empty 500",
			status: 500,
			want:   &kombo.Error{Status: 500, Message: "HTTP 500 with an empty body"},
		},
		{
			name:   "white space only 500",
			status: 500,
			header: map[string]string{"Content-Type": "text/plain"},
			body:   " \r\n",
			want:   &kombo.Error{Status: 500, Message: "HTTP 500 with an empty body"},
		},
		{
			name:   "huge body beyond the limit",
			status: 500,
			header: map[string]string{"Content-Type": "text/plain"},
			body:   huge,
			want: &kombo.Error{Status: 500, Message: `HTTP 500 with an oversized body (text/plain, more than 65536 bytes): "` +
				strings.Repeat("x", 200) + `…"`},
		},
		{
			name:   "huge body with a Content-Length",
			status: 502,
			header: map[string]string{"Content-Type": "text/plain", "Content-Length": "1048576"},
			body:   huge,
			want: &kombo.Error{Status: 502, Message: `HTTP 502 with an oversized body (text/plain, 1048576 bytes): "` +
				strings.Repeat("x", 200) + `…"`},
		},
		{
			name:   "JSON of another shape",
			status: 404,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"detail":"Not Found"}`,
			want:   &kombo.Error{Status: 404, Message: `HTTP 404 with a JSON body that is not a Kombo error (application/json, 22 bytes): "{\"detail\":\"Not Found\"}"`},
		},
		{
			name:   "JSON with error as a string",
			status: 400,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"error":"bad"}`,
			want:   &kombo.Error{Status: 400, Message: `HTTP 400 with a JSON body that is not a Kombo error (application/json, 15 bytes): "{\"error\":\"bad\"}"`},
		},
		{
			name:   "JSON with a numeric code",
			status: 400,
			header: map[string]string{"Content-Type": jsonCT},
			body:   numericCode,
			want: &kombo.Error{Status: 400, Message: `HTTP 400 with a JSON body that is not a Kombo error (application/json, ` + size(numericCode) + `): ` +
				`"{\"status\":\"error\",\"error\":{\"code\":400,\"message\":\"bad\"}}"`},
		},
		{
			name:   "binary body",
			status: 500,
			header: map[string]string{"Content-Type": "application/octet-stream"},
			body:   "\x00\x01\xff",
			want:   &kombo.Error{Status: 500, Message: `HTTP 500 with a non-JSON body (application/octet-stream, 3 bytes)`},
		},
		{
			name:   "no content type",
			status: 500,
			header: map[string]string{"Content-Type": ""},
			body:   "x",
			want:   &kombo.Error{Status: 500, Message: `HTTP 500 with a non-JSON body (no Content-Type, 1 byte): "x"`},
		},
		{
			name:   "204 is not a success",
			status: 204,
			want:   &kombo.Error{Status: 204, Message: "HTTP 204 with an empty body"},
		},
		{
			name:   "API key echoed by a proxy is redacted",
			status: 502,
			header: map[string]string{"Content-Type": "text/plain"},
			body:   echo,
			want: &kombo.Error{Status: 502, Message: `HTTP 502 with a non-JSON body (text/plain, ` +
				size(echo) + `): "Authorization: Bearer [redacted]"`},
		},
		{
			name:   "API key echoed in a Kombo error is redacted",
			status: 401,
			header: map[string]string{"Content-Type": jsonCT},
			body:   `{"status":"error","error":{"code":"PLATFORM.AUTHENTICATION_INVALID","title":"Bad key ` + testKey + `","message":"Key ` + testKey + ` is invalid.","log_url":null}}`,
			want: &kombo.Error{Status: 401, Code: kombo.CodeAuthenticationInvalid, Title: "Bad key [redacted]",
				Message: "Key [redacted] is invalid."},
			wantIs: kombo.ErrAuthenticationInvalid,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, reply(tt.status, tt.header, tt.body))
			c := newClient(t, srv.URL+"/v1", func(o *kombo.Options) { o.Now = func() time.Time { return testNow } })

			res, err := c.DeleteIntegration(context.Background(), "personio:abc")
			var got *kombo.Error
			if !errors.As(err, &got) {
				t.Fatalf("DeleteIntegration = %+v, %v; want *kombo.Error", res, err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("error mismatch (-got +want):\n%s", diff)
			}
			if !errors.Is(err, &kombo.Error{Status: tt.status}) {
				t.Errorf("errors.Is(%v, status %d) = false", err, tt.status)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error %q contains the API key", err)
			}
			if n := len(srv.received()); n != 1 {
				t.Errorf("server saw %d requests, want 1", n)
			}
		})
	}
}

func TestDeleteIntegrationRedirect(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		location string
		want     *kombo.Error
	}{
		{
			name: "301 to the same server", status: 301, location: "/v2/integrations/personio:abc",
			want: &kombo.Error{Status: 301, Message: `HTTP 301 redirect to "/v2/integrations/personio:abc" refused: the client does not follow redirects`},
		},
		{
			name: "307 elsewhere", status: 307, location: "https://api.us.kombo.dev/v1/integrations/personio:abc",
			want: &kombo.Error{Status: 307, Message: `HTTP 307 redirect to "https://api.us.kombo.dev/v1/integrations/personio:abc" refused: the client does not follow redirects`},
		},
		{
			name: "302 without a Location", status: 302,
			want: &kombo.Error{Status: 302, Message: `HTTP 302 redirect refused (no Location header): the client does not follow redirects`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				if strings.HasPrefix(r.URL.Path, "/v2/") {
					w.WriteHeader(http.StatusOK) // where a followed redirect would land
					return
				}
				if tt.location != "" {
					w.Header().Set("Location", tt.location)
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, `{"status":"error","error":{"code":"PLATFORM.UNKNOWN_ERROR","message":"moved"}}`)
			})
			c := newClient(t, srv.URL+"/v1")

			_, err := c.DeleteIntegration(context.Background(), "personio:abc")
			var got *kombo.Error
			if !errors.As(err, &got) {
				t.Fatalf("DeleteIntegration error = %v; want *kombo.Error", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("error mismatch (-got +want):\n%s", diff)
			}
			var methods []string
			for _, r := range srv.received() {
				methods = append(methods, r.Method+" "+r.RequestURI)
			}
			if diff := cmp.Diff(methods, []string{"DELETE /v1/integrations/personio:abc"}); diff != "" {
				t.Errorf("requests mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDeleteIntegrationSuccess(t *testing.T) {
	tests := []struct {
		name   string
		header map[string]string
		body   string
		want   kombo.DeleteResult
	}{
		{name: "without limit headers", body: `{"status":"success","data":{}}`, want: kombo.DeleteResult{}},
		{name: "with Concurrency-Limit", header: map[string]string{"Concurrency-Limit": "25", "Concurrency-Remaining": "24"},
			body: `{"status":"success","data":{}}`,
			want: kombo.DeleteResult{Limits: kombo.Limits{ConcurrencyLimit: 25, ConcurrencyRemaining: 24}}},
		{name: "with the ratelimit headers", header: map[string]string{"ratelimit-limit": "100", "ratelimit-remaining": "0", "ratelimit-reset": "1"},
			body: `{"status":"success","data":{}}`,
			want: kombo.DeleteResult{Limits: kombo.Limits{RateLimit: 100, RateRemaining: 0}}},
		{name: "with invalid limit headers", header: map[string]string{"Concurrency-Limit": "many", "Concurrency-Remaining": "3",
			"ratelimit-limit": "1e3", "ratelimit-remaining": "2"},
			body: `{"status":"success","data":{}}`, want: kombo.DeleteResult{}},
		{name: "with a limit and an invalid remaining", header: map[string]string{"Concurrency-Limit": "4", "Concurrency-Remaining": "-3"},
			body: `{"status":"success","data":{}}`, want: kombo.DeleteResult{Limits: kombo.Limits{ConcurrencyLimit: 4, ConcurrencyRemaining: -1}}},
		{name: "with a body that is not JSON", body: "OK", want: kombo.DeleteResult{}},
		{name: "with a huge body", body: strings.Repeat(" ", 1<<20), want: kombo.DeleteResult{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{"Content-Type": "application/json"}
			for k, v := range tt.header {
				h[k] = v
			}
			srv := newServer(t, reply(http.StatusOK, h, tt.body))
			c := newClient(t, srv.URL+"/v1")

			got, err := c.DeleteIntegration(context.Background(), "personio:abc")
			if err != nil {
				t.Fatalf("DeleteIntegration: %v", err)
			}
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("result mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDeleteIntegrationRequest(t *testing.T) {
	tests := []struct {
		name      string
		userAgent string
		want      received
	}{
		{
			name:      "given user agent",
			userAgent: "integration-deleter/1.2.3",
			want: received{Method: "DELETE", RequestURI: "/v1/integrations/personio:CBNMt7dSNCzBdnRTx87dev4E", Body: "{}", Header: http.Header{
				"Authorization": {"Bearer " + testKey},
				"Content-Type":  {"application/json"},
				"Accept":        {"application/json"},
				"User-Agent":    {"integration-deleter/1.2.3"},
			}},
		},
		{
			name: "default user agent",
			want: received{Method: "DELETE", RequestURI: "/v1/integrations/personio:CBNMt7dSNCzBdnRTx87dev4E", Body: "{}", Header: http.Header{
				"Authorization": {"Bearer " + testKey},
				"Content-Type":  {"application/json"},
				"Accept":        {"application/json"},
				"User-Agent":    {kombo.DefaultUserAgent},
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, reply(http.StatusOK, nil, `{"status":"success","data":{}}`))
			c := newClient(t, srv.URL+"/v1", func(o *kombo.Options) { o.UserAgent = tt.userAgent })

			if _, err := c.DeleteIntegration(context.Background(), "personio:CBNMt7dSNCzBdnRTx87dev4E"); err != nil {
				t.Fatalf("DeleteIntegration: %v", err)
			}
			got := srv.received()
			if len(got) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(got))
			}
			// Keep only the headers under test (Go adds Content-Length, Accept-Encoding).
			h := http.Header{}
			for k := range tt.want.Header {
				if v, ok := got[0].Header[k]; ok {
					h[k] = v
				}
			}
			for _, k := range []string{"Traceparent", "Tracestate"} {
				if v, ok := got[0].Header[k]; ok {
					h[k] = v
				}
			}
			got[0].Header = h
			if diff := cmp.Diff(got[0], tt.want); diff != "" {
				t.Errorf("request mismatch (-got +want):\n%s", diff)
			}
		})
	}
}

func TestDeleteIntegrationEscapesID(t *testing.T) {
	tests := []struct {
		id   string
		want string // the request URI the server gets
	}{
		{"personio:abc", "/v1/integrations/personio:abc"},
		{"../x", "/v1/integrations/..%2Fx"},
		{"a/b", "/v1/integrations/a%2Fb"},
		{"x?y#z", "/v1/integrations/x%3Fy%23z"},
		{"%2F", "/v1/integrations/%252F"},
		{"ünï", "/v1/integrations/%C3%BCn%C3%AF"},
		{"..", "/v1/integrations/%2E%2E"},
		{".", "/v1/integrations/%2E"},
		{"...", "/v1/integrations/%2E%2E%2E"},
		{"a b+c", "/v1/integrations/a%20b+c"},
		{"x/../../check-api-key", "/v1/integrations/x%2F..%2F..%2Fcheck-api-key"},
		{`\..\x`, "/v1/integrations/%5C..%5Cx"},
		{";a=b", "/v1/integrations/%3Ba=b"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			srv := newServer(t, reply(http.StatusOK, nil, `{"status":"success","data":{}}`))
			c := newClient(t, srv.URL+"/v1")

			if _, err := c.DeleteIntegration(context.Background(), tt.id); err != nil {
				t.Fatalf("DeleteIntegration(%q): %v", tt.id, err)
			}
			reqs := srv.received()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			got := reqs[0].RequestURI
			if got != tt.want {
				t.Errorf("request URI = %q, want %q", got, tt.want)
			}
			segs := strings.Split(strings.TrimPrefix(got, "/v1/"), "/")
			if len(segs) != 2 || segs[0] != "integrations" {
				t.Fatalf("path after /v1 = %q, want 2 segments integrations/<id>", segs)
			}
			if id, err := url.PathUnescape(segs[1]); err != nil || id != tt.id {
				t.Errorf("unescaped id = %q, %v; want %q", id, err, tt.id)
			}
		})
	}
}

func TestBaseURLPaths(t *testing.T) {
	tests := []struct {
		name    string
		path    string // appended to the server URL
		wantURI string
	}{
		{"no path", "", "/integrations/a%2Fb"},
		{"root", "/", "/integrations/a%2Fb"},
		{"trailing slash", "/v1/", "/v1/integrations/a%2Fb"},
		{"nested", "/proxy/kombo/v1", "/proxy/kombo/v1/integrations/a%2Fb"},
		{"escaped base", "/my%20proxy/v1", "/my%20proxy/v1/integrations/a%2Fb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, reply(http.StatusOK, nil, `{}`))
			c := newClient(t, srv.URL+tt.path)

			if _, err := c.DeleteIntegration(context.Background(), "a/b"); err != nil {
				t.Fatalf("DeleteIntegration: %v", err)
			}
			if got := srv.received()[0].RequestURI; got != tt.wantURI {
				t.Errorf("request URI = %q, want %q", got, tt.wantURI)
			}
		})
	}
}

func TestDeleteIntegrationEmptyID(t *testing.T) {
	srv := newServer(t, reply(http.StatusOK, nil, `{}`))
	c := newClient(t, srv.URL+"/v1")

	_, err := c.DeleteIntegration(context.Background(), "")
	if !errors.Is(err, kombo.ErrEmptyIntegrationID) {
		t.Errorf("DeleteIntegration(\"\") error = %v, want ErrEmptyIntegrationID", err)
	}
	if n := len(srv.received()); n != 0 {
		t.Errorf("server saw %d requests, want 0", n)
	}
}

func TestTrace(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name       string
		ctx        context.Context
		wantHeader http.Header
	}{
		{"none", context.Background(), http.Header{}},
		{"traceparent and tracestate", kombo.WithTrace(context.Background(), tp, "congo=t61rcWkgMzE"),
			http.Header{"Traceparent": {tp}, "Tracestate": {"congo=t61rcWkgMzE"}}},
		{"traceparent only", kombo.WithTrace(context.Background(), tp, ""), http.Header{"Traceparent": {tp}}},
		{"invalid value is dropped", kombo.WithTrace(context.Background(), tp+"\r\nX-Evil: 1", "a=b"),
			http.Header{"Tracestate": {"a=b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, reply(http.StatusOK, nil, `{"status":"success","data":{"environment_id":"e"}}`))
			c := newClient(t, srv.URL+"/v1")

			if _, err := c.DeleteIntegration(tt.ctx, "personio:abc"); err != nil {
				t.Fatalf("DeleteIntegration: %v", err)
			}
			if _, err := c.CheckAPIKey(tt.ctx); err != nil {
				t.Fatalf("CheckAPIKey: %v", err)
			}
			for _, r := range srv.received() {
				got := http.Header{}
				for _, k := range []string{"Traceparent", "Tracestate", "X-Evil"} {
					if v, ok := r.Header[k]; ok {
						got[k] = v
					}
				}
				if diff := cmp.Diff(got, tt.wantHeader); diff != "" {
					t.Errorf("%s: trace headers mismatch (-got +want):\n%s", r.Method, diff)
				}
			}
		})
	}
}

func TestTransportErrors(t *testing.T) {
	block := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	partial := func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	tests := []struct {
		name    string
		handler http.HandlerFunc
		timeout time.Duration
		cancel  bool // cancel the caller's context at once
		want    error
	}{
		{"per-call timeout", block, 50 * time.Millisecond, false, context.DeadlineExceeded},
		{"timeout while reading an error body", partial, 50 * time.Millisecond, false, context.DeadlineExceeded},
		{"caller cancels", block, time.Minute, true, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.handler)
			c := newClient(t, srv.URL+"/v1", func(o *kombo.Options) { o.Timeout = tt.timeout })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.cancel {
				go func() {
					for len(srv.received()) == 0 {
						time.Sleep(time.Millisecond)
					}
					cancel()
				}()
			}

			_, err := c.DeleteIntegration(ctx, "personio:abc")
			if !errors.Is(err, tt.want) {
				t.Fatalf("DeleteIntegration error = %v, want %v", err, tt.want)
			}
			var kerr *kombo.Error
			if errors.As(err, &kerr) {
				t.Errorf("error %v is a *kombo.Error, want a transport error", err)
			}
			if want := `kombo: delete integration "personio:abc": `; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("error %q contains the API key", err)
			}

			_, err = c.CheckAPIKey(ctx)
			if !errors.Is(err, tt.want) {
				t.Fatalf("CheckAPIKey error = %v, want %v", err, tt.want)
			}
			if want := `kombo: check API key: `; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newClient(t, "http://"+addr+"/v1")

	_, err = c.DeleteIntegration(context.Background(), "personio:abc")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("DeleteIntegration error = %v, want ECONNREFUSED", err)
	}
	if strings.Contains(err.Error(), testKey) {
		t.Errorf("error %q contains the API key", err)
	}
}

func TestConnectionsAreReused(t *testing.T) {
	answers := []http.HandlerFunc{
		reply(200, nil, `{"status":"success","data":{}}`),
		reply(404, map[string]string{"Content-Type": "application/json"}, `{"status":"error","error":{"code":"PLATFORM.INTEGRATION_NOT_FOUND","message":"gone"}}`),
		reply(502, map[string]string{"Content-Type": "text/plain"}, "Bad Gateway"),
		reply(500, nil, ""),
		reply(301, map[string]string{"Location": "/elsewhere"}, "moved"),
	}
	var n atomic.Int64
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		answers[int(n.Add(1)-1)%len(answers)](w, r)
	})
	c := newClient(t, srv.URL+"/v1")

	for range 2 * len(answers) {
		c.DeleteIntegration(context.Background(), "personio:abc")
	}
	if got := srv.conns.Load(); got != 1 {
		t.Errorf("server saw %d connections for %d sequential calls, want 1", got, 2*len(answers))
	}
}

func TestConcurrentCalls(t *testing.T) {
	srv := newServer(t, reply(200, map[string]string{"Concurrency-Limit": "30"}, `{"status":"success","data":{}}`))
	c := newClient(t, srv.URL+"/v1")

	const calls = 32
	var wg sync.WaitGroup
	errs := make(chan error, calls)
	for i := range calls {
		wg.Go(func() {
			ctx := kombo.WithTrace(context.Background(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "")
			if _, err := c.DeleteIntegration(ctx, "personio:"+string(rune('a'+i%26))); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := len(srv.received()); got != calls {
		t.Errorf("server saw %d requests, want %d", got, calls)
	}
}

func TestCheckAPIKey(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		want    kombo.KeyInfo
		wantErr *kombo.Error // nil: success
	}{
		{
			name: "accepted", status: 200,
			body: `{"status":"success","data":{"environment_id":"B1yvuRs8XVs5ujBMD8tQpdDx"}}`,
			want: kombo.KeyInfo{EnvironmentID: "B1yvuRs8XVs5ujBMD8tQpdDx"},
		},
		{
			name: "rejected", status: 401,
			body: `{"status":"error","error":{"code":"PLATFORM.AUTHENTICATION_INVALID","title":"Authentication invalid","message":"The API key is invalid.","log_url":"https://app.kombo.dev/logs/1"}}`,
			wantErr: &kombo.Error{Status: 401, Code: kombo.CodeAuthenticationInvalid, Title: "Authentication invalid",
				Message: "The API key is invalid.", LogURL: "https://app.kombo.dev/logs/1"},
		},
		{
			name: "IP not allowed", status: 403,
			body:    `{"status":"error","error":{"code":"PLATFORM.IP_NOT_WHITELISTED","title":null,"message":"Your IP is not whitelisted.","log_url":null}}`,
			wantErr: &kombo.Error{Status: 403, Code: kombo.CodeIPNotWhitelisted, Message: "Your IP is not whitelisted."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, reply(tt.status, map[string]string{"Content-Type": "application/json"}, tt.body))
			c := newClient(t, srv.URL+"/v1")

			got, err := c.CheckAPIKey(context.Background())
			reqs := srv.received()
			if len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].RequestURI != "/v1/check-api-key" || reqs[0].Body != "" ||
				reqs[0].Header.Get("Authorization") != "Bearer "+testKey || reqs[0].Header.Get("Accept") != "application/json" {
				t.Errorf("server saw %+v, want one GET /v1/check-api-key with the key and no body", reqs)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("CheckAPIKey: %v", err)
				}
				if diff := cmp.Diff(got, tt.want); diff != "" {
					t.Errorf("result mismatch (-got +want):\n%s", diff)
				}
				return
			}
			var kerr *kombo.Error
			if !errors.As(err, &kerr) {
				t.Fatalf("CheckAPIKey error = %v, want *kombo.Error", err)
			}
			if diff := cmp.Diff(kerr, tt.wantErr); diff != "" {
				t.Errorf("error mismatch (-got +want):\n%s", diff)
			}
			if !errors.Is(err, &kombo.Error{Code: tt.wantErr.Code}) {
				t.Errorf("errors.Is(%v, %s) = false", err, tt.wantErr.Code)
			}
		})
	}
}

func TestCheckAPIKeyBadSuccessBody(t *testing.T) {
	for _, body := range []string{"OK", `{"status":"success"}`, `{"data":"x"}`} {
		t.Run(body, func(t *testing.T) {
			srv := newServer(t, reply(200, nil, body))
			c := newClient(t, srv.URL+"/v1")

			_, err := c.CheckAPIKey(context.Background())
			var kerr *kombo.Error
			if err == nil || errors.As(err, &kerr) {
				t.Fatalf("CheckAPIKey error = %v, want a plain error", err)
			}
			if !strings.HasPrefix(err.Error(), "kombo: check API key: ") {
				t.Errorf("error %q lacks its context", err)
			}
		})
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    kombo.Options
		wantErr string // substring; "" means valid
	}{
		{name: "defaults", opts: kombo.Options{APIKey: testKey}},
		{name: "US", opts: kombo.Options{APIKey: testKey, BaseURL: kombo.USBaseURL}},
		{name: "empty key", opts: kombo.Options{}, wantErr: "API key is empty"},
		{name: "key with newline", opts: kombo.Options{APIKey: testKey + "\n"}, wantErr: "API key contains a control character"},
		{name: "key with spaces", opts: kombo.Options{APIKey: " " + testKey}, wantErr: "white space"},
		{name: "negative timeout", opts: kombo.Options{APIKey: testKey, Timeout: -time.Second}, wantErr: "negative timeout"},
		{name: "user agent with newline", opts: kombo.Options{APIKey: testKey, UserAgent: "a\nb"}, wantErr: "user agent"},
		{name: "scheme", opts: kombo.Options{APIKey: testKey, BaseURL: "ftp://kombo.example/v1"}, wantErr: "scheme must be http or https"},
		{name: "relative", opts: kombo.Options{APIKey: testKey, BaseURL: "api.kombo.dev/v1"}, wantErr: "scheme must be http or https"},
		{name: "no host", opts: kombo.Options{APIKey: testKey, BaseURL: "https:///v1"}, wantErr: "has no host"},
		{name: "user info", opts: kombo.Options{APIKey: testKey, BaseURL: "https://u:hunter2@api.kombo.dev/v1"}, wantErr: "user info"},
		{name: "query", opts: kombo.Options{APIKey: testKey, BaseURL: "https://api.kombo.dev/v1?x=1"}, wantErr: "query or fragment"},
		{name: "fragment", opts: kombo.Options{APIKey: testKey, BaseURL: "https://api.kombo.dev/v1#x"}, wantErr: "query or fragment"},
		{name: "unparsable", opts: kombo.Options{APIKey: testKey, BaseURL: "https://u:hunter2@[::1/v1"}, wantErr: "invalid base URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := kombo.New(tt.opts)
			if tt.wantErr == "" {
				if err != nil || c == nil {
					t.Fatalf("New = %v, %v; want a client", c, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "kombo: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			for _, secret := range []string{testKey, "hunter2"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q contains a secret", err)
				}
			}
		})
	}
}

func TestGetIntegration(t *testing.T) {
	const found = `{"status":"success","data":{"id":"personio:8d1hpPsUpbXjo2j8VHBpq2mZ","tool":"personio",
		"category":"HRIS","status":"ACTIVE","setup_status":"COMPLETED",
		"end_user":{"organization_name":"Acme GmbH","creator_email":"it@acme.example","origin_id":"acme-7"},
		"created_at":"2025-03-01T09:30:00.000Z","data_expired_at":null,"beta":false}}`
	created := time.Date(2025, 3, 1, 9, 30, 0, 0, time.UTC)
	want := kombo.Integration{ID: "personio:8d1hpPsUpbXjo2j8VHBpq2mZ", Tool: "personio", Category: "HRIS",
		Status: "ACTIVE", SetupStatus: "COMPLETED", CreatedAt: created,
		Limits: kombo.Limits{ConcurrencyLimit: 4, ConcurrencyRemaining: 3}}
	want.EndUser.OrganizationName, want.EndUser.CreatorEmail, want.EndUser.OriginID = "Acme GmbH", "it@acme.example", "acme-7"

	srv := newServer(t, reply(200, map[string]string{"Content-Type": "application/json",
		"Concurrency-Limit": "4", "Concurrency-Remaining": "3"}, found))
	c := newClient(t, srv.URL+"/v1")
	got, err := c.GetIntegration(context.Background(), "personio:8d1hpPsUpbXjo2j8VHBpq2mZ")
	if err != nil {
		t.Fatalf("GetIntegration: %v", err)
	}
	if diff := cmp.Diff(got, want); diff != "" {
		t.Errorf("integration mismatch (-got +want):\n%s", diff)
	}
	reqs := srv.received()
	if len(reqs) != 1 || reqs[0].Method != "GET" || reqs[0].RequestURI != "/v1/integrations/personio:8d1hpPsUpbXjo2j8VHBpq2mZ" || reqs[0].Body != "" {
		t.Errorf("server saw %+v, want one GET /v1/integrations/<id> without a body", reqs)
	}

	t.Run("not found", func(t *testing.T) {
		srv := newServer(t, reply(404, map[string]string{"Content-Type": "application/json"},
			`{"status":"error","error":{"code":"PLATFORM.INTEGRATION_NOT_FOUND","title":null,"message":"Integration not found.","log_url":null}}`))
		c := newClient(t, srv.URL+"/v1")
		_, err := c.GetIntegration(context.Background(), "a/b")
		if !errors.Is(err, kombo.ErrIntegrationNotFound) {
			t.Errorf("GetIntegration error = %v, want ErrIntegrationNotFound", err)
		}
		if reqs := srv.received(); len(reqs) != 1 || reqs[0].RequestURI != "/v1/integrations/a%2Fb" {
			t.Errorf("server saw %+v, want GET /v1/integrations/a%%2Fb", reqs)
		}
	})
	t.Run("empty id", func(t *testing.T) {
		if _, err := c.GetIntegration(context.Background(), ""); !errors.Is(err, kombo.ErrEmptyIntegrationID) {
			t.Errorf("GetIntegration(\"\") error = %v, want ErrEmptyIntegrationID", err)
		}
	})
	for _, body := range []string{"OK", `{"status":"success"}`, `{"data":"x"}`, `{"data":null}`} {
		t.Run("bad body "+body, func(t *testing.T) {
			srv := newServer(t, reply(200, nil, body))
			c := newClient(t, srv.URL+"/v1")
			_, err := c.GetIntegration(context.Background(), "x")
			var kerr *kombo.Error
			if err == nil || errors.As(err, &kerr) || !strings.HasPrefix(err.Error(), `kombo: get integration "x": `) {
				t.Errorf("GetIntegration error = %v, want a plain error with its context", err)
			}
		})
	}
}
