package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// Scenarios 9, 10 and 11 (issue 13): more daemon replicas on one durable consumer.
//
//   - 9, unbound: 1…4 replicas, each KOMBO_MAX_CONCURRENCY=16, against a Kombo limit that
//     does not bind; results/s per replica count ÷ linear (n × the 1-replica rate of the
//     same round). Each replica gets the same number of requests, so every run lasts about
//     as long and start-up weighs the same at every count.
//   - 10, shared limit: 1…4 replicas on one Kombo limit of 8; ÷ the bound N·L/8 and the share
//     of calls rejected, at every count.
//   - 11, backlog: 100 000 requests published before 3 replicas start; throughput steady from
//     start to end, each replica's RSS flat.

// Targets of scenarios 9–11, for the daemon, in every round.
const (
	scaleLinearTarget   = 0.9  // 9: results/s at the most replicas ÷ n × the 1-replica rate
	scaleBoundTarget    = 0.9  // 10: N·L/limit ÷ time
	scaleRejectedTarget = 0.03 // 10: CONCURRENCY_LIMIT_EXCEEDED ÷ DELETE calls
	backlogSteadyTarget = 0.9  // 11: the slower of the first and last 10 % ÷ the faster
	backlogGrowthTarget = 0.1  // 11: RSS growth of each replica, first 10 % → last 10 %
	backlogReplicas     = 3
)

func scaleOutScenarios(p params) []scenario {
	return []scenario{unboundScenario(p), sharedScenario(p), backlogScenario(p)}
}

// unboundLimit is Kombo's limit in scenarios 9 and 11: four times what all replicas may
// call at once, so that it never binds (the fake still says Concurrency-Limit, as Kombo does).
func unboundLimit(p params) int { return 4 * p.scaleReplicas * p.scaleMax }

// scaleSteps is one daemon spec per replica count, 1 … p.scaleReplicas: n(count) requests,
// the fake as given, ideal(count) the time the run should take.
func scaleSteps(p params, id string, fake kombotest.Options, n func(int) int, ideal func(int) time.Duration) []runSpec {
	var out []runSpec
	for c := 1; c <= p.scaleReplicas; c++ {
		out = append(out, runSpec{scenario: fmt.Sprintf("%s.%d", id, c), kind: "daemon", replicas: c, n: n(c),
			maxConc: p.scaleMax, fake: fake, timeout: timeoutFor(ideal(c))})
	}
	return out
}

func unboundScenario(p params) scenario {
	fake := kombotest.Options{Latency: p.scaleLatency, ConcurrencyLimit: unboundLimit(p)}
	perReplica := boundOf(p.nScale, p.scaleLatency, p.scaleMax)
	return scenario{id: "9", title: "Scale-out, unbound", rounds: p.scaleRounds,
		steps:      scaleSteps(p, "9", fake, func(c int) int { return c * p.nScale }, func(int) time.Duration { return perReplica }),
		judgeSteps: func(steps []stepRuns) []figure { return unboundFigures(p, steps) }}
}

func sharedScenario(p params) scenario {
	fake := kombotest.Options{Latency: p.scaleLatency, ConcurrencyLimit: p.sharedLimit}
	bound := boundOf(p.nShared, p.scaleLatency, p.sharedLimit)
	return scenario{id: "10", title: "Scale-out, one shared limit", rounds: p.scaleRounds,
		steps:      scaleSteps(p, "10", fake, func(int) int { return p.nShared }, func(int) time.Duration { return bound }),
		judgeSteps: func(steps []stepRuns) []figure { return sharedFigures(p, steps) }}
}

func backlogScenario(p params) scenario {
	d := runSpec{scenario: "11", kind: "daemon", replicas: backlogReplicas, n: p.nBacklog, maxConc: p.scaleMax,
		fake:    kombotest.Options{Latency: p.scaleLatency, ConcurrencyLimit: unboundLimit(p)},
		backlog: true, sampleRSS: true, timeout: timeoutFor(boundOf(p.nBacklog, p.scaleLatency, backlogReplicas*p.scaleMax))}
	return scenario{id: "11", title: "Backlog", daemon: d, baseline: baselineOf(d),
		judge: func(d, b *runResult, _ [2][]*runResult) []figure { return backlogFigures(p, d, b) }}
}

// perRound lists f of every round of both sides (roundList), higher scores better.
func perRound(st stepRuns, f func(side, round int) (text string, score float64)) [2]string {
	var out [2]string
	for side := range st.every {
		rounds := make([]int, len(st.every[side]))
		for i := range rounds {
			rounds[i] = i
		}
		text := func(i int) string { t, _ := f(side, i); return t }
		score := func(i int) float64 { _, s := f(side, i); return s }
		out[side] = roundList(rounds, text, score)
	}
	return out
}

// everyRound reports whether ok holds for the daemon in every round of st.
func everyRound(st stepRuns, ok func(r *runResult) bool) bool {
	return len(st.every[0]) > 0 && !slices.ContainsFunc(st.every[0], func(r *runResult) bool { return !ok(r) })
}

// byCount lists, for each side, f's mean over the rounds at each replica count: "1.0, 2.0, …".
func byCount(steps []stepRuns, format string, f func(r *runResult) float64) [2]string {
	var out [2]string
	for side := range out {
		var parts []string
		for _, st := range steps {
			sum := 0.0
			for _, r := range st.every[side] {
				sum += f(r)
			}
			parts = append(parts, fmt.Sprintf(format, sum/float64(max(len(st.every[side]), 1))))
		}
		out[side] = strings.Join(parts, ", ")
	}
	return out
}

// meanInFlightRun is the mean number of calls Kombo admitted in flight over the run.
func (r *runResult) meanInFlightRun() float64 { return r.meanInFlight(0, r.elapsed.Seconds()) }

// boundFigures are the rows every sweep ends with: what bound the runs.
func boundFigures(steps []stepRuns) []figure {
	counts := make([]string, len(steps))
	for i, st := range steps {
		counts[i] = fmt.Sprint(st.every[0][0].spec.replicas)
	}
	by := strings.Join(counts, ", ")
	inFlight := byCount(steps, "%.1f", (*runResult).meanInFlightRun)
	busy := byCount(steps, "%.2f", func(r *runResult) float64 { return r.machineBusy })
	other := byCount(steps, "%.2f", func(r *runResult) float64 { return r.otherLoad })
	return []figure{
		{measure: fmt.Sprintf("mean calls in flight at Kombo with %s replica(s), mean of the rounds", by),
			daemon: inFlight[0], baseline: inFlight[1], info: true},
		{measure: fmt.Sprintf("CPUs busy on the machine, all work (of %d), with %s replica(s)", runtime.NumCPU(), by),
			daemon: busy[0], baseline: busy[1], info: true},
		{measure: "of which other load (neither measured nor the bench's)", daemon: other[0], baseline: other[1], info: true},
	}
}

// unboundFigures is scenario 9: results/s at each count and its ratio to linear, in every
// round (the 1-replica rate of the same round and side), judged at the most replicas.
func unboundFigures(p params, steps []stepRuns) []figure {
	var out []figure
	last := len(steps) - 1
	for k, st := range steps {
		n := st.every[0][0].spec.replicas
		linear := func(side, round int) float64 {
			return st.every[side][round].perSecond() / (float64(n) * steps[0].every[side][round].perSecond())
		}
		vals := perRound(st, func(side, round int) (string, float64) {
			r := st.every[side][round].perSecond()
			if k == 0 {
				return fmt.Sprintf("%.0f", r), r
			}
			return fmt.Sprintf("%.0f (%.3f)", r, linear(side, round)), linear(side, round)
		})
		f := figure{measure: fmt.Sprintf("%d replica(s), N=%d: results/s, every round", n, st.every[0][0].spec.n),
			daemon: vals[0], baseline: vals[1], info: true}
		if k > 0 {
			f.measure += fmt.Sprintf(" (÷ %d × the 1-replica rate of the round)", n)
		}
		if k == last && k > 0 {
			f.info, f.target = false, fmt.Sprintf("≥ %.2f of linear in every round", scaleLinearTarget)
			f.ok = true
			for round := range st.every[0] {
				f.ok = f.ok && round < len(steps[0].every[0]) && linear(0, round) >= scaleLinearTarget
			}
		}
		out = append(out, f)
	}
	out = append(out, figure{measure: fmt.Sprintf("the bound: each replica %d calls of L=%s at once, %.0f results/s (Kombo allows %d)",
		p.scaleMax, p.scaleLatency, float64(p.scaleMax)/p.scaleLatency.Seconds(), unboundLimit(p)), daemon: "–", baseline: "–", info: true})
	return append(out, boundFigures(steps)...)
}

// sharedFigures is scenario 10: at each count, the ratio to N·L/limit and the share of
// calls rejected, every round judged.
func sharedFigures(p params, steps []stepRuns) []figure {
	bound := boundOf(p.nShared, p.scaleLatency, p.sharedLimit)
	var out []figure
	for _, st := range steps {
		n := st.every[0][0].spec.replicas
		ratioOf := func(r *runResult) float64 { return bound.Seconds() / r.elapsed.Seconds() }
		rejOf := func(r *runResult) float64 { all, _ := r.rejected(); return all }
		ratios := perRound(st, func(side, round int) (string, float64) {
			v := ratioOf(st.every[side][round])
			return fmt.Sprintf("%.3f", v), v
		})
		rejs := perRound(st, func(side, round int) (string, float64) {
			v := rejOf(st.every[side][round])
			return fmt.Sprintf("%.2f %%", 100*v), -v
		})
		out = append(out,
			figure{measure: fmt.Sprintf("%d replica(s): N·L/%d ÷ time, every round (N=%d; bound %.2fs)", n, p.sharedLimit, p.nShared, bound.Seconds()),
				daemon: ratios[0], baseline: ratios[1], target: fmt.Sprintf("≥ %.2f in every round", scaleBoundTarget),
				ok: everyRound(st, func(r *runResult) bool { return ratioOf(r) >= scaleBoundTarget })},
			figure{measure: fmt.Sprintf("%d replica(s): calls rejected (CONCURRENCY_LIMIT_EXCEEDED), every round", n),
				daemon: rejs[0], baseline: rejs[1], target: fmt.Sprintf("≤ %.0f %% in every round", 100*scaleRejectedTarget),
				ok: everyRound(st, func(r *runResult) bool { return rejOf(r) <= scaleRejectedTarget })})
	}
	failed := byCount(steps, "%.0f", func(r *runResult) float64 { return float64(r.failed) })
	out = append(out, figure{measure: "requests that ended failed (retries used up), by replica count, mean of the rounds",
		daemon: failed[0], baseline: failed[1], info: true})
	return append(out, boundFigures(steps)...)
}
