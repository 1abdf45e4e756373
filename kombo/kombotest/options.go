package kombotest

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Values of Options.RateLimitHeader: which hint a 429 PLATFORM.RATE_LIMIT_EXCEEDED answer from
// the built-in rate limit carries.
const (
	// HintRateLimitReset sends ratelimit-reset (whole seconds, rounded up), as Kombo documents,
	// plus ratelimit-limit and ratelimit-remaining on every DELETE answer. It is the default.
	HintRateLimitReset = "ratelimit-reset"
	// HintRetryAfter sends Retry-After in whole seconds, rounded up.
	HintRetryAfter = "retry-after"
	// HintRetryAfterMS sends retry-after-ms in milliseconds, rounded up.
	HintRetryAfterMS = "retry-after-ms"
	// HintRetryAfterDate sends Retry-After as an HTTP date, rounded up to the next second.
	HintRetryAfterDate = "retry-after-date"
	// HintNone sends no hint at all.
	HintNone = "none"
)

// Options configures a Fake. The zero value is a fake that accepts any non-empty bearer key
// and answers every DELETE at once with success. Every field can be changed while the fake
// serves (SetOptions, Update, the setters, or POST /_fake/config).
type Options struct {
	// APIKey is the bearer key the fake expects; "" accepts any non-empty bearer key.
	APIKey string
	// Latency is added to every admitted DELETE, counted from the call's arrival; the wait
	// ends early when the client gives up. The fake aims its timers early by their measured
	// lateness (at most 2 ms or a tenth of the wait), so that the mean wait is Latency.
	// 0 answers at once.
	Latency time.Duration
	// LatencyJitter adds a uniform random 0..LatencyJitter to Latency; 0 adds nothing.
	LatencyJitter time.Duration
	// ConcurrencyLimit, when > 0, answers DELETEs beyond that many in flight with 429
	// PLATFORM.CONCURRENCY_LIMIT_EXCEEDED at once, and puts Concurrency-Limit and
	// Concurrency-Remaining headers on every DELETE answer. 0 means no limit and no headers.
	ConcurrencyLimit int
	// RateLimit, when > 0, is how many DELETEs per second a token bucket admits; the others
	// get 429 PLATFORM.RATE_LIMIT_EXCEEDED at once with the hint RateLimitHeader names.
	// 0 means no rate limit.
	RateLimit float64
	// RateBurst is the size of the token bucket; 0 means 1. Unused without RateLimit.
	RateBurst int
	// RateLimitHeader is one of the Hint constants; "" means HintRateLimitReset.
	RateLimitHeader string
	// FailureRate in [0, 1] is the share of DELETEs answered with a random transient failure,
	// one of: 500 PLATFORM.UNKNOWN_ERROR (JSON), 502 plain text "Bad Gateway", 503 HTML page,
	// 500 with an empty body. 0 means none.
	FailureRate float64
	// RejectKey answers every call (DELETE and check-api-key) with 401
	// PLATFORM.AUTHENTICATION_INVALID, whatever the key. false checks the key normally.
	RejectKey bool
	// Seed seeds the randomness of FailureRate and LatencyJitter; 0 seeds from the clock.
	Seed int64
	// EarlyGrace: a DELETE that arrives within EarlyGrace after a 429 announced a wait is not
	// counted as early (it may have left the client before the client read the 429).
	// 0 counts every DELETE that arrives before the announced time.
	EarlyGrace time.Duration
	// MaxCalls bounds how many of the latest calls Calls and /_fake/calls keep; 0 keeps all.
	// Stats count every call whatever MaxCalls is.
	MaxCalls int
}

// Validate reports every invalid field of o at once.
func (o Options) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("kombotest: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if o.Latency < 0 {
		bad("Latency", "must not be negative, got %v", o.Latency)
	}
	if o.LatencyJitter < 0 {
		bad("LatencyJitter", "must not be negative, got %v", o.LatencyJitter)
	}
	if o.ConcurrencyLimit < 0 {
		bad("ConcurrencyLimit", "must not be negative, got %d", o.ConcurrencyLimit)
	}
	if o.RateLimit < 0 || math.IsNaN(o.RateLimit) || math.IsInf(o.RateLimit, 0) {
		bad("RateLimit", "must be a finite number >= 0, got %v", o.RateLimit)
	}
	if o.RateBurst < 0 {
		bad("RateBurst", "must not be negative, got %d", o.RateBurst)
	}
	switch o.RateLimitHeader {
	case "", HintRateLimitReset, HintRetryAfter, HintRetryAfterMS, HintRetryAfterDate, HintNone:
	default:
		bad("RateLimitHeader", "must be one of %s, %s, %s, %s, %s; got %q",
			HintRateLimitReset, HintRetryAfter, HintRetryAfterMS, HintRetryAfterDate, HintNone, o.RateLimitHeader)
	}
	if !(o.FailureRate >= 0 && o.FailureRate <= 1) {
		bad("FailureRate", "must be between 0 and 1, got %v", o.FailureRate)
	}
	if o.EarlyGrace < 0 {
		bad("EarlyGrace", "must not be negative, got %v", o.EarlyGrace)
	}
	if o.MaxCalls < 0 {
		bad("MaxCalls", "must not be negative, got %d", o.MaxCalls)
	}
	return errors.Join(errs...)
}

func (o Options) hint() string {
	if o.RateLimitHeader == "" {
		return HintRateLimitReset
	}
	return o.RateLimitHeader
}

func (o Options) burst() int {
	if o.RateBurst <= 0 {
		return 1
	}
	return o.RateBurst
}

// Options returns the options the fake uses now.
func (f *Fake) Options() Options {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opts
}

// SetOptions replaces all options at once. It returns the validation error, and changes
// nothing, when o is invalid. A new RateLimit or RateBurst starts a full bucket; a new Seed
// reseeds the randomness.
func (f *Fake) SetOptions(o Options) error {
	return f.Update(func(cur *Options) { *cur = o })
}

// Update changes some options atomically: fn edits a copy of the current options, which
// replaces them if valid. It returns the validation error, and changes nothing, otherwise.
func (f *Fake) Update(fn func(o *Options)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := f.opts
	fn(&o)
	if err := o.Validate(); err != nil {
		return err
	}
	f.applyLocked(o)
	return nil
}

// must is for the setters, whose arguments are a test's constants.
func (f *Fake) must(fn func(o *Options)) {
	if err := f.Update(fn); err != nil {
		panic(err)
	}
}

// SetRejectKey makes every call answer 401 PLATFORM.AUTHENTICATION_INVALID (true), or
// checks the key normally again (false).
func (f *Fake) SetRejectKey(reject bool) { f.must(func(o *Options) { o.RejectKey = reject }) }

// SetAPIKey sets the expected bearer key; "" accepts any non-empty key.
func (f *Fake) SetAPIKey(key string) { f.must(func(o *Options) { o.APIKey = key }) }

// SetLatency sets the latency of each DELETE and its random jitter. It panics on negative values.
func (f *Fake) SetLatency(latency, jitter time.Duration) {
	f.must(func(o *Options) { o.Latency, o.LatencyJitter = latency, jitter })
}

// SetConcurrencyLimit sets how many DELETEs may be in flight; 0 removes the limit.
// It panics on a negative limit.
func (f *Fake) SetConcurrencyLimit(limit int) {
	f.must(func(o *Options) { o.ConcurrencyLimit = limit })
}

// SetRateLimit sets the token bucket (DELETEs per second and bucket size, 0 meaning 1) and
// refills it; perSecond 0 removes the limit. It panics on invalid values.
func (f *Fake) SetRateLimit(perSecond float64, burst int) {
	f.must(func(o *Options) { o.RateLimit, o.RateBurst = perSecond, burst })
}

// SetRateLimitHeader sets which hint a rate-limited answer carries (one of the Hint
// constants; "" means HintRateLimitReset). It panics on any other value.
func (f *Fake) SetRateLimitHeader(hint string) { f.must(func(o *Options) { o.RateLimitHeader = hint }) }

// SetFailureRate sets the share of DELETEs that fail transiently. It panics outside [0, 1].
func (f *Fake) SetFailureRate(rate float64) { f.must(func(o *Options) { o.FailureRate = rate }) }
