package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// env is what every run shares: the embedded NATS server, a connection to it, the daemon's
// binary, a work directory.
type env struct {
	dir     string // temporary work directory (logs, NATS store, binary)
	nats    *daemon.Embedded
	nc      *nats.Conn
	js      jetstream.JetStream
	daemon  []string // argv prefix that runs the daemon
	self    string   // this program, for `bench baseline`
	profile string   // directory for daemon CPU and heap profiles; "" = none
	verbose bool
	runs    int
}

func newEnv(ctx context.Context, profile, daemonBin string, verbose bool) (*env, error) {
	dir, err := os.MkdirTemp("", "integration-deleter-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{dir: dir, profile: profile, verbose: verbose}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	e.self = self
	switch {
	case profile != "":
		// The same daemon.Run as the binary, inside this program, with pprof around it.
		e.daemon = []string{self, "daemon"}
	case daemonBin != "":
		e.daemon = []string{daemonBin}
	default:
		bin := filepath.Join(dir, "integration-deleter")
		root, err := moduleRoot()
		if err != nil {
			return nil, err
		}
		build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=bench",
			"-o", bin, "./cmd/integration-deleter")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build ./cmd/integration-deleter: %v\n%s", err, out)
		}
		e.daemon = []string{bin}
	}
	storeDir := filepath.Join(dir, "nats")
	e.nats, err = daemon.StartEmbedded("nats://127.0.0.1:0", storeDir, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	e.nc, err = nats.Connect(e.nats.ClientURL(), nats.Name("bench"))
	if err != nil {
		return nil, err
	}
	e.js, err = jetstream.New(e.nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	return e, nil
}

func (e *env) close(keep bool) {
	if e.nc != nil {
		e.nc.Close()
	}
	if e.nats != nil {
		e.nats.Shutdown()
	}
	if !keep {
		_ = os.RemoveAll(e.dir)
	}
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory: run the bench from the repository")
		}
		dir = parent
	}
}

// runSpec is one measured run: the daemon or the baseline, with its replicas, against a fresh
// fake Kombo and a fresh stream.
type runSpec struct {
	scenario string
	kind     string // "daemon" or "baseline"
	replicas int
	n        int
	maxConc  int // KOMBO_MAX_CONCURRENCY, or the baseline's semaphore
	fake     kombotest.Options
	scrape   bool          // sample the daemons' cap and calls in flight
	timeout  time.Duration // for all results
	// phases, when set, change the fake's concurrency limit during the run: phase i starts
	// phases[i].at after the first publish (the first phase at 0, whose limit is
	// fake.ConcurrencyLimit). The last phase is measured until phasesEnd (or the end of the
	// run); the run goes on at the last limit until every result is in.
	phases    []phase
	phasesEnd time.Duration
	// backlog publishes all N requests before the replicas start (together); the run is
	// then timed from their start. Otherwise the replicas start first and the run is timed
	// from the first publish.
	backlog   bool
	sampleRSS bool // sample each replica's RSS every 250 ms
}

// phase is a stretch of a run with one concurrency limit at the fake.
type phase struct {
	at    time.Duration
	limit int
}

// replicaHeader tags each call to the fake with the replica that made it: every replica
// calls the fake through a listener of its own, which adds this header to the request (the
// fake records request headers; the API key it records is redacted).
const replicaHeader = "X-Bench-Replica"

// codeConcurrency is error.code of the fake's answer to a call beyond its concurrency limit.
const codeConcurrency = "PLATFORM.CONCURRENCY_LIMIT_EXCEEDED"

// call is what the bench keeps of each call the fake answered.
type call struct {
	start, end time.Time
	status     int
	code       string
	early      bool
	replica    int // 0-based: which replica made the call
}

// sample is one scrape of one daemon replica's metrics.
type sample struct {
	t        float64 // seconds since the first publish
	replica  int
	cap      float64
	inFlight float64
}

// runResult is what one run measured.
type runResult struct {
	spec        runSpec
	elapsed     time.Duration // first publish to last stored result
	results     int           // distinct results seen
	stored      uint64        // results stored in the stream (checked after the run)
	failed      int
	stats       kombotest.Stats
	calls       []call
	t0          time.Time
	cpu         []float64 // CPU-seconds per replica between the first publish and the last result
	rss         []uint64  // peak RSS per replica (VmHWM)
	samples     []sample
	resultAt    []time.Time // when each distinct result was seen, in order
	rssSamples  []rssSample
	phaseAt     []float64 // seconds since the first publish at which each phase began (the fake's limit changed)
	err         error
	profileAt   string
	quietLoad   float64 // CPUs busy on the machine just before the run
	otherLoad   float64 // CPUs busy during the run with work that is neither measured nor the bench's
	machineBusy float64 // CPUs busy during the run, all work on the machine
}

// rssSample is one reading of one replica's resident set size.
type rssSample struct {
	t       float64 // seconds since the run's start
	replica int
	rss     uint64
}

func (r *runResult) cpuTotal() float64 {
	s := 0.0
	for _, c := range r.cpu {
		s += c
	}
	return s
}

func (r *runResult) rssMax() uint64 {
	var m uint64
	for _, v := range r.rss {
		m = max(m, v)
	}
	return m
}

func (r *runResult) perSecond() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.results) / r.elapsed.Seconds()
}

// rejected returns the share of DELETE calls answered CONCURRENCY_LIMIT_EXCEEDED, over the run
// and over its second half (calls that arrived after the middle of the run).
func (r *runResult) rejected() (all, secondHalf float64) {
	mid := r.t0.Add(r.elapsed / 2)
	var n, rej, n2, rej2 int
	for _, c := range r.calls {
		isRej := c.code == codeConcurrency
		n++
		if isRej {
			rej++
		}
		if c.start.After(mid) {
			n2++
			if isRej {
				rej2++
			}
		}
	}
	return ratio(rej, n), ratio(rej2, n2)
}

func ratio(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// run performs one measured run.
func (e *env) run(ctx context.Context, s runSpec) (res *runResult) {
	res = &runResult{spec: s}
	e.runs++
	w := runNames{tag: fmt.Sprintf("s%s-%s", s.scenario, s.kind), prefix: fmt.Sprintf("bench.%d.%s", e.runs, s.kind),
		stream: fmt.Sprintf("BENCH_%d_%s", e.runs, s.kind)}
	var mu sync.Mutex // guards what the callbacks fill in: calls, results, samples
	fake, komboURLs, calls, stopFake, err := startFake(s, &mu)
	defer stopFake()
	if err != nil {
		res.err = err
		return res
	}
	str, err := e.createStream(ctx, w)
	defer func() {
		_ = e.js.DeleteStream(context.Background(), w.stream)
		_ = e.js.DeleteKeyValue(context.Background(), w.stream+"_LEDGER")
	}()
	if err != nil {
		res.err = err
		return res
	}
	results, err := e.watchResults(s, w, &mu)
	if err != nil {
		res.err = err
		return res
	}
	defer results.stop()

	// A backlog is published before the replicas start; otherwise the replicas wait,
	// ready, for the first publish.
	if s.backlog {
		if res.err = e.publish(s, w); res.err != nil {
			return res
		}
	}
	t0 := time.Now()
	cpu0 := make([]float64, s.replicas) // a backlog's replicas are measured from their start
	procs, err := e.startReplicas(ctx, s, w, komboURLs, res)
	defer func() {
		for _, p := range procs {
			if err := p.stop(15 * time.Second); err != nil && res.err == nil && !isSignalExit(err) {
				res.err = fmt.Errorf("%s exit: %w\n%s", p.name, err, p.tail(10))
			}
		}
	}()
	if err != nil {
		res.err = err
		return res
	}
	if !s.backlog {
		for i, p := range procs {
			cpu0[i], _ = cpuSeconds(p.pid())
		}
	}
	self0, _ := cpuSeconds(os.Getpid())
	machine0, _, _ := machineTicks()
	if !s.backlog {
		t0 = time.Now()
	}
	res.t0 = t0
	watchers := e.watch(ctx, s, res, procs, fake, &mu)
	if !s.backlog {
		if err := e.publish(s, w); err != nil {
			res.err = err
			watchers.stop()
			return res
		}
	}
	select {
	case <-results.allIn:
	case <-time.After(s.timeout):
		res.err = fmt.Errorf("timed out after %s", s.timeout)
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	mu.Lock()
	res.results, res.failed, res.resultAt = len(results.seen), results.failed, results.at
	mu.Unlock()
	end := t0
	if n := len(res.resultAt); n > 0 {
		end = res.resultAt[n-1]
	}
	res.elapsed = end.Sub(t0)
	for i, p := range procs {
		c, _ := cpuSeconds(p.pid())
		res.cpu = append(res.cpu, c-cpu0[i])
		rss, _ := peakRSS(p.pid())
		res.rss = append(res.rss, rss)
	}
	self1, _ := cpuSeconds(os.Getpid())
	machine1, _, _ := machineTicks()
	if wall := time.Since(t0).Seconds(); wall > 0 {
		res.machineBusy = (machine1 - machine0) / wall
		// Everything busy on the machine but the measured processes and the bench (NATS, fake).
		res.otherLoad = max(0, (machine1-machine0)-(self1-self0)-res.cpuTotal()) / wall
	}
	res.err = errors.Join(res.err, watchers.stop())
	res.err = errors.Join(res.err, res.checkStored(str, w, s.n))
	mu.Lock()
	res.stats = fake.Stats()
	res.calls = *calls
	mu.Unlock()
	return res
}

// runNames are the names one run uses in NATS.
type runNames struct {
	tag, prefix, stream string
}

func (w runNames) requested() string { return w.prefix + ".requested" }
func (w runNames) deleted() string   { return w.prefix + ".deleted" }
func (w runNames) failed() string    { return w.prefix + ".failed" }

const durable = "integration-deleter"

// startFake starts a fresh fake Kombo that records each DELETE compactly into calls (under
// mu), and one listener per replica serving it, so that each call says which replica made
// it (replicaHeader). stop closes them all, also after an error.
func startFake(s runSpec, mu *sync.Mutex) (fake *kombotest.Fake, urls []string, calls *[]call, stop func(), err error) {
	fake = kombotest.New(withMaxCalls(s.fake))
	recorded := make([]call, 0, s.n*2)
	fake.OnCall(func(c kombotest.Call) {
		if c.Method != http.MethodDelete {
			return
		}
		rep, _ := strconv.Atoi(c.Header.Get(replicaHeader))
		mu.Lock()
		recorded = append(recorded, call{start: c.Start, end: c.End, status: c.Status, code: c.Code, early: c.EarlyForRateLimit,
			replica: max(rep-1, 0)})
		mu.Unlock()
	})
	stops := []func(){fake.Close}
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	for i := range s.replicas {
		tag := strconv.Itoa(i + 1)
		url, stopListener, err := kombotest.Serve("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set(replicaHeader, tag)
			fake.ServeHTTP(w, r)
		}))
		if err != nil {
			return fake, nil, &recorded, stop, err
		}
		stops = append(stops, stopListener)
		urls = append(urls, url)
	}
	return fake, urls, &recorded, stop, nil
}

// createStream creates a fresh stream and durable consumer, the same for the daemon and the
// baseline. Each run has a ledger of its own too (request ids repeat across rounds), which the
// daemon creates; the caller deletes both.
func (e *env) createStream(ctx context.Context, w runNames) (jetstream.Stream, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	scfg := jetstream.StreamConfig{
		Name: w.stream, Subjects: []string{w.prefix + ".>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Duplicates: 20 * time.Minute,
	}
	str, err := e.js.CreateStream(cctx, scfg)
	for try := 1; err != nil && try < 3 && cctx.Err() == nil; try++ {
		// The embedded server has refused, rarely, to create a stream's store right
		// after the previous run's stream and ledger were deleted (seen once in CI):
		// try again rather than lose the whole run.
		fmt.Fprintf(os.Stderr, "bench: create stream %s: %v; trying again\n", w.stream, err)
		time.Sleep(500 * time.Millisecond)
		str, err = e.js.CreateStream(cctx, scfg)
	}
	if err != nil {
		return nil, fmt.Errorf("create stream: %w", err)
	}
	if _, err := str.CreateConsumer(cctx, jetstream.ConsumerConfig{
		Durable: durable, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 256, FilterSubject: w.requested(),
	}); err != nil {
		return nil, fmt.Errorf("create consumer: %w", err)
	}
	return str, nil
}

// startReplicas starts every replica, then waits until each is ready: they start together,
// which matters when a backlog is waiting. Each process is in procs, also after an error.
func (e *env) startReplicas(ctx context.Context, s runSpec, w runNames, komboURLs []string, res *runResult) (procs []*proc, err error) {
	var ready []string // a baseline's ready file; "" for a daemon (its /readyz)
	for i := range s.replicas {
		name := fmt.Sprintf("%s-%d", w.tag, i+1)
		logPath := filepath.Join(e.dir, name+".log")
		var argv, envv []string
		readyFile, httpAddr := "", ""
		if s.kind == "daemon" {
			if httpAddr, err = testkit.FreeAddr(); err != nil {
				return procs, err
			}
			argv, envv = e.daemon, daemonEnv(s, w, komboURLs[i], e.nats.ClientURL(), httpAddr)
		} else {
			readyFile = filepath.Join(e.dir, name+".ready")
			argv = []string{e.self, "baseline", "-nats", e.nats.ClientURL(), "-stream", w.stream, "-consumer", durable,
				"-deleted", w.deleted(), "-failed", w.failed(), "-kombo", komboURLs[i], "-c", strconv.Itoa(s.maxConc),
				"-ready-file", readyFile}
		}
		if e.profile != "" {
			res.profileAt = filepath.Join(e.profile, name) // the last replica's
			envv = append(envv, "BENCH_PROFILE="+res.profileAt)
		}
		p, err := startProc(name, argv, envv, logPath)
		if err != nil {
			return procs, err
		}
		if httpAddr != "" {
			p.httpURL = "http://" + httpAddr
		}
		procs = append(procs, p)
		ready = append(ready, readyFile)
	}
	for i, p := range procs {
		if err := p.waitReady(ctx, ready[i], 30*time.Second); err != nil {
			return procs, err
		}
	}
	return procs, nil
}

// daemonEnv is the environment of one daemon replica.
func daemonEnv(s runSpec, w runNames, komboURL, natsURL, httpAddr string) []string {
	return []string{
		"KOMBO_API_KEY=bench", "KOMBO_BASE_URL=" + komboURL,
		"KOMBO_MAX_CONCURRENCY=" + strconv.Itoa(s.maxConc),
		"NATS_URL=" + natsURL,
		"STREAM_NAME=" + w.stream, "STREAM_SUBJECTS=" + w.prefix + ".>", "CONSUMER_NAME=" + durable,
		"REQUEST_SUBJECT=" + w.requested(), "DELETED_SUBJECT=" + w.deleted(), "FAILED_SUBJECT=" + w.failed(),
		"LEDGER_BUCKET=" + w.stream + "_LEDGER",
		// The bench measures admission; DELETE_FUSE's default (1000/1h) would pause
		// the daemon within the first scenario.
		"DELETE_FUSE=off",
		"HTTP_ADDR=" + httpAddr, "LOG_LEVEL=info", "LOG_FORMAT=json", "SHUTDOWN_TIMEOUT=10s",
	}
}

// resultWatch counts the distinct request ids seen on the result subjects.
type resultWatch struct {
	seen   map[string]bool
	at     []time.Time // when each distinct result was seen, in order
	failed int
	allIn  chan struct{}
	stop   func()
}

// watchResults subscribes to the run's result subjects; its fields are guarded by mu.
func (e *env) watchResults(s runSpec, w runNames, mu *sync.Mutex) (*resultWatch, error) {
	rw := &resultWatch{seen: make(map[string]bool, s.n), at: make([]time.Time, 0, s.n), allIn: make(chan struct{}), stop: func() {}}
	sub, err := e.nc.Subscribe(w.prefix+".*", func(m *nats.Msg) {
		if m.Subject == w.requested() {
			return
		}
		var r struct {
			RequestID string `json:"request_id"`
			Status    string `json:"status"`
		}
		if json.Unmarshal(m.Data, &r) != nil {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if rw.seen[r.RequestID] {
			return
		}
		rw.seen[r.RequestID] = true
		rw.at = append(rw.at, now)
		if r.Status != "deleted" {
			rw.failed++
		}
		if len(rw.seen) == s.n {
			close(rw.allIn)
		}
	})
	if err != nil {
		return nil, err
	}
	rw.stop = func() { _ = sub.Unsubscribe() }
	_ = sub.SetPendingLimits(-1, -1)
	if err := e.nc.Flush(); err != nil {
		rw.stop()
		return nil, err
	}
	return rw, nil
}

// publish publishes N requests as fast as JetStream takes them.
func (e *env) publish(s runSpec, w runNames) error {
	for i := range s.n {
		data := fmt.Appendf(nil, `{"integration_id":"personio:bench-%06d","request_id":"%s-%06d","requested_by":"bench","reason":"benchmark"}`, i, w.tag, i)
		if _, err := e.js.PublishAsync(w.requested(), data); err != nil {
			return fmt.Errorf("publish: %w", err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
		return nil
	case <-time.After(time.Minute + time.Duration(s.n)*time.Millisecond):
		return errors.New("publishing timed out")
	}
}

// watchers are the goroutines that watch a run while it goes: scrapes of the daemons'
// metrics, samples of their RSS, the fake's limit changes. stop ends them and returns what
// went wrong.
type watchers struct {
	done chan struct{}
	wg   sync.WaitGroup
	err  error // under the run's mu
	mu   *sync.Mutex
}

func (ws *watchers) stop() error {
	close(ws.done)
	ws.wg.Wait()
	ws.mu.Lock()
	defer ws.mu.Unlock()
	return ws.err
}

// every calls f every d until the watchers stop.
func (ws *watchers) every(d time.Duration, f func()) {
	ws.wg.Go(func() {
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			f()
			select {
			case <-ws.done:
				return
			case <-tick.C:
			}
		}
	})
}

// watch starts what s asks to watch during the run: the daemons' cap and calls in flight
// (every 50 ms), the replicas' RSS (every 250 ms), the fake's limit at the phases' times.
func (e *env) watch(ctx context.Context, s runSpec, res *runResult, procs []*proc, fake *kombotest.Fake, mu *sync.Mutex) *watchers {
	ws := &watchers{done: make(chan struct{}), mu: mu}
	since := func() float64 { return time.Since(res.t0).Seconds() }
	if s.scrape && s.kind == "daemon" {
		for i, p := range procs {
			ws.every(50*time.Millisecond, func() {
				m, err := testkit.ScrapeMetrics(ctx, p.httpURL+"/metrics")
				if err != nil {
					return
				}
				capNow, _ := m.Sum("integration_deleter_concurrency_cap")
				inFlight, _ := m.Sum("integration_deleter_kombo_calls_in_flight")
				mu.Lock()
				res.samples = append(res.samples, sample{t: since(), replica: i, cap: capNow, inFlight: inFlight})
				mu.Unlock()
			})
		}
	}
	if s.sampleRSS {
		ws.every(250*time.Millisecond, func() {
			for i, p := range procs {
				if rss, err := currentRSS(p.pid()); err == nil {
					mu.Lock()
					res.rssSamples = append(res.rssSamples, rssSample{t: since(), replica: i, rss: rss})
					mu.Unlock()
				}
			}
		})
	}
	if len(s.phases) > 0 {
		res.phaseAt = []float64{0}
		ws.wg.Go(func() { ws.shiftLimits(s.phases, res, fake) })
	}
	return ws
}

// shiftLimits changes the fake's concurrency limit at the phases' times.
func (ws *watchers) shiftLimits(phases []phase, res *runResult, fake *kombotest.Fake) {
	for _, ph := range phases[1:] {
		select {
		case <-ws.done:
			return
		case <-time.After(time.Until(res.t0.Add(ph.at))):
		}
		err := fake.Update(func(o *kombotest.Options) { o.ConcurrencyLimit = ph.limit })
		at := time.Since(res.t0).Seconds()
		ws.mu.Lock()
		if err != nil {
			ws.err = fmt.Errorf("set the fake's limit to %d: %w", ph.limit, err)
		} else {
			res.phaseAt = append(res.phaseAt, at)
		}
		ws.mu.Unlock()
	}
}

// checkStored sets r.stored to the results stored in the stream and says whether each of
// the n requests has exactly one. (A subscriber may see the last results a moment before the
// stream has stored them.)
func (r *runResult) checkStored(str jetstream.Stream, w runNames, n int) error {
	ictx, icancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer icancel()
	for deadline := time.Now().Add(3 * time.Second); ; {
		info, err := str.Info(ictx, jetstream.WithSubjectFilter(w.prefix+".*"))
		if err != nil {
			return fmt.Errorf("stream info: %w", err)
		}
		r.stored = info.State.Subjects[w.deleted()] + info.State.Subjects[w.failed()]
		if r.stored >= uint64(n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.err == nil && r.stored != uint64(n) {
		return fmt.Errorf("%d results stored for %d requests", r.stored, n)
	}
	return nil
}

func withMaxCalls(o kombotest.Options) kombotest.Options {
	o.MaxCalls = 1 // the bench keeps its own compact record (OnCall)
	return o
}

// isSignalExit reports a process that ended by the SIGTERM the bench sent without handling
// it (a baseline killed mid-drain): not an error of the run.
func isSignalExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee) && !ee.Exited()
}

// diagnostics says how busy Kombo was kept: the mean duration of admitted calls as Kombo saw
// them, and the mean number of admitted calls in flight over the run.
func (r *runResult) diagnostics() string {
	var n int
	var sum time.Duration
	first, last := time.Time{}, time.Time{}
	for _, c := range r.calls {
		if c.code != "" || c.end.IsZero() {
			continue
		}
		n++
		sum += c.end.Sub(c.start)
		if first.IsZero() || c.start.Before(first) {
			first = c.start
		}
		if c.end.After(last) {
			last = c.end
		}
	}
	if n == 0 || r.elapsed <= 0 {
		return "no admitted calls"
	}
	return fmt.Sprintf("admitted calls %d, mean %.2fms at Kombo, mean in flight %.2f over the run (%.2f from first call to last answer), first call after %s, last result %s after the last answer",
		n, float64(sum)/float64(n)/1e6, sum.Seconds()/r.elapsed.Seconds(), sum.Seconds()/last.Sub(first).Seconds(),
		first.Sub(r.t0).Round(time.Microsecond), r.t0.Add(r.elapsed).Sub(last).Round(time.Microsecond))
}

// capHistory lists, per replica, the cap changes seen (seconds:cap), and the rejections per
// second of the run, for -v.
func (r *runResult) capHistory() string {
	var b strings.Builder
	for rep := 0; rep < r.spec.replicas; rep++ {
		fmt.Fprintf(&b, "  replica %d cap:", rep+1)
		last := -1.0
		for _, s := range r.samples {
			if s.replica == rep && s.cap != last {
				fmt.Fprintf(&b, " %.2f:%g", s.t, s.cap)
				last = s.cap
			}
		}
		b.WriteString("\n")
	}
	if len(r.phaseAt) > 0 {
		b.WriteString("  the fake's limit:")
		for i, at := range r.phaseAt {
			fmt.Fprintf(&b, " %.2f:%d", at, r.spec.phases[i].limit)
		}
		b.WriteString("\n")
	}
	per := map[int]int{}
	maxSec := 0
	for _, c := range r.calls {
		if c.code == codeConcurrency {
			sec := int(c.start.Sub(r.t0).Seconds())
			per[sec]++
			maxSec = max(maxSec, sec)
		}
	}
	b.WriteString("  rejections per second:")
	for i := 0; i <= maxSec; i++ {
		fmt.Fprintf(&b, " %d", per[i])
	}
	return b.String()
}

// komboFigures is "mean ms / mean in flight" of the calls Kombo admitted.
func (r *runResult) komboFigures() string {
	var n int
	var sum time.Duration
	for _, c := range r.calls {
		if c.code == "" && !c.end.IsZero() {
			n++
			sum += c.end.Sub(c.start)
		}
	}
	if n == 0 || r.elapsed <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f / %.2f", float64(sum)/float64(n)/1e6, sum.Seconds()/r.elapsed.Seconds())
}
