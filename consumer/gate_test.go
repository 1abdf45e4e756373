package consumer

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestGateOpen(t *testing.T) {
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		holds []time.Duration // HoldUntil(base + each); none = never held
		now   time.Duration   // the clock, from base
		want  bool
	}{
		{name: "never held", now: 0, want: true},
		{name: "before the hold", holds: []time.Duration{5 * time.Second}, now: 4 * time.Second, want: false},
		{name: "at the hold", holds: []time.Duration{5 * time.Second}, now: 5 * time.Second, want: true},
		{name: "after the hold", holds: []time.Duration{5 * time.Second}, now: time.Minute, want: true},
		{name: "hold in the past", holds: []time.Duration{-time.Second}, now: 0, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGate(func() time.Time { return base.Add(tt.now) })
			for _, d := range tt.holds {
				g.HoldUntil(base.Add(d))
			}
			if got := g.Open(); got != tt.want {
				t.Errorf("Open() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGateHoldUntilNeverShortens(t *testing.T) {
	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		holds []time.Time
		want  time.Time
	}{
		{name: "none", want: time.Time{}},
		{name: "one", holds: []time.Time{base.Add(5 * time.Second)}, want: base.Add(5 * time.Second)},
		{name: "later extends", holds: []time.Time{base.Add(2 * time.Second), base.Add(5 * time.Second)}, want: base.Add(5 * time.Second)},
		{name: "earlier ignored", holds: []time.Time{base.Add(5 * time.Second), base.Add(2 * time.Second)}, want: base.Add(5 * time.Second)},
		{name: "zero ignored", holds: []time.Time{base, {}}, want: base},
		{name: "same kept", holds: []time.Time{base, base}, want: base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := NewGate(func() time.Time { return base })
			for _, h := range tt.holds {
				g.HoldUntil(h)
			}
			if got := g.Until(); !got.Equal(tt.want) {
				t.Errorf("Until() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestGateNilNowIsTimeNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(nil)
		g.HoldUntil(time.Now().Add(time.Second))
		if g.Open() {
			t.Fatal("Open() = true before the hold ends")
		}
		time.Sleep(time.Second)
		if !g.Open() {
			t.Fatal("Open() = false when the hold ends")
		}
	})
}

func TestGateWait(t *testing.T) {
	tests := []struct {
		name string
		// hold is HoldUntil(start + hold) before Wait; 0 = none.
		hold time.Duration
		// extendTo, if set, is HoldUntil(start + extendTo) at start + extendAt.
		extendAt, extendTo time.Duration
		// cancelAt cancels Wait's ctx at start + cancelAt; 0 = never.
		cancelAt time.Duration
		wantErr  error
		wantAt   time.Duration // how long Wait blocked
	}{
		{name: "never held", wantAt: 0},
		{name: "hold in the past", hold: -time.Minute, wantAt: 0},
		{name: "held", hold: 3 * time.Second, wantAt: 3 * time.Second},
		{
			name:     "extended during the wait",
			hold:     3 * time.Second,
			extendAt: time.Second,
			extendTo: 10 * time.Second,
			wantAt:   10 * time.Second,
		},
		{
			name:     "shortening during the wait is ignored",
			hold:     10 * time.Second,
			extendAt: time.Second,
			extendTo: 2 * time.Second,
			wantAt:   10 * time.Second,
		},
		{
			name:     "cancelled",
			hold:     time.Hour,
			cancelAt: 2 * time.Second,
			wantErr:  context.Canceled,
			wantAt:   2 * time.Second,
		},
		{
			name:     "cancelled after an extension",
			hold:     3 * time.Second,
			extendAt: time.Second,
			extendTo: time.Hour,
			cancelAt: 5 * time.Second,
			wantErr:  context.Canceled,
			wantAt:   5 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g := NewGate(nil)
				start := time.Now()
				if tt.hold != 0 {
					g.HoldUntil(start.Add(tt.hold))
				}
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				if tt.extendTo != 0 {
					time.AfterFunc(tt.extendAt, func() { g.HoldUntil(start.Add(tt.extendTo)) })
				}
				if tt.cancelAt != 0 {
					time.AfterFunc(tt.cancelAt, cancel)
				}
				gotErr := g.Wait(ctx)
				gotAt := time.Since(start)
				if !errors.Is(gotErr, tt.wantErr) {
					t.Errorf("Wait() = %v, want %v", gotErr, tt.wantErr)
				}
				if gotAt != tt.wantAt {
					t.Errorf("Wait() returned after %v, want %v", gotAt, tt.wantAt)
				}
				if got, want := g.Open(), tt.wantErr == nil; got != want {
					t.Errorf("Open() after Wait = %v, want %v", got, want)
				}
			})
		})
	}
}

func TestGateWaitOpenIgnoresDoneContext(t *testing.T) {
	g := NewGate(nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := g.Wait(ctx); err != nil {
		t.Errorf("Wait() on an open gate = %v, want nil", err)
	}
}

func TestGateWaitContextDoneBeforeWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(nil)
		g.HoldUntil(time.Now().Add(time.Minute))
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		start := time.Now()
		err := g.Wait(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait() = %v, want %v", err, context.DeadlineExceeded)
		}
		if got := time.Since(start); got != time.Second {
			t.Errorf("Wait() returned after %v, want %v", got, time.Second)
		}
	})
}

func TestGateManyWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := NewGate(nil)
		start := time.Now()
		g.HoldUntil(start.Add(30 * time.Second))
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				// Waiters arrive during the hold; each starts no earlier
				// than its end, even after the hold was extended.
				time.Sleep(time.Duration(i) * time.Second)
				if err := g.Wait(t.Context()); err != nil {
					t.Errorf("Wait: %v", err)
				}
				if got, want := time.Since(start), 45*time.Second; got != want {
					t.Errorf("waiter %d passed after %v, want %v", i, got, want)
				}
			})
		}
		time.Sleep(10 * time.Second)
		g.HoldUntil(start.Add(45 * time.Second))
		wg.Wait()
	})
}
