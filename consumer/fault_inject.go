//go:build faultinject

package consumer

import "strings"

// injectFault panics on requests whose integration id starts with "panic:", so that the
// fault suite can prove a handler panic ends in a DELETER.INTERNAL result and the process
// goes on. Only binaries built with -tags faultinject have it.
func injectFault(req Request) {
	if strings.HasPrefix(req.IntegrationID, "panic:") {
		panic("fault injection: panic requested for " + req.IntegrationID)
	}
}
