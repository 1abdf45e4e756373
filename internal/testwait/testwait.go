// Package testwait waits in tests for a condition that other goroutines or processes make
// true.
package testwait

import (
	"testing"
	"time"
)

// For polls cond every 10 ms until it holds, and fails tb when it still does not after
// timeout, naming what it waited for.
func For(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
