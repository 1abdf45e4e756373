package kombotest

import (
	"maps"
	"net/http"
	"strings"
	"time"
)

// Call is one call the fake received on the API (control endpoints are not recorded). It is
// recorded when the call arrives; End and Status are filled in when it is answered.
type Call struct {
	// Seq numbers calls from 1 in arrival order; Reset starts again at 1.
	Seq int
	// Method is the HTTP method.
	Method string
	// Path is the decoded URL path, as Go's net/url reads it.
	Path string
	// RawURI is the request target exactly as sent (Go's Request.RequestURI).
	RawURI string
	// ID is the integration id of a DELETE /integrations/{id}, unescaped from its one path
	// segment; "" for other calls.
	ID string
	// Header holds the request headers; Authorization keeps its scheme and the rest is
	// replaced by "[redacted]" ("Bearer [redacted]").
	Header http.Header
	// Body is the request body (its first 64 KiB).
	Body string
	// Start is when the call arrived; End when it was answered or given up (zero while in
	// flight).
	Start, End time.Time
	// Status is the HTTP status answered; 0 while in flight, or when no answer was sent (the
	// client gave up first, or the call hung).
	Status int
	// Code is error.code of the answer; "" for a success or an answer without code.
	Code string
	// InFlight is, for a DELETE that passed the key check, how many DELETEs were in flight
	// when it arrived, itself included (for one rejected for concurrency: how many there
	// would have been). 0 for other calls.
	InFlight int
	// EarlyForRateLimit reports a DELETE that arrived before the end of a wait that a 429
	// answer of this fake had announced (ratelimit-reset, Retry-After or retry-after-ms), and
	// after Options.EarlyGrace had passed since that answer.
	EarlyForRateLimit bool
}

// Stats are totals since the fake started or was last Reset.
type Stats struct {
	// Calls counts every API call (not control endpoints), Deletes the DELETEs of an
	// integration and CheckAPIKey the GETs of /check-api-key among them.
	Calls, Deletes, CheckAPIKey int
	// Gets counts the GETs of an integration (GET /integrations/{id}).
	Gets int
	// ByStatus counts answers by HTTP status (calls without an answer are in Unanswered).
	ByStatus map[int]int
	// ByCode counts answers by error.code (answers without a code are not counted).
	ByCode map[string]int
	// Unanswered counts calls that ended without an answer: the client gave up first, the
	// call hung, or the fake was closed.
	Unanswered int
	// Deleted counts DELETEs that deleted an integration (2xx answers).
	Deleted int
	// InFlight is how many DELETEs are in flight now; MaxInFlight the most there have been at
	// once (calls rejected for concurrency are not counted in either).
	InFlight, MaxInFlight int
	// RejectedConcurrency counts DELETEs answered 429 by the concurrency limit, RejectedRate
	// those answered 429 by the rate limit (scripted answers are counted in neither).
	RejectedConcurrency, RejectedRate int
	// EarlyForRateLimit counts DELETEs that arrived inside an announced rate-limit wait (see
	// Call.EarlyForRateLimit).
	EarlyForRateLimit int
}

func (s Stats) clone() Stats {
	s.ByStatus = maps.Clone(s.ByStatus)
	s.ByCode = maps.Clone(s.ByCode)
	return s
}

func newStats() Stats {
	return Stats{ByStatus: map[int]int{}, ByCode: map[string]int{}}
}

// Calls returns the calls received, in arrival order (the latest Options.MaxCalls when set).
func (f *Fake) Calls() []Call {
	return f.callsWhere(func(*Call) bool { return true })
}

// CallsFor returns the DELETEs of integration id, in arrival order.
func (f *Fake) CallsFor(id string) []Call {
	return f.callsWhere(func(c *Call) bool { return c.Method == http.MethodDelete && c.ID == id })
}

func (f *Fake) callsWhere(keep func(*Call) bool) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	calls := f.calls
	if m := f.opts.MaxCalls; m > 0 && len(calls) > m {
		calls = calls[len(calls)-m:]
	}
	out := []Call{}
	for _, c := range calls {
		if keep(c) {
			cc := *c
			cc.Header = c.Header.Clone()
			out = append(out, cc)
		}
	}
	return out
}

// Stats returns the totals so far.
func (f *Fake) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.stats.clone()
	s.InFlight = f.inFlight
	return s
}

// IsDeleted reports whether integration id has been deleted by a call to this fake.
func (f *Fake) IsDeleted(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deleted[id]
}

// Reset forgets calls, stats, scripts, deleted and missing ids, flaky counters and announced
// rate-limit waits, and refills the rate-limit bucket. Options stay. Calls in flight keep
// their concurrency slot but are no longer recorded.
func (f *Fake) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resetLocked()
}

func (f *Fake) resetLocked() {
	f.gen++
	f.seq = 0
	f.calls = nil
	f.stats = newStats()
	f.stats.MaxInFlight = f.inFlight
	f.scripts = map[string][]Answer{}
	f.keyScript = nil
	f.deleted = map[string]bool{}
	f.missing = map[string]bool{}
	f.integrations = map[string]Integration{}
	f.flaky = map[string]int{}
	f.announced = nil
	f.limiter = newLimiter(f.opts)
}

// recordLocked appends a call to the record, trimming it to MaxCalls now and then.
func (f *Fake) recordLocked(c *Call) {
	f.seq++
	c.Seq = f.seq
	f.calls = append(f.calls, c)
	if m := f.opts.MaxCalls; m > 0 && len(f.calls) >= 2*m {
		f.calls = append([]*Call(nil), f.calls[len(f.calls)-m:]...)
	}
	f.stats.Calls++
}

// redact hides the credentials of the Authorization header, keeping its scheme.
func redact(h http.Header) http.Header {
	h = h.Clone()
	if vs := h["Authorization"]; len(vs) > 0 {
		out := make([]string, len(vs))
		for i, v := range vs {
			if scheme, _, ok := strings.Cut(v, " "); ok {
				out[i] = scheme + " [redacted]"
			} else {
				out[i] = "[redacted]"
			}
		}
		h["Authorization"] = out
	}
	return h
}
