// Package testwait waits in tests for a condition that other goroutines or processes make
// true. It is testkit.WaitFor under its older name, for the tests that still call it.
package testwait

import (
	"testing"
	"time"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
)

// For polls cond every 10 ms until it holds, and fails tb when it still does not after
// timeout, naming what it waited for. It is testkit.WaitFor.
func For(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	testkit.WaitFor(tb, timeout, what, cond)
}
