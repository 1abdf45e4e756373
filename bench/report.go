package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"
)

func verdict(f figure) string {
	switch {
	case f.info:
		return ""
	case f.ok:
		return "met"
	default:
		return "MISSED"
	}
}

// scenarioLabel is row i's scenario, or "" when the row above is of the same scenario.
func scenarioLabel(figs []figure, i int) string {
	if i > 0 && figs[i-1].scenario == figs[i].scenario {
		return ""
	}
	return figs[i].scenario
}

// renderTable is the table printed on stdout.
func renderTable(figs []figure) string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tmeasure\tdaemon\tbaseline\ttarget\t")
	for i, f := range figs {
		sc := scenarioLabel(figs, i)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", sc, f.measure, f.daemon, f.baseline, targetText(f), verdict(f))
	}
	tw.Flush()
	return sb.String()
}

func targetText(f figure) string {
	if f.info {
		return "–"
	}
	return f.target
}

// renderMarkdown is BENCHMARKS.md.
func renderMarkdown(p params, figs []figure, byID map[string][2]*runResult, sweeps map[string][]stepRuns, pics pictures, mdPath string, wall time.Duration) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("# Benchmarks\n\n")
	w("Written by `make bench` (`go run ./bench`); do not edit by hand. ")
	w("Each scenario runs the real `integration-deleter` binary (built by the bench, configured by environment, ")
	w("as a subprocess) and then, in the same run, a **plain baseline** (`bench/baseline.go`: nats.go `jetstream` ")
	w("`Consume`, a fixed semaphore, a per-worker exponential backoff of 100 ms…5 s with jitter on anything but a final ")
	w("answer, publish the result and wait for the PubAck, then ack), also a subprocess, against the same embedded NATS ")
	w("server (file storage; a fresh stream and durable consumer per run, `MAX_ACK_PENDING` 256) and a fresh fake Kombo ")
	w("(`kombo/kombotest`, in the bench's process, real HTTP on loopback) with the same settings. Time runs from the ")
	w("first publish to the last stored result; CPU is utime+stime of the measured process over that time ")
	w("(`/proc/<pid>/stat`), memory its peak RSS (`VmHWM`). The baseline runs as `bench baseline`, inside the bench's ")
	w("own binary, which also links the NATS server and the plotting library: its RSS carries a few MiB of code ")
	w("the daemon's does not.\n\n")

	w("## Machine\n\n")
	w("| | |\n| --- | --- |\n")
	w("| date | %s |\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	w("| CPUs (`nproc`) | %d |\n", runtime.NumCPU())
	w("| CPU | %s |\n", cpuModel())
	w("| Go | %s %s/%s |\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	w("| bench wall time | %s |\n\n", wall.Round(time.Second))

	w("## Results\n\n")
	w("| scenario | measure | daemon | baseline | target | |\n| --- | --- | --- | --- | --- | --- |\n")
	for i, f := range figs {
		sc := scenarioLabel(figs, i)
		v := verdict(f)
		if v == "met" {
			v = "✅ met"
		} else if v == "MISSED" {
			v = "❌ missed"
		}
		w("| %s | %s | %s | %s | %s | %s |\n", sc, f.measure, f.daemon, f.baseline, targetText(f), v)
	}
	w("\n")

	w("## Scenarios\n\n")
	w("1. **Bound**: N=%d, L=%s, Kombo allows C=%d calls at once, `KOMBO_MAX_CONCURRENCY=%d`. Ratio of the bound N·L/C to the time taken.\n",
		p.n, p.latency, p.limit, p.limit)
	w("2. **Adaptive**: Kombo allows %d at once (and says so in `Concurrency-Limit`), `KOMBO_MAX_CONCURRENCY=%d`. Share of calls rejected with "+
		"`CONCURRENCY_LIMIT_EXCEEDED` (over the run, and over calls made in its second half) and ratio to N·L/%d.\n",
		p.adaptiveLimit, p.adaptiveMax, p.adaptiveLimit)
	w("3. **Rate limit (ratelimit-\\* headers)**: Kombo admits %.0f calls/s (token bucket, burst %d), puts `ratelimit-limit` and "+
		"`ratelimit-remaining` on every DELETE answer and answers the calls beyond the bucket 429 with `ratelimit-reset` "+
		"(whole seconds, as Kombo documents). Calls that arrive inside an announced wait (later than %s after the 429 that announced it), "+
		"results per second (first publish to last result), and `RATE_LIMIT_EXCEEDED` answers per 1000 DELETE calls. N=%d, L=%s, `KOMBO_MAX_CONCURRENCY=%d`.\n",
		p.rate, p.burst, p.earlyGrace, p.nRate, p.latency, p.rateConc)
	w("4. **Overhead**: L=0, no limits, N=%d, `KOMBO_MAX_CONCURRENCY=%d` (the baseline's semaphore too). Results per second and CPU-seconds per 1000 requests; "+
		"the daemon logs one line per request (`LOG_LEVEL=info`, JSON) as in production, the baseline logs nothing; "+
		"the daemon also records each outcome in its ledger (three stored messages a request where the baseline stores one).\n", p.nOverhead, p.overheadConc)
	w("5. **Memory**: the daemon's peak RSS during scenarios 1 and 4.\n")
	w("6. **Two replicas** of the daemon on one durable consumer (and two baseline replicas), each `KOMBO_MAX_CONCURRENCY=%d`, Kombo allows %d, "+
		"N=%d, %d round(s), every one listed and judged: ratio to N·L/%d, share of calls rejected, and each replica's share of the deletions "+
		"(2xx DELETE answers; each replica calls the fake through a listener of its own, which tags its calls).\n",
		p.adaptiveMax, p.adaptiveLimit, p.n, max(p.rounds, 1), p.adaptiveLimit)
	{
		nShift := p.nShift
		if nShift <= 0 {
			nShift = shiftN(p)
		}
		w("7. **Limit shift**: Kombo's concurrency limit is %s, each for %s from the first publish (changed on the fake while it serves; "+
			"`Concurrency-Limit` on every answer tells the new value), L=%s, `KOMBO_MAX_CONCURRENCY=%d`, N=%d (1.1 × what the phases admit at their "+
			"limits, so that the backlog outlasts the last phase). Per phase: admitted calls in flight at the fake, time-weighted, ÷ the phase's limit; "+
			"calls rejected ÷ DELETE calls arriving in the phase; and the time from the fake's change to the first scrape (every 50 ms) of the daemon's cap "+
			"at the new limit.\n", limitsText(p.shiftLimits), p.shiftPhase, p.latency, p.shiftMax, nShift)
	}
	w("8. **Rate limit (Retry-After only)**: as 3, but the 429s carry only `Retry-After` (whole seconds, rounded up) and no answer carries " +
		"`ratelimit-*`. Calls inside an announced wait and results per second; refusals per 1000 DELETE calls as information.\n")
	w("%s\n", scaleOutText(p))

	w("## Noise\n\n")
	w("The machine is shared. Before each run the bench waits (up to a limit) until other work uses less than half a CPU; ")
	w("during each run it measures the CPU used by anything but the measured processes and the bench itself (NATS, fake Kombo). ")
	w("Scenarios 1 and 4 keep the best of %d interleaved rounds of each side; scenario 6 is judged in every round, and so are 9 and 10 (%d rounds, "+
		"the replica counts interleaved). Every round is listed.\n\n", max(p.rounds, 1), p.scaleRounds)
	w("| scenario | daemon: other load before / during (CPUs) | baseline: other load before / during (CPUs) |\n| --- | --- | --- |\n")
	for _, id := range []string{"1", "2", "3", "4", "6", "7", "8"} {
		if r, ok := byID[id]; ok {
			w("| %s | %.2f / %.2f | %.2f / %.2f |\n", id, r[0].quietLoad, r[0].otherLoad, r[1].quietLoad, r[1].otherLoad)
		}
	}
	for _, id := range []string{"9", "10", "11"} {
		if steps, ok := sweeps[id]; ok {
			w("| %s (highest of every run) | %s | %s |\n", id, worstLoads(steps, 0), worstLoads(steps, 1))
		} else if r, ok := byID[id]; ok {
			w("| %s | %.2f / %.2f | %.2f / %.2f |\n", id, r[0].quietLoad, r[0].otherLoad, r[1].quietLoad, r[1].otherLoad)
		}
	}
	w("\n")

	// picture writes a section headed "<what> in a picture" that shows png (when drawn), linked relative to the report.
	picture := func(png, id, caption, alt string) {
		if png == "" {
			return
		}
		rel, err := filepath.Rel(filepath.Dir(mdPath), png)
		if err != nil {
			rel = png
		}
		w("## %s in a picture\n\n%s\n\n![%s](%s)\n\n", id, caption, alt, filepath.ToSlash(rel))
	}
	if _, ok := byID["2"]; ok {
		picture(pics.adaptive, "Scenario 2", "The daemon's concurrency cap and calls in flight (from its `/metrics`, every 50 ms), above the baseline's calls in flight as Kombo saw them; "+
			"red crosses count the calls Kombo rejected per 100 ms.", "cap and calls in flight during scenario 2")
	}
	picture(pics.replicas, "Scenario 6", "Each replica's cap, their sum, and the sum of their calls in flight (from their `/metrics`, every 50 ms), "+
		"above the two baseline replicas' calls in flight as Kombo saw them.", "two replicas sharing Kombo's limit")
	picture(pics.shift, "Scenario 7", "The daemon's concurrency cap and calls in flight (from its `/metrics`, every 50 ms) with Kombo's limit as the bench changed it (dashed steps), "+
		"above the baseline's calls in flight as Kombo saw them; red crosses count the calls Kombo rejected per 100 ms.",
		"the daemon following Kombo's limit as it changes")
	picture(pics.scaleOut, "Scenarios 9 and 10", "Results per second by replica count: the daemon's and the baseline's, the mean of the rounds as a line and "+
		"each round as a ring, with linear scaling from the daemon's 1-replica rate (9) and the bound limit ÷ L (10) dashed.",
		"throughput by replica count")
	if notes := notesFor(); notes != "" {
		w("%s", notes)
	}
	w("## Reproduce\n\n")
	w("```sh\nmake bench                 # go run ./bench: all scenarios, writes BENCHMARKS.md and docs/bench-*.png\n")
	w("go run ./bench -short -scenarios 7 -v   # one scenario, small, with its progress\n")
	w("go run ./bench -short      # CI smoke run (small N; targets reported, not enforced)\n")
	w("go run ./bench -scenarios 4 -profile /tmp/prof   # CPU and allocation profiles of the daemon\n```\n")
	return b.String()
}

// scaleOutText describes scenarios 9, 10 and 11 in the report's list.
func scaleOutText(p params) string {
	return fmt.Sprintf("9. **Scale-out, unbound**: 1 … %d replicas of the daemon on one durable consumer (and as many baseline replicas), each "+
		"`KOMBO_MAX_CONCURRENCY=%d`, L=%s, Kombo's limit %d (four times what all replicas may call at once: it never binds), "+
		"%d requests per replica (so every run lasts about %s), %d rounds with the counts interleaved. Results per second at each count and "+
		"its ratio to linear: n × the 1-replica rate of the same round and side. The bound of each replica is C/L; the rows after the "+
		"figures say whether anything else bound the run (calls in flight at Kombo, the machine's busy CPUs).\n"+
		"10. **Scale-out, one shared limit**: as 9, but Kombo allows %d calls at once for all replicas together, N=%d at every count: "+
		"ratio to N·L/%d and the share of calls rejected, at every count in every round.\n"+
		"11. **Backlog**: %d requests published before %d replicas (each `KOMBO_MAX_CONCURRENCY=%d`, Kombo's limit not binding, L=%s) "+
		"start together; timed from their start to the last result. Throughput in the first and last 10 %% of the run (first result to "+
		"last) and each replica's RSS, sampled every 250 ms: its highest in the first and in the last 10 %%, and its peak (`VmHWM`).\n",
		p.scaleReplicas, p.scaleMax, p.scaleLatency, unboundLimit(p), p.nScale, boundOf(p.nScale, p.scaleLatency, p.scaleMax).Round(time.Millisecond),
		p.scaleRounds, p.sharedLimit, p.nShared, p.sharedLimit, p.nBacklog, backlogReplicas, p.scaleMax, p.scaleLatency)
}

// worstLoads is "before / during" of one side of a sweep: the highest other load of any run.
func worstLoads(steps []stepRuns, side int) string {
	quiet, other := 0.0, 0.0
	for _, st := range steps {
		for _, r := range st.every[side] {
			quiet, other = max(quiet, r.quietLoad), max(other, r.otherLoad)
		}
	}
	return fmt.Sprintf("%.2f / %.2f", quiet, other)
}

// notesFor returns the hand-written part of the report (what the profiles showed, what was
// changed), kept in bench/NOTES.md so that a new run keeps it.
func notesFor() string {
	root, err := moduleRoot()
	if err != nil {
		return ""
	}
	data, err := os.ReadFile(filepath.Join(root, "bench", "NOTES.md"))
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(data), "\n") + "\n\n"
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
