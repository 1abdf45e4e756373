package kombo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Codes Kombo's delete-integration endpoint declares. Kombo adds codes over
// time, so Error.Code is an open string: these are the ones known today.
const (
	// CodeRateLimitExceeded is the code of ErrRateLimitExceeded.
	CodeRateLimitExceeded = "PLATFORM.RATE_LIMIT_EXCEEDED"
	// CodeConcurrencyLimitExceeded is the code of ErrConcurrencyLimitExceeded.
	CodeConcurrencyLimitExceeded = "PLATFORM.CONCURRENCY_LIMIT_EXCEEDED"
	// CodeIntegrationNotFound is the code of ErrIntegrationNotFound.
	CodeIntegrationNotFound = "PLATFORM.INTEGRATION_NOT_FOUND"
	// CodeInputInvalid is the code of ErrInputInvalid.
	CodeInputInvalid = "PLATFORM.INPUT_INVALID"
	// CodeUnknownError is the code of ErrUnknownError.
	CodeUnknownError = "PLATFORM.UNKNOWN_ERROR"
	// CodeIPNotWhitelisted is the code of ErrIPNotWhitelisted.
	CodeIPNotWhitelisted = "PLATFORM.IP_NOT_WHITELISTED"
	// CodeAuthenticationInvalid is the code of ErrAuthenticationInvalid.
	CodeAuthenticationInvalid = "PLATFORM.AUTHENTICATION_INVALID"
	// CodeTaskTimedOut is the code of ErrTaskTimedOut.
	CodeTaskTimedOut = "PLATFORM.TASK_TIMED_OUT"
)

// KnownCode reports whether code is one of the codes above, the ones Kombo's
// delete-integration endpoint declares today. It is the one list of them:
// anything else (a code Kombo added later, one a proxy made up, "") is not
// known.
func KnownCode(code string) bool {
	switch code {
	case CodeRateLimitExceeded, CodeConcurrencyLimitExceeded, CodeIntegrationNotFound, CodeInputInvalid,
		CodeUnknownError, CodeIPNotWhitelisted, CodeAuthenticationInvalid, CodeTaskTimedOut:
		return true
	}
	return false
}

// Sentinels for errors.Is; each matches any *Error with its code.
var (
	// ErrRateLimitExceeded happens when the environment sent too many
	// requests in Kombo's rate-limit window (HTTP 429).
	ErrRateLimitExceeded = &Error{Code: CodeRateLimitExceeded, Message: "rate limit exceeded"}
	// ErrConcurrencyLimitExceeded happens when too many requests for one
	// integration are in flight at Kombo (HTTP 429).
	ErrConcurrencyLimitExceeded = &Error{Code: CodeConcurrencyLimitExceeded, Message: "concurrency limit exceeded"}
	// ErrIntegrationNotFound happens when the integration does not exist (or
	// belongs to another environment or region).
	ErrIntegrationNotFound = &Error{Code: CodeIntegrationNotFound, Message: "integration not found"}
	// ErrInputInvalid happens when Kombo rejects the request as malformed
	// (HTTP 400).
	ErrInputInvalid = &Error{Code: CodeInputInvalid, Message: "input invalid"}
	// ErrUnknownError happens when Kombo failed for a reason it does not name.
	ErrUnknownError = &Error{Code: CodeUnknownError, Message: "unknown error"}
	// ErrIPNotWhitelisted happens when the caller's IP address is not on the
	// environment's allow list.
	ErrIPNotWhitelisted = &Error{Code: CodeIPNotWhitelisted, Message: "IP not whitelisted"}
	// ErrAuthenticationInvalid happens when Kombo rejects the API key
	// (missing, wrong, expired, or from another region; HTTP 401).
	ErrAuthenticationInvalid = &Error{Code: CodeAuthenticationInvalid, Message: "authentication invalid"}
	// ErrTaskTimedOut happens when Kombo's work on the request took too long
	// and Kombo gave up on it.
	ErrTaskTimedOut = &Error{Code: CodeTaskTimedOut, Message: "task timed out"}
)

// Error is an answer from Kombo (or a proxy in front of it) other than 200.
type Error struct {
	// Status is the HTTP status.
	Status int
	// Code is Kombo's error.code; "" when it is null or absent, when the
	// body is not Kombo's error JSON, and for redirects.
	Code string
	// Title is Kombo's error.title; "" when null or absent.
	Title string
	// Message is Kombo's error.message or, for any other body, a
	// description of it. It is never empty for an answer.
	Message string
	// LogURL is Kombo's error.log_url, the only handle Kombo's support can
	// correlate; "" when null or absent.
	LogURL string
	// RetryAfter is the longest of the response's Retry-After,
	// retry-after-ms and ratelimit-reset hints (see ParseRetryHint); 0 means
	// none.
	RetryAfter time.Duration
	// Limits are the limits the answer states.
	Limits
}

// Error returns, for example,
// "kombo: HTTP 404 PLATFORM.INTEGRATION_NOT_FOUND: Integration not found (log: https://…)".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("kombo:")
	if e.Status != 0 {
		fmt.Fprintf(&b, " HTTP %d", e.Status)
	}
	if e.Code != "" {
		b.WriteString(" " + e.Code)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	if e.LogURL != "" {
		b.WriteString(" (log: " + e.LogURL + ")")
	}
	return b.String()
}

// Is reports whether target is an *Error that e matches: a target's
// non-empty Code must equal e's Code, a target's non-zero Status must equal
// e's Status, and a target with neither matches nothing. So
// errors.Is(err, ErrIntegrationNotFound) matches on the code, and
// errors.Is(err, &Error{Status: 503}) on the status.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok || e == nil || t == nil || (t.Code == "" && t.Status == 0) {
		return false
	}
	return (t.Code == "" || t.Code == e.Code) && (t.Status == 0 || t.Status == e.Status)
}

// EffectiveCode returns Code or, when Kombo gave none, "HTTP.<status>" (for
// example "HTTP.502").
func (e *Error) EffectiveCode() string {
	if e.Code != "" {
		return e.Code
	}
	return "HTTP." + strconv.Itoa(e.Status)
}

// excerptRunes is how much of a body that is not Kombo's error JSON goes
// into Error.Message.
const excerptRunes = 200

// newError turns every answer other than 200 into an *Error. body is at
// most maxBodyBytes of the response body; truncated tells there was more.
func (c *Client) newError(resp *http.Response, body []byte, truncated bool) *Error {
	e := &Error{
		Status:     resp.StatusCode,
		RetryAfter: ParseRetryHint(resp.Header, c.now()),
		Limits:     parseLimits(resp.Header),
	}
	var kombo struct {
		Error *struct {
			Code    string `json:"code"`
			Title   string `json:"title"`
			Message string `json:"message"`
			LogURL  string `json:"log_url"`
		} `json:"error"`
	}
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		e.Message = redirectMessage(resp.StatusCode, resp.Header.Get("Location"))
	case !truncated && json.Unmarshal(body, &kombo) == nil && kombo.Error != nil:
		ke := kombo.Error
		e.Code, e.Title, e.Message, e.LogURL = ke.Code, ke.Title, ke.Message, ke.LogURL
		if strings.TrimSpace(e.Message) == "" {
			e.Message = e.Title
		}
		if strings.TrimSpace(e.Message) == "" {
			e.Message = fmt.Sprintf("HTTP %d with a Kombo error without a message", e.Status)
		}
	default:
		e.Message = describeBody(resp, body, truncated)
	}
	// A proxy may echo the request, Authorization header included, into any field.
	e.Code = c.redact(e.Code)
	e.Title = c.redact(e.Title)
	e.Message = c.redact(e.Message)
	e.LogURL = c.redact(e.LogURL)
	return e
}

func (c *Client) redact(s string) string {
	return strings.ReplaceAll(s, c.apiKey, "[redacted]")
}

func redirectMessage(status int, location string) string {
	if location == "" {
		return fmt.Sprintf("HTTP %d redirect refused (no Location header): the client does not follow redirects", status)
	}
	return fmt.Sprintf("HTTP %d redirect to %s refused: the client does not follow redirects",
		status, strconv.Quote(excerpt([]byte(location), excerptRunes)))
}

// describeBody describes a body that is not Kombo's error JSON, for example
// `HTTP 502 with a non-JSON body (text/html, 1234 bytes): "<html>…"`.
func describeBody(resp *http.Response, body []byte, truncated bool) string {
	if !truncated && len(bytes.TrimSpace(body)) == 0 {
		return fmt.Sprintf("HTTP %d with an empty body", resp.StatusCode)
	}
	kind := "a non-JSON body"
	size := plural(int64(len(body)), "byte")
	switch {
	case truncated:
		kind = "an oversized body"
		if resp.ContentLength > int64(len(body)) {
			size = plural(resp.ContentLength, "byte")
		} else {
			size = fmt.Sprintf("more than %d bytes", len(body))
		}
	case json.Valid(body):
		kind = "a JSON body that is not a Kombo error"
	}
	msg := fmt.Sprintf("HTTP %d with %s (%s, %s)", resp.StatusCode, kind, mediaType(resp.Header.Get("Content-Type")), size)
	if ex := excerpt(body, excerptRunes); ex != "" {
		msg += ": " + strconv.Quote(ex)
	}
	return msg
}

func mediaType(contentType string) string {
	if contentType == "" {
		return "no Content-Type"
	}
	if mt, _, err := mime.ParseMediaType(contentType); err == nil {
		return mt
	}
	return "Content-Type " + strconv.Quote(excerpt([]byte(contentType), 60))
}

func plural(n int64, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return strconv.FormatInt(n, 10) + " " + unit + "s"
}

// excerpt returns the first n printable characters of b, with runs of white
// space folded into one space, and "…" when there was more.
func excerpt(b []byte, n int) string {
	var sb strings.Builder
	count, space := 0, false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		switch {
		case r == utf8.RuneError && size <= 1:
			continue
		case unicode.IsSpace(r):
			space = true
			continue
		case !unicode.IsPrint(r):
			continue
		}
		if count == n {
			sb.WriteString("…")
			break
		}
		if space && count > 0 {
			sb.WriteByte(' ')
			count++
		}
		space = false
		sb.WriteRune(r)
		count++
	}
	return sb.String()
}

// Limits are the limits Kombo states on an answer: Concurrency-Limit and
// Concurrency-Remaining (the calls it takes at once, and how many more it
// took when this one arrived), ratelimit-limit and ratelimit-remaining (its
// rate-limit quota, and what was left of it). The zero Limits states nothing.
type Limits struct {
	// ConcurrencyLimit is Concurrency-Limit; 0 when absent or invalid.
	ConcurrencyLimit int
	// ConcurrencyRemaining is Concurrency-Remaining when ConcurrencyLimit is
	// stated: -1 when absent or invalid then; 0 without a ConcurrencyLimit.
	ConcurrencyRemaining int
	// RateLimit is ratelimit-limit; 0 when absent or invalid.
	RateLimit int
	// RateRemaining is ratelimit-remaining when RateLimit is stated: -1 when
	// absent or invalid then; 0 without a RateLimit.
	RateRemaining int
}

// parseLimits reads the limit headers of h.
func parseLimits(h http.Header) Limits {
	var l Limits
	if n := headerInt(h, "Concurrency-Limit"); n > 0 {
		l.ConcurrencyLimit, l.ConcurrencyRemaining = n, headerInt(h, "Concurrency-Remaining")
	}
	if n := headerInt(h, "Ratelimit-Limit"); n > 0 {
		l.RateLimit, l.RateRemaining = n, headerInt(h, "Ratelimit-Remaining")
	}
	return l
}

// headerInt returns the header name of h as a non-negative integer, or -1
// when it is absent or not one.
func headerInt(h http.Header, name string) int {
	n, err := strconv.Atoi(strings.TrimSpace(h.Get(name)))
	if err != nil || n < 0 {
		return -1
	}
	return n
}
