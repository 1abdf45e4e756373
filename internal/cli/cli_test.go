package cli_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/kombo-ops/integration-deleter/internal/cli"
)

func TestExitCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "nil", err: nil, want: 0},
		{name: "usage", err: cli.UsageError{Err: os.ErrInvalid}, want: 2},
		{name: "wrapped usage", err: fmt.Errorf("wrapped: %w", cli.UsageError{Err: os.ErrInvalid}), want: 2},
		{name: "run time", err: os.ErrDeadlineExceeded, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := cli.ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}
