package testkit

import (
	"context"
	"fmt"
	"time"
)

// Poll calls cond every interval until it reports done, and returns nil then. It returns
// cond's error at once when cond returns one, and an error with cond's last detail when
// timeout passes or ctx ends first.
func Poll(ctx context.Context, interval, timeout time.Duration, cond func() (done bool, detail string, err error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		done, detail, err := cond()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			if detail == "" {
				return fmt.Errorf("not done after %s", timeout)
			}
			return fmt.Errorf("not done after %s; last: %s", timeout, detail)
		case <-tick.C:
		}
	}
}

// Eventually polls cond every 10 ms until it reports done, and fails tb when it still does
// not after timeout, naming what it waited for and cond's last detail.
func Eventually(tb TB, timeout time.Duration, what string, cond func() (done bool, detail string)) {
	tb.Helper()
	err := Poll(context.Background(), 10*time.Millisecond, timeout, func() (bool, string, error) {
		done, detail := cond()
		return done, detail, nil
	})
	if err != nil {
		tb.Fatalf("waiting for %s: %v", what, err)
	}
}

// WaitFor is Eventually for a condition without a detail to report.
func WaitFor(tb TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	Eventually(tb, timeout, what, func() (bool, string) { return cond(), "" })
}
