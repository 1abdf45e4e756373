package consumer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The pacer's tests run on a fake clock that the test moves by hand, and take
// the pacer's reservations with pacer.wait and a context already done (see
// reserve); the simulations (paceSim) run one event at a time on such a
// clock. Tests of blocking (pacer.wait, scout.wait, the floor hold in
// awaitTurn) run in a synctest bubble, whose clock is fake too: no test
// sleeps in real time or depends on how fast the machine is.

// pacerEpoch is the fake clock's origin, on a whole 100 ms slot.
var pacerEpoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// ms is d milliseconds after pacerEpoch.
func ms(d int) time.Time { return pacerEpoch.Add(time.Duration(d) * time.Millisecond) }

// fakeClock is a clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time  { return c.t }
func (c *fakeClock) set(t time.Time) { c.t = t }

// doneCtx returns a context that is already done.
func doneCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// cancelled is a context that is already done, for reserve.
var cancelled = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// reserve calls p.wait at the pacer's clock with a context already done, so
// that it takes its reservation without sleeping, and returns when the call
// it admits may start: the pace's next start as wait found it, or now if that
// is past (wait then returns nil at once). It fails the test when wait
// returns an error without a start to sleep until. (That wait sleeps until
// that start is TestPacerWaitBlocksUntilTheStart's business: with a done
// context and a start a few nanoseconds ahead, wait may return either.)
func reserve(t *testing.T, p *pacer) time.Time {
	t.Helper()
	p.mu.Lock()
	next, pacing := p.next, p.pacing
	p.mu.Unlock()
	now := p.now()
	err := p.wait(cancelled)
	ahead := pacing && next.After(now)
	if err != nil && (!ahead || !errors.Is(err, context.Canceled)) {
		t.Fatalf("wait() = %v at %v, want nil (pacing %v, next start %v)", err, now.Sub(pacerEpoch), pacing, next.Sub(pacerEpoch))
	}
	if !ahead {
		return now
	}
	return next
}

// reservations returns the start times of n calls that all call p.wait at
// the pacer's clock, one after the other.
func reservations(t *testing.T, p *pacer, n int) []time.Time {
	t.Helper()
	out := make([]time.Time, n)
	for i := range out {
		out[i] = reserve(t, p)
	}
	return out
}

// startsWithin counts the calls that, calling p.wait at from one after the
// other, may start before from+d.
func startsWithin(t *testing.T, p *pacer, clk *fakeClock, from time.Time, d time.Duration) int {
	t.Helper()
	clk.set(from)
	n := 0
	for reserve(t, p).Before(from.Add(d)) {
		n++
		if n > 1e6 {
			t.Fatal("more than a million starts")
		}
	}
	return n
}

// answerEvenly reports n admitted answers to calls started evenly over
// [from, to), each answered latency after its start.
func answerEvenly(p *pacer, clk *fakeClock, n int, from, to time.Time, latency time.Duration) {
	for i := range n {
		start := from.Add(time.Duration(i) * to.Sub(from) / time.Duration(n))
		clk.set(start.Add(latency))
		p.done(start, true)
	}
}

// refuse reports a rate-limit answer at the clock to a call started at start,
// with an announced wait of hold.
func refuse(p *pacer, clk *fakeClock, start time.Time, hold time.Duration, inFlight int) (until time.Time, pace float64, probe, changed bool) {
	until = clk.now().Add(hold)
	pace, probe, changed = p.limited(start, until, inFlight)
	return until, pace, probe, changed
}

// firstRefusal gives p (on clk) its first refusal: ten calls started every
// 10 ms from 0, answered 20 ms later, then the refusal at 120 ms of the call
// started at 100 ms, with a wait of 1 s. The bucket is then taken as 10
// calls, and the probe at 28.61/s (see TestPacerFirstRefusal).
func firstRefusal(t *testing.T, p *pacer, clk *fakeClock) (until time.Time, pace float64) {
	t.Helper()
	answerEvenly(p, clk, 10, ms(0), ms(100), 20*time.Millisecond)
	clk.set(ms(120))
	until, pace, probe, changed := refuse(p, clk, ms(100), time.Second, 0)
	if !probe || !changed {
		t.Fatalf("first refusal: probe %v changed %v, want both", probe, changed)
	}
	return until, pace
}

// near reports whether got is within rel (a share) of want.
func near(got, want, rel float64) bool { return math.Abs(got-want) <= rel*math.Abs(want) }

func TestPacerNotPacingBeforeARefusal(t *testing.T) {
	clk := &fakeClock{t: pacerEpoch}
	p := newPacer(clk.now)
	ctx := doneCtx(t)
	for i := range 100 {
		clk.set(ms(i))
		if err := p.wait(ctx); err != nil {
			t.Fatalf("wait() before any refusal = %v, want nil at once", err)
		}
		p.done(ms(i), i%3 != 0) // admitted or refused for concurrency: neither paces
	}
	if got := p.current(); got != 0 {
		t.Errorf("current() before any refusal = %v, want 0", got)
	}
	if p := newPacer(nil); p.wait(ctx) != nil || p.current() != 0 {
		t.Error("newPacer(nil) paces before any refusal")
	}
}

func TestPacerFirstRefusal(t *testing.T) {
	// The first refusal takes what got through as the bucket B (calls still
	// in flight count half; after more than 2 s, only what the last second
	// adds to the rate before it, see TestPacerAfterAQuietStart), and probes at the geometric mean of low, the rate
	// that would have emptied B over the epoch and its wait, and the rate at
	// which calls were answered in the last second (at least 4·low).
	type answer struct{ start, at int } // ms
	every := func(n, step, latency int) []answer {
		var out []answer
		for i := range n {
			out = append(out, answer{i * step, i*step + latency})
		}
		return out
	}
	tests := []struct {
		name      string
		answers   []answer // admitted
		start, at int      // of the refusal, ms
		inFlight  int
		want      float64 // the probe's pace
	}{
		{
			// B = 10, low = 10/1.12 s, 11 answers in 0.12 s: sqrt(8.93 · 91.7).
			name: "burst", answers: every(10, 10, 20), start: 100, at: 120, want: 28.6086,
		},
		{
			// B = 10 + 6/2: sqrt(13/1.12 · 91.7).
			name: "calls in flight count half", answers: every(10, 10, 20), start: 100, at: 120, inFlight: 6, want: 32.6188,
		},
		{
			// A steady 10/s for 3 s, then refused: the last second's 10 answers
			// are what the rate before them, 20/2.02 s, explains, so B = 1 (at
			// least), and low = max(1/2 s, (30 - 1)/4.02 s); 10 answers in the
			// last second, below 4·low: 2·low.
			name: "answers slower than 4 low", answers: every(30, 100, 20), start: 3000, at: 3020, want: 14.4279,
		},
		{
			// B = 1 at least, low = 1/1.02 s, 1 answer in 20 ms: sqrt(0.98 · 50).
			name: "the very first call refused", start: 0, at: 20, want: 7.0014,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: pacerEpoch}
			p := newPacer(clk.now)
			for _, a := range tt.answers {
				clk.set(ms(a.at))
				p.done(ms(a.start), true)
			}
			clk.set(ms(tt.at))
			until, pace, probe, changed := refuse(p, clk, ms(tt.start), time.Second, tt.inFlight)
			if !changed || !probe {
				t.Fatalf("limited() = (%v, probe %v, changed %v), want a probe", pace, probe, changed)
			}
			if !near(pace, tt.want, 0.001) {
				t.Errorf("probe pace = %.4f/s, want %.4f/s", pace, tt.want)
			}
			// The probe holds its pace, and the first call starts at the end
			// of the announced wait.
			clk.set(until.Add(2 * time.Second))
			if got := p.current(); !near(got, pace, 1e-9) {
				t.Errorf("current() 2 s into the probe = %v, want %v", got, pace)
			}
			clk.set(ms(tt.at))
			if got := reserve(t, p); !got.Equal(until) {
				t.Errorf("first start after the refusal at %v, want the end of the wait %v", got.Sub(pacerEpoch), until.Sub(pacerEpoch))
			}
		})
	}
}

func TestPacerWaitSpacesStarts(t *testing.T) {
	clk := &fakeClock{t: pacerEpoch}
	p := newPacer(clk.now)
	until, pace := firstRefusal(t, p, clk)
	gap := time.Duration(float64(time.Second) / pace)

	// Callers arriving during the wait: none starts before its end, and
	// each starts one pace interval after the previous one.
	for i, at := range reservations(t, p, 50) {
		want := until.Add(time.Duration(i) * gap)
		if d := at.Sub(want); d < -time.Duration(i) || d > time.Duration(i) { // rounding: 1 ns per start
			t.Fatalf("start %d at %v, want %v", i, at.Sub(pacerEpoch), want.Sub(pacerEpoch))
		}
	}

	// A pacer left idle does not save up starts for a burst: after a pause
	// the next call starts at once, the one after a pace interval later.
	idle := until.Add(time.Minute)
	clk.set(idle)
	got := reservations(t, p, 3)
	for i, at := range got {
		want := idle.Add(time.Duration(i) * gap)
		if d := at.Sub(want); d < -2 || d > 2 {
			t.Errorf("after a pause: start %d at %v, want %v", i, at.Sub(idle), want.Sub(idle))
		}
	}
}

func TestPacerWaitBlocksUntilTheStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newPacer(nil) // time.Now: the bubble's clock
		start := time.Now()
		p.done(start, true)
		time.Sleep(100 * time.Millisecond)
		until := time.Now().Add(2 * time.Second)
		pace, _, changed := p.limited(start.Add(50*time.Millisecond), until, 0)
		if !changed || pace <= 0 {
			t.Fatalf("limited() = (%v, changed %v), want a pace", pace, changed)
		}
		gap := time.Duration(float64(time.Second) / pace)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() {
				time.Sleep(time.Duration(i) * time.Millisecond) // in this order
				if err := p.wait(t.Context()); err != nil {
					t.Errorf("wait %d: %v", i, err)
				}
				want := until.Add(time.Duration(i) * gap)
				if got := time.Now(); got.Sub(want) < -2 || got.Sub(want) > 2 {
					t.Errorf("wait %d returned at %v, want %v", i, got.Sub(start), want.Sub(start))
				}
			})
		}
		wg.Wait()
	})
}

func TestPacerWaitContextDone(t *testing.T) {
	tests := []struct {
		name    string
		pacing  bool
		ctx     func(context.Context) (context.Context, context.CancelFunc)
		cancel  time.Duration // when cancel is called; 0 = never (or at once if done)
		done    bool          // ctx done before wait
		wantErr error
		wantAt  time.Duration
	}{
		{name: "not pacing, ctx done", ctx: context.WithCancel, done: true, wantErr: nil, wantAt: 0},
		{name: "pacing, ctx done", pacing: true, ctx: context.WithCancel, done: true, wantErr: context.Canceled, wantAt: 0},
		{name: "cancelled while waiting", pacing: true, ctx: context.WithCancel, cancel: 3 * time.Second, wantErr: context.Canceled, wantAt: 3 * time.Second},
		{
			name: "deadline while waiting", pacing: true,
			ctx: func(ctx context.Context) (context.Context, context.CancelFunc) {
				return context.WithTimeout(ctx, 5*time.Second)
			},
			wantErr: context.DeadlineExceeded, wantAt: 5 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := newPacer(nil)
				start := time.Now()
				if tt.pacing {
					// The first call refused, with a wait of an hour.
					p.limited(start, start.Add(time.Hour), 0)
				}
				ctx, cancel := tt.ctx(t.Context())
				defer cancel()
				if tt.done {
					cancel()
				}
				var gotErr error
				returned := make(chan struct{})
				go func() {
					defer close(returned)
					gotErr = p.wait(ctx)
				}()
				if tt.cancel > 0 {
					synctest.Wait()
					select {
					case <-returned:
						t.Fatal("wait() returned before its start or ctx's end")
					default:
					}
					time.Sleep(tt.cancel)
					cancel()
				}
				<-returned
				if !errors.Is(gotErr, tt.wantErr) {
					t.Errorf("wait() = %v, want %v", gotErr, tt.wantErr)
				}
				if got := time.Since(start); got != tt.wantAt {
					t.Errorf("wait() returned after %v, want %v", got, tt.wantAt)
				}
			})
		})
	}
}

func TestPacerIgnoresAnswersOfAnEndedEpoch(t *testing.T) {
	// Two pacers see the same history; one also gets answers to calls
	// started before the latest announced wait ended. Those change nothing.
	clk := &fakeClock{t: pacerEpoch}
	a, b := newPacer(clk.now), newPacer(clk.now)
	untilA, _ := firstRefusal(t, a, clk)
	untilB, _ := firstRefusal(t, b, clk)
	if !untilA.Equal(untilB) {
		t.Fatalf("the same history gave waits until %v and %v", untilA, untilB)
	}
	until := untilA

	// Stale answers to b, during the wait and after it: calls started at
	// 110 ms, before the wait ended.
	clk.set(ms(500))
	b.done(ms(110), true)
	if pace, _, changed := b.limited(ms(110), ms(3000), 4); changed || pace != 0 {
		t.Errorf("limited() of a call started before the wait ended = (%v, changed %v), want (0, false)", pace, changed)
	}
	clk.set(ms(120))
	if at := reserve(t, b); !at.Equal(until) {
		t.Errorf("after a stale refusal the first start is at %v, want %v", at.Sub(pacerEpoch), until.Sub(pacerEpoch))
	}
	reserve(t, a) // the same reservation in a
	clk.set(until.Add(500 * time.Millisecond))
	for range 20 {
		b.done(ms(115), true)
	}

	// The same epoch for both: 50 calls admitted in 2 s, then a refusal.
	for _, p := range []*pacer{a, b} {
		answerEvenly(p, clk, 50, until, until.Add(2*time.Second), 0)
	}
	clk.set(until.Add(2 * time.Second))
	_, paceA, probeA, _ := refuse(a, clk, clk.now(), time.Second, 0)
	_, paceB, probeB, _ := refuse(b, clk, clk.now(), time.Second, 0)
	if paceA != paceB || probeA != probeB {
		t.Errorf("with stale answers: pace %v (probe %v), without: %v (probe %v); want the same", paceB, probeB, paceA, probeA)
	}
}

func TestPacerEstimatesTheRate(t *testing.T) {
	// After the first refusal (B = 10, a probe at 28.61/s, a wait of 1 s),
	// Kombo admits the calls of one epoch, then refuses one: the bucket held
	// min(B, R·1 s) at the end of the wait and is empty now, so
	// admitted = min(B, R) + R·t. The pacer takes R from that and paces at
	// 97 % of it.
	tests := []struct {
		name      string
		rate      float64       // R
		epoch     time.Duration // t
		answered  int           // admitted calls answered
		inFlight  int           // still on their way, admitted
		want      float64       // the estimate, if not R
		wantGrows float64       // share of the estimate the pace grows by per second: the less sure, the more
	}{
		// admitted = 10 + 20·2: (50 - B)/t. unsure 0.3·B/t = 1.5/s.
		{name: "bucket full after the wait", rate: 20, epoch: 2 * time.Second, answered: 50, wantGrows: 1.5 / 20 / 10},
		{name: "calls in flight", rate: 20, epoch: 2 * time.Second, answered: 44, inFlight: 6, wantGrows: 1.5 / 20 / 10},
		// admitted = 10 + 20·2.5.
		{name: "longer epoch", rate: 20, epoch: 2500 * time.Millisecond, answered: 60, wantGrows: 1.2 / 20 / 10},
		// admitted = 5 + 5·2: R·1 s < B, so admitted/(t + 1 s).
		{name: "bucket not full after the wait", rate: 5, epoch: 2 * time.Second, answered: 15, wantGrows: 1.5 / 5 / 10},
		// admitted = 10 + 40·2, but the probe at 28.61/s was refused: the
		// rate is at most that.
		{name: "at most the pace refused", rate: 40, epoch: 2 * time.Second, answered: 90, want: 28.6086, wantGrows: 1.5 / 28.6086 / 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: pacerEpoch}
			p := newPacer(clk.now)
			until, _ := firstRefusal(t, p, clk)
			answerEvenly(p, clk, tt.answered, until, until.Add(tt.epoch), 0)
			clk.set(until.Add(tt.epoch))
			until2, pace, probe, changed := refuse(p, clk, clk.now(), time.Second, tt.inFlight)
			if !changed || probe {
				t.Fatalf("limited() = (%v, probe %v, changed %v), want an estimate", pace, probe, changed)
			}
			est := tt.rate
			if tt.want != 0 {
				est = tt.want
			}
			if want := paceBelow * est; !near(pace, want, 0.001) {
				t.Errorf("pace after the epoch = %.3f/s, want %.3f/s (97 %% of %v/s)", pace, want, est)
			}
			clk.set(until2.Add(10 * time.Second))
			if got, want := p.current(), est*(paceBelow+10*tt.wantGrows); !near(got, want, 0.001) {
				t.Errorf("pace 10 s later = %.3f/s, want %.3f/s", got, want)
			}
		})
	}
}

// slowEstimate gives p a sure estimate of 10 calls/s: a first refusal after a
// single admitted call (B = 1, a probe at 14.07/s), then an epoch of 2.5 s in
// which 1 + 10·2.5 calls got through. It returns the end of the second wait
// (1 s), from which the pace is 9.7/s, and the pace refused there.
func slowEstimate(t *testing.T, p *pacer, clk *fakeClock) (until time.Time, refused float64) {
	t.Helper()
	clk.set(ms(0))
	p.done(ms(0), true)
	clk.set(ms(10))
	until, probePace, _, _ := refuse(p, clk, ms(10), time.Second, 0)
	if !near(probePace, 14.072, 0.001) {
		t.Fatalf("probe pace = %v, want 14.072", probePace)
	}
	answerEvenly(p, clk, 26, until, until.Add(2500*time.Millisecond), 0)
	clk.set(until.Add(2500 * time.Millisecond))
	until, pace, probe, _ := refuse(p, clk, clk.now(), time.Second, 0)
	if probe || !near(pace, 9.7, 0.001) {
		t.Fatalf("pace after the second refusal = %v (probe %v), want an estimate of 9.7", pace, probe)
	}
	return until, probePace
}

func TestPacerGrowsSlowly(t *testing.T) {
	const rate = 10.0
	clk := &fakeClock{t: pacerEpoch}
	p := newPacer(clk.now)
	until, _ := slowEstimate(t, p, clk)

	// 0.125 % of the estimate per second: it passes the estimate after 24 s.
	for _, tt := range []struct {
		after time.Duration
		above bool
	}{{0, false}, {10 * time.Second, false}, {23 * time.Second, false}, {25 * time.Second, true}, {39 * time.Second, true}} {
		clk.set(until.Add(tt.after))
		if got := p.current(); (got > rate) != tt.above {
			t.Errorf("pace %v after the wait = %.4f/s; above the estimate %v/s: %v, want %v", tt.after, got, rate, got > rate, tt.above)
		}
	}
	// Over the first 24 s, ∫ 10·(0.97 + 0.00125·s) ds = 236.4 calls' worth:
	// starts 0 to 236, below the 240 Kombo allows (at a constant 9.7/s:
	// 233).
	if n := startsWithin(t, p, clk, until, 24*time.Second); n != 237 {
		t.Errorf("%d calls start in the first 24 s after the wait, want 237 (of the 240 allowed)", n)
	}

	// After paceDouble without a refusal, an answer doubles the growth; the
	// pace itself does not jump.
	at40 := until.Add(paceDouble)
	clk.set(at40)
	before := p.current()
	p.done(at40.Add(-time.Second), true)
	if got := p.current(); !near(got, before, 1e-9) {
		t.Errorf("pace jumped from %v to %v when the growth doubled", before, got)
	}
	rise1 := before - paceBelow*rate
	clk.set(at40.Add(paceDouble - time.Second))
	p.done(at40, true) // less than paceDouble since the doubling: no doubling
	clk.set(at40.Add(paceDouble))
	rise2 := p.current() - before
	// rise1 = 10·0.00125·40; rise2 = (10.2/0.97)·0.0025·40 = 2.1·rise1.
	if r := rise2 / rise1; !near(r, 2*before/(paceBelow*rate), 1e-6) {
		t.Errorf("the pace rose by %.4f over the first 40 s and %.4f over the next: ×%.3f, want ×%.3f", rise1, rise2, r, 2*before/(paceBelow*rate))
	}
}

func TestPacerDoesNotDoubleWithoutAnswers(t *testing.T) {
	clk := &fakeClock{t: pacerEpoch}
	p := newPacer(clk.now)
	until, _ := slowEstimate(t, p, clk)
	clk.set(until.Add(2 * paceDouble))
	if got, want := p.current(), 10*(paceBelow+paceGrowth*80); !near(got, want, 1e-9) {
		t.Errorf("pace after 80 s without answers = %v, want %v", got, want)
	}
}

func TestPacerStopsFarAboveTheRefusedPace(t *testing.T) {
	// Without refusals the growth doubles every paceDouble, until the pace is
	// about paceStop times the last pace refused (the probe's, 14.07/s): the
	// limit has moved, and the pacer stops pacing until the next refusal.
	clk := &fakeClock{t: pacerEpoch}
	p := newPacer(clk.now)
	until, refused := slowEstimate(t, p, clk)
	// An answer every second: the pacer checks the pace every paceDouble,
	// at 40 s, 80 s... and stops at the first check where it is beyond
	// paceStop·refused (as an estimate: pace/paceBelow).
	paceAt := map[time.Duration]float64{}
	stopped := time.Duration(0)
	for s := time.Second; s <= 20*time.Minute; s += time.Second {
		clk.set(until.Add(s))
		paceAt[s] = p.current()
		p.done(until.Add(s-time.Millisecond), true)
		if p.current() == 0 {
			stopped = s
			break
		}
	}
	if stopped == 0 {
		t.Fatalf("still pacing after 20 min without refusal, at %v/s (refused: %v/s)", p.current(), refused)
	}
	if stopped%paceDouble != 0 || stopped > 10*time.Minute {
		t.Fatalf("stopped pacing after %v, want at a multiple of %v within 10 min", stopped, paceDouble)
	}
	limit := paceStop * paceBelow * refused
	if got := paceAt[stopped]; got <= limit {
		t.Errorf("stopped pacing at %v/s, not beyond %v times the refused %v/s", got, paceStop, refused)
	}
	if got := paceAt[stopped-paceDouble]; got > limit {
		t.Errorf("still pacing at %v/s %v earlier, beyond %v times the refused %v/s", got, paceDouble, paceStop, refused)
	}
	if err := p.wait(doneCtx(t)); err != nil {
		t.Errorf("wait() after the pacer stopped = %v, want nil at once", err)
	}
	// The next refusal paces again, from the end of its wait.
	now := clk.now()
	until2, pace, _, changed := refuse(p, clk, now, time.Second, 0)
	if !changed || pace <= 0 {
		t.Fatalf("limited() after the stop = (%v, changed %v), want a pace", pace, changed)
	}
	if at := reserve(t, p); !at.Equal(until2) {
		t.Errorf("first start after the new refusal at %v, want %v", at.Sub(now), until2.Sub(now))
	}
}

func TestPacerProbeThatHoldsGrowsFast(t *testing.T) {
	clk := &fakeClock{t: pacerEpoch}
	p := newPacer(clk.now)
	until, probe := firstRefusal(t, p, clk)
	// Calls keep being admitted, 20 per second.
	for s := 50 * time.Millisecond; s <= 8*time.Second; s += 50 * time.Millisecond {
		clk.set(until.Add(s))
		if s < paceProbeHold {
			if got := p.current(); got != probe {
				t.Fatalf("pace %v into the probe = %v, want the probe's %v", s, got, probe)
			}
		}
		before := p.current()
		p.done(until.Add(s-10*time.Millisecond), true)
		if got := p.current(); !near(got, before, 1e-9) {
			t.Fatalf("pace jumped from %v to %v at %v", before, got, s)
		}
	}
	// Held at 3 s, then 10 % of the probe's estimate per second for 5 s.
	if got, want := p.current(), probe*(1+5*paceProbeGrowth/paceBelow); !near(got, want, 0.01) {
		t.Errorf("pace 8 s after the wait = %.3f/s, want %.3f/s", got, want)
	}
}

func TestPacerBisectsWhenNothingGotThrough(t *testing.T) {
	// A refusal soon after the wait, with nothing admitted in between: the
	// probe was too fast to tell anything. The next probe is half as fast.
	tests := []struct {
		name     string
		inFlight []int // of each refusal after the first
		want     []float64
		probe    []bool
	}{
		{name: "once", inFlight: []int{0}, want: []float64{28.6086 / 2}, probe: []bool{true}},
		{name: "three times", inFlight: []int{0, 0, 0}, want: []float64{28.6086 / 2, 28.6086 / 4, 28.6086 / 8}, probe: []bool{true, true, true}},
		// Calls in flight, mostly admitted: an estimate below the probe.
		{name: "calls in flight", inFlight: []int{3}, want: []float64{paceBelow * 3 / 1.1}, probe: []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: pacerEpoch}
			p := newPacer(clk.now)
			until, _ := firstRefusal(t, p, clk)
			for i, inFlight := range tt.inFlight {
				clk.set(until.Add(100 * time.Millisecond))
				var pace float64
				var probe, changed bool
				until, pace, probe, changed = refuse(p, clk, until, time.Second, inFlight)
				if !changed || probe != tt.probe[i] || !near(pace, tt.want[i], 0.001) {
					t.Errorf("refusal %d: (%.4f, probe %v, changed %v), want (%.4f, probe %v, changed true)",
						i+2, pace, probe, changed, tt.want[i], tt.probe[i])
				}
			}
		})
	}
}

// bucketLimit is Kombo's rate limit as the pacer takes it: a bucket of size
// calls refilled at rate per second. A refused call learns, as from
// ratelimit-reset, in how many whole seconds a call will pass again.
type bucketLimit struct {
	rate, size float64
	tokens     float64
	last       time.Time
	// From changeAt on (if not zero), the rate is newRate.
	changeAt time.Time
	newRate  float64
}

func (b *bucketLimit) refill(now time.Time) {
	if at := b.changeAt; !at.IsZero() && !now.Before(at) {
		b.changeAt = time.Time{}
		b.refill(at)
		b.rate = b.newRate
	}
	if now.After(b.last) {
		b.tokens = math.Min(b.size, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// take admits a call at now, or refuses it and returns the announced wait.
func (b *bucketLimit) take(now time.Time) (bool, time.Duration) {
	b.refill(now)
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration(max(1, math.Ceil((1-b.tokens)/b.rate))) * time.Second
}

// simState is what a simulated worker does until its wake time.
type simState int

const (
	simIdle  simState = iota // waiting for a message
	simTurn                  // in awaitTurn: the gate, then the pace
	simPaced                 // sleeping in pacer.wait until its start
	simCall                  // calling Kombo
)

type simWorker struct {
	state    simState
	wake     time.Time
	start    time.Time     // of the call in flight
	admitted bool          // the call in flight passes Kombo's rate limit
	reset    time.Duration // the wait announced to the call in flight, if refused
}

// paceSim runs workers as awaitTurn and process do (the gate, the pace, the
// call; then pacer.done, or a gate hold and pacer.limited) against a
// bucketLimit on a fake clock, one event at a time, so that it is
// deterministic. Workers wait for the gate before the pace, and check it
// again once their start comes, as awaitTurn does.
type paceSim struct {
	t       *testing.T
	clock   fakeClock
	p       *pacer
	gate    *Gate
	kombo   bucketLimit
	workers []simWorker
	latency func() time.Duration
	arrival func(k int) time.Time // when the k-th message (from 0) arrives
	taken   int

	admitted []time.Time // start of every admitted call
	refusals []simRefusal
}

type simRefusal struct {
	at             time.Time
	pace           float64
	probe, changed bool
}

type simOptions struct {
	rate    float64       // Kombo's rate, calls per second
	burst   float64       // Kombo's bucket, calls
	workers int           // calls in flight at most
	latency time.Duration // mean latency; each call's is ±25 %, from a fixed seed
	// Messages arrive at trickle per second for the first trickleFor, then
	// all at once; trickleFor 0: all at the start.
	trickle    float64
	trickleFor time.Duration
	// Kombo's rate becomes newRate at changeAt (0: never).
	changeAt time.Duration
	newRate  float64
}

func newPaceSim(t *testing.T, o simOptions) *paceSim {
	s := &paceSim{t: t, clock: fakeClock{t: pacerEpoch}}
	s.p = newPacer(s.clock.now)
	s.gate = NewGate(s.clock.now)
	s.kombo = bucketLimit{rate: o.rate, size: o.burst, tokens: o.burst, last: pacerEpoch}
	if o.changeAt > 0 {
		s.kombo.changeAt, s.kombo.newRate = pacerEpoch.Add(o.changeAt), o.newRate
	}
	s.workers = make([]simWorker, o.workers)
	for i := range s.workers {
		s.workers[i].wake = pacerEpoch
	}
	rng := rand.New(rand.NewPCG(1, 2))
	s.latency = func() time.Duration {
		return time.Duration(float64(o.latency) * (0.75 + 0.5*rng.Float64()))
	}
	n := int(o.trickle * o.trickleFor.Seconds())
	s.arrival = func(k int) time.Time {
		if k < n {
			return pacerEpoch.Add(time.Duration(float64(k) / o.trickle * float64(time.Second)))
		}
		return pacerEpoch.Add(o.trickleFor)
	}
	return s
}

// run simulates until the clock reaches end.
func (s *paceSim) run(end time.Time) {
	for {
		i := 0
		for j := range s.workers {
			if s.workers[j].wake.Before(s.workers[i].wake) {
				i = j
			}
		}
		w := &s.workers[i]
		if w.wake.After(end) {
			s.clock.set(end)
			return
		}
		if w.wake.After(s.clock.now()) {
			s.clock.set(w.wake)
		}
		now := s.clock.now()
		switch w.state {
		case simIdle:
			if at := s.arrival(s.taken); at.After(now) {
				w.wake = at
				continue
			}
			s.taken++
			w.state = simTurn
		case simTurn:
			if !s.gate.Open() {
				w.wake = s.gate.Until()
				continue
			}
			if at := reserve(s.t, s.p); at.After(now) {
				w.state, w.wake = simPaced, at
				continue
			}
			s.startCall(w)
		case simPaced:
			if !s.gate.Open() {
				w.state = simTurn // awaitTurn goes round again: the gate, then the pace
				continue
			}
			s.startCall(w)
		case simCall:
			if w.admitted {
				s.p.done(w.start, true)
				w.state = simIdle
				continue
			}
			inFlight := 0
			for j := range s.workers {
				if j != i && s.workers[j].state == simCall {
					inFlight++
				}
			}
			s.gate.HoldUntil(now.Add(w.reset))
			pace, probe, changed := s.p.limited(w.start, s.gate.Until(), inFlight)
			s.refusals = append(s.refusals, simRefusal{at: now, pace: pace, probe: probe, changed: changed})
			w.state, w.wake = simTurn, now.Add(w.reset)
		}
	}
}

func (s *paceSim) startCall(w *simWorker) {
	now := s.clock.now()
	if !s.gate.Open() {
		s.t.Fatalf("a call starts at %v, inside the wait announced until %v", now.Sub(pacerEpoch), s.gate.Until().Sub(pacerEpoch))
	}
	w.start = now
	w.admitted, w.reset = s.kombo.take(now)
	if w.admitted {
		s.admitted = append(s.admitted, now)
	}
	w.state, w.wake = simCall, now.Add(s.latency())
}

// throughput returns the admitted calls per second that started in [from, to).
func (s *paceSim) throughput(from, to time.Duration) float64 {
	n := 0
	for _, at := range s.admitted {
		if d := at.Sub(pacerEpoch); d >= from && d < to {
			n++
		}
	}
	return float64(n) / (to - from).Seconds()
}

// holds returns the refusals answered in [from, to) that changed the pace:
// each announced a wait that held every worker.
func (s *paceSim) holds(from, to time.Duration) []simRefusal {
	var out []simRefusal
	for _, r := range s.refusals {
		if d := r.at.Sub(pacerEpoch); d >= from && d < to && r.changed {
			out = append(out, r)
		}
	}
	return out
}

// checkSettled checks the minutes [from, to) of s, in which Kombo allows
// rate calls per second: the calls admitted reach 90 % of it, refusals that
// hold every worker come at most every 20 s, and each of them estimates the
// rate within [0.9, 1.05]·rate.
func checkSettled(t *testing.T, s *paceSim, rate float64, from, to time.Duration) {
	t.Helper()
	if got := s.throughput(from, to) / rate; got < 0.9 {
		t.Errorf("from %v to %v: %.2f of the rate got through, want at least 0.90", from, to, got)
	}
	holds := s.holds(from, to)
	if most := int((to - from) / (20 * time.Second)); len(holds) > most {
		t.Errorf("from %v to %v: %d refusals held every worker, want at most %d", from, to, len(holds), most)
	}
	bad, first := 0, ""
	for _, r := range holds {
		est := r.pace / paceBelow / rate
		if r.probe || est < 0.9 || est > 1.05 {
			if bad++; bad == 1 {
				first = fmt.Sprintf("at %v: %.3f of the rate (probe %v)", r.at.Sub(pacerEpoch), est, r.probe)
			}
		}
	}
	if bad > 0 {
		t.Errorf("from %v to %v: %d of %d refusals gave no estimate within [0.90, 1.05] of the rate; first %s", from, to, bad, len(holds), first)
	}
}

func TestPacerFindsTheRate(t *testing.T) {
	// A backlog from the start: the pacer settles within two minutes.
	tests := []simOptions{
		{rate: 5, burst: 10, workers: 8, latency: 20 * time.Millisecond},
		{rate: 20, burst: 10, workers: 8, latency: 50 * time.Millisecond},
		{rate: 50, burst: 10, workers: 8, latency: 20 * time.Millisecond},
		{rate: 50, burst: 100, workers: 8, latency: 20 * time.Millisecond},
		{rate: 200, burst: 10, workers: 16, latency: 20 * time.Millisecond},
	}
	for _, o := range tests {
		t.Run(fmt.Sprintf("rate %v bucket %v workers %d", o.rate, o.burst, o.workers), func(t *testing.T) {
			s := newPaceSim(t, o)
			s.run(pacerEpoch.Add(7 * time.Minute))
			t.Logf("rate %v/s, bucket %v, %d workers: %.3f of the rate over minutes 2-7, %d holds",
				o.rate, o.burst, o.workers, s.throughput(2*time.Minute, 7*time.Minute)/o.rate, len(s.holds(2*time.Minute, 7*time.Minute)))
			checkSettled(t, s, o.rate, 2*time.Minute, 7*time.Minute)
		})
	}
}

func TestPacerFollowsAChangedLimit(t *testing.T) {
	tests := []struct {
		o      simOptions
		settle time.Duration // after the change
	}{
		{o: simOptions{rate: 50, burst: 10, workers: 8, latency: 20 * time.Millisecond, changeAt: 3 * time.Minute, newRate: 20}, settle: time.Minute},
		// A raised limit is found again within minutes (the growth doubles
		// every paceDouble).
		{o: simOptions{rate: 20, burst: 10, workers: 8, latency: 20 * time.Millisecond, changeAt: 3 * time.Minute, newRate: 50}, settle: 3 * time.Minute},
		{o: simOptions{rate: 20, burst: 10, workers: 16, latency: 20 * time.Millisecond, changeAt: 3 * time.Minute, newRate: 200}, settle: 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("rate %v to %v", tt.o.rate, tt.o.newRate), func(t *testing.T) {
			s := newPaceSim(t, tt.o)
			from := tt.o.changeAt + tt.settle
			s.run(pacerEpoch.Add(from + 4*time.Minute))
			t.Logf("rate %v/s → %v/s: %.3f of the new rate %v to %v after the change",
				tt.o.rate, tt.o.newRate, s.throughput(from, from+4*time.Minute)/tt.o.newRate, tt.settle, tt.settle+4*time.Minute)
			checkSettled(t, s, tt.o.newRate, from, from+4*time.Minute)
		})
	}
}

// TestPacerAfterAQuietStart: a daemon that ran below the limit for a while
// before a backlog (the usual case in production, not in the benchmark). The
// first refusal must not take every call admitted since start as Kombo's
// bucket (it did: a bucket of thousands, the estimate fell back on its lower
// bound, and the pace passed the limit every few seconds, ~10 refusals a
// minute at ~0.81 of the rate); only the last window before the refusal tells
// the bucket, less what the earlier rate refilled during it.
func TestPacerAfterAQuietStart(t *testing.T) {
	t.Run("bucket", func(t *testing.T) {
		// 600 calls admitted over a minute at 10/s, below the limit (R = 20,
		// B = 10), then a backlog: the bucket and 20/s go through in 0.5 s,
		// then a refusal. In the last second before it, 5 + 20 calls got
		// through, of which the earlier rate explains 10: B is estimated as
		// at most B + (R - 10/s)·1 s = 20, not 620.
		clk := &fakeClock{t: pacerEpoch}
		p := newPacer(clk.now)
		answerEvenly(p, clk, 600, ms(0), ms(60000), 20*time.Millisecond)
		answerEvenly(p, clk, 20, ms(60000), ms(60500), 20*time.Millisecond)
		clk.set(ms(60520))
		refuse(p, clk, ms(60500), time.Second, 0)
		if p.burst < 10 || p.burst > 20 {
			t.Errorf("bucket estimated as %.1f calls, want between the true 10 and 20", p.burst)
		}
	})
	t.Run("simulation", func(t *testing.T) {
		o := simOptions{rate: 50, burst: 10, workers: 8, latency: 20 * time.Millisecond, trickle: 20, trickleFor: 10 * time.Minute}
		s := newPaceSim(t, o)
		s.run(pacerEpoch.Add(20 * time.Minute))
		checkSettled(t, s, o.rate, 12*time.Minute, 20*time.Minute)
	})
}

func TestScoutFirstCallGoesAlone(t *testing.T) {
	for _, callers := range []int{1, 2, 8} {
		synctest.Test(t, func(t *testing.T) {
			s := newScout()
			type result struct {
				first bool
				err   error
			}
			results := make(chan result, callers)
			for range callers {
				go func() {
					first, err := s.wait(t.Context())
					results <- result{first, err}
				}()
			}
			synctest.Wait() // every caller returned or is blocked for good
			if got := len(results); got != 1 {
				t.Fatalf("%d callers: %d returned before any answer, want 1", callers, got)
			}
			if r := <-results; !r.first || r.err != nil {
				t.Fatalf("the caller that went = (%v, %v), want (true, nil)", r.first, r.err)
			}
			s.answered()
			synctest.Wait()
			if got := len(results); got != callers-1 {
				t.Fatalf("%d callers: %d released by the answer, want %d", callers, got, callers-1)
			}
			for range callers - 1 {
				if r := <-results; r.first || r.err != nil {
					t.Errorf("a caller released by the answer = (%v, %v), want (false, nil)", r.first, r.err)
				}
			}
			// Later callers go at once, as second callers.
			if first, err := s.wait(doneCtx(t)); first || err != nil {
				t.Errorf("wait() after the answer = (%v, %v), want (false, nil)", first, err)
			}
		})
	}
}

func TestScoutAbandon(t *testing.T) {
	// steps: "w" a new caller of wait (its result is checked when it
	// returns), "a" abandon, "x" answered. want[i] is what the i-th caller
	// gets, in the order of callers: "first", "second" (released or let
	// through by an answer) or "blocked" (still waiting at the end).
	tests := []struct {
		name  string
		steps string
		want  []string
	}{
		{name: "abandoned before others call", steps: "wawx", want: []string{"first", "first"}},
		{name: "abandoned twice", steps: "wawawx", want: []string{"first", "first", "first"}},
		{name: "a waiter takes the abandoned role", steps: "wwa", want: []string{"first", "first"}},
		{name: "a later caller waits for the new first", steps: "wwaw", want: []string{"first", "first", "blocked"}},
		{name: "and goes once it is answered", steps: "wwawx", want: []string{"first", "first", "second"}},
		{name: "abandon after the answer changes nothing", steps: "wxaw", want: []string{"first", "second"}},
		{name: "answered without a first call", steps: "xw", want: []string{"second"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newScout()
				got := make([]string, strings.Count(tt.steps, "w"))
				for i := range got {
					got[i] = "blocked"
				}
				var mu sync.Mutex
				callers := 0
				for _, step := range tt.steps {
					switch step {
					case 'w':
						i := callers
						callers++
						go func() {
							first, err := s.wait(t.Context())
							mu.Lock()
							defer mu.Unlock()
							switch {
							case err != nil:
								got[i] = err.Error()
							case first:
								got[i] = "first"
							default:
								got[i] = "second"
							}
						}()
					case 'a':
						s.abandon()
					case 'x':
						s.answered()
					}
					synctest.Wait()
				}
				mu.Lock()
				defer mu.Unlock()
				if len(got) != len(tt.want) {
					t.Fatalf("%d callers, want %d", len(got), len(tt.want))
				}
				for i := range got {
					if got[i] != tt.want[i] {
						t.Errorf("caller %d: %s, want %s (all: %v)", i, got[i], tt.want[i], got)
						break
					}
				}
				s.answered() // release whoever still waits
			})
		})
	}
}

func TestScoutWaitContextDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newScout()
		if first, err := s.wait(t.Context()); !first || err != nil {
			t.Fatalf("first wait() = (%v, %v), want (true, nil)", first, err)
		}
		// A second caller with a done context returns at once.
		if first, err := s.wait(doneCtx(t)); first || !errors.Is(err, context.Canceled) {
			t.Errorf("wait() with a done ctx = (%v, %v), want (false, %v)", first, err, context.Canceled)
		}
		// A waiting one returns when its ctx ends, after 3 s.
		ctx, cancel := context.WithCancel(t.Context())
		start := time.Now()
		var first bool
		var err error
		returned := make(chan struct{})
		go func() {
			defer close(returned)
			first, err = s.wait(ctx)
		}()
		synctest.Wait()
		select {
		case <-returned:
			t.Fatal("wait() returned before the answer or its ctx's end")
		default:
		}
		time.Sleep(3 * time.Second)
		cancel()
		<-returned
		if first || !errors.Is(err, context.Canceled) || time.Since(start) != 3*time.Second {
			t.Errorf("wait() = (%v, %v) after %v, want (false, %v) after 3s", first, err, time.Since(start), context.Canceled)
		}
		// A caller that gave up does not take the role: the first call is
		// still on its way, and the next caller waits for its answer.
		go func() {
			if first, err := s.wait(t.Context()); first || err != nil {
				t.Errorf("wait() after a caller gave up = (%v, %v), want (false, nil)", first, err)
			}
		}()
		synctest.Wait()
		s.answered()
		// After the answer a done ctx does not matter.
		if first, err := s.wait(doneCtx(t)); first || err != nil {
			t.Errorf("wait() after the answer with a done ctx = (%v, %v), want (false, nil)", first, err)
		}
	})
}

func TestScoutConcurrent(t *testing.T) {
	// Many callers at once (for the race detector), some of which abandon
	// the role once and call wait again: never two callers are first at the
	// same time, and every caller gets through.
	s := newScout()
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts, going := 0, 0
	for i := range 64 {
		wg.Go(func() {
			for try := 0; ; try++ {
				first, err := s.wait(t.Context())
				if err != nil {
					t.Errorf("wait: %v", err)
					return
				}
				if !first {
					return
				}
				mu.Lock()
				firsts++
				going++
				if going > 1 {
					t.Errorf("%d callers first at once", going)
				}
				going--
				mu.Unlock()
				if i%4 == 0 && try == 0 {
					s.abandon()
					continue
				}
				s.answered()
				return
			}
		})
	}
	wg.Wait()
	if firsts == 0 || !s.open.Load() {
		t.Errorf("%d first callers, open %v; want at least one, and open", firsts, s.open.Load())
	}
}

// newFloorConsumer returns a Consumer without NATS (New does not touch it), as if bound,
// reading the time from now (nil: time.Now).
func newFloorConsumer(t *testing.T, maxConcurrency int, now func() time.Time) *Consumer {
	t.Helper()
	c, err := New(nil, nil, Options{MaxConcurrency: maxConcurrency, MaxAttempts: 1, BackoffInitial: time.Second, Now: now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	c.setBindErr(nil) // as if bound: only admission is under test
	return c
}

func TestFloorHoldDoubles(t *testing.T) {
	// Each refusal at a cap of 1 in a row holds the floor for two mean call
	// durations (at least 5 ms each), doubled per refusal in the row, up to
	// floorHoldMax, ±50 %.
	tests := []struct {
		name     string
		meanCall time.Duration // 0: none measured yet
		want     []time.Duration
	}{
		{name: "no call measured", want: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond,
			160 * time.Millisecond, 320 * time.Millisecond, 640 * time.Millisecond, time.Second, time.Second}},
		{name: "short calls", meanCall: time.Millisecond, want: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}},
		{name: "20 ms calls", meanCall: 20 * time.Millisecond, want: []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond,
			320 * time.Millisecond, 640 * time.Millisecond, time.Second, time.Second}},
		{name: "slow calls", meanCall: 700 * time.Millisecond, want: []time.Duration{time.Second, time.Second}},
		{name: "a long streak", meanCall: 20 * time.Millisecond, want: func() []time.Duration {
			out := []time.Duration{40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond, 640 * time.Millisecond}
			for range 40 {
				out = append(out, time.Second)
			}
			return out
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{t: pacerEpoch}
			c := newFloorConsumer(t, 1, clk.now)
			c.meanCall.Store(int64(tt.meanCall))
			for round := range 2 {
				for i, nominal := range tt.want {
					// The previous hold has ended, so that Until shows this one.
					if u := c.floor.Until(); !u.Before(clk.now()) {
						clk.set(u.Add(time.Millisecond))
					}
					if !c.floor.Open() {
						t.Fatal("the floor is held after its hold ended")
					}
					c.holdAtFloor()
					if c.floor.Open() {
						t.Fatalf("refusal %d: the floor is open right after holdAtFloor", i+1)
					}
					hold := c.floor.Until().Sub(clk.now())
					if hold < nominal/2 || hold >= nominal*3/2 {
						t.Errorf("round %d, refusal %d in a row: held %v, want [%v, %v)", round, i+1, hold, nominal/2, nominal*3/2)
					}
				}
				// A success ends the streak (process stores 0): the next
				// refusal holds as the first did.
				c.floorStreak.Store(0)
			}
		})
	}
}

func TestFloorHoldNeverShortens(t *testing.T) {
	// A later refusal's hold, drawn shorter, does not end the hold early.
	clk := &fakeClock{t: pacerEpoch}
	c := newFloorConsumer(t, 1, clk.now)
	c.meanCall.Store(int64(200 * time.Millisecond)) // holds of 400 ms, then 800 ms, then 1 s, ±50 %
	var until time.Time
	for i := range 20 {
		c.holdAtFloor()
		if got := c.floor.Until(); got.Before(until) {
			t.Fatalf("refusal %d moved the end of the hold from %v to %v", i+1, until.Sub(pacerEpoch), got.Sub(pacerEpoch))
		}
		until = c.floor.Until()
		clk.set(clk.now().Add(10 * time.Millisecond))
	}
}

func TestFloorHoldHoldsOffAwaitTurn(t *testing.T) {
	tests := []struct {
		name string
		// slotTaken: awaitTurn first waits for the only Kombo slot, and the
		// floor hold begins while it waits; else the hold begins before.
		slotTaken bool
	}{
		{name: "hold before the turn"},
		{name: "hold begins while waiting for a slot", slotTaken: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newFloorConsumer(t, 1, nil) // time.Now: the bubble's clock
				c.first.answered()
				c.meanCall.Store(int64(100 * time.Millisecond))
				start := time.Now()
				var held Ticket
				if tt.slotTaken {
					held = acquireNow(t, c.limiter)
				} else {
					c.holdAtFloor() // 200 ms ±50 %
				}
				var turnAt time.Time
				returned := make(chan struct{})
				go func() {
					defer close(returned)
					tk, err := c.awaitTurn(t.Context(), nil)
					if err != nil {
						t.Errorf("awaitTurn: %v", err)
						return
					}
					turnAt = time.Now()
					c.limiter.Release(tk, OutcomeOther)
				}()
				synctest.Wait()
				if tt.slotTaken {
					c.holdAtFloor()
					c.limiter.Release(held, OutcomeOther) // the slot is free, the floor held
					synctest.Wait()
				}
				select {
				case <-returned:
					t.Fatal("awaitTurn returned during the floor hold")
				default:
				}
				// Another refusal at the floor 50 ms in extends the hold.
				time.Sleep(50 * time.Millisecond)
				c.holdAtFloor()
				until := c.floor.Until()
				<-returned
				if !turnAt.Equal(until) {
					t.Errorf("awaitTurn returned at %v, want the end of the floor hold %v", turnAt.Sub(start), until.Sub(start))
				}
				if got := c.limiter.InFlight(); got != 0 {
					t.Errorf("InFlight() = %d, want 0", got)
				}
			})
		})
	}
}

func TestScoutThroughAwaitTurn(t *testing.T) {
	// awaitTurn lets the first caller through alone; when that caller gives
	// up before its call, the role passes to one that waits.
	synctest.Test(t, func(t *testing.T) {
		c := newFloorConsumer(t, 1, nil)
		held := acquireNow(t, c.limiter) // the only slot: the first caller waits in Acquire

		type result struct {
			name string
			tk   Ticket
			err  error
		}
		results := make(chan result, 3)
		turn := func(ctx context.Context, name string) {
			tk, err := c.awaitTurn(ctx, nil)
			results <- result{name, tk, err}
		}
		// next returns the awaitTurn that returned, once all are blocked or
		// done; none fails the test.
		next := func(want string) result {
			t.Helper()
			synctest.Wait()
			select {
			case r := <-results:
				if r.name != want {
					t.Fatalf("awaitTurn of %s returned (%v), want %s", r.name, r.err, want)
				}
				return r
			default:
				t.Fatalf("no awaitTurn returned, want %s", want)
				return result{}
			}
		}
		none := func() {
			t.Helper()
			synctest.Wait()
			select {
			case r := <-results:
				t.Fatalf("awaitTurn of %s returned (%v), want none", r.name, r.err)
			default:
			}
		}

		ctxA, cancelA := context.WithCancel(t.Context())
		go turn(ctxA, "A") // first: passes the scout, waits for the slot
		none()
		go turn(t.Context(), "B") // waits for the first call's answer
		none()
		cancelA() // A gives up before its call
		if r := next("A"); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("A's awaitTurn = %v, want %v", r.err, context.Canceled)
		}
		// B, which was waiting, takes the role A abandoned and waits for the slot.
		go turn(t.Context(), "C") // waits for the first call's answer: B's
		none()
		c.limiter.Release(held, OutcomeOther)
		r := next("B")
		if r.err != nil {
			t.Fatalf("B's awaitTurn = %v", r.err)
		}
		none() // C waits for B's answer
		c.first.answered()
		c.limiter.Release(r.tk, OutcomeSuccess)
		if r := next("C"); r.err != nil {
			t.Fatalf("C's awaitTurn = %v", r.err)
		} else {
			c.limiter.Release(r.tk, OutcomeOther)
		}
	})
}
