package testkit

import (
	"context"
	"time"
)

// StopRun ends a function running in the background: it calls cancel (which ends the
// function's context) and returns what the function sent on done. It closes done, so that
// a second StopRun returns nil at once; done must be sent on once and not closed by the
// function. It fails tb when nothing comes within timeout.
func StopRun(tb TB, cancel context.CancelFunc, done chan error, timeout time.Duration) error {
	tb.Helper()
	cancel()
	select {
	case err, ok := <-done:
		if ok {
			close(done)
		}
		return err
	case <-time.After(timeout):
		tb.Fatalf("the run did not return within %s after its context ended", timeout)
		return nil
	}
}

// Closed reports whether ch is closed (or has a value ready), without waiting.
func Closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
