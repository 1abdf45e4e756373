package admission

import "time"

// floorHoldMax bounds the hold after refusals at a cap of 1; with its ±50 % jitter a hold
// lasts at most 1.5 floorHoldMax, less than shareFor (cap.go), so that a replica kept out
// by another calls while the other leaves it a slot.
const floorHoldMax = 190 * time.Millisecond

// hold keeps every call from starting until a time:
//   - the end of a wait Kombo announced (Retry-After, retry-after-ms, ratelimit-reset), which
//     the contract says no call may start before;
//   - after Kombo refused a call for concurrency within its stated limit at a cap of 1:
//     other clients hold all of Kombo's slots and each new call would only be refused again.
//     That hold starts at two mean call durations and doubles with each such refusal in a
//     row, up to floorHoldMax, jittered so that replicas do not retry in step; the next
//     processed call ends the streak.
//
// The zero hold is open.
type hold struct {
	announced time.Time // end of the latest announced wait
	floor     time.Time // end of the hold at the floor
	streak    int       // refusals at the floor in a row
}

func (h *hold) end() time.Time { return latest(h.announced, h.floor) }

func (h *hold) open(now time.Time) bool { return !now.Before(h.end()) }

// until returns the end of the latest announced wait (zero when none was).
func (h *hold) until() time.Time { return h.announced }

// announce extends the hold to t; it never shortens it.
func (h *hold) announce(t time.Time) { h.announced = latest(h.announced, t) }

// refusedAtFloor starts or lengthens the hold at the floor.
func (h *hold) refusedAtFloor(now time.Time, meanCall time.Duration, jitter func() float64) {
	h.streak = min(h.streak+1, 16)
	d := min((2*meanCall)<<(h.streak-1), floorHoldMax)
	d = time.Duration(float64(d) * (0.5 + jitter()))
	h.floor = latest(h.floor, now.Add(d))
}

// clearFloor ends the streak of refusals at the floor (a hold already on runs out).
func (h *hold) clearFloor() { h.streak = 0 }
