package kombo_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/kombo-ops/integration-deleter/kombo"
)

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  *kombo.Error
		want string
	}{
		{
			name: "Kombo error with log URL",
			err: &kombo.Error{Status: 404, Code: kombo.CodeIntegrationNotFound, Title: "Integration not found",
				Message: "Integration not found", LogURL: "https://app.kombo.dev/logs/1"},
			want: "kombo: HTTP 404 PLATFORM.INTEGRATION_NOT_FOUND: Integration not found (log: https://app.kombo.dev/logs/1)",
		},
		{
			name: "Kombo error without log URL",
			err:  &kombo.Error{Status: 400, Code: kombo.CodeInputInvalid, Message: "bad id"},
			want: "kombo: HTTP 400 PLATFORM.INPUT_INVALID: bad id",
		},
		{
			name: "no code",
			err:  &kombo.Error{Status: 500, Message: "HTTP 500 with an empty body"},
			want: "kombo: HTTP 500: HTTP 500 with an empty body",
		},
		{
			name: "sentinel",
			err:  kombo.ErrRateLimitExceeded,
			want: "kombo: PLATFORM.RATE_LIMIT_EXCEEDED: rate limit exceeded",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestErrorIs(t *testing.T) {
	notFound := &kombo.Error{Status: 404, Code: kombo.CodeIntegrationNotFound, Message: "gone"}
	noCode503 := &kombo.Error{Status: 503, Message: "HTTP 503 with an empty body"}
	tests := []struct {
		name   string
		err    error
		target error
		want   bool
	}{
		{"same code", notFound, kombo.ErrIntegrationNotFound, true},
		{"same code, wrapped", fmt.Errorf("request 01J: %w", notFound), kombo.ErrIntegrationNotFound, true},
		{"other code", notFound, kombo.ErrInputInvalid, false},
		{"no code never matches a code", noCode503, kombo.ErrUnknownError, false},
		{"status target", noCode503, &kombo.Error{Status: 503}, true},
		{"status target, other status", noCode503, &kombo.Error{Status: 502}, false},
		{"code and status target, both match", notFound, &kombo.Error{Status: 404, Code: kombo.CodeIntegrationNotFound}, true},
		{"code and status target, status differs", notFound, &kombo.Error{Status: 410, Code: kombo.CodeIntegrationNotFound}, false},
		{"empty target", notFound, &kombo.Error{}, false},
		{"nil *Error target", notFound, (*kombo.Error)(nil), false},
		{"other error type", notFound, io.EOF, false},
		{"sentinel is itself", kombo.ErrTaskTimedOut, kombo.ErrTaskTimedOut, true},
		{"sentinels differ", kombo.ErrTaskTimedOut, kombo.ErrUnknownError, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errors.Is(tt.err, tt.target); got != tt.want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", tt.err, tt.target, got, tt.want)
			}
		})
	}
}

func TestSentinelCodes(t *testing.T) {
	tests := []struct {
		err  *kombo.Error
		code string
	}{
		{kombo.ErrRateLimitExceeded, "PLATFORM.RATE_LIMIT_EXCEEDED"},
		{kombo.ErrConcurrencyLimitExceeded, "PLATFORM.CONCURRENCY_LIMIT_EXCEEDED"},
		{kombo.ErrIntegrationNotFound, "PLATFORM.INTEGRATION_NOT_FOUND"},
		{kombo.ErrInputInvalid, "PLATFORM.INPUT_INVALID"},
		{kombo.ErrUnknownError, "PLATFORM.UNKNOWN_ERROR"},
		{kombo.ErrIPNotWhitelisted, "PLATFORM.IP_NOT_WHITELISTED"},
		{kombo.ErrAuthenticationInvalid, "PLATFORM.AUTHENTICATION_INVALID"},
		{kombo.ErrTaskTimedOut, "PLATFORM.TASK_TIMED_OUT"},
	}
	for _, tt := range tests {
		t.Run(tt.code, func(t *testing.T) {
			if tt.err.Code != tt.code || tt.err.Message == "" {
				t.Errorf("sentinel = %+v, want code %s and a message", tt.err, tt.code)
			}
			if !errors.Is(&kombo.Error{Status: 499, Code: tt.code, Message: "m"}, tt.err) {
				t.Errorf("an error with code %s does not match its sentinel", tt.code)
			}
		})
	}
}

func TestEffectiveCode(t *testing.T) {
	tests := []struct {
		err  *kombo.Error
		want string
	}{
		{&kombo.Error{Status: 429, Code: kombo.CodeRateLimitExceeded}, "PLATFORM.RATE_LIMIT_EXCEEDED"},
		{&kombo.Error{Status: 502}, "HTTP.502"},
		{&kombo.Error{Status: 301}, "HTTP.301"},
		{&kombo.Error{Status: 404, Code: "PLATFORM.SOMETHING_NEW"}, "PLATFORM.SOMETHING_NEW"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := tt.err.EffectiveCode(); got != tt.want {
				t.Errorf("EffectiveCode() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKnownCode(t *testing.T) {
	// Every code Kombo's delete endpoint declares (KOMBO.md, "Errors"), and each sentinel's.
	known := []string{
		"PLATFORM.RATE_LIMIT_EXCEEDED", "PLATFORM.CONCURRENCY_LIMIT_EXCEEDED", "PLATFORM.INTEGRATION_NOT_FOUND",
		"PLATFORM.INPUT_INVALID", "PLATFORM.UNKNOWN_ERROR", "PLATFORM.IP_NOT_WHITELISTED",
		"PLATFORM.AUTHENTICATION_INVALID", "PLATFORM.TASK_TIMED_OUT",
	}
	for _, s := range []*kombo.Error{kombo.ErrRateLimitExceeded, kombo.ErrConcurrencyLimitExceeded,
		kombo.ErrIntegrationNotFound, kombo.ErrInputInvalid, kombo.ErrUnknownError, kombo.ErrIPNotWhitelisted,
		kombo.ErrAuthenticationInvalid, kombo.ErrTaskTimedOut} {
		known = append(known, s.Code)
	}
	for _, code := range known {
		if !kombo.KnownCode(code) {
			t.Errorf("KnownCode(%q) = false, want true", code)
		}
	}
	for _, code := range []string{"", "HTTP.502", "PLATFORM.SOMETHING_NEW", "platform.rate_limit_exceeded",
		" PLATFORM.INPUT_INVALID", "PLATFORM.INPUT_INVALID\n", "DELETER.INTERNAL", "SOMETHING.WEIRD.123"} {
		if kombo.KnownCode(code) {
			t.Errorf("KnownCode(%q) = true, want false", code)
		}
	}
}
