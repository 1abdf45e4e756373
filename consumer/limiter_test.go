package consumer

import (
	"context"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// acquireNow acquires a Ticket that must be available at once: Free() > 0
// means no waiter and a slot under the cap, so Acquire does not block.
func acquireNow(t *testing.T, l *Limiter) Ticket {
	t.Helper()
	if l.Free() == 0 {
		t.Fatalf("Free() = 0 (Limit %d, InFlight %d, Waiting %d), want a free slot",
			l.Limit(), l.InFlight(), l.Waiting())
	}
	tk, err := l.Acquire(t.Context())
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	return tk
}

// cutLimiterTo cuts l once with a fresh Ticket and checks the resulting Limit.
func cutLimiterTo(t *testing.T, l *Limiter, want int) {
	t.Helper()
	l.Release(acquireNow(t, l), OutcomeConcurrencyLimited)
	if got := l.Limit(); got != want {
		t.Fatalf("Limit() after a cut = %d, want %d", got, want)
	}
}

// growLimiter holds Limit()-1 Tickets and reports successes of saturated
// calls until Limit grows, returning how many it took; -1 if Limit stays
// put for 1000 successes.
func growLimiter(t *testing.T, l *Limiter) int {
	t.Helper()
	start := l.Limit()
	held := make([]Ticket, 0, start)
	for range start - 1 {
		held = append(held, acquireNow(t, l))
	}
	defer func() {
		for _, tk := range held {
			l.Release(tk, OutcomeOther)
		}
	}()
	for n := 1; n <= 1000; n++ {
		l.Release(acquireNow(t, l), OutcomeSuccess)
		if l.Limit() != start {
			return n
		}
	}
	return -1
}

func TestLimiterStartsAtMax(t *testing.T) {
	tests := []struct {
		max  int
		want int
	}{
		{max: 1, want: 1},
		{max: 8, want: 8},
		{max: 100, want: 100},
		{max: 0, want: 1},
		{max: -3, want: 1},
	}
	for _, tt := range tests {
		l := NewLimiter(tt.max)
		if got := l.Limit(); got != tt.want {
			t.Errorf("NewLimiter(%d).Limit() = %d, want %d", tt.max, got, tt.want)
		}
		if got := l.Free(); got != tt.want {
			t.Errorf("NewLimiter(%d).Free() = %d, want %d", tt.max, got, tt.want)
		}
		if got := l.InFlight(); got != 0 {
			t.Errorf("NewLimiter(%d).InFlight() = %d, want 0", tt.max, got)
		}
		if got := l.Waiting(); got != 0 {
			t.Errorf("NewLimiter(%d).Waiting() = %d, want 0", tt.max, got)
		}
	}
}

func TestLimiterAcquireBlocksUntilRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(3)
		var held []Ticket
		for i := range 3 {
			held = append(held, acquireNow(t, l))
			if got, want := l.InFlight(), i+1; got != want {
				t.Fatalf("InFlight() = %d, want %d", got, want)
			}
		}
		if got := l.Free(); got != 0 {
			t.Fatalf("Free() at cap = %d, want 0", got)
		}

		done := make(chan Ticket)
		go func() {
			tk, err := l.Acquire(t.Context())
			if err != nil {
				t.Errorf("Acquire: %v", err)
			}
			done <- tk
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("Acquire returned at cap, want it to block")
		default:
		}
		if got := l.Waiting(); got != 1 {
			t.Fatalf("Waiting() = %d, want 1", got)
		}

		l.Release(held[0], OutcomeOther)
		synctest.Wait()
		var tk Ticket
		select {
		case tk = <-done:
		default:
			t.Fatal("Acquire still blocked after a Release")
		}
		if got := l.Waiting(); got != 0 {
			t.Errorf("Waiting() = %d, want 0", got)
		}
		if got := l.InFlight(); got != 3 {
			t.Errorf("InFlight() = %d, want 3", got)
		}
		for _, tk := range append(held[1:], tk) {
			l.Release(tk, OutcomeOther)
		}
		if got := l.InFlight(); got != 0 {
			t.Errorf("InFlight() after releasing all = %d, want 0", got)
		}
	})
}

func TestLimiterWaitersAreServedInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(1)
		held := acquireNow(t, l)
		order := make(chan int, 3)
		for i := range 3 {
			go func() {
				tk, err := l.Acquire(t.Context())
				if err != nil {
					t.Errorf("waiter %d: Acquire: %v", i, err)
					return
				}
				order <- i
				l.Release(tk, OutcomeOther)
			}()
			synctest.Wait() // waiter i is queued before i+1 starts
		}
		l.Release(held, OutcomeOther)
		synctest.Wait()
		for want := range 3 {
			if got := <-order; got != want {
				t.Errorf("waiter served #%d = %d, want %d", want, got, want)
			}
		}
	})
}

func TestLimiterAcquireContextDone(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		after   time.Duration // when cancel is called; 0 = never
		wantErr error
		wantAt  time.Duration
	}{
		{
			name:    "cancel",
			ctx:     context.WithCancel,
			after:   2 * time.Second,
			wantErr: context.Canceled,
			wantAt:  2 * time.Second,
		},
		{
			name: "deadline",
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 5*time.Second)
			},
			wantErr: context.DeadlineExceeded,
			wantAt:  5 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := NewLimiter(1)
				held := acquireNow(t, l)
				ctx, cancel := tt.ctx(t.Context())
				defer cancel()
				start := time.Now()
				var gotErr error
				var gotAt time.Duration
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, gotErr = l.Acquire(ctx)
					gotAt = time.Since(start)
				}()
				synctest.Wait()
				if got := l.Waiting(); got != 1 {
					t.Fatalf("Waiting() = %d, want 1", got)
				}
				changed := l.Changed()
				if tt.after > 0 {
					time.Sleep(tt.after)
					cancel()
				}
				<-done
				if !errors.Is(gotErr, tt.wantErr) {
					t.Errorf("Acquire error = %v, want %v", gotErr, tt.wantErr)
				}
				if gotAt != tt.wantAt {
					t.Errorf("Acquire returned after %v, want %v", gotAt, tt.wantAt)
				}
				if got := l.Waiting(); got != 0 {
					t.Errorf("Waiting() = %d, want 0", got)
				}
				if got := l.InFlight(); got != 1 {
					t.Errorf("InFlight() = %d, want 1", got)
				}
				select {
				case <-changed:
				default:
					t.Error("Changed() not closed when a waiter gave up")
				}
				l.Release(held, OutcomeOther)
				if got := l.Free(); got != 1 {
					t.Errorf("Free() after release = %d, want 1", got)
				}
			})
		})
	}
}

func TestLimiterAcquireGrantedAndCancelled(t *testing.T) {
	// A waiter granted a slot while its ctx is cancelled sees either the
	// Ticket or the error; with the error it holds no slot.
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(1)
		var gotTicket, gotErr int
		for range 100 {
			held := acquireNow(t, l)
			ctx, cancel := context.WithCancel(t.Context())
			var tk Ticket
			var err error
			done := make(chan struct{})
			go func() {
				defer close(done)
				tk, err = l.Acquire(ctx)
			}()
			synctest.Wait()
			// Cancel, then grant before the waiter can take the lock to
			// give up: it finds the slot handed to it.
			l.mu.Lock()
			cancel()
			l.releaseLocked(held.c, OutcomeOther)
			l.mu.Unlock()
			<-done
			if err != nil {
				gotErr++
				if got := l.InFlight(); got != 0 {
					t.Fatalf("InFlight() after a cancelled Acquire = %d, want 0", got)
				}
				continue
			}
			gotTicket++
			if got := l.InFlight(); got != 1 {
				t.Fatalf("InFlight() after a granted Acquire = %d, want 1", got)
			}
			l.Release(tk, OutcomeOther)
		}
		if gotErr == 0 {
			t.Errorf("outcomes: %d granted, %d cancelled; want some cancelled", gotTicket, gotErr)
		}
	})
}

func TestLimiterAcquireContextAlreadyDone(t *testing.T) {
	l := NewLimiter(2)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	tk, err := l.Acquire(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire error = %v, want %v", err, context.Canceled)
	}
	if tk != (Ticket{}) {
		t.Errorf("Acquire Ticket = %+v, want the zero Ticket", tk)
	}
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d, want 0", got)
	}
}

func TestLimiterCut(t *testing.T) {
	tests := []struct {
		max  int
		want []int // Limit after each successive cut
	}{
		{max: 1, want: []int{1, 1}},
		{max: 2, want: []int{1, 1}},
		{max: 3, want: []int{2, 1, 1}},
		{max: 8, want: []int{5, 3, 2, 1, 1}},
		{max: 10, want: []int{7, 4, 2, 1}},
		{max: 100, want: []int{70, 49, 34, 23, 16, 11, 7, 4, 2, 1, 1}},
	}
	for _, tt := range tests {
		l := NewLimiter(tt.max)
		var got []int
		for range tt.want {
			// A fresh Ticket each time: acquired after the previous cut.
			l.Release(acquireNow(t, l), OutcomeConcurrencyLimited)
			got = append(got, l.Limit())
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("NewLimiter(%d): Limit after each cut = %v, want %v", tt.max, got, tt.want)
		}
	}
}

func TestLimiterOneCutPerWindow(t *testing.T) {
	l := NewLimiter(8)
	a, b, c := acquireNow(t, l), acquireNow(t, l), acquireNow(t, l)

	l.Release(a, OutcomeConcurrencyLimited)
	if got := l.Limit(); got != 5 {
		t.Fatalf("Limit() after the first rejection = %d, want 5", got)
	}
	l.Release(b, OutcomeConcurrencyLimited)
	if got := l.Limit(); got != 5 {
		t.Fatalf("Limit() after a second rejection of the same window = %d, want 5", got)
	}

	d := acquireNow(t, l) // acquired after the cut: a new window
	l.Release(c, OutcomeConcurrencyLimited)
	if got := l.Limit(); got != 5 {
		t.Fatalf("Limit() after a third rejection of the old window = %d, want 5", got)
	}
	l.Release(d, OutcomeConcurrencyLimited)
	if got := l.Limit(); got != 3 {
		t.Fatalf("Limit() after a rejection of the new window = %d, want 3", got)
	}
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d, want 0", got)
	}
}

func TestLimiterShrinkKeepsCallsInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(4)
		held := []Ticket{acquireNow(t, l), acquireNow(t, l), acquireNow(t, l)}
		l.Release(acquireNow(t, l), OutcomeConcurrencyLimited) // 4 → 2
		if got, want := l.Limit(), 2; got != want {
			t.Fatalf("Limit() = %d, want %d", got, want)
		}
		if got, want := l.InFlight(), 3; got != want {
			t.Fatalf("InFlight() = %d, want %d (no call is cancelled)", got, want)
		}
		if got := l.Free(); got != 0 {
			t.Fatalf("Free() = %d, want 0", got)
		}

		acquired := make(chan struct{})
		go func() {
			tk, err := l.Acquire(t.Context())
			if err != nil {
				t.Errorf("Acquire: %v", err)
				return
			}
			close(acquired)
			l.Release(tk, OutcomeOther)
		}()
		for _, inFlight := range []int{3, 2} {
			synctest.Wait()
			select {
			case <-acquired:
				t.Fatalf("Acquire returned with %d in flight and a cap of 2", inFlight)
			default:
			}
			l.Release(held[3-inFlight], OutcomeOther)
		}
		synctest.Wait()
		select {
		case <-acquired:
		default:
			t.Fatal("Acquire still blocked with 1 in flight and a cap of 2")
		}
		l.Release(held[2], OutcomeOther)
	})
}

func TestLimiterGrowsOnlyWhenSaturated(t *testing.T) {
	l := NewLimiter(8)
	cutLimiterTo(t, l, 5)
	held := []Ticket{acquireNow(t, l), acquireNow(t, l), acquireNow(t, l)}
	for range 100 {
		// 4 in flight at acquire, under the cap of 5: not saturated.
		l.Release(acquireNow(t, l), OutcomeSuccess)
	}
	if got := l.Limit(); got != 5 {
		t.Errorf("Limit() after unsaturated successes = %d, want 5", got)
	}
	for _, tk := range held {
		l.Release(tk, OutcomeSuccess) // acquired unsaturated: no growth
	}
	if got := l.Limit(); got != 5 {
		t.Errorf("Limit() after releasing the held calls = %d, want 5", got)
	}
}

func TestLimiterOutcomeOtherKeepsCap(t *testing.T) {
	l := NewLimiter(8)
	cutLimiterTo(t, l, 5)
	var held []Ticket
	for range 4 {
		held = append(held, acquireNow(t, l))
	}
	for range 100 {
		l.Release(acquireNow(t, l), OutcomeOther) // saturated, but says nothing
	}
	if got := l.Limit(); got != 5 {
		t.Errorf("Limit() after saturated OutcomeOther = %d, want 5", got)
	}
	for _, tk := range held {
		l.Release(tk, OutcomeOther)
	}
}

func TestLimiterGrowthWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(4)
		cutLimiterTo(t, l, 2)
		a := acquireNow(t, l)
		for range 2 {
			l.Release(acquireNow(t, l), OutcomeSuccess) // cap 2 → 2.5 → 2.9
		}
		b := acquireNow(t, l) // saturated
		var acquired atomic.Int64
		var held sync.WaitGroup
		held.Add(2)
		release := make(chan struct{})
		for range 2 {
			go func() {
				tk, err := l.Acquire(t.Context())
				if err != nil {
					t.Errorf("Acquire: %v", err)
					held.Done()
					return
				}
				acquired.Add(1)
				held.Done()
				<-release
				l.Release(tk, OutcomeOther)
			}()
		}
		synctest.Wait()
		if got := l.Waiting(); got != 2 {
			t.Fatalf("Waiting() = %d, want 2", got)
		}
		l.Release(b, OutcomeSuccess) // cap 2.9 → 3.24: two slots free
		held.Wait()
		if got := acquired.Load(); got != 2 {
			t.Errorf("waiters served after the cap grew = %d, want 2", got)
		}
		if got, want := l.InFlight(), 3; got != want {
			t.Errorf("InFlight() = %d, want %d", got, want)
		}
		close(release)
		l.Release(a, OutcomeOther)
	})
}

func TestLimiterGrowsAboutOnePerWindow(t *testing.T) {
	l := NewLimiter(20)
	cutLimiterTo(t, l, 14)
	for limit := 14; limit < 20; limit++ {
		got := growLimiter(t, l)
		// Each success adds 1/cap with cap in [limit, limit+1): between
		// limit and limit+1 of them add up to one.
		if got < limit || got > limit+1 {
			t.Errorf("successes to grow from %d = %d, want %d or %d", limit, got, limit, limit+1)
		}
		if got, want := l.Limit(), limit+1; got != want {
			t.Fatalf("Limit() = %d, want %d", got, want)
		}
	}
	// At max, saturated successes do not grow it further.
	if got := growLimiter(t, l); got != -1 {
		t.Errorf("cap grew above max after %d successes", got)
	}
	if got := l.Limit(); got != 20 {
		t.Errorf("Limit() = %d, want 20", got)
	}
}

func TestLimiterNeverAboveMax(t *testing.T) {
	for _, n := range []int{1, 2, 8} {
		l := NewLimiter(n)
		if got := growLimiter(t, l); got != -1 {
			t.Errorf("NewLimiter(%d): cap grew after %d successes", n, got)
		}
		if got := l.Limit(); got != n {
			t.Errorf("NewLimiter(%d).Limit() = %d, want %d", n, got, n)
		}
	}
}

func TestLimiterSetBound(t *testing.T) {
	l := NewLimiter(8)
	l.SetBound(4)
	if got := l.Limit(); got != 4 {
		t.Fatalf("Limit() after SetBound(4) = %d, want 4", got)
	}
	for _, n := range []int{0, -1} {
		l.SetBound(n)
		if got := l.Limit(); got != 4 {
			t.Fatalf("Limit() after SetBound(%d) = %d, want 4 (ignored)", n, got)
		}
	}
	if got := growLimiter(t, l); got != -1 {
		t.Fatalf("cap grew above the bound after %d successes", got)
	}

	l.SetBound(6) // the newest header wins: room to grow again
	if got := l.Limit(); got != 4 {
		t.Fatalf("Limit() right after SetBound(6) = %d, want 4 (grows by successes)", got)
	}
	for range 2 {
		if got := growLimiter(t, l); got == -1 {
			t.Fatalf("cap did not grow under a raised bound (Limit %d)", l.Limit())
		}
	}
	if got := l.Limit(); got != 6 {
		t.Fatalf("Limit() = %d, want 6", got)
	}
	if got := growLimiter(t, l); got != -1 {
		t.Fatalf("cap grew above the bound of 6 after %d successes", got)
	}

	l.SetBound(100) // above max: max applies
	for range 2 {
		if got := growLimiter(t, l); got == -1 {
			t.Fatalf("cap did not grow under a raised bound (Limit %d)", l.Limit())
		}
	}
	if got := growLimiter(t, l); got != -1 {
		t.Fatalf("cap grew above max after %d successes", got)
	}
	if got := l.Limit(); got != 8 {
		t.Fatalf("Limit() = %d, want 8", got)
	}

	l.SetBound(3) // lower again: immediate
	if got := l.Limit(); got != 3 {
		t.Fatalf("Limit() after SetBound(3) = %d, want 3", got)
	}
}

func TestLimiterSetBoundWhileInFlight(t *testing.T) {
	l := NewLimiter(8)
	var held []Ticket
	for range 6 {
		held = append(held, acquireNow(t, l))
	}
	l.SetBound(2)
	if got := l.InFlight(); got != 6 {
		t.Errorf("InFlight() = %d, want 6 (no call is cancelled)", got)
	}
	if got := l.Free(); got != 0 {
		t.Errorf("Free() = %d, want 0", got)
	}
	for _, tk := range held {
		l.Release(tk, OutcomeOther)
	}
	if got := l.Free(); got != 2 {
		t.Errorf("Free() = %d, want 2", got)
	}
}

func TestLimiterReleaseMisuse(t *testing.T) {
	other := NewLimiter(4)
	otherTicket := acquireNow(t, other)
	tests := []struct {
		name    string
		release func(l *Limiter, tk Ticket)
	}{
		{
			name:    "zero ticket",
			release: func(l *Limiter, _ Ticket) { l.Release(Ticket{}, OutcomeConcurrencyLimited) },
		},
		{
			name: "released twice",
			release: func(l *Limiter, tk Ticket) {
				l.Release(tk, OutcomeOther)
				l.Release(tk, OutcomeConcurrencyLimited)
				l.Release(tk, OutcomeOther)
			},
		},
		{
			name: "copy released after the original",
			release: func(l *Limiter, tk Ticket) {
				c := tk
				l.Release(tk, OutcomeOther)
				l.Release(c, OutcomeOther)
			},
		},
		{
			name:    "ticket of another limiter",
			release: func(l *Limiter, _ Ticket) { l.Release(otherTicket, OutcomeConcurrencyLimited) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(4)
			keep := acquireNow(t, l)
			tk := acquireNow(t, l)
			tt.release(l, tk)
			l.Release(tk, OutcomeOther) // no-op if the case released it
			if got := l.InFlight(); got != 1 {
				t.Errorf("InFlight() = %d, want 1", got)
			}
			if got := l.Limit(); got != 4 {
				t.Errorf("Limit() = %d, want 4", got)
			}
			l.Release(keep, OutcomeOther)
			if got := l.InFlight(); got != 0 {
				t.Errorf("InFlight() = %d, want 0", got)
			}
		})
	}
	if got := other.InFlight(); got != 1 {
		t.Errorf("other limiter InFlight() = %d, want 1", got)
	}
}

func TestLimiterChanged(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares l and returns what to do that must signal.
		setup func(t *testing.T, l *Limiter) func()
		// wantFree is Free() after the signal.
		wantFree int
	}{
		{
			name: "release",
			setup: func(t *testing.T, l *Limiter) func() {
				tk := acquireNow(t, l)
				for range 3 {
					acquireNow(t, l)
				}
				return func() { l.Release(tk, OutcomeOther) }
			},
			wantFree: 1,
		},
		{
			name: "rejected release",
			setup: func(t *testing.T, l *Limiter) func() {
				tk := acquireNow(t, l)
				acquireNow(t, l)
				return func() { l.Release(tk, OutcomeConcurrencyLimited) }
			},
			wantFree: 1, // cap 4 → 2, one still in flight
		},
		{
			name: "bound raised",
			setup: func(t *testing.T, l *Limiter) func() {
				l.SetBound(1)
				return func() { l.SetBound(3) }
			},
			wantFree: 1, // the cap grows back by successes only
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(4)
			signal := tt.setup(t, l)
			changed := l.Changed()
			if again := l.Changed(); again != changed {
				t.Fatal("Changed() returned a new channel without a change")
			}
			select {
			case <-changed:
				t.Fatal("Changed() closed before the change")
			default:
			}
			signal()
			select {
			case <-changed:
			default:
				t.Fatal("Changed() not closed after the change")
			}
			next := l.Changed()
			select {
			case <-next:
				t.Fatal("Changed() after a signal returned a closed channel")
			default:
			}
			if got := l.Free(); got != tt.wantFree {
				t.Errorf("Free() = %d, want %d", got, tt.wantFree)
			}
		})
	}
}

func TestLimiterChangedNotClosedByAcquire(t *testing.T) {
	l := NewLimiter(2)
	changed := l.Changed()
	acquireNow(t, l)
	l.SetBound(2) // no change of the effective bound
	select {
	case <-changed:
		t.Error("Changed() closed although Free only shrank")
	default:
	}
}

func TestLimiterFreeCountsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := NewLimiter(2)
		a := acquireNow(t, l)
		b := acquireNow(t, l)
		for range 2 {
			go func() {
				tk, err := l.Acquire(t.Context())
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				l.Release(tk, OutcomeOther)
			}()
		}
		synctest.Wait()
		if got := l.Waiting(); got != 2 {
			t.Fatalf("Waiting() = %d, want 2", got)
		}
		if got := l.Free(); got != 0 {
			t.Fatalf("Free() with 2 in flight and 2 waiting = %d, want 0", got)
		}
		l.Release(a, OutcomeOther)
		l.Release(b, OutcomeOther)
		synctest.Wait()
		if got := l.Free(); got != 2 {
			t.Errorf("Free() after all done = %d, want 2", got)
		}
	})
}

func TestLimiterConcurrent(t *testing.T) {
	tests := []struct {
		name string
		// cuts: outcomes include OutcomeConcurrencyLimited and SetBound,
		// so the cap also shrinks under calls in flight.
		cuts bool
	}{
		{name: "grow only", cuts: false},
		{name: "random outcomes", cuts: true},
	}
	const (
		maxInFlight = 8
		goroutines  = 50
		iterations  = 200
	)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := NewLimiter(maxInFlight)
			if !tt.cuts {
				cutLimiterTo(t, l, 5) // room to grow
			}
			var inFlight, violations atomic.Int64
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					for range iterations {
						tk, err := l.Acquire(t.Context())
						if err != nil {
							t.Errorf("Acquire: %v", err)
							return
						}
						n := inFlight.Add(1)
						// Without cuts the cap only grows, so the cap read
						// now is at least the cap at acquire time. With
						// cuts, calls started under an older, larger cap
						// may still run: only max holds then.
						limit := maxInFlight
						if !tt.cuts {
							limit = l.Limit()
						}
						if n > int64(limit) {
							violations.Add(1)
						}
						runtime.Gosched() // the call takes a while: others pile up
						o := OutcomeSuccess
						if tt.cuts {
							switch r := rand.IntN(20); {
							case r == 0:
								l.SetBound(1 + rand.IntN(maxInFlight+2))
							case r < 4:
								o = OutcomeConcurrencyLimited
							case r < 7:
								o = OutcomeOther
							}
						}
						inFlight.Add(-1)
						l.Release(tk, o)
					}
				})
			}
			wg.Wait()
			if got := violations.Load(); got != 0 {
				t.Errorf("%d acquires exceeded the cap", got)
			}
			if got := l.InFlight(); got != 0 {
				t.Errorf("InFlight() = %d, want 0", got)
			}
			if got := l.Waiting(); got != 0 {
				t.Errorf("Waiting() = %d, want 0", got)
			}
			if got := l.Limit(); got < 1 || got > maxInFlight {
				t.Errorf("Limit() = %d, want within [1, %d]", got, maxInFlight)
			}
			if got := l.Limit(); !tt.cuts && got != maxInFlight {
				t.Errorf("Limit() after %d successes = %d, want %d", goroutines*iterations, got, maxInFlight)
			}
			if got, want := l.Free(), l.Limit(); got != want {
				t.Errorf("Free() = %d, want Limit() = %d", got, want)
			}
		})
	}
}

func TestLimiterConcurrentCancel(t *testing.T) {
	// Waiters giving up while slots are handed to them must neither leak
	// nor duplicate a slot.
	l := NewLimiter(3)
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			for j := range 200 {
				ctx, cancel := context.WithCancel(t.Context())
				if (i+j)%3 == 0 {
					cancel()
				}
				tk, err := l.Acquire(ctx)
				cancel()
				if err == nil {
					l.Release(tk, OutcomeOther)
				}
			}
		})
	}
	wg.Wait()
	if got := l.InFlight(); got != 0 {
		t.Errorf("InFlight() = %d, want 0", got)
	}
	if got := l.Waiting(); got != 0 {
		t.Errorf("Waiting() = %d, want 0", got)
	}
	if got := l.Free(); got != 3 {
		t.Errorf("Free() = %d, want 3", got)
	}
}

func TestOutcomeString(t *testing.T) {
	tests := []struct {
		o    Outcome
		want string
	}{
		{OutcomeSuccess, "success"},
		{OutcomeConcurrencyLimited, "concurrency_limited"},
		{OutcomeOther, "other"},
		{Outcome(0), "other"},
		{Outcome(42), "unknown"},
	}
	for _, tt := range tests {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("Outcome(%d).String() = %q, want %q", int(tt.o), got, tt.want)
		}
	}
}

func BenchmarkLimiterAcquireRelease(b *testing.B) {
	b.Run("uncontended", func(b *testing.B) {
		l := NewLimiter(8)
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			tk, err := l.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			l.Release(tk, OutcomeSuccess)
		}
	})
	b.Run("watched", func(b *testing.B) {
		// A fetcher waits on Changed: each Release closes a channel.
		l := NewLimiter(8)
		ctx := b.Context()
		b.ReportAllocs()
		for b.Loop() {
			_ = l.Changed()
			tk, err := l.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			l.Release(tk, OutcomeSuccess)
		}
	})
	for _, n := range []int{1, 8, 1024} { // 1: goroutines queue for the slot
		b.Run("parallel/max="+strconv.Itoa(n), func(b *testing.B) {
			l := NewLimiter(n)
			ctx := b.Context()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					tk, err := l.Acquire(ctx)
					if err != nil {
						b.Error(err)
						return
					}
					l.Release(tk, OutcomeSuccess)
				}
			})
		})
	}
}
