package consumer

import (
	"errors"
	"net/http"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo"
)

// Action is what the consumer does after one answer from Kombo.
type Action int

const (
	// ActionDeleted: the integration was deleted; publish `deleted`.
	ActionDeleted Action = iota
	// ActionNotFound: Kombo does not know the integration; publish `deleted` with not_found.
	ActionNotFound
	// ActionFail: the request cannot succeed; publish `failed` at once.
	ActionFail
	// ActionRetry: a transient failure; retry with backoff, counted against KOMBO_MAX_ATTEMPTS.
	ActionRetry
	// ActionRetryRateLimited: Kombo's rate limit; every worker holds off until the hint
	// (or the backoff delay when there is none); not counted against KOMBO_MAX_ATTEMPTS.
	ActionRetryRateLimited
	// ActionRetryConcurrency: Kombo's concurrency limit; the cap shrinks and the call is
	// retried with backoff; not counted against KOMBO_MAX_ATTEMPTS.
	ActionRetryConcurrency
	// ActionPause: the API key is rejected; nothing is the request's fault, so the daemon
	// pauses, keeps the message and probes the key.
	ActionPause
)

var actionNames = [...]string{"deleted", "not_found", "fail", "retry", "retry_rate_limited", "retry_concurrency", "pause"}

// String returns the action's name as used in logs and metrics.
func (a Action) String() string {
	if a >= 0 && int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "unknown"
}

// Decision is the classification of one answer from Kombo.
type Decision struct {
	Action Action
	// Hint is the server's retry hint (Retry-After, retry-after-ms, ratelimit-reset); 0 = none.
	Hint time.Duration
	// Limits are the limits Kombo stated on the answer (none for a transport error).
	Limits kombo.Limits
	// Code is the error code for results and metrics: Kombo's code, HTTP.<status> where
	// Kombo gave none, and "" for transport errors (no answer at all).
	Code string
}

// Counts reports whether the answer uses up one of KOMBO_MAX_ATTEMPTS.
func (d Decision) Counts() bool { return d.Action == ActionRetry }

// Retry reports whether the call should be made again later.
func (d Decision) Retry() bool {
	return d.Action == ActionRetry || d.Action == ActionRetryRateLimited || d.Action == ActionRetryConcurrency
}

// Decide classifies the result of one DeleteIntegration call: by Kombo's error code first,
// by HTTP status only where there is no code, and any error that is not a *kombo.Error
// (connection refused or reset, timeout) as transient. It is pure; the caller handles
// its own context being cancelled before calling it.
func Decide(res kombo.DeleteResult, err error) Decision {
	if err == nil {
		return Decision{Action: ActionDeleted, Limits: res.Limits}
	}
	var kerr *kombo.Error
	if !errors.As(err, &kerr) {
		return Decision{Action: ActionRetry}
	}
	d := Decision{Hint: kerr.RetryAfter, Limits: kerr.Limits, Code: kerr.EffectiveCode()}
	d.Action = classify(kerr.Code, kerr.Status)
	return d
}

func classify(code string, status int) Action {
	switch code {
	case kombo.CodeIntegrationNotFound:
		return ActionNotFound
	case kombo.CodeConcurrencyLimitExceeded:
		return ActionRetryConcurrency
	case kombo.CodeRateLimitExceeded:
		return ActionRetryRateLimited
	case kombo.CodeAuthenticationInvalid, kombo.CodeIPNotWhitelisted:
		return ActionPause
	case kombo.CodeUnknownError, kombo.CodeTaskTimedOut:
		return ActionRetry
	case kombo.CodeInputInvalid:
		return ActionFail
	case "":
		// No code: a proxy or load balancer answered. Classify by status.
		switch {
		case status == http.StatusTooManyRequests:
			return ActionRetryRateLimited
		case status == http.StatusRequestTimeout, status >= 500:
			return ActionRetry
		case status == http.StatusUnauthorized:
			return ActionPause
		default:
			return ActionFail
		}
	default:
		// A code this daemon does not know yet (Kombo adds codes over time).
		switch {
		case status == http.StatusTooManyRequests:
			return ActionRetryRateLimited
		case status >= 500:
			return ActionRetry
		default:
			return ActionFail
		}
	}
}
