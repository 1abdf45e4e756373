package kombo

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryHint caps what ParseRetryHint returns: a server that asks for more
// than an hour is more likely wrong than right, and the caller's own retry
// budget decides what happens after.
const MaxRetryHint = time.Hour

// unixTimeThreshold tells a ratelimit-reset that is a Unix time (as some
// servers send) from one that is seconds until the reset (as Kombo
// documents): no window lasts 30 years.
const unixTimeThreshold = 1e9

// ParseRetryHint returns how long h asks the client to wait before the next
// request, measured from now. It reads
//   - Retry-After: delay seconds, or an HTTP date;
//   - retry-after-ms: milliseconds;
//   - ratelimit-reset: seconds until the rate-limit window resets (a value
//     of 10^9 or more is taken as a Unix time).
//
// Numbers may have a fractional part. It returns the longest valid hint,
// capped at MaxRetryHint, and 0 when there is none, when all are invalid,
// negative or zero, and when dates lie in the past.
func ParseRetryHint(h http.Header, now time.Time) time.Duration {
	longest := max(
		retryAfter(h.Get("Retry-After"), now),
		delay(h.Get("Retry-After-Ms"), time.Millisecond),
		rateLimitReset(h.Get("Ratelimit-Reset"), now),
	)
	return min(longest, MaxRetryHint)
}

func retryAfter(v string, now time.Time) time.Duration {
	if d := delay(v, time.Second); d > 0 {
		return d
	}
	t, err := http.ParseTime(strings.TrimSpace(v))
	if err != nil {
		return 0
	}
	return until(t, now)
}

func rateLimitReset(v string, now time.Time) time.Duration {
	f, ok := decimal(v)
	if ok && f >= unixTimeThreshold {
		return until(time.Unix(int64(f), 0), now)
	}
	return delay(v, time.Second)
}

// delay parses v as a non-negative decimal number of units; it returns 0
// when v is not one.
func delay(v string, unit time.Duration) time.Duration {
	f, ok := decimal(v)
	if !ok {
		return 0
	}
	if f*float64(unit) >= float64(MaxRetryHint) {
		return MaxRetryHint
	}
	return time.Duration(f * float64(unit))
}

func until(t, now time.Time) time.Duration {
	d := t.Sub(now)
	return min(max(d, 0), MaxRetryHint)
}

// decimal parses digits with at most one decimal point, and nothing else: no
// sign, exponent, NaN or infinity.
func decimal(v string) (float64, bool) {
	v = strings.TrimSpace(v)
	digits, points := 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.':
			points++
		default:
			return 0, false
		}
	}
	if digits == 0 || points > 1 {
		return 0, false
	}
	f, err := strconv.ParseFloat(v, 64)
	return f, err == nil
}
