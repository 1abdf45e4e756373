package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestGroup: the first actor to return (or the group's context) stops the group; the
// actors are interrupted in the order they were added, each once the one before it has
// returned or used up its budget; the error names the actor that failed and any actor
// that did not stop in time.
func TestGroup(t *testing.T) {
	errBroken := errors.New("broken")
	tests := []struct {
		name      string
		fails     string // the actor that returns errBroken at once; "" = none, ctx ends
		ends      string // the actor that returns nil at once
		hangs     string // the actor that ignores its interrupt
		wantErr   []string
		wantTook  time.Duration
		wantOrder []string
	}{
		{name: "context ends", wantOrder: []string{"a", "b", "c"}, wantTook: 3 * time.Second},
		{name: "an actor fails", fails: "b", wantErr: []string{"b: broken"},
			wantOrder: []string{"a", "b", "c"}, wantTook: 2 * time.Second},
		{name: "an actor ends by itself", ends: "c", wantErr: []string{"c: ended before the daemon was stopped"},
			wantOrder: []string{"a", "b", "c"}, wantTook: 2 * time.Second},
		{name: "an actor does not stop", hangs: "b", wantErr: []string{"b did not stop within its shutdown budget (2s)"},
			wantOrder: []string{"a", "b", "c"}, wantTook: 4 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var (
					mu    sync.Mutex
					order []string
					g     group
				)
				ctx, cancel := context.WithCancel(t.Context())
				release := make(chan struct{}) // ends the actor that hangs once the test is done
				defer close(release)
				for _, name := range []string{"a", "b", "c"} {
					stop := make(chan struct{})
					g.add(name, 2*time.Second, func() error {
						if name == tt.fails {
							return fmt.Errorf("%s: %w", name, errBroken)
						}
						if name == tt.ends {
							return nil
						}
						<-stop
						if name == tt.hangs {
							<-release
							return nil
						}
						time.Sleep(time.Second) // stopping takes a second
						return nil
					}, func(context.Context) {
						mu.Lock()
						order = append(order, name)
						mu.Unlock()
						close(stop)
					})
				}
				if tt.fails == "" && tt.ends == "" {
					time.AfterFunc(time.Minute, cancel)
				}
				start := time.Now()
				err := g.run(ctx)
				took := time.Since(start)
				if tt.fails == "" && tt.ends == "" {
					took -= time.Minute
				}
				for _, want := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Errorf("run() = %v, want an error with %q", err, want)
					}
				}
				if len(tt.wantErr) == 0 && err != nil {
					t.Errorf("run() = %v, want nil", err)
				}
				if !slices.Equal(order, tt.wantOrder) {
					t.Errorf("interrupted %q, want %q", order, tt.wantOrder)
				}
				if took != tt.wantTook {
					t.Errorf("stopping took %s, want %s", took, tt.wantTook)
				}
				cancel()
			})
		})
	}
}

// TestShutdownBudgets: the steps of the shutdown add up to SHUTDOWN_TIMEOUT, and calls in
// flight end before the consumer's share does, leaving it time to hand back what waits.
func TestShutdownBudgets(t *testing.T) {
	for _, total := range []time.Duration{time.Second, 5 * time.Second, 25 * time.Second, 7*time.Second + 3} {
		b := shutdownBudgets(total)
		if sum := b.consumer + b.drain + b.http; sum != total {
			t.Errorf("shutdownBudgets(%s) = %+v: the steps add up to %s, want %s", total, b, sum, total)
		}
		if b.calls >= b.consumer || b.drain <= 0 || b.http <= 0 {
			t.Errorf("shutdownBudgets(%s) = %+v: want calls < consumer, drain and http > 0", total, b)
		}
	}
}
