package admission

import "time"

// How replicas share one limit.
const (
	// crowdWindow: the slots others hold are the most they held within the last one or two
	// windows. Each of their calls shows only while it is at Kombo, so at any instant some
	// of their slots look free; over a window, each shows held.
	crowdWindow = 400 * time.Millisecond
	// yieldQuiet: after yielding a slot to others, a replica does not take room for this
	// long, so that the others stop counting the slot as its and one of them takes it.
	yieldQuiet = 2*crowdWindow + 200*time.Millisecond
	// A replica that holds all of Kombo's slots cannot tell another that wants some (whose
	// calls are refused, not admitted) from none: every shareEvery it leaves one slot free
	// for shareFor, longer than the longest hold at the floor (hold.go), so that a replica
	// kept out gets a call in, shows up in the answers and gets its share.
	shareEvery = 5 * time.Second
	shareFor   = 300 * time.Millisecond
)

// crowd is what Kombo's answers show of the other clients of its limit (other replicas,
// other services with the same key): an answer that states the limit L and the room R left
// when its call arrived, which started with k of ours in flight, shows L − R − k held by
// others. A single answer misleads both ways: the others' calls show only while at Kombo,
// and one of ours that overtook this one on the way looks like someone else's. So the crowd
// takes what two answers in a row show at least, and remembers the most of that over one or
// two crowdWindows.
//
// Replicas that follow these rules converge on fair shares without talking to each other:
// room counts only where the limit, less what the others hold, leaves it, and each takes of
// it in proportion to what it holds against the others (cap.go); a replica that holds more
// than the others plus one, with Kombo full, yields a slot; one that holds them all leaves
// one free now and then.
type crowd struct {
	last      int       // others shown by the previous answer
	cur, prev int       // the most others held in the current window and in the one before
	window    time.Time // start of the current window
	lastShare time.Time // when others were last seen or a slot last left free for them
}

// see takes one fresh answer: room left, and others holding slots.
func (c *crowd) see(room, others int, now time.Time) {
	others = max(others, 0)
	held := min(others, c.last)
	c.last = others
	if d := now.Sub(c.window); d >= crowdWindow {
		c.prev, c.cur, c.window = c.cur, 0, now
		if d >= 2*crowdWindow {
			c.prev = 0
		}
	}
	c.cur = max(c.cur, held)
	if c.lastShare.IsZero() || c.held() > 0 {
		c.lastShare = now
	}
}

// held returns the slots others hold.
func (c *crowd) held() int { return max(c.cur, c.prev) }

// mayTake reports whether a cap of capNow may rise under the stated limit.
func (c *crowd) mayTake(stated int, capNow float64) bool {
	return float64(stated-c.held())-capNow >= 1
}

// yield reports whether to give up a slot, and for how long not to take room again: when
// Kombo is full and this replica, with k in flight, holds more than the others plus one;
// or when Kombo is full, no others have shown for shareEvery and no slot was left free
// meanwhile.
func (c *crowd) yield(room, k int, now time.Time) (time.Duration, bool) {
	held := c.held()
	switch {
	case room == 0 && held > 0 && k > held+1:
		return yieldQuiet, true
	case room == 0 && held == 0 && now.Sub(c.lastShare) >= shareEvery:
		c.lastShare = now
		return shareFor, true
	}
	return 0, false
}
