// Package kombotest is a fake Kombo API that speaks Kombo's wire format over real HTTP, for
// tests, demos and benchmarks.
//
// The fake serves DELETE /v1/integrations/{id} and GET /v1/check-api-key, and the same paths
// without the /v1 prefix, so any base URL ending in /v1 or not works. Control endpoints live
// under /_fake/ (see ServeHTTP).
//
// # How a DELETE is answered
//
// Each DELETE goes through these steps; the first that answers wins:
//
//  1. key check: a missing or wrong bearer key, or Options.RejectKey, answers 401
//     PLATFORM.AUTHENTICATION_INVALID;
//  2. concurrency: beyond Options.ConcurrencyLimit DELETEs in flight, 429
//     PLATFORM.CONCURRENCY_LIMIT_EXCEEDED at once;
//  3. rate: when the token bucket of Options.RateLimit is empty, 429
//     PLATFORM.RATE_LIMIT_EXCEEDED at once, with the hint Options.RateLimitHeader names;
//  4. script: the next answer Script queued for the id;
//  5. id conventions: ids starting with "flaky:" answer 500 PLATFORM.UNKNOWN_ERROR to their
//     first two calls (later calls go on to the next checks); "missing:" answer 404
//     PLATFORM.INTEGRATION_NOT_FOUND; "invalid:" 400 PLATFORM.INPUT_INVALID; "slow:" take a
//     second longer. Prefixes combine, read left to right: "slow:flaky:abc",
//     "flaky:missing:abc";
//  6. random transient failures, a share Options.FailureRate of the calls;
//  7. existence: an id deleted before, or marked with MarkMissing, answers 404
//     PLATFORM.INTEGRATION_NOT_FOUND; any other id is deleted and answers 200
//     {"status":"success","data":{}}.
//
// Calls that pass step 3 wait Options.Latency (plus jitter, the "slow:" second and the
// answer's Delay) while holding their concurrency slot, then answer. The answer, and the
// deletion, are decided when the call arrives: a client that gives up during the latency
// may find the integration already gone when it retries, as with the real service.
//
// GET /check-api-key goes through step 1, then answers what ScriptCheckAPIKey queued, or
// 200 {"status":"success","data":{"environment_id":"env_fake"}}.
package kombotest

import (
	"context"
	"crypto/subtle"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Prefixes of integration ids that the fake answers in a fixed way, without scripting.
const (
	// PrefixMissing ids never existed: 404 PLATFORM.INTEGRATION_NOT_FOUND.
	PrefixMissing = "missing:"
	// PrefixInvalid ids are refused: 400 PLATFORM.INPUT_INVALID.
	PrefixInvalid = "invalid:"
	// PrefixFlaky ids fail their first two calls with 500 PLATFORM.UNKNOWN_ERROR.
	PrefixFlaky = "flaky:"
	// PrefixSlow ids take a second longer than Options.Latency.
	PrefixSlow = "slow:"
)

const (
	flakyFailures = 2
	slowExtra     = time.Second
	maxBody       = 64 << 10
)

// Fake is a fake Kombo API; it is an http.Handler. All its methods are safe for concurrent
// use, also while it serves.
type Fake struct {
	done      chan struct{}
	closeOnce sync.Once

	mu           sync.Mutex
	opts         Options
	limiter      *rate.Limiter
	rng          *rand.Rand
	gen          uint64 // bumped by Reset, so that calls from before do not touch the new stats
	seq          int
	calls        []*Call
	stats        Stats
	inFlight     int // admitted DELETEs in flight; survives Reset
	scripts      map[string][]Answer
	keyScript    []Answer
	deleted      map[string]bool
	missing      map[string]bool
	integrations map[string]Integration // set by SetIntegration
	flaky        map[string]int
	announced    []announcement // see early
	onCall       func(Call)

	// lateness is how late the fake's timers have woken it lately, an average in
	// nanoseconds (see aim). Go's timers fire some tenths of a millisecond after their time,
	// more on a busy machine: without this, a 20 ms latency would be 20.3 to 20.8 ms.
	lateness atomic.Int64
}

// announcement is a wait a 429 answer announced at time at, until time until.
type announcement struct{ at, until time.Time }

// New returns a fake with options o. It panics if o is invalid (see Options.Validate).
func New(o Options) *Fake {
	if err := o.Validate(); err != nil {
		panic(err)
	}
	f := &Fake{done: make(chan struct{}), opts: o}
	f.rng = newRand(o.Seed)
	f.resetLocked()
	return f
}

func newRand(seed int64) *rand.Rand {
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	return rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>1|1))
}

func newLimiter(o Options) *rate.Limiter {
	if o.RateLimit <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(o.RateLimit), o.burst())
}

func (f *Fake) applyLocked(o Options) {
	old := f.opts
	f.opts = o
	if o.RateLimit != old.RateLimit || o.burst() != old.burst() {
		f.limiter = newLimiter(o)
	}
	if o.Seed != old.Seed {
		f.rng = newRand(o.Seed)
	}
}

// Close ends every call that waits (latency, Delay, Hang) by dropping its connection, and
// makes later waits end at once. The fake still answers otherwise. Close is idempotent;
// NewServer calls it before closing its server.
func (f *Fake) Close() {
	f.closeOnce.Do(func() { close(f.done) })
}

// OnCall registers fn to be called with each API call once it has been decided, just before
// the answer is written (or the connection dropped); nil removes it. fn runs on the
// handler's goroutine and must not block.
func (f *Fake) OnCall(fn func(Call)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onCall = fn
}

// Script makes the next calls to DELETE integration id answer these answers, one per call
// and in order, then fall back to the usual behaviour. Scripts come after the key,
// concurrency and rate checks; calls answered by those do not use up an answer. Script
// appends to what is already queued for id.
func (f *Fake) Script(id string, answers ...Answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.scripts[id] = append(f.scripts[id], answers...)
}

// ScriptCheckAPIKey makes the next calls to GET /check-api-key that pass the key check answer
// these answers, in order; a 2xx answer reports EnvironmentID.
func (f *Fake) ScriptCheckAPIKey(answers ...Answer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.keyScript = append(f.keyScript, answers...)
}

// MarkMissing makes ids unknown to the fake: DELETEs answer 404
// PLATFORM.INTEGRATION_NOT_FOUND.
func (f *Fake) MarkMissing(ids ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.missing[id] = true
	}
}

// ServeHTTP serves the Kombo API (under /v1 and at the root) and the control endpoints,
// which need no key:
//
//	GET  /_fake/healthz  200 "ok"
//	GET  /_fake/calls    JSON array of Call, Go field names (optional ?id= and ?seq= filters)
//	GET  /_fake/stats    JSON Stats, Go field names
//	POST /_fake/reset    Reset; 204
//	GET  /_fake/config   the options: Options' field names, durations as "250ms", and
//	                     "APIKeySet" (bool) in place of the key
//	POST /_fake/config   partial update, e.g. {"RejectKey":true,"Latency":"250ms"}; answers
//	                     as GET. Keys are Options' field names, read without regard to case,
//	                     "_" or "-"; durations are strings or nanoseconds. 400 on an unknown
//	                     key or an invalid value, and nothing changes.
//	POST /_fake/script   {"id":"…","answers":[{"Status":500,"Code":"PLATFORM.UNKNOWN_ERROR"}]};
//	                     {"endpoint":"check-api-key","answers":[…]} scripts the key check.
//	                     Answer keys are Answer's field names, read like config keys; Header
//	                     values are a string or an array; Delay a duration. 204.
//	POST /_fake/missing  {"ids":["…"]}; MarkMissing; 204
//	POST /_fake/integration {"id":"…","tool":"…","end_user":{"origin_id":"…"},…}: what
//	                     GET /integrations/{id} shows, in Kombo's shape; SetIntegration; 204
//
// Control errors answer {"error":"…"}.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p := r.URL.Path; p == controlPrefix || strings.HasPrefix(p, controlPrefix+"/") {
		f.serveControl(w, r)
		return
	}
	f.serveAPI(w, r)
}

type routeKind int

const (
	routeUnknown routeKind = iota
	routeDelete
	routeGet
	routeCheckKey
	routeBadMethod
	routeBadID
)

// route reads the API path, with or without its /v1 prefix.
func route(r *http.Request) (kind routeKind, id string) {
	p := r.URL.EscapedPath()
	if p == "/v1" || strings.HasPrefix(p, "/v1/") {
		p = p[len("/v1"):]
	}
	switch {
	case p == "/check-api-key":
		if r.Method != http.MethodGet {
			return routeBadMethod, ""
		}
		return routeCheckKey, ""
	case strings.HasPrefix(p, "/integrations/"):
		seg := p[len("/integrations/"):]
		if seg == "" || seg == "." || seg == ".." || strings.Contains(seg, "/") {
			return routeUnknown, ""
		}
		id, err := url.PathUnescape(seg)
		if err != nil {
			return routeBadID, ""
		}
		switch r.Method {
		case http.MethodDelete:
			return routeDelete, id
		case http.MethodGet:
			return routeGet, id
		}
		return routeBadMethod, id
	}
	return routeUnknown, ""
}

// plan is what the fake decided for a call: wait, then answer (or hang).
type plan struct {
	answer Answer
	header http.Header // headers of the limits, under the answer's own
	data   string      // JSON "data" of a success
	wait   time.Duration
	slot   bool // holds a concurrency slot until answered
}

func (f *Fake) serveAPI(w http.ResponseWriter, r *http.Request) {
	arrival := time.Now()
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	_, _ = io.Copy(io.Discard, r.Body) // to EOF, so that the server notices a client leaving
	kind, id := route(r)
	c := &Call{
		Method: r.Method, Path: r.URL.Path, RawURI: r.RequestURI, Header: redact(r.Header),
		Body: string(body), Start: arrival,
	}
	if kind == routeDelete || kind == routeGet {
		c.ID = id
	}

	f.mu.Lock()
	gen := f.gen
	f.recordLocked(c)
	p := f.planLocked(r, c, kind, arrival)
	seq := c.Seq
	f.mu.Unlock()

	answered := f.wait(r.Context(), arrival.Add(p.wait), p.answer.Hang)
	logURL := "http://" + r.Host + "/_fake/calls?seq=" + strconv.Itoa(seq)
	if r.TLS != nil {
		logURL = "https://" + logURL[len("http://"):]
	}
	resp := render(p.answer, p.data, logURL, p.header)
	f.settle(c, p, gen, answered, resp)
	if !answered {
		panic(http.ErrAbortHandler) // drop the connection: the client gave up, or Close
	}
	resp.write(w)
}

// planLocked decides what the fake answers to a call of kind, and when.
func (f *Fake) planLocked(r *http.Request, c *Call, kind routeKind, arrival time.Time) plan {
	p := plan{data: "{}"}
	switch kind {
	case routeDelete:
		p = f.planDeleteLocked(r, c, arrival)
	case routeGet:
		p = f.planGetLocked(r, c, arrival)
	case routeCheckKey:
		f.stats.CheckAPIKey++
		p.data = `{"environment_id":"` + EnvironmentID + `"}`
		switch {
		case !authorized(r, f.opts):
			p.answer = AuthInvalid()
		case len(f.keyScript) > 0:
			p.answer = f.keyScript[0]
			f.keyScript = f.keyScript[1:]
			p.wait = p.answer.Delay
		}
	case routeBadMethod:
		p.answer = Answer{Status: http.StatusMethodNotAllowed,
			Message: r.Method + " is not allowed on " + r.URL.Path,
			Header:  http.Header{"Allow": {allowed(r)}}}
	case routeBadID:
		p.answer = Answer{Status: http.StatusBadRequest, Code: codeInputInvalid,
			Message: "The integration id is not a valid URL path segment."}
	default:
		p.answer = Answer{Status: http.StatusNotFound, Message: "No route for " + r.Method + " " + r.URL.Path}
	}
	return p
}

// settle records how call c ended (answered with resp, or not), in the stats of generation
// gen, and tells the OnCall hook.
func (f *Fake) settle(c *Call, p plan, gen uint64, answered bool, resp response) {
	f.mu.Lock()
	if p.slot {
		f.inFlight--
	}
	now := time.Now()
	c.End = now
	if answered {
		c.Status, c.Code = resp.status, resp.code
		if resp.status == http.StatusTooManyRequests {
			if until, ok := hintUntil(resp.header, now); ok {
				f.announceLocked(now, until)
			}
		}
	}
	if gen == f.gen {
		if !answered {
			f.stats.Unanswered++
		} else {
			f.stats.ByStatus[c.Status]++
			if c.Code != "" {
				f.stats.ByCode[c.Code]++
			}
		}
	}
	hook, snapshot := f.onCall, *c
	f.mu.Unlock()

	if hook != nil {
		snapshot.Header = snapshot.Header.Clone()
		hook(snapshot)
	}
}

func allowed(r *http.Request) string {
	if strings.HasSuffix(r.URL.Path, "/check-api-key") {
		return http.MethodGet
	}
	return "GET, DELETE"
}

// planDeleteLocked runs steps 1 to 7 (see the package documentation) for a DELETE.
func (f *Fake) planDeleteLocked(r *http.Request, c *Call, arrival time.Time) plan {
	p, conv, admitted := f.planCallLocked(r, c, arrival, &f.stats.Deletes)
	if !admitted {
		return p
	}
	// 4.-7.
	id := c.ID
	p.answer = f.answerLocked(id, conv, f.opts)
	p.wait += p.answer.Delay
	if p.answer.success() && !p.answer.Hang {
		f.deleted[id] = true
		f.stats.Deleted++
	}
	return p
}

// planCallLocked runs what a DELETE and a GET of an integration share: it counts the call
// in count, runs steps 1 to 3 (see admitLocked), then takes the latency of the id's
// conventions. It reports whether the call was admitted; when not, p holds the refusal.
func (f *Fake) planCallLocked(r *http.Request, c *Call, arrival time.Time, count *int) (p plan, conv convention, admitted bool) {
	*count++
	if p, admitted = f.admitLocked(r, c, arrival); !admitted {
		return p, conv, false
	}
	o := f.opts
	conv = conventions(c.ID)
	p.wait = o.Latency
	if o.LatencyJitter > 0 {
		p.wait += time.Duration(f.rng.Int64N(int64(o.LatencyJitter) + 1))
	}
	if conv.slow {
		p.wait += slowExtra
	}
	return p, conv, true
}

// admitLocked runs steps 1 to 3 (key, concurrency, rate), which a GET of an integration
// goes through as a DELETE does. It reports whether the call was admitted; when not, p
// holds the refusal.
func (f *Fake) admitLocked(r *http.Request, c *Call, arrival time.Time) (p plan, admitted bool) {
	o := f.opts
	p = plan{data: "{}", header: http.Header{}}
	if f.earlyLocked(arrival) {
		c.EarlyForRateLimit = true
		f.stats.EarlyForRateLimit++
	}
	limit := o.ConcurrencyLimit
	setRemaining := func(n int) {
		if limit > 0 {
			p.header.Set("Concurrency-Limit", strconv.Itoa(limit))
			p.header.Set("Concurrency-Remaining", strconv.Itoa(max(0, n)))
		}
	}

	// 1. key
	if !authorized(r, o) {
		setRemaining(limit - f.inFlight)
		p.answer = AuthInvalid()
		return p, false
	}

	// 2. concurrency
	c.InFlight = f.inFlight + 1
	if limit > 0 && c.InFlight > limit {
		setRemaining(0)
		f.stats.RejectedConcurrency++
		p.answer = ConcurrencyLimited()
		return p, false
	}
	f.inFlight++
	f.stats.MaxInFlight = max(f.stats.MaxInFlight, f.inFlight)
	p.slot = true
	setRemaining(limit - f.inFlight)

	// 3. rate
	if f.limiter != nil {
		now := time.Now()
		allowed := f.limiter.AllowN(now, 1)
		tokens := f.limiter.TokensAt(now)
		if o.hint() == HintRateLimitReset {
			p.header.Set("ratelimit-limit", strconv.Itoa(o.burst()))
			p.header.Set("ratelimit-remaining", strconv.Itoa(max(0, int(tokens))))
		}
		if !allowed {
			wait := time.Duration((1 - tokens) / o.RateLimit * float64(time.Second))
			f.stats.RejectedRate++
			p.answer = rateLimited(o.hint(), max(wait, time.Millisecond), now)
			return p, false
		}
	}
	return p, true
}

// answerLocked runs steps 4 to 7 for a DELETE of id.
func (f *Fake) answerLocked(id string, conv convention, o Options) Answer {
	if q := f.scripts[id]; len(q) > 0 {
		if len(q) == 1 {
			delete(f.scripts, id)
		} else {
			f.scripts[id] = q[1:]
		}
		return q[0]
	}
	switch {
	case conv.flaky && f.flaky[id] < flakyFailures:
		f.flaky[id]++
		return UnknownError()
	case conv.missing:
		return NotFound()
	case conv.invalid:
		return InputInvalid()
	}
	if o.FailureRate > 0 && f.rng.Float64() < o.FailureRate {
		return failures[f.rng.IntN(len(failures))]
	}
	if f.missing[id] || f.deleted[id] {
		return NotFound()
	}
	return OK()
}

type convention struct{ missing, invalid, flaky, slow bool }

func conventions(id string) convention {
	var c convention
	for {
		switch {
		case strings.HasPrefix(id, PrefixMissing):
			c.missing = true
			return c
		case strings.HasPrefix(id, PrefixInvalid):
			c.invalid = true
			return c
		case strings.HasPrefix(id, PrefixFlaky):
			c.flaky = true
			id = id[len(PrefixFlaky):]
		case strings.HasPrefix(id, PrefixSlow):
			c.slow = true
			id = id[len(PrefixSlow):]
		default:
			return c
		}
	}
}

// rateLimited is the answer of the built-in rate limit, when the next token comes after wait.
func rateLimited(hint string, wait time.Duration, now time.Time) Answer {
	a := RateLimited(0)
	secs := strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10)
	switch hint {
	case HintRateLimitReset:
		a = a.WithHeader("ratelimit-reset", secs)
	case HintRetryAfter:
		a = a.WithHeader("Retry-After", secs)
	case HintRetryAfterMS:
		a = a.WithHeader("retry-after-ms", strconv.FormatInt(int64((wait+time.Millisecond-1)/time.Millisecond), 10))
	case HintRetryAfterDate:
		at := now.Add(wait).UTC()
		if t := at.Truncate(time.Second); t.Before(at) {
			at = t.Add(time.Second)
		}
		a = a.WithHeader("Retry-After", at.Format(http.TimeFormat))
	}
	return a
}

func authorized(r *http.Request, o Options) bool {
	if o.RejectKey {
		return false
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return false
	}
	return o.APIKey == "" || subtle.ConstantTimeCompare([]byte(token), []byte(o.APIKey)) == 1
}

// wait waits until the time until (counted from the call's arrival, so the fake's own work
// is part of the latency), or forever when hang, and reports false when the client gave up or
// the fake was closed first. It sets its timer early by the lateness measured so far, so that
// the mean wait ends at until rather than a timer's lateness after it.
func (f *Fake) wait(ctx context.Context, until time.Time, hang bool) bool {
	d := time.Until(until)
	if !hang && d <= 0 {
		return true
	}
	var elapsed <-chan time.Time
	var due time.Time
	if !hang {
		a := aim(d, time.Duration(f.lateness.Load()))
		due = time.Now().Add(a)
		t := time.NewTimer(a)
		defer t.Stop()
		elapsed = t.C
	}
	select {
	case <-elapsed:
		late := time.Since(due)
		for {
			old := f.lateness.Load()
			if f.lateness.CompareAndSwap(old, int64(nextLateness(time.Duration(old), late))) {
				break
			}
		}
		return true
	case <-ctx.Done():
		return false
	case <-f.done:
		return false
	}
}

// maxAim is the most a timer is set early, and aimShare the most as a share of the wait: a
// single call ends at most that much before its time, and the mean wait is the one asked for.
const (
	maxAim   = 2 * time.Millisecond
	aimShare = 10
)

// aim is the timer to set for a wait of d when timers have been late by lateness on average.
func aim(d, lateness time.Duration) time.Duration {
	return d - max(0, min(lateness, maxAim, d/aimShare))
}

// nextLateness folds one timer's lateness into the average (weight 1/16, about the last few
// dozen calls). A timer that fired early (a clock step) counts as on time.
func nextLateness(avg, late time.Duration) time.Duration {
	return avg + (max(late, 0)-avg)/16
}

// announceLocked records that a 429 answer at time at told the client to wait until until.
// f.announced keeps only waits not covered by another: sorted by at, with until increasing.
func (f *Fake) announceLocked(at, until time.Time) {
	a := f.announced
	i := 0
	for i < len(a) && !a[i].until.After(at) {
		i++
	}
	a = a[i:]
	if n := len(a); n > 0 && !a[n-1].until.Before(until) {
		f.announced = a
		return
	}
	f.announced = append(a, announcement{at: at, until: until})
}

// earlyLocked reports whether a call arriving at t falls inside an announced wait, after its
// grace: the announcements still running at t are a suffix of f.announced, the first of them
// announced earliest.
func (f *Fake) earlyLocked(t time.Time) bool {
	a := f.announced
	lo, hi := 0, len(a)
	for lo < hi {
		m := (lo + hi) / 2
		if a[m].until.After(t) {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo < len(a) && t.After(a[lo].at.Add(f.opts.EarlyGrace))
}
