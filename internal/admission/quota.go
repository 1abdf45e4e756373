package admission

import "time"

// quotaReserve is how many calls' worth of quota the mirror keeps unspent, for calls of
// other clients and for the refill's jitter.
const quotaReserve = 1

// quotaTogether: answers of calls started this close together are taken as one snapshot,
// the lowest remaining, since such calls may reach Kombo in any order.
const quotaTogether = 5 * time.Millisecond

// quotaEstimateSpan is the least time between two answers whose quotas give a refill rate.
const quotaEstimateSpan = time.Second

// quota mirrors the rate-limit quota Kombo states on its answers (ratelimit-limit,
// ratelimit-remaining), so that calls are paced before the first refusal rather than after
// it. The freshest answer (that of the latest-started call answered) says how much was left
// when its call arrived; every call started since may have used one; the quota refills at a
// rate estimated from the answers. Calls that started together may reach Kombo in any
// order: their answers count as one, the lowest. A call starts while that leaves more than quotaReserve.
//
// The refill rate: with A the calls admitted so far, A + remaining grows by what refilled.
// Two points at least quotaEstimateSpan apart, with the quota below its limit in between (a
// full quota refills nothing), give the rate Kombo leaves this replica. Before the first
// estimate the quota is taken to refill its limit per second.
type quota struct {
	limit     int       // ratelimit-limit; 0 while Kombo states none
	remaining int       // at the freshest answer
	at        time.Time // when that answer's call started
	seq       uint64    // and its seq
	rate      float64   // refill estimate, calls per second; 0 while none
	admitted  int       // calls answered within the quota so far
	anchorAt  time.Time // first point of the current estimate
	anchorY   int       // admitted + remaining there
}

func (q *quota) known() bool { return q.limit > 0 }

// answer applies the quota stated on the answer a to the call t.
func (q *quota) answer(t *turn, a Answer) {
	if a.Class != RateRefused && a.Class != ConcurrencyRefused {
		q.admitted++
	}
	switch {
	case t.start.Sub(q.at) > quotaTogether || q.at.IsZero():
		q.limit, q.remaining, q.at, q.seq = a.RateLimit, a.RateRemaining, t.start, t.seq
	case q.at.Sub(t.start) <= quotaTogether:
		q.remaining, q.seq = min(q.remaining, a.RateRemaining), max(q.seq, t.seq)
		return
	default:
		return // a fresher answer was applied already
	}
	y := q.admitted + q.remaining
	switch span := t.start.Sub(q.anchorAt); {
	case q.remaining >= q.limit-1 || q.anchorAt.IsZero():
		q.anchorAt, q.anchorY = t.start, y // full: nothing to learn from the time before
	case span >= quotaEstimateSpan:
		r := float64(y-q.anchorY) / span.Seconds()
		if q.rate == 0 {
			q.rate = r
		} else {
			q.rate = (q.rate + r) / 2
		}
		q.anchorAt, q.anchorY = t.start, y
	}
}

// next returns the earliest time a call may start, given that last is the seq of the
// latest call started.
func (q *quota) next(now time.Time, last uint64) time.Time {
	rate := q.rate
	if rate <= 0 {
		rate = float64(q.limit)
	}
	spent := float64(last - q.seq)
	left := float64(q.remaining) + rate*now.Sub(q.at).Seconds() - spent
	if left >= 1+quotaReserve {
		return now
	}
	return now.Add(time.Duration((1 + quotaReserve - left) / rate * float64(time.Second)))
}
