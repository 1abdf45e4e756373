//go:build !faultinject

package consumer

// injectFault is a no-op in normal builds; the fault suite builds with -tags faultinject.
func injectFault(request) {}

// injectCrash is a no-op in normal builds; the fault suite builds with -tags faultinject.
func injectCrash(string, string, ...func() error) {}
