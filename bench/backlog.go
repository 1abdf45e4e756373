package main

import (
	"fmt"
	"strings"
)

// Scenario 11 (backlog): the run is split into its first and last tenth, from the first
// result to the last; throughput is steady when the two tenths' results/s are within 10 % of
// each other, and memory flat when no replica's RSS grew by more than 10 % from the first
// tenth to the last.

// tenths returns the run's first and last tenth, in seconds since its start, from the first
// result to the last; ok is false with fewer than two results.
func (r *runResult) tenths() (first, last [2]float64, ok bool) {
	if len(r.resultAt) < 2 {
		return first, last, false
	}
	a, z := r.resultAt[0].Sub(r.t0).Seconds(), r.resultAt[len(r.resultAt)-1].Sub(r.t0).Seconds()
	tenth := (z - a) / 10
	return [2]float64{a, a + tenth}, [2]float64{z - tenth, z}, tenth > 0
}

// ratesAtEnds returns results/s in the run's first and last tenth.
func (r *runResult) ratesAtEnds() (first, last float64, ok bool) {
	f, l, ok := r.tenths()
	if !ok {
		return 0, 0, false
	}
	count := func(w [2]float64) float64 {
		n := 0
		for _, at := range r.resultAt {
			if t := at.Sub(r.t0).Seconds(); t >= w[0] && t <= w[1] {
				n++
			}
		}
		return float64(n) / (w[1] - w[0])
	}
	return count(f), count(l), true
}

// rssAtEnds returns, for each replica, its highest RSS sampled in the first and in the last
// tenth of the run (0 when no sample fell in it).
func (r *runResult) rssAtEnds() (first, last []uint64) {
	f, l, ok := r.tenths()
	first, last = make([]uint64, r.spec.replicas), make([]uint64, r.spec.replicas)
	if !ok {
		return first, last
	}
	for _, s := range r.rssSamples {
		if s.replica >= len(first) {
			continue
		}
		if s.t >= f[0] && s.t <= f[1] {
			first[s.replica] = max(first[s.replica], s.rss)
		}
		if s.t >= l[0] && s.t <= l[1] {
			last[s.replica] = max(last[s.replica], s.rss)
		}
	}
	return first, last
}

// steadiness is the slower of the first and last tenth's results/s ÷ the faster.
func steadiness(first, last float64) float64 {
	if max(first, last) == 0 {
		return 0
	}
	return min(first, last) / max(first, last)
}

// rssGrowth is the largest growth of any replica's RSS from the first tenth to the last
// (0.05 = 5 %); ok is false when a tenth has no sample.
func (r *runResult) rssGrowth() (growth float64, ok bool) {
	first, last := r.rssAtEnds()
	for i := range first {
		if first[i] == 0 || last[i] == 0 {
			return 0, false
		}
		growth = max(growth, float64(last[i])/float64(first[i])-1)
	}
	return growth, len(first) > 0
}

func backlogFigures(p params, d, b *runResult) []figure {
	bound := float64(backlogReplicas*p.scaleMax) / p.scaleLatency.Seconds()
	steady := func(r *runResult) (string, float64) {
		f, l, ok := r.ratesAtEnds()
		if !ok {
			return "–", 0
		}
		return fmt.Sprintf("%.0f / %.0f (%.3f)", f, l, steadiness(f, l)), steadiness(f, l)
	}
	sd, vd := steady(d)
	sb, _ := steady(b)
	growth := func(r *runResult) (string, bool) {
		g, ok := r.rssGrowth()
		first, last := r.rssAtEnds()
		parts := make([]string, len(first))
		for i := range first {
			parts[i] = fmt.Sprintf("%s → %s", mib(first[i]), mib(last[i]))
		}
		if !ok {
			return strings.Join(parts, ", "), false
		}
		return fmt.Sprintf("%s (largest growth %+.1f %%)", strings.Join(parts, ", "), 100*g), g <= backlogGrowthTarget
	}
	gd, okd := growth(d)
	gb, _ := growth(b)
	return []figure{
		{measure: fmt.Sprintf("results/s, start of the replicas to the last result (N=%d published first, %d replicas, each C=%d, L=%s; bound %.0f/s)",
			p.nBacklog, backlogReplicas, p.scaleMax, p.scaleLatency, bound),
			daemon:   fmt.Sprintf("%.0f (%.3f of the bound)", d.perSecond(), d.perSecond()/bound),
			baseline: fmt.Sprintf("%.0f (%.3f of the bound)", b.perSecond(), b.perSecond()/bound), info: true},
		{measure: "results/s in the first / last 10 % of the run, first result to last (slower ÷ faster)",
			daemon: sd, baseline: sb, target: fmt.Sprintf("≥ %.2f", backlogSteadyTarget), ok: vd >= backlogSteadyTarget},
		{measure: "peak RSS of each replica (VmHWM)", daemon: rssList(d.rss), baseline: rssList(b.rss), info: true},
		{measure: "RSS of each replica, highest in the first 10 % → in the last 10 % (sampled every 250 ms)",
			daemon: gd, baseline: gb, target: fmt.Sprintf("each ≤ +%.0f %%", 100*backlogGrowthTarget), ok: okd},
		{measure: "mean calls in flight at Kombo / CPUs busy on the machine, all work", daemon: fmt.Sprintf("%.1f / %.2f", d.meanInFlightRun(), d.machineBusy),
			baseline: fmt.Sprintf("%.1f / %.2f", b.meanInFlightRun(), b.machineBusy), info: true},
		{measure: "time (s) / requests that ended failed", daemon: fmt.Sprintf("%s / %d", secs(d.elapsed), d.failed),
			baseline: fmt.Sprintf("%s / %d", secs(b.elapsed), b.failed), info: true},
	}
}

func rssList(rss []uint64) string {
	parts := make([]string, len(rss))
	for i, v := range rss {
		parts[i] = mib(v)
	}
	return strings.Join(parts, ", ")
}
