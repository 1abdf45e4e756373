package kombo_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo"
)

func TestParseRetryHint(t *testing.T) {
	now := time.Date(2026, 5, 4, 12, 0, 0, 0, time.UTC)
	date := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	unix := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	tests := []struct {
		name   string
		header map[string]string
		want   time.Duration
	}{
		{"none", nil, 0},
		{"unrelated headers", map[string]string{"Ratelimit-Limit": "100", "Ratelimit-Remaining": "0"}, 0},
		{"Retry-After seconds", map[string]string{"Retry-After": "5"}, 5 * time.Second},
		{"Retry-After seconds with spaces", map[string]string{"Retry-After": " 5 "}, 5 * time.Second},
		{"Retry-After fractional seconds", map[string]string{"Retry-After": "1.5"}, 1500 * time.Millisecond},
		{"Retry-After zero", map[string]string{"Retry-After": "0"}, 0},
		{"Retry-After HTTP date", map[string]string{"Retry-After": date(90 * time.Second)}, 90 * time.Second},
		{"Retry-After RFC 850 date", map[string]string{"Retry-After": now.Add(time.Minute).Format(time.RFC850)}, time.Minute},
		{"Retry-After ANSI C date", map[string]string{"Retry-After": now.Add(time.Minute).Format(time.ANSIC)}, time.Minute},
		{"Retry-After date in the past", map[string]string{"Retry-After": date(-time.Minute)}, 0},
		{"Retry-After negative", map[string]string{"Retry-After": "-3"}, 0},
		{"Retry-After garbage", map[string]string{"Retry-After": "soon"}, 0},
		{"Retry-After exponent", map[string]string{"Retry-After": "1e3"}, 0},
		{"Retry-After NaN", map[string]string{"Retry-After": "NaN"}, 0},
		{"Retry-After Inf", map[string]string{"Retry-After": "+Inf"}, 0},
		{"Retry-After two points", map[string]string{"Retry-After": "1.2.3"}, 0},
		{"Retry-After a lone point", map[string]string{"Retry-After": "."}, 0},
		{"retry-after-ms", map[string]string{"retry-after-ms": "1500"}, 1500 * time.Millisecond},
		{"retry-after-ms fractional", map[string]string{"retry-after-ms": "250.5"}, 250500 * time.Microsecond},
		{"retry-after-ms negative", map[string]string{"retry-after-ms": "-100"}, 0},
		{"retry-after-ms garbage", map[string]string{"retry-after-ms": "later"}, 0},
		{"ratelimit-reset seconds", map[string]string{"ratelimit-reset": "7"}, 7 * time.Second},
		{"ratelimit-reset Unix time", map[string]string{"ratelimit-reset": unix(30 * time.Second)}, 30 * time.Second},
		{"ratelimit-reset Unix time in the past", map[string]string{"ratelimit-reset": unix(-30 * time.Second)}, 0},
		{"ratelimit-reset garbage", map[string]string{"ratelimit-reset": "x7"}, 0},
		{"several: the longest wins", map[string]string{"Retry-After": "2", "retry-after-ms": "3500", "ratelimit-reset": "1"}, 3500 * time.Millisecond},
		{"several: date wins", map[string]string{"Retry-After": date(10 * time.Second), "ratelimit-reset": "4"}, 10 * time.Second},
		{"several: invalid ones are skipped", map[string]string{"Retry-After": "soon", "retry-after-ms": "-5", "ratelimit-reset": "4"}, 4 * time.Second},
		{"several: all invalid", map[string]string{"Retry-After": "soon", "retry-after-ms": "-5", "ratelimit-reset": ""}, 0},
		{"capped seconds", map[string]string{"Retry-After": "999999999999999999999"}, kombo.MaxRetryHint},
		{"capped date", map[string]string{"Retry-After": date(48 * time.Hour)}, kombo.MaxRetryHint},
		{"capped ms", map[string]string{"retry-after-ms": "86400000"}, kombo.MaxRetryHint},
		{"just below the cap", map[string]string{"ratelimit-reset": "3599"}, 3599 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			if got := kombo.ParseRetryHint(h, now); got != tt.want {
				t.Errorf("ParseRetryHint(%v) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}
