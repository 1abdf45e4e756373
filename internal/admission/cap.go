package admission

import (
	"math"
	"time"
)

// cutFactor is the multiplicative decrease of the cap after Kombo refused a call for
// concurrency that started within the limit it states (someone else holds slots), or when
// Kombo states no limit.
const cutFactor = 0.7

// slots is the concurrency cap: how many calls may be in flight at once.
//
// Where Kombo states its limit (Concurrency-Limit, Concurrency-Remaining), the cap follows
// the freshest answer, that of the latest-started call answered, at most one step per round
// trip: it never exceeds the stated limit; it rises into the room Kombo reports by this
// replica's share of it, room × k/(k+o) with k our calls in flight when the answered call
// started and o what the others hold (see crowd, share.go), and by at most half of it (a
// replica that sees no others may still have one starting beside it); and it shares the
// limit with the others. Replicas that see the same room thus take about all of it together,
// however many they are, instead of each taking half. The cap is fractional: a share of a
// slot adds up over round trips that show room, and the cap counts in whole calls.
//
// A call records how many were in flight when it started. Refused for concurrency after it
// started above the stated limit, it was our own overshoot (a lowered limit we had not seen
// yet): the cap is set to the stated limit, nothing more. Refused within the stated limit, or
// with no limit stated, the cap is cut by cutFactor, once per round trip (a refusal of a
// call that started before the latest cut is ignored), and growth into room waits a few call
// durations, jittered, so that replicas that collided do not collide again.
//
// Without stated remaining room, the cap grows additively: by 1/cap per success of a call
// that started with the cap in full use and after the latest cut, so by about one per full
// round of calls (the contract's AIMD).
//
// Until the first call is answered the cap is 1: that answer states the limit, so that the
// calls after it start under it instead of a burst of Max that Kombo mostly refuses.
type slots struct {
	max       int
	cap       float64 // in [1, ceiling]; fractional, limit is its whole part
	inFlight  int
	answered  bool      // a call has been answered: the first call's job is done
	stated    int       // Concurrency-Limit of the freshest answer; 0 while none
	room      int       // Concurrency-Remaining of the freshest answer; -1 while none
	freshest  uint64    // seq of the call whose answer stated them
	gen       uint64    // cuts so far
	last      uint64    // seq of the latest call started
	stepAfter uint64    // the next step needs the answer of a call started after this seq
	quiet     time.Time // no growth into room before this
	crowd     crowd     // what the answers show of other clients
}

// Outcomes of slots.done for the holds.
const (
	noChange = iota
	atFloor  // refused within the limit at a cap of 1: hold every call for a while
	cleared  // processed: the hold at the floor is over
)

func newSlots(maxInFlight int) slots {
	return slots{max: maxInFlight, cap: float64(maxInFlight), room: -1}
}

// limit returns the number of calls that may be in flight.
func (s *slots) limit() int {
	if !s.answered {
		return 1
	}
	return int(s.cap)
}

func (s *slots) free() bool { return s.inFlight < s.limit() }

// ceiling is the highest the cap may be: Max, or the stated limit when lower.
func (s *slots) ceiling() float64 {
	if s.stated > 0 {
		return float64(min(s.max, s.stated))
	}
	return float64(s.max)
}

// start counts a call starting at now, the seq-th.
func (s *slots) start(seq uint64, now time.Time) *turn {
	s.inFlight++
	s.last = seq
	return &turn{seq: seq, start: now, inFlight: s.inFlight, gen: s.gen}
}

// done applies the answer a to the call t, and tells the holds what it means for them.
func (s *slots) done(t *turn, a Answer, now time.Time, jitter func() float64, meanCall time.Duration) int {
	s.inFlight--
	if a.Class == NotCalled {
		return noChange
	}
	if !s.answered && a.ConcurrencyRemaining >= 0 && a.ConcurrencyLimit > 0 {
		s.cap = 1 // from the first call: the room it states is filled step by step
	}
	s.answered = true
	fresh := a.ConcurrencyLimit > 0 && t.seq > s.freshest
	if fresh {
		s.freshest, s.stated, s.room = t.seq, a.ConcurrencyLimit, max(a.ConcurrencyRemaining, -1)
		s.cap = math.Min(s.cap, s.ceiling())
	}
	switch a.Class {
	case ConcurrencyRefused:
		return s.refused(t, a, now, jitter, meanCall)
	case Processed:
		if fresh && s.room >= 0 {
			s.follow(t, now)
		} else if s.room < 0 && t.gen == s.gen && t.inFlight >= s.limit() {
			s.cap = math.Min(s.cap+1/s.cap, s.ceiling())
		}
		return cleared
	}
	return noChange
}

// refused applies a concurrency refusal of the call t.
func (s *slots) refused(t *turn, a Answer, now time.Time, jitter func() float64, meanCall time.Duration) int {
	stated := a.ConcurrencyLimit
	if stated <= 0 {
		stated = s.stated
	}
	if stated > 0 && t.inFlight > stated {
		// Our own overshoot: the call started above what Kombo allows.
		s.cap = math.Min(s.cap, float64(stated))
		return noChange
	}
	if t.gen != s.gen {
		return noChange // the latest cut answered this round trip already
	}
	floor := s.cap < 2
	s.gen++
	s.cap = math.Max(1, math.Floor(s.cap*cutFactor))
	s.stepAfter = s.last
	s.quiet = now.Add(time.Duration((1 + 3*jitter()) * float64(meanCall)))
	if floor {
		return atFloor
	}
	return noChange
}

// follow moves the cap after a fresh processed answer that states the room Kombo has left:
// up by our share of the room, or down by one to share the limit (see crowd). At most one
// step per round trip.
func (s *slots) follow(t *turn, now time.Time) {
	s.crowd.see(s.room, s.stated-s.room-t.inFlight, now)
	if t.seq <= s.stepAfter {
		return
	}
	if s.room > 0 && s.cap < s.ceiling() && !now.Before(s.quiet) && s.crowd.mayTake(s.stated, math.Floor(s.cap)) {
		ours := float64(t.inFlight)
		share := math.Min(0.5, ours/(ours+float64(s.crowd.held())))
		s.cap = math.Min(s.cap+float64(s.room)*share, s.ceiling())
		s.stepAfter = s.last
		return
	}
	if quiet, ok := s.crowd.yield(s.room, t.inFlight, now); ok && s.cap >= 2 {
		s.cap = math.Max(1, math.Min(math.Floor(s.cap), float64(t.inFlight))-1)
		s.quiet = now.Add(quiet)
		s.stepAfter = s.last
	}
}
