// Command bench is `make bench`: it measures integration-deleter against the bound Kombo sets
// (N·L/C, Little's law) and against a plain consumer written the usual way, in the same run.
//
// It starts an embedded NATS server (file storage), the fake Kombo in this process (real HTTP
// on loopback), builds the real integration-deleter binary and runs it as a subprocess
// configured by environment, publishes N requests and measures from the first publish to the
// last stored result. Each scenario then runs the baseline (bench/baseline.go, started as
// `bench baseline`, a subprocess too, so that its RSS and CPU are measured the same way) against
// a fresh stream and a fresh fake with the same settings. It prints a table, writes
// BENCHMARKS.md with pictures of scenarios 2, 6, 7 and 9–10 (docs/bench-adaptive.png,
// docs/bench-replicas.png, docs/bench-limit-shift.png, docs/bench-scale-out.png), and exits 1 when the daemon misses a
// target (not with -short, which only checks that the harness works; a run that does not
// finish fails either way).
//
//	go run ./bench                   the full run (make bench)
//	go run ./bench -short            a quick smoke run for CI
//	go run ./bench -short -scenarios 7 -v   one scenario, with its progress
//	go run ./bench -profile DIR      the daemon runs as `bench daemon` (daemon.Run, as the binary
//	                                 does) and both sides write CPU and allocation profiles to DIR
//	                                 (go tool pprof DIR/s4-daemon-1.cpu.pprof)
//	go run ./bench -daemon-bin FILE  measure a prebuilt binary, to compare two builds
package main

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "baseline":
			os.Exit(runBaseline(os.Args[2:]))
		case "daemon":
			os.Exit(runProfiledDaemon())
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stop()
		os.Exit(1)
	}
}

// errTargetsMissed is returned by a full run in which the daemon missed a target.
var errTargetsMissed = errors.New("the daemon missed a target")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `bench measures integration-deleter against Little's-law bounds and a plain baseline.

Usage: go run ./bench [flags]      (make bench)
       go run ./bench -short       (CI smoke: small N, targets reported, not enforced)

Scenarios:
  1 Bound                              Kombo allows C at once; N·L/C ÷ time
  2 Adaptive                           Kombo allows 4, says so in Concurrency-Limit; the daemon finds it
  3 Rate limit (ratelimit-* headers)   a token bucket announced by ratelimit-limit/-remaining/-reset
  4 Overhead                           L=0, no limits: results/s and CPU against the baseline
  5 Memory                             peak RSS during 1 and 4 (runs them)
  6 Two replicas                       two daemons share Kombo's limit of 4; every round judged
  7 Limit shift                        Kombo's limit changes mid-run (6, 2, 6); utilization per phase
  8 Rate limit (Retry-After only)      as 3, but 429s carry only Retry-After (whole seconds)
  9 Scale-out, unbound                 1…4 replicas, each C=16, Kombo's limit not binding: ÷ linear
 10 Scale-out, one shared limit        1…4 replicas on one limit of 8: ÷ N·L/8, rejected share
 11 Backlog                            100 000 requests drained by 3 replicas: steady rate, flat RSS

Flags:
`)
		fs.PrintDefaults()
	}
	var (
		p          params
		only       string
		mdPath     string
		pngPath    string
		profile    string
		keep       bool
		verbose    bool
		memLimMiB  float64
		quietWait  time.Duration
		roundsFlag int
		daemonBin  string
		shiftLims  string
	)
	fs.IntVar(&p.n, "n", 5000, "requests in scenarios 1, 2 and 6")
	fs.IntVar(&p.nRate, "n-rate", 5000, "requests in scenarios 3 and 8")
	fs.IntVar(&p.nOverhead, "n-overhead", 20000, "requests in scenario 4")
	fs.DurationVar(&p.latency, "l", 20*time.Millisecond, "latency L of each Kombo call (scenarios 1, 2, 3, 6, 7, 8)")
	fs.IntVar(&p.limit, "c", 8, "scenario 1: Kombo's concurrency limit C, and KOMBO_MAX_CONCURRENCY")
	fs.IntVar(&p.adaptiveLimit, "c-adaptive", 4, "scenarios 2 and 6: Kombo's concurrency limit")
	fs.IntVar(&p.adaptiveMax, "max-adaptive", 32, "scenarios 2 and 6: KOMBO_MAX_CONCURRENCY of each replica (and the baseline's semaphore)")
	fs.Float64Var(&p.rate, "rate", 50, "scenarios 3 and 8: Kombo's rate limit, calls per second")
	fs.IntVar(&p.burst, "burst", 10, "scenarios 3 and 8: the rate limit's burst")
	fs.IntVar(&p.rateConc, "c-rate", 8, "scenarios 3 and 8: KOMBO_MAX_CONCURRENCY (and the baseline's semaphore)")
	fs.IntVar(&p.overheadConc, "c-overhead", 8, "scenario 4: KOMBO_MAX_CONCURRENCY (and the baseline's semaphore)")
	fs.DurationVar(&p.earlyGrace, "early-grace", 5*time.Millisecond,
		"scenarios 3 and 8: a call arriving this soon after a 429 is not counted as inside the announced wait (it was sent before the 429 was read)")
	fs.StringVar(&shiftLims, "shift-limits", "6,2,6", "scenario 7: Kombo's concurrency limit in each phase, in order")
	fs.DurationVar(&p.shiftPhase, "shift-phase", 8*time.Second, "scenario 7: length of each phase, from the first publish (1s with -short)")
	fs.IntVar(&p.nShift, "n-shift", 0, "scenario 7: requests; 0 = 1.1 × what the phases admit at their limits (Σ phase·limit/L: 6160 by default, 770 with -short)")
	fs.IntVar(&p.shiftMax, "max-shift", 16, "scenario 7: KOMBO_MAX_CONCURRENCY (and the baseline's semaphore)")
	fs.IntVar(&p.scaleReplicas, "scale-replicas", 4, "scenarios 9 and 10: run with 1 … this many replicas")
	fs.IntVar(&p.scaleMax, "max-scale", 16, "scenarios 9–11: KOMBO_MAX_CONCURRENCY of each replica (and each baseline replica's semaphore)")
	fs.DurationVar(&p.scaleLatency, "l-scale", 20*time.Millisecond, "scenarios 9–11: latency L of each Kombo call")
	fs.IntVar(&p.nScale, "n-scale", 4000, "scenario 9: requests per replica (400 with -short)")
	fs.IntVar(&p.sharedLimit, "c-shared", 8, "scenario 10: Kombo's concurrency limit, shared by all replicas")
	fs.IntVar(&p.nShared, "n-shared", 4000, "scenario 10: requests (300 with -short)")
	fs.IntVar(&p.nBacklog, "n-backlog", 100000, "scenario 11: requests published before the replicas start (6000 with -short)")
	fs.IntVar(&p.scaleRounds, "rounds-scale", 3, "scenarios 9 and 10 run every replica count this many times, interleaved; every round is listed and judged (1 with -short)")
	fs.Float64Var(&memLimMiB, "mem-target", 25, "scenario 5: peak RSS target, MiB")
	fs.StringVar(&only, "scenarios", "1,2,3,4,5,6,7,8,9,10,11", "which scenarios to run (5 needs 1 and 4, and runs them)")
	fs.BoolVar(&p.short, "short", false, "CI smoke run: N=300 (scenarios 3 and 8: 100, scenario 4: 1000), scenario 7's phases 1s, 1 round; targets reported, not enforced; writes no files unless -md/-png are given")
	fs.StringVar(&mdPath, "md", "", "write the report here (default BENCHMARKS.md in a full run, nothing with -short)")
	fs.StringVar(&pngPath, "png", "", "write scenario 2's picture here, and those of 6, 7 and 9–10 next to it as bench-replicas.png, bench-limit-shift.png and bench-scale-out.png (default docs/bench-adaptive.png in a full run, nothing with -short)")
	fs.StringVar(&profile, "profile", "", "run the daemon in-process as \"bench daemon\" and write CPU and allocation profiles of each replica into this `dir`")
	fs.IntVar(&roundsFlag, "rounds", 5, "scenarios 1, 4 and 6 run daemon and baseline this many times, interleaved, and list every round; 1 and 4 are judged on each one's best run (the least disturbed by other work on the machine), 6 on every round; 1 with -short")
	fs.DurationVar(&quietWait, "quiet-wait", 2*time.Minute, "before each run, wait up to this long for the machine to be nearly idle (other work < 0.5 CPU); 0 = do not wait (the default with -short)")
	fs.StringVar(&daemonBin, "daemon-bin", "", "run this integration-deleter binary instead of building one (to compare builds)")
	fs.BoolVar(&keep, "keep", false, "keep the work directory (logs of every process, NATS store)")
	fs.BoolVar(&verbose, "v", false, "print progress")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	p.memLimit = uint64(memLimMiB * (1 << 20))
	var err error
	if p.shiftLimits, err = parseLimits(shiftLims); err != nil {
		return err
	}
	p.boundTarget, p.adaptTarget = 0.95, 0.9
	set := map[string]bool{}
	for f := range strings.SplitSeq(only, ",") {
		if f = strings.TrimSpace(f); f != "" {
			set[f] = true
		}
	}
	if set["5"] {
		set["1"], set["4"] = true, true
	}
	if p.short {
		if !flagGiven(fs, "quiet-wait") {
			quietWait = 0
		}
		if !flagGiven(fs, "rounds") {
			roundsFlag = 1
		}
		if !flagGiven(fs, "n") {
			p.n = 300
		}
		if !flagGiven(fs, "n-rate") {
			p.nRate = 100
		}
		if !flagGiven(fs, "n-overhead") {
			p.nOverhead = 1000
		}
		if !flagGiven(fs, "shift-phase") {
			p.shiftPhase = time.Second
		}
		shortDefault(fs, "n-scale", &p.nScale, 400)
		shortDefault(fs, "n-shared", &p.nShared, 300)
		shortDefault(fs, "n-backlog", &p.nBacklog, 6000)
		shortDefault(fs, "rounds-scale", &p.scaleRounds, 1)
	} else {
		if !flagGiven(fs, "md") {
			mdPath = "BENCHMARKS.md"
		}
		if !flagGiven(fs, "png") {
			pngPath = "docs/bench-adaptive.png"
		}
	}
	p.rounds = max(roundsFlag, 1)
	p.scaleRounds = max(p.scaleRounds, 1)
	if p.scaleReplicas < 1 || p.scaleMax < 1 || p.sharedLimit < 1 || p.scaleLatency <= 0 {
		return errors.New("-scale-replicas, -max-scale and -c-shared must be ≥ 1, -l-scale positive")
	}
	if p.shiftPhase <= 0 {
		return errors.New("-shift-phase must be positive")
	}
	if profile != "" {
		if err := os.MkdirAll(profile, 0o755); err != nil {
			return err
		}
	}

	started := time.Now()
	e, err := newEnv(ctx, profile, daemonBin, verbose)
	if err != nil {
		return err
	}
	defer e.close(keep)
	if keep {
		fmt.Fprintln(stderr, "work directory:", e.dir)
	}

	var (
		figures []figure
		byID    = map[string][2]*runResult{}
		sweeps  = map[string][]stepRuns{}
		runErrs []error
	)
	for _, s := range scenarios(p) {
		if !set[s.id] {
			continue
		}
		steps, errs := e.runScenario(ctx, s, quietWait, verbose, stderr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		runErrs = append(runErrs, errs...)
		var figs []figure
		if s.judgeSteps != nil {
			sweeps[s.id] = steps
			figs = s.judgeSteps(steps)
		} else {
			byID[s.id] = steps[0].best
			figs = s.judge(steps[0].best[0], steps[0].best[1], steps[0].every)
		}
		if s.id == "1" {
			figs = append(figs, ceilingFigure(ctx, p, max(s.rounds, 1), quietWait, stderr))
		}
		for _, f := range figs {
			f.scenario = s.id + " " + s.title
			figures = append(figures, f)
		}
	}
	if set["5"] {
		for _, f := range memoryFigures(p, byID) {
			f.scenario = "5 Memory"
			figures = append(figures, f)
		}
	}
	slices.SortStableFunc(figures, func(a, b figure) int { return cmp.Compare(scenarioNumber(a), scenarioNumber(b)) })

	table := renderTable(figures)
	fmt.Fprintln(stdout)
	fmt.Fprint(stdout, table)
	wall := time.Since(started)
	fmt.Fprintf(stdout, "\nbench wall time: %s\n", wall.Round(time.Second))

	pics, err := drawPictures(pngPath, p, byID, sweeps, stdout)
	if err != nil {
		return fmt.Errorf("picture: %w", err)
	}
	if mdPath != "" {
		md := renderMarkdown(p, figures, byID, sweeps, pics, mdPath, wall)
		if err := os.WriteFile(mdPath, []byte(md), 0o644); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "wrote", mdPath)
	}
	if err := errors.Join(runErrs...); err != nil {
		return err // a run that did not finish is a broken harness, also with -short
	}
	missed := 0
	for _, f := range figures {
		if !f.info && !f.ok {
			missed++
		}
	}
	if missed > 0 {
		if p.short {
			fmt.Fprintf(stdout, "%d target(s) missed (not enforced with -short)\n", missed)
			return nil
		}
		return fmt.Errorf("%w: %d target(s)", errTargetsMissed, missed)
	}
	return nil
}

// pictures are the paths of the pictures drawn; "" for one not drawn.
type pictures struct {
	adaptive, replicas, shift, scaleOut string
}

// drawPictures draws scenario 2's picture at pngPath and those of 6, 7 and 9–10 next to it,
// each when its scenario ran; with pngPath "" none.
func drawPictures(pngPath string, p params, byID map[string][2]*runResult, sweeps map[string][]stepRuns, stdout io.Writer) (pictures, error) {
	var pics pictures
	if pngPath == "" {
		return pics, nil
	}
	next := func(name string) string { return filepath.Join(filepath.Dir(pngPath), name) }
	draw := func(at *string, path string, ok bool, plot func(string) error) error {
		if !ok {
			return nil
		}
		if err := plot(path); err != nil {
			return err
		}
		*at = path
		fmt.Fprintln(stdout, "wrote", path)
		return nil
	}
	withSamples := func(id string) ([2]*runResult, bool) { r, ok := byID[id]; return r, ok && len(r[0].samples) > 0 }
	r2, ok2 := withSamples("2")
	r6, ok6 := withSamples("6")
	r7, ok7 := withSamples("7")
	return pics, errors.Join(
		draw(&pics.adaptive, pngPath, ok2, func(path string) error { return plotAdaptive(path, r2[0], r2[1], p) }),
		draw(&pics.replicas, next("bench-replicas.png"), ok6, func(path string) error { return plotReplicas(path, r6[0], r6[1], p) }),
		draw(&pics.shift, next("bench-limit-shift.png"), ok7, func(path string) error { return plotLimitShift(path, r7[0], r7[1], p) }),
		draw(&pics.scaleOut, next("bench-scale-out.png"), len(sweeps["9"])+len(sweeps["10"]) > 0,
			func(path string) error { return plotScaleOut(path, sweeps["9"], sweeps["10"], p) }),
	)
}

// runScenario runs every step of s, daemon then baseline, rounds times, interleaved, each
// after the machine has quietened (up to quietWait), and prints each run's figures.
func (e *env) runScenario(ctx context.Context, s scenario, quietWait time.Duration, verbose bool, stderr io.Writer) ([]stepRuns, []error) {
	pairs := s.pairs()
	steps := make([]stepRuns, len(pairs))
	var errs []error
	rounds := max(s.rounds, 1)
	for round := range rounds {
		for k, pair := range pairs {
			for i, spec := range pair {
				if ctx.Err() != nil {
					return steps, errs
				}
				quiet := 0.0
				if quietWait > 0 {
					quiet = waitQuiet(ctx, quietWait)
				}
				label := ""
				if len(pairs) > 1 {
					label += fmt.Sprintf(", %d replica(s)", spec.replicas)
				}
				if rounds > 1 {
					label += fmt.Sprintf(" round %d/%d", round+1, rounds)
				}
				fmt.Fprintf(stderr, "scenario %s (%s): %s, N=%d%s …", s.id, s.title, spec.kind, spec.n, label)
				r := e.run(ctx, spec)
				r.quietLoad = quiet
				fmt.Fprintf(stderr, " %.2fs, %d results, %.0f/s, CPU %.2fs, peak RSS %s; other load %.2f CPUs, all %.2f\n",
					r.elapsed.Seconds(), r.results, r.perSecond(), r.cpuTotal(), mib(r.rssMax()), r.otherLoad, r.machineBusy)
				if verbose {
					fmt.Fprintf(stderr, "  %s\n", r.diagnostics())
					if len(r.samples) > 0 || len(r.phaseAt) > 0 {
						fmt.Fprintln(stderr, r.capHistory())
					}
				}
				if r.err != nil {
					fmt.Fprintf(stderr, "  error: %v\n", r.err)
					errs = append(errs, fmt.Errorf("scenario %s %s: %w", s.id, spec.kind, r.err))
				}
				steps[k].best[i] = better(steps[k].best[i], r)
				steps[k].every[i] = append(steps[k].every[i], r)
			}
		}
	}
	return steps, errs
}

// shortDefault sets *v to short unless the flag was given.
func shortDefault(fs *flag.FlagSet, name string, v *int, short int) {
	if !flagGiven(fs, name) {
		*v = short
	}
}

// scenarioNumber is the number a figure's scenario begins with ("10 Scale-out…" → 10).
func scenarioNumber(f figure) int {
	id, _, _ := strings.Cut(f.scenario, " ")
	n, _ := strconv.Atoi(id)
	return n
}

func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			given = true
		}
	})
	return given
}

// runProfiledDaemon is `bench daemon`: the daemon exactly as cmd/integration-deleter runs it
// (config from the environment, daemon.Run), with a CPU profile over the whole run and an
// allocation profile at the end, written to $BENCH_PROFILE.cpu.pprof and .allocs.pprof.
func runProfiledDaemon() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := config.Load(os.LookupEnv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench daemon:", err)
		return 2
	}
	if base := os.Getenv("BENCH_PROFILE"); base != "" {
		defer startProfiles(base)()
	}
	log := daemon.NewLogger(cfg, os.Stderr)
	if err := daemon.Run(ctx, cfg, daemon.Options{Version: "bench", Logger: log}); err != nil {
		log.Error("daemon failed", "err", err)
		return 1
	}
	return 0
}

// better returns the better of two runs of the same kind: one without error, then the faster;
// its peak RSS is the highest of both (memory is judged over every run) and its CPU the
// lowest per result.
func better(a, b *runResult) *runResult {
	if a == nil {
		return b
	}
	best, other := a, b
	if (b.err == nil && a.err != nil) || (b.err == nil) == (a.err == nil) && b.elapsed < a.elapsed {
		best, other = b, a
	}
	out := *best
	out.rss = slices.Clone(best.rss)
	for i := range min(len(out.rss), len(other.rss)) {
		out.rss[i] = max(out.rss[i], other.rss[i])
	}
	if other.err == nil && other.results > 0 && best.results > 0 &&
		other.cpuTotal()/float64(other.results) < best.cpuTotal()/float64(best.results) {
		out.cpu = other.cpu
		out.results = other.results
	}
	return &out
}

// ceilingFigure measures scenario 1 without NATS (see ceiling), best of rounds.
func ceilingFigure(ctx context.Context, p params, rounds int, quietWait time.Duration, stderr io.Writer) figure {
	bound := boundOf(p.n, p.latency, p.limit)
	var best, mean time.Duration
	for range rounds {
		if quietWait > 0 {
			waitQuiet(ctx, quietWait)
		}
		el, m, err := ceiling(ctx, p.n, p.limit, kombotest.Options{Latency: p.latency, ConcurrencyLimit: p.limit})
		if err != nil {
			fmt.Fprintf(stderr, "ceiling: %v\n", err)
			continue
		}
		fmt.Fprintf(stderr, "scenario 1 (Bound): HTTP-only ceiling … %.2fs, mean call at Kombo %.2fms\n", el.Seconds(), float64(m)/1e6)
		if best == 0 || el < best {
			best, mean = el, m
		}
	}
	f := figure{measure: fmt.Sprintf("ceiling: %d goroutines calling the fake with the daemon's Kombo client, no NATS (mean call at Kombo %.2f ms)",
		p.limit, float64(mean)/1e6), daemon: "–", baseline: "–", info: true}
	if best > 0 {
		f.daemon = fmt.Sprintf("%.3f", bound.Seconds()/best.Seconds())
		f.baseline = f.daemon
	}
	return f
}

// startProfiles starts a CPU profile written to base.cpu.pprof; the function it returns
// stops it and writes the allocations to base.allocs.pprof. Errors are reported on stderr.
func startProfiles(base string) (stop func()) {
	f, err := os.Create(base + ".cpu.pprof")
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: profile:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		var buf bytes.Buffer
		runtime.GC()
		if err := pprof.Lookup("allocs").WriteTo(&buf, 0); err == nil {
			_ = os.WriteFile(base+".allocs.pprof", buf.Bytes(), 0o644)
		}
	}
}
