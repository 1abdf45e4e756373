package consumer

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kombo-ops/integration-deleter/kombo"
)

// TestDecide walks CONTRACT.md's treatment table, one row per kind of answer from Kombo.
func TestDecide(t *testing.T) {
	kerr := func(status int, code string) *kombo.Error {
		return &kombo.Error{Status: status, Code: code, Message: "m"}
	}
	withHint := func(e *kombo.Error, d time.Duration) *kombo.Error { e.RetryAfter = d; return e }
	withBound := func(e *kombo.Error, n int) *kombo.Error { e.ConcurrencyLimit = n; return e }

	tests := []struct {
		name       string
		res        kombo.DeleteResult
		err        error
		want       decision
		wantCounts bool
		wantRetry  bool
	}{
		// 200
		{name: "200", want: decision{Action: actionDeleted}},
		{name: "200 with Concurrency-Limit", res: kombo.DeleteResult{Limits: kombo.Limits{ConcurrencyLimit: 5}},
			want: decision{Action: actionDeleted, Limits: kombo.Limits{ConcurrencyLimit: 5}}},

		// Not found is what the request wanted.
		{name: "INTEGRATION_NOT_FOUND", err: kerr(404, kombo.CodeIntegrationNotFound),
			want: decision{Action: actionNotFound, Code: kombo.CodeIntegrationNotFound}},

		// Failed at once.
		{name: "INPUT_INVALID", err: kerr(400, kombo.CodeInputInvalid),
			want: decision{Action: actionFail, Code: kombo.CodeInputInvalid}},
		{name: "unknown code with 4xx", err: kerr(422, "PLATFORM.NEW_THING"),
			want: decision{Action: actionFail, Code: "PLATFORM.NEW_THING"}},
		{name: "unknown code with 404", err: kerr(404, "PLATFORM.NEW_THING"),
			want: decision{Action: actionFail, Code: "PLATFORM.NEW_THING"}},

		// Concurrency limit: retry, not counted, the header bounds the cap.
		{name: "CONCURRENCY_LIMIT_EXCEEDED", err: kerr(429, kombo.CodeConcurrencyLimitExceeded),
			want: decision{Action: actionRetryConcurrency, Code: kombo.CodeConcurrencyLimitExceeded}, wantRetry: true},
		{name: "CONCURRENCY_LIMIT_EXCEEDED with Concurrency-Limit", err: withBound(kerr(429, kombo.CodeConcurrencyLimitExceeded), 3),
			want: decision{Action: actionRetryConcurrency, Limits: kombo.Limits{ConcurrencyLimit: 3}, Code: kombo.CodeConcurrencyLimitExceeded}, wantRetry: true},

		// Rate limit: retry after the hint, not counted.
		{name: "RATE_LIMIT_EXCEEDED with hint", err: withHint(kerr(429, kombo.CodeRateLimitExceeded), 2*time.Second),
			want: decision{Action: actionRetryRateLimited, Hint: 2 * time.Second, Code: kombo.CodeRateLimitExceeded}, wantRetry: true},
		{name: "RATE_LIMIT_EXCEEDED without hint", err: kerr(429, kombo.CodeRateLimitExceeded),
			want: decision{Action: actionRetryRateLimited, Code: kombo.CodeRateLimitExceeded}, wantRetry: true},
		{name: "429 without code", err: kerr(429, ""),
			want: decision{Action: actionRetryRateLimited, Code: "HTTP.429"}, wantRetry: true},
		{name: "429 without code with hint", err: withHint(kerr(429, ""), 1500*time.Millisecond),
			want: decision{Action: actionRetryRateLimited, Hint: 1500 * time.Millisecond, Code: "HTTP.429"}, wantRetry: true},
		// The contract is silent on a 429 with a code this daemon does not know; it is
		// treated as a rate limit (retried, not counted), not as "other 4xx".
		{name: "unknown code with 429", err: withHint(kerr(429, "PLATFORM.NEW_LIMIT"), time.Second),
			want: decision{Action: actionRetryRateLimited, Hint: time.Second, Code: "PLATFORM.NEW_LIMIT"}, wantRetry: true},

		// Transient: retry with backoff, counted.
		{name: "UNKNOWN_ERROR", err: kerr(500, kombo.CodeUnknownError),
			want: decision{Action: actionRetry, Code: kombo.CodeUnknownError}, wantCounts: true, wantRetry: true},
		{name: "TASK_TIMED_OUT", err: kerr(504, kombo.CodeTaskTimedOut),
			want: decision{Action: actionRetry, Code: kombo.CodeTaskTimedOut}, wantCounts: true, wantRetry: true},
		{name: "unknown code with 5xx", err: kerr(503, "PLATFORM.NEW_OUTAGE"),
			want: decision{Action: actionRetry, Code: "PLATFORM.NEW_OUTAGE"}, wantCounts: true, wantRetry: true},
		{name: "500 without code", err: kerr(500, ""),
			want: decision{Action: actionRetry, Code: "HTTP.500"}, wantCounts: true, wantRetry: true},
		{name: "502 without code", err: kerr(502, ""),
			want: decision{Action: actionRetry, Code: "HTTP.502"}, wantCounts: true, wantRetry: true},
		{name: "503 without code", err: kerr(503, ""),
			want: decision{Action: actionRetry, Code: "HTTP.503"}, wantCounts: true, wantRetry: true},
		{name: "504 without code", err: kerr(504, ""),
			want: decision{Action: actionRetry, Code: "HTTP.504"}, wantCounts: true, wantRetry: true},
		{name: "503 without code with Retry-After", err: withHint(kerr(503, ""), 3*time.Second),
			want: decision{Action: actionRetry, Hint: 3 * time.Second, Code: "HTTP.503"}, wantCounts: true, wantRetry: true},
		{name: "408 without code", err: kerr(408, ""),
			want: decision{Action: actionRetry, Code: "HTTP.408"}, wantCounts: true, wantRetry: true},
		{name: "transport error", err: errors.New("kombo: delete integration \"x\": dial tcp 127.0.0.1:1: connect: connection refused"),
			want: decision{Action: actionRetry}, wantCounts: true, wantRetry: true},
		{name: "timeout", err: fmt.Errorf("kombo: delete integration \"x\": %w", context.DeadlineExceeded),
			want: decision{Action: actionRetry}, wantCounts: true, wantRetry: true},

		// The key is rejected: pause, nothing is the request's fault.
		{name: "AUTHENTICATION_INVALID", err: kerr(401, kombo.CodeAuthenticationInvalid),
			want: decision{Action: actionPause, Code: kombo.CodeAuthenticationInvalid}},
		{name: "IP_NOT_WHITELISTED", err: kerr(403, kombo.CodeIPNotWhitelisted),
			want: decision{Action: actionPause, Code: kombo.CodeIPNotWhitelisted}},
		{name: "401 without code", err: kerr(401, ""),
			want: decision{Action: actionPause, Code: "HTTP.401"}},

		// The code is found through wrapping.
		{name: "wrapped *kombo.Error", err: fmt.Errorf("request r-1: %w", kerr(404, kombo.CodeIntegrationNotFound)),
			want: decision{Action: actionNotFound, Code: kombo.CodeIntegrationNotFound}},
		{name: "twice wrapped *kombo.Error", err: fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", withHint(kerr(429, kombo.CodeRateLimitExceeded), time.Second))),
			want: decision{Action: actionRetryRateLimited, Hint: time.Second, Code: kombo.CodeRateLimitExceeded}, wantRetry: true},
		{name: "joined with a *kombo.Error", err: errors.Join(errors.New("other"), kerr(400, kombo.CodeInputInvalid)),
			want: decision{Action: actionFail, Code: kombo.CodeInputInvalid}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decide(tt.res, tt.err)
			if diff := cmp.Diff(got, tt.want); diff != "" {
				t.Errorf("decide() mismatch (-got +want):\n%s", diff)
			}
			if got.usesAttempt() != tt.wantCounts {
				t.Errorf("usesAttempt() = %v, want %v", got.usesAttempt(), tt.wantCounts)
			}
			if got.retries() != tt.wantRetry {
				t.Errorf("retries() = %v, want %v", got.retries(), tt.wantRetry)
			}
		})
	}
}

func TestActionString(t *testing.T) {
	tests := []struct {
		action action
		want   string
	}{
		{actionDeleted, "deleted"},
		{actionNotFound, "not_found"},
		{actionFail, "fail"},
		{actionRetry, "retry"},
		{actionRetryRateLimited, "retry_rate_limited"},
		{actionRetryConcurrency, "retry_concurrency"},
		{actionPause, "pause"},
		{actionPause + 1, "unknown"},
		{action(-1), "unknown"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d", int(tt.action)), func(t *testing.T) {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("action(%d).String() panicked: %v", int(tt.action), r)
				}
			}()
			if got := tt.action.String(); got != tt.want {
				t.Errorf("action(%d).String() = %q, want %q", int(tt.action), got, tt.want)
			}
		})
	}
}

// TestStatusesWithoutACodeFail: a 4xx without a code, a redirect, or a 2xx other than 200
// (not Kombo's success) fails at once, with the code HTTP.<status>.
func TestStatusesWithoutACodeFail(t *testing.T) {
	for _, status := range []int{403, 404, 301, 302, 307, 204} {
		want := decision{Action: actionFail, Code: fmt.Sprintf("HTTP.%d", status)}
		if got := decide(kombo.DeleteResult{}, &kombo.Error{Status: status, Message: "m"}); got != want {
			t.Errorf("decide(%d without code) = %+v, want %+v", status, got, want)
		}
	}
}
