package admission

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// Every test here runs in a synctest bubble: time is fake, and synctest.Wait tells whether a
// Wait is blocked.

// try asks c for a turn and reports whether it was granted without time passing; a turn
// not granted is given up.
func try(t *testing.T, c *Controller) (Ticket, bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	got := make(chan Ticket, 1)
	go func() {
		tk, err := c.Wait(ctx)
		if err == nil {
			got <- tk
		}
		close(got)
	}()
	synctest.Wait()
	select {
	case tk, ok := <-got:
		return tk, ok
	default:
	}
	cancel()
	tk, ok := <-got // granted while cancelled counts as not granted
	if ok {
		c.Done(tk, Answer{})
	}
	return Ticket{}, false
}

// mustStart asks for n turns that must all be granted at once.
func mustStart(t *testing.T, c *Controller, n int) []Ticket {
	t.Helper()
	var ts []Ticket
	for i := range n {
		tk, ok := try(t, c)
		if !ok {
			t.Fatalf("turn %d of %d not granted (cap %d, in flight %d)", i+1, n, c.Stats().Cap, c.Stats().InFlight)
		}
		ts = append(ts, tk)
	}
	return ts
}

// stated is a processed answer stating Kombo's concurrency limit and the room left.
func stated(limit, room int) Answer {
	return Answer{Class: Processed, Took: 20 * time.Millisecond, ConcurrencyLimit: limit, ConcurrencyRemaining: room}
}

func refusedStating(limit int) Answer {
	a := stated(limit, 0)
	a.Class = ConcurrencyRefused
	return a
}

// warm returns a Controller whose cap follows a stated limit of n, with n calls in flight.
func warm(t *testing.T, maxInFlight, n int) (*Controller, []Ticket) {
	t.Helper()
	c := New(Options{Max: maxInFlight})
	c.jitter = func() float64 { return 0.5 }
	c.Done(mustStart(t, c, 1)[0], stated(n, n-1)) // the first call goes alone
	for c.Stats().Cap < n {
		for _, tk := range mustStart(t, c, max(c.Stats().Cap-c.Stats().InFlight, 1)) {
			c.Done(tk, stated(n, n-tk.t.inFlight)) // alone at Kombo
		}
	}
	return c, mustStart(t, c, n)
}

func TestFirstCallGoesAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 8})
		first := mustStart(t, c, 1)[0]
		if _, ok := try(t, c); ok {
			t.Fatal("a second call started before the first was answered")
		}
		c.Done(first, Answer{}) // given up before calling: the next takes its place
		second := mustStart(t, c, 1)[0]
		if _, ok := try(t, c); ok {
			t.Fatal("a call started beside the first one actually made")
		}
		c.Done(second, Answer{Class: Other}) // any answer opens the way
		mustStart(t, c, 8)
		if _, ok := try(t, c); ok {
			t.Fatal("more than Max calls in flight")
		}
	})
}

func TestAnswerIsAppliedBeforeAWaiterIsGranted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, ts := warm(t, 8, 2)
		granted := make(chan struct{})
		go func() {
			if tk, err := c.Wait(t.Context()); err == nil {
				close(granted)
				c.Done(tk, stated(1, 0))
			}
		}()
		synctest.Wait()
		c.Done(ts[0], stated(1, 0)) // Kombo now allows 1, and the other call still holds it
		synctest.Wait()
		select {
		case <-granted:
			t.Fatal("a waiter was granted the slot freed by an answer that lowered the limit to 1, with 1 call in flight")
		default:
		}
		c.Done(ts[1], stated(1, 1))
		synctest.Wait()
		<-granted
	})
}

func TestStaleAnswerNeverRaisesTheCeiling(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, ts := warm(t, 8, 4)
		c.Done(ts[3], stated(2, 0)) // the latest-started call: Kombo lowered its limit to 2
		c.Done(ts[0], stated(4, 1)) // an older call, answered after: stale
		if got := c.Stats().Cap; got != 2 {
			t.Errorf("cap %d after a stale answer stating 4, want 2 (the newest call's limit)", got)
		}
	})
}

func TestOwnOvershootAfterALoweredLimitSetsTheCapToTheLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The review's sequence: Kombo lowers its limit from 4 to 2 while 4 calls are in
		// flight; the two that started third and fourth are refused.
		c, ts := warm(t, 8, 4)
		c.Done(ts[0], stated(2, 0))
		c.Done(ts[2], refusedStating(2))
		c.Done(ts[3], refusedStating(2))
		c.Done(ts[1], stated(2, 1))
		if got := c.Stats().Cap; got != 2 {
			t.Fatalf("cap %d, want 2: our own overshoot is not Kombo refusing the lower level", got)
		}
		mustStart(t, c, 2) // no hold, no cut below the limit
	})
}

func TestRefusalWithinTheLimitCutsOncePerRoundTrip(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, ts := warm(t, 16, 10)
		c.Done(ts[0], refusedStating(10)) // someone else holds slots
		if got := c.Stats().Cap; got != 7 {
			t.Fatalf("cap %d after a refusal within the limit, want 7 (10 × 0.7)", got)
		}
		c.Done(ts[1], refusedStating(10)) // started before the cut: already answered by it
		if got := c.Stats().Cap; got != 7 {
			t.Fatalf("cap %d after a second refusal of the same round trip, want still 7", got)
		}
	})
}

func TestStatedRoomRaisesTheCapWithinRoundTrips(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, ts := warm(t, 16, 6)
		// Kombo drops to 2 and others take slots: cut to the floor.
		c.Done(ts[0], refusedStating(6))
		for _, tk := range ts[1:] {
			c.Done(tk, refusedStating(6))
		}
		for c.Stats().Cap > 1 {
			tk := mustStart(t, c, 1)[0]
			c.Done(tk, refusedStating(6))
		}
		time.Sleep(time.Second) // the hold at the floor
		// Now Kombo states room: the cap follows it round trip by round trip.
		trips := 0
		for c.Stats().Cap < 6 {
			trips++
			if trips > 6 {
				t.Fatalf("cap %d after %d round trips showing room, want 6", c.Stats().Cap, trips-1)
			}
			for _, tk := range mustStart(t, c, c.Stats().Cap) {
				c.Done(tk, stated(6, 6-tk.t.inFlight)) // alone at Kombo
			}
		}
	})
}

func TestWithoutStatedLimitsTheCapIsAIMD(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 8})
		c.Done(mustStart(t, c, 1)[0], Answer{Class: Processed})
		ts := mustStart(t, c, 8)
		c.Done(ts[0], Answer{Class: ConcurrencyRefused})
		if got := c.Stats().Cap; got != 5 {
			t.Fatalf("cap %d after a refusal at 8, want 5 (×0.7)", got)
		}
		for _, tk := range ts[1:] {
			c.Done(tk, Answer{Class: Processed}) // started before the cut: no growth
		}
		if got := c.Stats().Cap; got != 5 {
			t.Fatalf("cap %d after successes of calls started before the cut, want 5", got)
		}
		// Each success of a call that started with the cap in full use grows it by 1/cap:
		// by one after about a window of them (the first window started unsaturated).
		window := mustStart(t, c, 5)
		for i := 0; c.Stats().Cap == 5; i++ {
			if i == 11 {
				t.Fatalf("cap %d after %d successes, want 6 after about 5 saturated ones", c.Stats().Cap, i)
			}
			c.Done(window[0], Answer{Class: Processed})
			window = append(window[1:], mustStart(t, c, 1)...)
		}
	})
}

func TestAnnouncedWaitHoldsEveryCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 4})
		c.Done(mustStart(t, c, 1)[0], Answer{Class: Processed})
		tk := mustStart(t, c, 1)[0]
		c.Done(tk, Answer{Class: RateRefused, Wait: time.Second})
		start := time.Now()
		got, err := c.Wait(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited < time.Second {
			t.Errorf("a call started %v into a wait of 1s", waited)
		}
		c.Done(got, Answer{Class: Processed})
	})
}

func TestRefusalsAtTheFloorHoldEveryCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 1})
		c.jitter = func() float64 { return 0.5 }
		c.Done(mustStart(t, c, 1)[0], Answer{Class: Processed, Took: 10 * time.Millisecond})
		var holds []time.Duration
		for range 4 {
			tk := mustStart(t, c, 1)[0]
			c.Done(tk, Answer{Class: ConcurrencyRefused})
			start := time.Now()
			tk, err := c.Wait(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			holds = append(holds, time.Since(start))
			c.Done(tk, Answer{})
		}
		want := []time.Duration{20, 40, 80, 160}
		for i := range want {
			if holds[i] != want[i]*time.Millisecond {
				t.Fatalf("holds after refusals at the floor %v, want 20ms doubling: %v ms", holds, want)
			}
		}
	})
}

func TestPauseStopsEveryCallUntilResumed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 4})
		if !c.Pause(KeyRejected, "PLATFORM.AUTHENTICATION_INVALID") {
			t.Fatal("Pause on a running Controller reported false")
		}
		if _, ok := try(t, c); ok {
			t.Fatal("a call started while paused")
		}
		if !c.Stats().Held {
			t.Error("Stats().Held false while paused")
		}
		time.Sleep(time.Minute)
		if !c.Resume(KeyRejected) {
			t.Fatal("Resume of a pause reported false")
		}
		mustStart(t, c, 1)
		if got := c.PausedTotal(); got != time.Minute {
			t.Errorf("PausedTotal %v, want 1m", got)
		}
	})
}

func TestPausesOfTwoCausesAreIndependent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 4})
		c.Pause(KeyRejected, "key rejected")
		time.Sleep(time.Minute)
		c.Pause(Operator, "operator: maintenance")
		if paused, why := c.Paused(); !paused || why != "key rejected; operator: maintenance" {
			t.Errorf("Paused() = %v, %q; want both reasons", paused, why)
		}
		time.Sleep(time.Minute)
		if !c.Resume(KeyRejected) {
			t.Fatal("Resume(KeyRejected) reported false")
		}
		if _, ok := try(t, c); ok {
			t.Fatal("a call started while the operator's pause holds")
		}
		if on, why := c.PausedFor(Operator); !on || why != "operator: maintenance" {
			t.Errorf("PausedFor(Operator) = %v, %q", on, why)
		}
		if on, _ := c.PausedFor(KeyRejected); on {
			t.Error("PausedFor(KeyRejected) after its Resume")
		}
		time.Sleep(time.Minute)
		if c.Resume(KeyRejected) || !c.Resume(Operator) {
			t.Fatal("Resume: a second Resume(KeyRejected) reported true, or Resume(Operator) false")
		}
		mustStart(t, c, 1)
		if got := c.PausedTotal(); got != 3*time.Minute {
			t.Errorf("PausedTotal %v, want 3m (overlapping pauses counted once)", got)
		}
	})
}

func TestWaitGivesUpWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 1})
		mustStart(t, c, 1)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		if _, err := c.Wait(ctx); err != context.DeadlineExceeded {
			t.Fatalf("Wait with a full cap returned %v, want the context's deadline", err)
		}
		if inFlight, waiting := c.Stats().InFlight, c.waiters.Len(); inFlight != 1 || waiting != 0 {
			t.Errorf("after giving up: %d in flight, %d waiting; want 1 and 0", inFlight, waiting)
		}
	})
}

func TestQuotaPacesBeforeTheFirstRefusal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := New(Options{Max: 8})
		quota := func(left int) Answer {
			return Answer{Class: Processed, Took: 20 * time.Millisecond, RateLimit: 10, RateRemaining: left}
		}
		c.Done(mustStart(t, c, 1)[0], quota(2))
		mustStart(t, c, 1) // 2 left, 1 kept in reserve
		if _, ok := try(t, c); ok {
			t.Fatal("a call started with the stated quota used up")
		}
		time.Sleep(time.Second) // the quota refills (at its limit per second before an estimate)
		mustStart(t, c, 1)
	})
}
