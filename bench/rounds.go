package main

import (
	"fmt"
	"slices"
	"strings"
)

// Targets of scenario 6 (two replicas on one limit), for the daemon, in every round.
const (
	replicasRatioTarget    = 0.92 // N·L/limit ÷ time
	replicasRejectedTarget = 0.02 // CONCURRENCY_LIMIT_EXCEEDED ÷ DELETE calls, whole run
	replicasShareTarget    = 0.25 // each replica's share of the deletions
)

// roundList lists one value per round and, with more than one round, the worst and the best
// of them: "0.93, 0.91, 0.94 (worst 0.91, best 0.94)". score orders the rounds (higher is
// better).
func roundList[T any](vals []T, text func(T) string, score func(T) float64) string {
	parts := make([]string, len(vals))
	for i, v := range vals {
		parts[i] = text(v)
	}
	out := strings.Join(parts, ", ")
	if len(vals) > 1 {
		by := func(a, b T) int {
			sa, sb := score(a), score(b)
			switch {
			case sa < sb:
				return -1
			case sa > sb:
				return 1
			}
			return 0
		}
		out += fmt.Sprintf(" (worst %s, best %s)", text(slices.MinFunc(vals, by)), text(slices.MaxFunc(vals, by)))
	}
	return out
}

// roundsFigure lists every round of each side, so that the spread the best run was
// chosen from is in the report: results/s and, for scenario 4, CPU-seconds per 1000.
func roundsFigure(id string, every [2][]*runResult) figure {
	f := figure{measure: "every round: results/s", info: true}
	if id == "4" {
		f.measure += " (CPU-s per 1000)"
	}
	text := func(r *runResult) string {
		v := fmt.Sprintf("%.0f", r.perSecond())
		if id == "4" && r.results > 0 {
			v += fmt.Sprintf(" (%.3f)", r.cpuTotal()/float64(r.results)*1000)
		}
		return v
	}
	score := func(r *runResult) float64 { return r.perSecond() }
	f.daemon, f.baseline = roundList(every[0], text, score), roundList(every[1], text, score)
	return f
}

// deletedShares returns each replica's share of the integrations deleted at the fake (2xx
// answers to DELETE), which replica made a call being told by the listener it came in on.
func (r *runResult) deletedShares() []float64 {
	counts := make([]int, max(r.spec.replicas, 1))
	total := 0
	for _, c := range r.calls {
		if c.status >= 200 && c.status < 300 && c.replica < len(counts) {
			counts[c.replica]++
			total++
		}
	}
	out := make([]float64, len(counts))
	for i, n := range counts {
		out[i] = ratio(n, total)
	}
	return out
}

func settleText(r *runResult, limit int) string {
	if t, ok := settleTime(r.samples, r.spec.replicas, float64(limit)); ok {
		return fmt.Sprintf("%.2f s", t)
	}
	return "never"
}

// replicaFigures is scenario 6, judged in every round: the ratio to N·L/limit, the share
// of calls rejected and how the work split between the replicas; then, from the best round,
// the same figures as scenario 2's.
func replicaFigures(p params, d, b *runResult, every [2][]*runResult) []figure {
	bound := boundOf(p.n, p.latency, p.adaptiveLimit)
	ratioOf := func(r *runResult) float64 { return bound.Seconds() / r.elapsed.Seconds() }
	rejOf := func(r *runResult) float64 { all, _ := r.rejected(); return all }
	rej2Of := func(r *runResult) float64 { _, h := r.rejected(); return h }
	minShare := func(r *runResult) float64 { return slices.Min(r.deletedShares()) }
	pct := func(v float64) string { return fmt.Sprintf("%.2f %%", 100*v) }
	shareText := func(r *runResult) string {
		var parts []string
		for _, s := range r.deletedShares() {
			parts = append(parts, fmt.Sprintf("%.0f", 100*s))
		}
		return strings.Join(parts, "/") + " %"
	}
	all := func(ok func(*runResult) bool) bool {
		for _, r := range every[0] {
			if !ok(r) {
				return false
			}
		}
		return len(every[0]) > 0
	}
	list := func(f func(*runResult) float64, text func(float64) string, higherBetter bool) [2]string {
		var out [2]string
		for i := range every {
			out[i] = roundList(every[i], func(r *runResult) string { return text(f(r)) }, func(r *runResult) float64 {
				if higherBetter {
					return f(r)
				}
				return -f(r)
			})
		}
		return out
	}
	n := len(every[0])
	rounds := "every round"
	if n == 1 {
		rounds = "1 round"
	}
	ratios := list(ratioOf, func(v float64) string { return fmt.Sprintf("%.3f", v) }, true)
	rejs := list(rejOf, pct, false)
	rejs2 := list(rej2Of, pct, false)
	var shares [2]string
	for i := range every {
		shares[i] = roundList(every[i], shareText, minShare)
	}
	return []figure{
		{measure: fmt.Sprintf("N·L/%d ÷ time, %s (N=%d; bound %.2fs)", p.adaptiveLimit, rounds, p.n, bound.Seconds()),
			daemon: ratios[0], baseline: ratios[1], target: fmt.Sprintf("≥ %.2f in every round", replicasRatioTarget),
			ok: all(func(r *runResult) bool { return ratioOf(r) >= replicasRatioTarget })},
		{measure: "calls rejected (CONCURRENCY_LIMIT_EXCEEDED), whole run, " + rounds,
			daemon: rejs[0], baseline: rejs[1], target: fmt.Sprintf("≤ %.0f %% in every round", 100*replicasRejectedTarget),
			ok: all(func(r *runResult) bool { return rejOf(r) <= replicasRejectedTarget })},
		{measure: "share of the deletions (2xx DELETE answers) made by replica 1 / 2, " + rounds,
			daemon: shares[0], baseline: shares[1], target: fmt.Sprintf("each ≥ %.0f %% in every round", 100*replicasShareTarget),
			ok: all(func(r *runResult) bool { return minShare(r) >= replicasShareTarget })},
		{measure: "calls rejected, second half, " + rounds, daemon: rejs2[0], baseline: rejs2[1], info: true},
		{measure: fmt.Sprintf("best round: time until the sum of the caps first is ≤ %d", p.adaptiveLimit),
			daemon: settleText(d, p.adaptiveLimit), baseline: "–", info: true},
		{measure: "best round: DELETE calls / rejected", daemon: fmt.Sprintf("%d / %d", d.stats.Deletes, d.stats.RejectedConcurrency),
			baseline: fmt.Sprintf("%d / %d", b.stats.Deletes, b.stats.RejectedConcurrency), info: true},
		{measure: "best round: most calls in flight at Kombo", daemon: fmt.Sprint(d.stats.MaxInFlight), baseline: fmt.Sprint(b.stats.MaxInFlight), info: true},
		{measure: "requests that ended failed (retries used up), all rounds", daemon: fmt.Sprint(sumFailed(every[0])), baseline: fmt.Sprint(sumFailed(every[1])), info: true},
	}
}

func sumFailed(runs []*runResult) int {
	n := 0
	for _, r := range runs {
		n += r.failed
	}
	return n
}
