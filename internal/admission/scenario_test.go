package admission

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// These tests run whole scenarios against the model of Kombo in a synctest bubble: minutes
// of fake time in well under a second, every figure exact for the model. make bench measures
// the same scenarios with the real daemon, NATS and the fake Kombo over HTTP.

// forEachNetwork runs f in a bubble of its own for each network, and for each of more.
func forEachNetwork(t *testing.T, f func(t *testing.T, net network), more ...network) {
	for _, net := range append(slices.Clip(networks), more...) {
		t.Run(net.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { f(t, net) })
		})
	}
}

// capWatch samples a Controller's cap every 10 ms until ctx ends.
type capWatch struct {
	mu   sync.Mutex
	at   []time.Time
	caps []int
}

func watchCap(ctx context.Context, c *Controller, wg *sync.WaitGroup) *capWatch {
	w := &capWatch{}
	wg.Go(func() {
		for ctx.Err() == nil {
			s := c.Stats()
			w.mu.Lock()
			w.at, w.caps = append(w.at, time.Now()), append(w.caps, s.Cap)
			w.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	return w
}

// reached returns how long after from the cap first equalled want.
func (w *capWatch) reached(from time.Time, want int) (time.Duration, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, t := range w.at {
		if !t.Before(from) && w.caps[i] == want {
			return t.Sub(from), true
		}
	}
	return 0, false
}

func TestLimitShiftIsFollowedBothWays(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, net network) {
		k := &kombo{latency: 20 * time.Millisecond, net: net, limit: 6}
		c := newController(16)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		replica{c: c, id: 1, workers: 32}.run(ctx, k, &backlog{n: -1}, &wg)
		watch := watchCap(ctx, c, &wg)

		const phase = 8 * time.Second
		var shifts []time.Time
		var figures []counts
		before := k.counts()
		for _, limit := range []int{2, 6, 0} {
			time.Sleep(phase)
			now := k.counts()
			figures = append(figures, now.minus(before))
			before = now
			if limit > 0 {
				k.setLimit(limit)
				shifts = append(shifts, time.Now())
			}
		}
		cancel()
		wg.Wait()

		for i, limit := range []int{6, 2, 6} {
			f := figures[i]
			util := f.busy.Seconds() / phase.Seconds() / float64(limit)
			rejected := float64(f.refusedConc) / float64(f.calls)
			t.Logf("phase %d (limit %d): utilization %.3f, rejected %.2f %% of %d calls", i+1, limit, util, 100*rejected, f.calls)
			if util < 0.9-net.slack || rejected > 0.02 {
				t.Errorf("phase %d (limit %d): utilization %.3f (want ≥ %.2f), rejected %.2f %% (want ≤ 2 %%)", i+1, limit, util, 0.9-net.slack, 100*rejected)
			}
		}
		for i, want := range []int{2, 6} {
			took, ok := watch.reached(shifts[i], want)
			t.Logf("shift %d: cap at %d after %v", i+1, want, took)
			if !ok || took > 2*time.Second {
				t.Errorf("shift %d: cap at %d after %v (reached: %v), want within 2s", i+1, want, took, ok)
			}
		}
	})
}

func TestTwoReplicasShareOneLimitFairly(t *testing.T) {
	forEachNetwork(t, func(t *testing.T, net network) {
		k := &kombo{latency: 20 * time.Millisecond, net: net, limit: 4}
		a, b := newController(32), newController(32)
		ctx, cancel := context.WithCancel(t.Context())
		ctxB, cancelB := context.WithCancel(ctx)
		var wg sync.WaitGroup
		work := &backlog{n: -1}
		replica{c: a, id: 1, workers: 64}.run(ctx, k, work, &wg)
		replica{c: b, id: 2, workers: 64}.run(ctxB, k, work, &wg)
		watch := watchCap(ctx, a, &wg)

		const run = 30 * time.Second
		time.Sleep(run)
		f := k.counts()
		k.mu.Lock()
		split := [2]int{k.byClient[1], k.byClient[2]}
		k.mu.Unlock()
		cancelB()
		left := time.Now()
		time.Sleep(5 * time.Second)
		cancel()
		wg.Wait()

		util := f.busy.Seconds() / run.Seconds() / 4
		rejected := float64(f.refusedConc) / float64(f.calls)
		share := float64(split[0]) / float64(split[0]+split[1])
		t.Logf("utilization %.3f, rejected %.2f %% of %d calls, replica 1 did %.1f %%", util, 100*rejected, f.calls, 100*share)
		if util < 0.92-net.slack || rejected > 0.02 || share < 0.25 || share > 0.75 {
			t.Errorf("utilization %.3f (want ≥ %.2f), rejected %.2f %% (want ≤ 2 %%), replica 1's share %.1f %% (want 25–75 %%)",
				util, 0.92-net.slack, 100*rejected, 100*share)
		}
		took, ok := watch.reached(left, 4)
		t.Logf("the survivor's cap at 4 after %v", took)
		if !ok || took > 2*time.Second {
			t.Errorf("the survivor's cap reached 4 after %v (reached: %v), want within 2s", took, ok)
		}
	})
}

// TestAReplicaThatJoinsGetsItsShare: a replica that starts while another holds all of
// Kombo's slots is refused at first, so the answers the other gets never show it. It gets
// in through the gaps between the other's calls or the slot the other leaves free every
// shareEvery, and then gets its share. With 150 ms calls the gaps are too rare to count on.
func TestAReplicaThatJoinsGetsItsShare(t *testing.T) {
	for _, latency := range []time.Duration{20 * time.Millisecond, 150 * time.Millisecond} {
		t.Run(latency.String(), func(t *testing.T) {
			forEachNetwork(t, func(t *testing.T, net network) { testJoin(t, net, latency) })
		})
	}
}

func testJoin(t *testing.T, net network, latency time.Duration) {
	k := &kombo{latency: latency, net: net, limit: 4}
	a, b := newController(32), newController(32)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	work := &backlog{n: -1}
	replica{c: a, id: 1, workers: 64}.run(ctx, k, work, &wg)
	time.Sleep(10 * time.Second) // a holds all of Kombo's slots
	replica{c: b, id: 2, workers: 64}.run(ctx, k, work, &wg)
	before := k.counts()
	k.mu.Lock()
	doneA := k.byClient[1]
	k.mu.Unlock()
	time.Sleep(30 * time.Second)
	f := k.counts().minus(before)
	k.mu.Lock()
	split := [2]int{k.byClient[1] - doneA, k.byClient[2]}
	k.mu.Unlock()
	cancel()
	wg.Wait()
	share := float64(split[1]) / float64(split[0]+split[1])
	perSecond := float64(f.refusedConc) / 30
	t.Logf("the replica that joined did %.1f %% of the work over 30 s; %d of %d calls refused (%.1f/s)", 100*share, f.refusedConc, f.calls, perSecond)
	if share < 0.25 || perSecond > 6 {
		t.Errorf("the replica that joined did %.1f %% (want ≥ 25 %%); %.1f refusals per second (want ≤ 6: a replica kept out knocks at most every 190 ms ±50 %%)",
			100*share, perSecond)
	}
}

func testRateLimit(t *testing.T, headers bool, minShare, maxRefusedPer1000 float64) {
	synctest.Test(t, func(t *testing.T) {
		k := &kombo{latency: 20 * time.Millisecond, net: networks[0], rate: 50, burst: 10, tokens: 10, last: time.Now(), headers: headers}
		c := newController(8)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		replica{c: c, id: 1, workers: 16}.run(ctx, k, &backlog{n: -1}, &wg)
		const run = 100 * time.Second
		time.Sleep(run)
		f := k.counts()
		cancel()
		wg.Wait()
		share := float64(f.done) / run.Seconds() / 50
		per1000 := 1000 * float64(f.refusedRate) / float64(f.calls)
		t.Logf("%.3f of the allowed rate, %d refusals (%.2f per 1000 calls), %d calls inside an announced wait", share, f.refusedRate, per1000, f.early)
		if share < minShare || per1000 > maxRefusedPer1000 || f.early > 0 {
			t.Errorf("%.3f of the allowed rate (want ≥ %.2f), %.2f refusals per 1000 calls (want ≤ %.0f), %d calls inside a wait (want 0)",
				share, minShare, per1000, maxRefusedPer1000, f.early)
		}
	})
}

func TestRateLimitWithQuotaHeaders(t *testing.T) { testRateLimit(t, true, 0.97, 1) }

func TestRateLimitWithRetryAfterOnly(t *testing.T) { testRateLimit(t, false, 0.9, 1000) }

// TestReplicasShareOneLimitOfEight is the bench's scenario 10: 1, 2, 3 and 4 replicas, each
// with a Max far above it, start together against one Kombo limit of 8, also over a loaded
// machine's loopback. Each count runs shareRuns times (the bubble's randomness differs run to
// run), counted from the start: the first calls and the climb to the limit included. Every
// run must keep Kombo at least 90 % busy (less the network's slack), and at most 2.5 % of the
// calls of all runs together may be refused (one run's share varies by about ±0.5 %).
func TestReplicasShareOneLimitOfEight(t *testing.T) {
	const (
		limit     = 8
		run       = 20 * time.Second
		shareRuns = 4
	)
	for n := 1; n <= 4; n++ {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) {
			forEachNetwork(t, func(t *testing.T, net network) {
				var utils, rejects []float64
				var all counts
				for range shareRuns {
					k := &kombo{latency: 20 * time.Millisecond, net: net, limit: limit}
					ctx, cancel := context.WithCancel(t.Context())
					var wg sync.WaitGroup
					work := &backlog{n: -1}
					for id := 1; id <= n; id++ {
						replica{c: newController(16), id: id, workers: 32}.run(ctx, k, work, &wg)
					}
					time.Sleep(run)
					f := k.counts()
					cancel()
					wg.Wait()
					utils = append(utils, f.busy.Seconds()/run.Seconds()/limit)
					rejects = append(rejects, float64(f.refusedConc)/float64(f.calls))
					all.calls, all.refusedConc = all.calls+f.calls, all.refusedConc+f.refusedConc
				}
				rejected := float64(all.refusedConc) / float64(all.calls)
				t.Logf("%d replicas: utilization %s; rejected %.2f %% (runs: %s %%)", n, figs(utils, 1), 100*rejected, figs(rejects, 100))
				if u := slices.Min(utils); u < 0.9-net.slack || rejected > 0.025 {
					t.Errorf("%d replicas: utilization as low as %.3f (want ≥ %.2f), rejected %.2f %% (want ≤ 2.5 %%)",
						n, u, 0.9-net.slack, 100*rejected)
				}
			}, loaded)
		})
	}
}

// figs formats figures, each times scale.
func figs(xs []float64, scale float64) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%.2f", x*scale)
	}
	return strings.Join(s, " ")
}
