//go:build faultinject

package consumer

import (
	"os"
	"strings"
	"syscall"
)

// injectFault panics on requests whose integration id starts with "panic:", so that the
// fault suite can prove a handler panic ends in a DELETER.INTERNAL result and the process
// goes on. Only binaries built with -tags faultinject have it.
func injectFault(req request) {
	if strings.HasPrefix(req.IntegrationID, "panic:") {
		panic("fault injection: panic requested for " + req.IntegrationID)
	}
}

// crashAt is the point of the write order (FAULT_CRASH_AT: claimed, called, recorded,
// published, stored) at which the process kills itself with SIGKILL while handling a
// request whose integration id starts with "crash:", as kill -9 at that instant would.
var crashAt = os.Getenv("FAULT_CRASH_AT")

// injectCrash kills the process at point for a "crash:" request, after running flush
// (what the point says was sent).
func injectCrash(point, integrationID string, flush ...func() error) {
	if point == crashAt && strings.HasPrefix(integrationID, "crash:") {
		for _, f := range flush {
			_ = f()
		}
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal ends the process
	}
}
