// Package cli holds what the commands (integration-deleter, fake-kombo) share around their
// run function: the error that means a usage error, and how main ends the process.
package cli

import (
	"errors"
	"fmt"
	"os"
)

// UsageError is a bad command line, environment or configuration, found before anything
// runs: exit code 2.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// ExitCode is the process exit code for a run's error: 0 for none, 2 for a UsageError
// (wrapped or not), else 1.
func ExitCode(err error) int {
	var ue UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return 2
	default:
		return 1
	}
}

// Exit ends the process after a run that returned err: it prints err on stderr after the
// command's name, and exits with ExitCode(err).
func Exit(name string, err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
	}
	os.Exit(ExitCode(err))
}
