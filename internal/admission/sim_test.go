package admission

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// kombo is a model of Kombo's limits for tests in a synctest bubble: a concurrency limit
// checked first (Concurrency-Limit and Concurrency-Remaining on every answer, as Kombo
// sends them), then a token bucket (ratelimit-limit and ratelimit-remaining on every answer
// when headers is set; a refusal announces the wait for the next token rounded up to whole
// seconds, as Retry-After: 1 does), then latency. A call reaches it after a network delay,
// and is answered after its latency plus up to 1 ms: without that spread every call would
// start, arrive and end at the same instants, which no network does.
type kombo struct {
	latency time.Duration
	net     network
	headers bool // ratelimit-* headers on every answer

	mu       sync.Mutex
	limit    int // 0: no concurrency limit
	rate     float64
	burst    float64
	tokens   float64
	last     time.Time
	inFlight int
	waitEnd  time.Time // end of the latest announced wait
	waitFrom time.Time // when it was announced: a call within 1 ms of it left before it was read

	calls, refusedConc, refusedRate, early int
	done                                   int
	busy                                   time.Duration // sum over time of admitted calls in flight
	busyAt                                 time.Time
	byClient                               map[int]int
}

func (k *kombo) setLimit(n int) {
	k.mu.Lock()
	k.limit = n
	k.mu.Unlock()
}

// account adds the in-flight time up to now.
func (k *kombo) accountLocked(now time.Time) {
	if !k.busyAt.IsZero() {
		k.busy += time.Duration(k.inFlight) * now.Sub(k.busyAt)
	}
	k.busyAt = now
}

// call is one DELETE from client, at the time of the bubble; it blocks for the latency when
// admitted and returns the answer the client reports.
func (k *kombo) call(client int) Answer {
	time.Sleep(k.net.min + rand.N(k.net.spread))
	now := time.Now()
	k.mu.Lock()
	k.calls++
	if now.After(k.waitFrom.Add(time.Millisecond)) && now.Before(k.waitEnd) {
		k.early++
	}
	a := Answer{Class: Processed}
	if k.limit > 0 {
		a.ConcurrencyLimit = k.limit
		if k.inFlight >= k.limit {
			k.refusedConc++
			k.mu.Unlock()
			a.Class = ConcurrencyRefused
			return a
		}
	}
	if k.rate > 0 {
		k.tokens = math.Min(k.burst, k.tokens+k.rate*now.Sub(k.last).Seconds())
		k.last = now
		if k.headers {
			a.RateLimit = int(k.burst)
		}
		if k.tokens < 1 {
			k.refusedRate++
			wait := time.Duration((1 - k.tokens) / k.rate * float64(time.Second))
			a.Wait = (wait + time.Second - 1).Truncate(time.Second)
			if end := now.Add(a.Wait); end.After(k.waitEnd) {
				k.waitEnd, k.waitFrom = end, now
			}
			k.mu.Unlock()
			a.Class = RateRefused
			return a
		}
		k.tokens--
		a.RateRemaining = int(k.tokens)
	}
	k.accountLocked(now)
	k.inFlight++
	a.ConcurrencyRemaining = max(k.limit-k.inFlight, 0)
	k.mu.Unlock()
	time.Sleep(k.latency + time.Duration(rand.IntN(1000))*time.Microsecond)
	k.mu.Lock()
	k.accountLocked(time.Now())
	k.inFlight--
	k.done++
	if k.byClient == nil {
		k.byClient = map[int]int{}
	}
	k.byClient[client]++
	k.mu.Unlock()
	a.Took = k.latency
	return a
}

// snapshot returns the counters, for figures over a phase.
type counts struct {
	calls, refusedConc, refusedRate, early, done int
	busy                                         time.Duration
}

func (k *kombo) counts() counts {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.accountLocked(time.Now())
	return counts{k.calls, k.refusedConc, k.refusedRate, k.early, k.done, k.busy}
}

func (c counts) minus(o counts) counts {
	return counts{c.calls - o.calls, c.refusedConc - o.refusedConc, c.refusedRate - o.refusedRate,
		c.early - o.early, c.done - o.done, c.busy - o.busy}
}

// replica runs workers that take requests off a shared backlog and call k through c, as the
// consumer does: a request refused for concurrency goes back in line after about two call
// durations; one refused for the rate goes back at once (the Controller holds it).
type replica struct {
	c       *Controller
	id      int
	workers int
}

func (r replica) run(ctx context.Context, k *kombo, backlog *backlog, wg *sync.WaitGroup) {
	for range r.workers {
		wg.Go(func() {
			for backlog.take(ctx) {
				for {
					t, err := r.c.Wait(ctx)
					if err != nil {
						return
					}
					a := k.call(r.id)
					r.c.Done(t, a)
					if a.Class == Processed {
						break
					}
					if a.Class == ConcurrencyRefused {
						d := 2 * r.c.Stats().MeanCall
						time.Sleep(time.Duration(float64(max(d, 10*time.Millisecond)) * (0.5 + rand.Float64())))
					}
				}
			}
		})
	}
}

// backlog is the requests waiting: n of them, or without end when n < 0.
type backlog struct {
	mu sync.Mutex
	n  int
}

func (b *backlog) take(ctx context.Context) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ctx.Err() != nil || b.n == 0 {
		return false
	}
	b.n--
	return true
}

func newController(maxInFlight int) *Controller { return New(Options{Max: maxInFlight}) }

// network is how long a call takes to reach Kombo: from min to min+spread. slack is the
// share of Kombo's capacity it costs: the time a slot stays empty between one call's answer
// and the next call's arrival, against a 20 ms call.
type network struct {
	name        string
	min, spread time.Duration
	slack       float64
}

// networks: a loopback, and a network slow enough to leave each slot empty ~7 % of the time.
var networks = []network{{"near", 100 * time.Microsecond, 200 * time.Microsecond, 0.01},
	{"far", 500 * time.Microsecond, 2 * time.Millisecond, 0.07}}

// loaded is a loopback on a machine busier than the calls: every call reaches Kombo 0.2 to
// 8.2 ms after it started, as when four daemons, NATS and Kombo share two cores. Each slot
// is empty ~17 % of the time, and the room the answers state is often room another
// replica's call, still on its way, is about to take.
var loaded = network{"loaded", 200 * time.Microsecond, 8 * time.Millisecond, 0.17}
