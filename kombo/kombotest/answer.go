package kombotest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Kombo's error codes, as the fake sends them.
const (
	codeRateLimitExceeded        = "PLATFORM.RATE_LIMIT_EXCEEDED"
	codeConcurrencyLimitExceeded = "PLATFORM.CONCURRENCY_LIMIT_EXCEEDED"
	codeIntegrationNotFound      = "PLATFORM.INTEGRATION_NOT_FOUND"
	codeInputInvalid             = "PLATFORM.INPUT_INVALID"
	codeUnknownError             = "PLATFORM.UNKNOWN_ERROR"
	codeIPNotWhitelisted         = "PLATFORM.IP_NOT_WHITELISTED"
	codeAuthenticationInvalid    = "PLATFORM.AUTHENTICATION_INVALID"
	codeTaskTimedOut             = "PLATFORM.TASK_TIMED_OUT"
)

// EnvironmentID is what a successful GET /check-api-key reports as data.environment_id.
const EnvironmentID = "env_fake"

var codeTexts = map[string]struct{ title, message string }{
	codeRateLimitExceeded:        {"Rate limit exceeded", "You have exceeded the rate limit. Please try again later."},
	codeConcurrencyLimitExceeded: {"Concurrency limit exceeded", "Too many concurrent requests for this integration. Please retry with backoff."},
	codeIntegrationNotFound:      {"Integration not found", "The integration does not exist."},
	codeInputInvalid:             {"Input invalid", "The request input is invalid."},
	codeUnknownError:             {"Unknown error", "An unknown error occurred. Please try again."},
	codeIPNotWhitelisted:         {"IP not whitelisted", "Your IP address is not whitelisted for this environment."},
	codeAuthenticationInvalid:    {"Authentication invalid", "The API key is invalid."},
	codeTaskTimedOut:             {"Task timed out", "The task timed out. Please try again."},
}

// Answer is one scripted answer (see Fake.Script). The zero value is a 200 success.
type Answer struct {
	// Status is the HTTP status; 0 means 200. A 2xx answer to a DELETE deletes the integration.
	Status int
	// Code is error.code of a JSON error body (Status >= 400); "" sends "code": null, and
	// then also a null title and log_url.
	Code string
	// Title is error.title; "" uses Kombo's title for Code.
	Title string
	// Message is error.message; "" uses a text that fits Code, or the status text.
	Message string
	// LogURL is error.log_url; "" points at this call in /_fake/calls.
	LogURL string
	// Body, when not nil, is sent as is instead of any JSON body, with ContentType.
	Body *string
	// ContentType goes with Body; "" sends no Content-Type header at all.
	ContentType string
	// Header is added to the answer, replacing headers of the same name the fake would set.
	Header http.Header
	// Delay is waited before answering, on top of the fake's latency; the wait ends early
	// when the client gives up.
	Delay time.Duration
	// Hang never answers: the call holds its place (and its concurrency slot) until the client
	// gives up or the fake is closed, and the connection is then dropped.
	Hang bool
}

// OK is a 200 success.
func OK() Answer { return Answer{Status: http.StatusOK} }

// NotFound is 404 PLATFORM.INTEGRATION_NOT_FOUND.
func NotFound() Answer { return codeAnswer(http.StatusNotFound, codeIntegrationNotFound) }

// InputInvalid is 400 PLATFORM.INPUT_INVALID.
func InputInvalid() Answer { return codeAnswer(http.StatusBadRequest, codeInputInvalid) }

// UnknownError is 500 PLATFORM.UNKNOWN_ERROR.
func UnknownError() Answer { return codeAnswer(http.StatusInternalServerError, codeUnknownError) }

// TaskTimedOut is 504 PLATFORM.TASK_TIMED_OUT.
func TaskTimedOut() Answer { return codeAnswer(http.StatusGatewayTimeout, codeTaskTimedOut) }

// RateLimited is 429 PLATFORM.RATE_LIMIT_EXCEEDED with a ratelimit-reset header of
// resetSeconds; resetSeconds <= 0 sends no hint.
func RateLimited(resetSeconds int) Answer {
	a := codeAnswer(http.StatusTooManyRequests, codeRateLimitExceeded)
	if resetSeconds > 0 {
		a = a.WithHeader("ratelimit-reset", strconv.Itoa(resetSeconds))
	}
	return a
}

// ConcurrencyLimited is 429 PLATFORM.CONCURRENCY_LIMIT_EXCEEDED.
func ConcurrencyLimited() Answer {
	return codeAnswer(http.StatusTooManyRequests, codeConcurrencyLimitExceeded)
}

// AuthInvalid is 401 PLATFORM.AUTHENTICATION_INVALID.
func AuthInvalid() Answer { return codeAnswer(http.StatusUnauthorized, codeAuthenticationInvalid) }

// IPNotWhitelisted is 403 PLATFORM.IP_NOT_WHITELISTED.
func IPNotWhitelisted() Answer { return codeAnswer(http.StatusForbidden, codeIPNotWhitelisted) }

// Raw answers status with body as is; contentType "" sends no Content-Type.
func Raw(status int, contentType, body string) Answer {
	return Answer{Status: status, Body: &body, ContentType: contentType}
}

// Redirect is a 302 Found to location with an empty body (a client following it would turn
// the DELETE into a GET).
func Redirect(location string) Answer {
	return Answer{Status: http.StatusFound, Header: http.Header{"Location": {location}}}
}

// WithDelay returns a copy of a that waits d before answering.
func (a Answer) WithDelay(d time.Duration) Answer {
	a.Delay = d
	return a
}

// WithHeader returns a copy of a that also sends the header key: value.
func (a Answer) WithHeader(key, value string) Answer {
	a.Header = a.Header.Clone()
	if a.Header == nil {
		a.Header = http.Header{}
	}
	a.Header.Add(key, value)
	return a
}

func codeAnswer(status int, code string) Answer { return Answer{Status: status, Code: code} }

func (a Answer) status() int {
	if a.Status == 0 {
		return http.StatusOK
	}
	return a.Status
}

func (a Answer) success() bool { return a.status() >= 200 && a.status() < 300 }

// The transient failures FailureRate picks from.
var failures = []Answer{
	UnknownError(),
	Raw(http.StatusBadGateway, "text/plain; charset=utf-8", "Bad Gateway"),
	Raw(http.StatusServiceUnavailable, "text/html",
		"<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n"+
			"<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"),
	Raw(http.StatusInternalServerError, "", ""),
}

// response is an Answer turned into bytes on the wire.
type response struct {
	status int
	header http.Header
	body   []byte
	code   string // error.code sent, "" when none
}

type wireError struct {
	Status string     `json:"status"`
	Error  wireDetail `json:"error"`
}

type wireDetail struct {
	Code    *string `json:"code"`
	Title   *string `json:"title"`
	Message string  `json:"message"`
	LogURL  *string `json:"log_url"`
}

// render turns a into a response. data is the JSON of a success's "data"; logURL the
// default error.log_url; extra headers come before a.Header.
func render(a Answer, data string, logURL string, extra http.Header) response {
	r := response{status: a.status(), header: extra.Clone()}
	if r.header == nil {
		r.header = http.Header{}
	}
	contentType := ""
	switch {
	case a.Body != nil:
		r.body = []byte(*a.Body)
		contentType = a.ContentType
		r.code = sniffCode(r.body)
	case r.status < 300:
		r.body = []byte(`{"status":"success","data":` + data + `}`)
		contentType = "application/json"
	case r.status < 400:
		// A redirect or other 3xx: no body.
	default:
		d := wireDetail{Message: a.Message}
		if a.Code != "" {
			r.code = a.Code
			d.Code = &a.Code
			title := a.Title
			if title == "" {
				title = codeTexts[a.Code].title
			}
			if title == "" {
				title = http.StatusText(r.status)
			}
			d.Title = &title
			if d.Message == "" {
				d.Message = codeTexts[a.Code].message
			}
			if a.LogURL == "" {
				a.LogURL = logURL
			}
		} else if a.Title != "" {
			d.Title = &a.Title
		}
		if a.LogURL != "" {
			d.LogURL = &a.LogURL
		}
		if d.Message == "" {
			d.Message = fmt.Sprintf("%d %s", r.status, http.StatusText(r.status))
		}
		r.body, _ = json.Marshal(wireError{Status: "error", Error: d})
		contentType = "application/json"
	}
	if contentType != "" {
		r.header.Set("Content-Type", contentType)
	}
	for k, vs := range a.Header {
		r.header[http.CanonicalHeaderKey(k)] = append([]string(nil), vs...)
	}
	return r
}

// sniffCode finds error.code in a raw body that happens to be Kombo's JSON.
func sniffCode(body []byte) string {
	var e struct {
		Error struct {
			Code *string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Code == nil {
		return ""
	}
	return *e.Error.Code
}

func (r response) write(w http.ResponseWriter) {
	h := w.Header()
	for k, vs := range r.header {
		h[k] = vs
	}
	if _, ok := h["Content-Type"]; !ok {
		h["Content-Type"] = nil // no sniffing: send no Content-Type at all
	}
	w.WriteHeader(r.status)
	_, _ = w.Write(r.body)
}

// hintUntil is the time a 429 answer's hints tell the client to wait for, read the way a
// client reads them (the longest hint wins); ok is false without any hint.
func hintUntil(h http.Header, now time.Time) (until time.Time, ok bool) {
	consider := func(t time.Time) {
		if !ok || t.After(until) {
			until, ok = t, true
		}
	}
	seconds := func(v string) (time.Duration, bool) {
		s, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || s < 0 || s > 1e9 {
			return 0, false
		}
		return time.Duration(s * float64(time.Second)), true
	}
	if v := h.Get("Ratelimit-Reset"); v != "" {
		if d, good := seconds(v); good {
			consider(now.Add(d))
		}
	}
	if v := h.Get("Retry-After-Ms"); v != "" {
		if d, good := seconds(v); good {
			consider(now.Add(d / 1000))
		}
	}
	if v := h.Get("Retry-After"); v != "" {
		if d, good := seconds(v); good {
			consider(now.Add(d))
		} else if t, err := http.ParseTime(v); err == nil {
			consider(t)
		}
	}
	return until, ok
}
