package consumer

import (
	"errors"
	"net/http"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo"
)

// action is what the consumer does after one answer from Kombo.
type action int

const (
	// actionDeleted: the integration was deleted; publish `deleted`.
	actionDeleted action = iota
	// actionNotFound: Kombo does not know the integration; publish `deleted` with not_found.
	actionNotFound
	// actionFail: the request cannot succeed; publish `failed` at once.
	actionFail
	// actionRetry: a transient failure; retry with backoff, counted against KOMBO_MAX_ATTEMPTS.
	actionRetry
	// actionRetryRateLimited: Kombo's rate limit; every worker holds off until the hint
	// (or the backoff delay when there is none); not counted against KOMBO_MAX_ATTEMPTS.
	actionRetryRateLimited
	// actionRetryConcurrency: Kombo's concurrency limit; the cap shrinks and the call is
	// retried with backoff; not counted against KOMBO_MAX_ATTEMPTS.
	actionRetryConcurrency
	// actionPause: the API key is rejected; nothing is the request's fault, so the daemon
	// pauses, keeps the message and probes the key.
	actionPause
)

var actionNames = [...]string{"deleted", "not_found", "fail", "retry", "retry_rate_limited", "retry_concurrency", "pause"}

// String returns the action's name as used in logs and metrics.
func (a action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// decision is the classification of one answer from Kombo.
type decision struct {
	Action action
	// Hint is the server's retry hint (Retry-After, retry-after-ms, ratelimit-reset); 0 = none.
	Hint time.Duration
	// Limits are the limits Kombo stated on the answer (none for a transport error).
	Limits kombo.Limits
	// Code is the error code for results and metrics: Kombo's code, HTTP.<status> where
	// Kombo gave none, and "" for transport errors (no answer at all).
	Code string
}

// usesAttempt reports whether the answer uses up one of KOMBO_MAX_ATTEMPTS.
func (d decision) usesAttempt() bool { return d.Action == actionRetry }

// retries reports whether the call should be made again later.
func (d decision) retries() bool {
	return d.Action == actionRetry || d.Action == actionRetryRateLimited || d.Action == actionRetryConcurrency
}

// decide classifies the result of one DeleteIntegration call: by Kombo's error code first,
// by HTTP status only where there is no code, and any error that is not a *kombo.Error
// (connection refused or reset, timeout) as transient. It is pure; the caller handles
// its own context being cancelled before calling it.
func decide(res kombo.DeleteResult, err error) decision {
	if err == nil {
		return decision{Action: actionDeleted, Limits: res.Limits}
	}
	var kerr *kombo.Error
	if !errors.As(err, &kerr) {
		return decision{Action: actionRetry}
	}
	d := decision{Hint: kerr.RetryAfter, Limits: kerr.Limits, Code: kerr.EffectiveCode()}
	d.Action = classify(kerr.Code, kerr.Status)
	return d
}

func classify(code string, status int) action {
	switch code {
	case kombo.CodeIntegrationNotFound:
		return actionNotFound
	case kombo.CodeConcurrencyLimitExceeded:
		return actionRetryConcurrency
	case kombo.CodeRateLimitExceeded:
		return actionRetryRateLimited
	case kombo.CodeAuthenticationInvalid, kombo.CodeIPNotWhitelisted:
		return actionPause
	case kombo.CodeUnknownError, kombo.CodeTaskTimedOut:
		return actionRetry
	case kombo.CodeInputInvalid:
		return actionFail
	case "":
		// No code: a proxy or load balancer answered. Classify by status.
		switch {
		case status == http.StatusTooManyRequests:
			return actionRetryRateLimited
		case status == http.StatusRequestTimeout, status >= 500:
			return actionRetry
		case status == http.StatusUnauthorized:
			return actionPause
		default:
			return actionFail
		}
	default:
		// A code this daemon does not know yet (Kombo adds codes over time).
		switch {
		case status == http.StatusTooManyRequests:
			return actionRetryRateLimited
		case status >= 500:
			return actionRetry
		default:
			return actionFail
		}
	}
}
