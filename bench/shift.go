package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// Scenario 7 (limit shift): Kombo's concurrency limit changes during the run (6, then 2, then
// 6 again by default), each phase p.shiftPhase long, counted from the first publish. N is
// large enough that the backlog lasts past the last phase even at the full limit (shiftN), so
// that no phase is measured while the queue runs dry.

// Targets of scenario 7, for the daemon, in every phase.
const (
	shiftUtilTarget     = 0.9             // mean admitted calls in flight ÷ the phase's limit
	shiftRejectedTarget = 0.02            // CONCURRENCY_LIMIT_EXCEEDED ÷ DELETE calls
	shiftRiseTarget     = 2 * time.Second // cap at the new limit after a rise
	shiftMargin         = 1.1             // N covers this much more than the phases at their limits
)

// parseLimits reads "6,2,6".
func parseLimits(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v < 1 {
			return nil, fmt.Errorf("-shift-limits: want limits ≥ 1 separated by commas, got %q", s)
		}
		out = append(out, v)
	}
	if len(out) < 2 {
		return nil, fmt.Errorf("-shift-limits: want at least two phases, got %q", s)
	}
	return out, nil
}

// shiftN is the default N of scenario 7: what Kombo admits over all phases at their limits
// (Σ phase·limit/L), and shiftMargin more, so that the last phase ends before the backlog does.
func shiftN(p params) int {
	perCall := max(p.latency, time.Millisecond).Seconds()
	n := 0.0
	for _, l := range p.shiftLimits {
		n += p.shiftPhase.Seconds() * float64(l) / perCall
	}
	return int(math.Ceil(shiftMargin*n - 1e-6)) // 1.1 × 1400 is 1540.0000000000002
}

func shiftScenario(p params) scenario {
	var phases []phase
	ideal := time.Duration(0)
	for i, l := range p.shiftLimits {
		phases = append(phases, phase{at: time.Duration(i) * p.shiftPhase, limit: l})
		ideal += p.shiftPhase
	}
	n := p.nShift
	if n <= 0 {
		n = shiftN(p)
	}
	s := scenario{id: "7", title: "Limit shift",
		daemon: runSpec{scenario: "7", kind: "daemon", replicas: 1, n: n, maxConc: p.shiftMax, scrape: true,
			fake:   kombotest.Options{Latency: p.latency, ConcurrencyLimit: p.shiftLimits[0]},
			phases: phases, phasesEnd: ideal, timeout: timeoutFor(ideal)},
		judge: func(d, b *runResult, _ [2][]*runResult) []figure { return shiftFigures(p, d, b) },
	}
	s.baseline = baselineOf(s.daemon)
	return s
}

// window is one phase of a run as it happened: seconds since the first publish.
type window struct {
	from, to float64
	limit    int
	ok       bool // the phase began before the run ended
}

// windows returns the run's phases: each from the moment the fake's limit changed to the next
// change; the last one for its nominal length. A window ends at the last result at the
// latest.
func (r *runResult) windows() []window {
	end := r.elapsed.Seconds()
	ph := r.spec.phases
	out := make([]window, len(ph))
	for i := range ph {
		out[i].limit = ph[i].limit
		if i >= len(r.phaseAt) {
			continue
		}
		w := &out[i]
		w.from, w.ok = r.phaseAt[i], true
		switch {
		case i+1 < len(r.phaseAt):
			w.to = r.phaseAt[i+1]
		case i+1 < len(ph): // the next change never came: the run ended first
			w.to = end
		default:
			w.to = w.from + (r.spec.phasesEnd - ph[i].at).Seconds()
		}
		w.to = min(w.to, end)
		w.ok = w.to > w.from
	}
	return out
}

// meanInFlight is the mean number of admitted calls (all but those refused for concurrency)
// in flight at the fake over [from, to), seconds since the first publish: the time each
// call spent between its arrival and its answer at the fake, clipped to the window, summed,
// divided by the window's length.
func (r *runResult) meanInFlight(from, to float64) float64 {
	if to <= from {
		return 0
	}
	busy := 0.0
	for _, c := range r.calls {
		if c.code == codeConcurrency || c.end.IsZero() {
			continue
		}
		a := max(c.start.Sub(r.t0).Seconds(), from)
		z := min(c.end.Sub(r.t0).Seconds(), to)
		if z > a {
			busy += z - a
		}
	}
	return busy / (to - from)
}

// rejectedIn returns the share of DELETE calls arriving in [from, to) that the fake refused
// for concurrency, and the counts.
func (r *runResult) rejectedIn(from, to float64) (share float64, rejected, calls int) {
	for _, c := range r.calls {
		t := c.start.Sub(r.t0).Seconds()
		if t < from || t >= to {
			continue
		}
		calls++
		if c.code == codeConcurrency {
			rejected++
		}
	}
	return ratio(rejected, calls), rejected, calls
}

// followTime returns the seconds from at until the first scrape at or after it that shows
// the daemon's cap (the first replica's) at limit, looking until until; ok is false when none
// does.
func followTime(samples []sample, at, until float64, limit int) (float64, bool) {
	for _, s := range byTime(samples) {
		if s.replica != 0 || s.t < at {
			continue
		}
		if s.t > until {
			break
		}
		if s.cap == float64(limit) {
			return s.t - at, true
		}
	}
	return 0, false
}

func shiftFigures(p params, d, b *runResult) []figure {
	wd, wb := d.windows(), b.windows()
	var figs []figure
	for i, ph := range d.spec.phases {
		span := fmt.Sprintf("phase %d (limit %d, %g–%g s)", i+1, ph.limit, ph.at.Seconds(),
			(ph.at + p.shiftPhase).Seconds())
		util := func(r *runResult, w window) string {
			if !w.ok {
				return "not reached"
			}
			return fmt.Sprintf("%.3f", r.meanInFlight(w.from, w.to)/float64(w.limit))
		}
		rej := func(r *runResult, w window) string {
			if !w.ok {
				return "not reached"
			}
			share, n, all := r.rejectedIn(w.from, w.to)
			return fmt.Sprintf("%.2f %% (%d of %d)", 100*share, n, all)
		}
		du, dr := 0.0, 1.0
		if wd[i].ok {
			du = d.meanInFlight(wd[i].from, wd[i].to) / float64(ph.limit)
			dr, _, _ = d.rejectedIn(wd[i].from, wd[i].to)
		}
		figs = append(figs,
			figure{measure: span + ": admitted calls in flight at Kombo ÷ limit", daemon: util(d, wd[i]), baseline: util(b, wb[i]),
				target: fmt.Sprintf("≥ %.2f", shiftUtilTarget), ok: wd[i].ok && du >= shiftUtilTarget},
			figure{measure: span + ": calls rejected (CONCURRENCY_LIMIT_EXCEEDED)", daemon: rej(d, wd[i]), baseline: rej(b, wb[i]),
				target: fmt.Sprintf("≤ %.0f %%", 100*shiftRejectedTarget), ok: wd[i].ok && dr <= shiftRejectedTarget})
		if i == 0 {
			continue
		}
		prev := d.spec.phases[i-1].limit
		f := figure{measure: fmt.Sprintf("time until the cap is %d after the %s at %g s",
			ph.limit, map[bool]string{true: "rise", false: "drop"}[ph.limit > prev], ph.at.Seconds()),
			daemon: "not reached", baseline: "–", info: ph.limit <= prev}
		if wd[i].ok {
			until := d.elapsed.Seconds()
			if i+1 < len(d.phaseAt) {
				until = d.phaseAt[i+1]
			}
			if t, ok := followTime(d.samples, wd[i].from, until, ph.limit); ok {
				f.daemon, f.ok = fmt.Sprintf("%.2f s", t), t <= shiftRiseTarget.Seconds()
			} else {
				f.daemon = "never in the phase"
			}
		}
		if !f.info {
			f.target = fmt.Sprintf("≤ %.0f s", shiftRiseTarget.Seconds())
		}
		figs = append(figs, f)
	}
	figs = append(figs,
		figure{measure: fmt.Sprintf("time (s), N=%d (the phases end at %g s; the last limit holds until every result is in)",
			d.spec.n, d.spec.phasesEnd.Seconds()), daemon: secs(d.elapsed), baseline: secs(b.elapsed), info: true},
		figure{measure: "DELETE calls / rejected, whole run", daemon: fmt.Sprintf("%d / %d", d.stats.Deletes, d.stats.RejectedConcurrency),
			baseline: fmt.Sprintf("%d / %d", b.stats.Deletes, b.stats.RejectedConcurrency), info: true},
		figure{measure: "requests that ended failed (retries used up)", daemon: fmt.Sprint(d.failed), baseline: fmt.Sprint(b.failed), info: true},
	)
	return figs
}
