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
	spec      runSpec
	elapsed   time.Duration // first publish to last stored result
	results   int           // distinct results seen
	stored    uint64        // results stored in the stream (checked after the run)
	failed    int
	stats     kombotest.Stats
	calls     []call
	t0        time.Time
	cpu       []float64 // CPU-seconds per replica between the first publish and the last result
	rss       []uint64  // peak RSS per replica (VmHWM)
	samples   []sample
	phaseAt   []float64 // seconds since the first publish at which each phase began (the fake's limit changed)
	err       error
	profileAt string
	quietLoad float64 // CPUs busy on the machine just before the run
	otherLoad float64 // CPUs busy during the run with work that is neither measured nor the bench's
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
	tag := fmt.Sprintf("s%s-%s", s.scenario, s.kind)
	prefix := fmt.Sprintf("bench.%d.%s", e.runs, s.kind)
	stream := fmt.Sprintf("BENCH_%d_%s", e.runs, s.kind)
	const durable = "integration-deleter"
	reqSubj, delSubj, failSubj := prefix+".requested", prefix+".deleted", prefix+".failed"

	// A fresh fake Kombo on loopback, recording each call compactly.
	fake := kombotest.New(withMaxCalls(s.fake))
	var mu sync.Mutex
	calls := make([]call, 0, s.n*2)
	fake.OnCall(func(c kombotest.Call) {
		if c.Method != http.MethodDelete {
			return
		}
		rep, _ := strconv.Atoi(c.Header.Get(replicaHeader))
		mu.Lock()
		calls = append(calls, call{start: c.Start, end: c.End, status: c.Status, code: c.Code, early: c.EarlyForRateLimit,
			replica: max(rep-1, 0)})
		mu.Unlock()
	})
	// One listener per replica, all serving the same fake, so that each call says which
	// replica made it (replicaHeader).
	var stops []func()
	defer func() {
		fake.Close()
		for _, stop := range stops {
			stop()
		}
	}()
	komboURLs := make([]string, s.replicas)
	for i := range s.replicas {
		tag := strconv.Itoa(i + 1)
		url, stop, err := kombotest.Serve("127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r.Header.Set(replicaHeader, tag)
			fake.ServeHTTP(w, r)
		}))
		if err != nil {
			res.err = err
			return res
		}
		stops = append(stops, stop)
		komboURLs[i] = url
	}

	// A fresh stream and durable consumer, the same for the daemon and the baseline.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	scfg := jetstream.StreamConfig{
		Name: stream, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage,
		Retention: jetstream.LimitsPolicy, Duplicates: 20 * time.Minute,
	}
	str, err := e.js.CreateStream(cctx, scfg)
	for try := 1; err != nil && try < 3 && cctx.Err() == nil; try++ {
		// The embedded server has refused, rarely, to create a stream's store right
		// after the previous run's stream and ledger were deleted (seen once in CI):
		// try again rather than lose the whole run.
		fmt.Fprintf(os.Stderr, "bench: create stream %s: %v; trying again\n", stream, err)
		time.Sleep(500 * time.Millisecond)
		str, err = e.js.CreateStream(cctx, scfg)
	}
	if err != nil {
		res.err = fmt.Errorf("create stream: %w", err)
		return res
	}
	defer func() { _ = e.js.DeleteStream(context.Background(), stream) }()
	// Each run has a ledger of its own (request ids repeat across rounds); the daemon
	// creates it.
	ledgerBucket := stream + "_LEDGER"
	defer func() { _ = e.js.DeleteKeyValue(context.Background(), ledgerBucket) }()
	if _, err := str.CreateConsumer(cctx, jetstream.ConsumerConfig{
		Durable: durable, DeliverPolicy: jetstream.DeliverAllPolicy, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: -1, MaxAckPending: 256, FilterSubject: reqSubj,
	}); err != nil {
		res.err = fmt.Errorf("create consumer: %w", err)
		return res
	}

	// The replicas.
	var procs []*proc
	defer func() {
		for _, p := range procs {
			if err := p.stop(15 * time.Second); err != nil && res.err == nil && !isSignalExit(err) {
				res.err = fmt.Errorf("%s exit: %w\n%s", p.name, err, p.tail(10))
			}
		}
	}()
	for i := range s.replicas {
		name := fmt.Sprintf("%s-%d", tag, i+1)
		logPath := filepath.Join(e.dir, name+".log")
		var p *proc
		if s.kind == "daemon" {
			addr, err := testkit.FreeAddr()
			if err != nil {
				res.err = err
				return res
			}
			envv := []string{
				"KOMBO_API_KEY=bench", "KOMBO_BASE_URL=" + komboURLs[i],
				"KOMBO_MAX_CONCURRENCY=" + strconv.Itoa(s.maxConc),
				"NATS_URL=" + e.nats.ClientURL(),
				"STREAM_NAME=" + stream, "STREAM_SUBJECTS=" + prefix + ".>", "CONSUMER_NAME=" + durable,
				"REQUEST_SUBJECT=" + reqSubj, "DELETED_SUBJECT=" + delSubj, "FAILED_SUBJECT=" + failSubj,
				"LEDGER_BUCKET=" + ledgerBucket,
				// The bench measures admission; DELETE_FUSE's default (1000/1h) would pause
				// the daemon within the first scenario.
				"DELETE_FUSE=off",
				"HTTP_ADDR=" + addr, "LOG_LEVEL=info", "LOG_FORMAT=json", "SHUTDOWN_TIMEOUT=10s",
			}
			if e.profile != "" {
				res.profileAt = filepath.Join(e.profile, name)
				envv = append(envv, "BENCH_PROFILE="+res.profileAt)
			}
			p, err = startProc(name, e.daemon, envv, logPath)
			if err != nil {
				res.err = err
				return res
			}
			p.httpURL = "http://" + addr
			procs = append(procs, p)
			if err := p.waitReady(ctx, "", 30*time.Second); err != nil {
				res.err = err
				return res
			}
		} else {
			ready := filepath.Join(e.dir, name+".ready")
			argv := []string{e.self, "baseline", "-nats", e.nats.ClientURL(), "-stream", stream, "-consumer", durable,
				"-deleted", delSubj, "-failed", failSubj, "-kombo", komboURLs[i], "-c", strconv.Itoa(s.maxConc),
				"-ready-file", ready}
			var envv []string
			if e.profile != "" {
				envv = append(envv, "BENCH_PROFILE="+filepath.Join(e.profile, name))
			}
			p, err = startProc(name, argv, envv, logPath)
			if err != nil {
				res.err = err
				return res
			}
			procs = append(procs, p)
			if err := p.waitReady(ctx, ready, 30*time.Second); err != nil {
				res.err = err
				return res
			}
		}
	}

	// Results: distinct request ids seen on the result subjects.
	seen := make(map[string]bool, s.n)
	var lastResult time.Time
	allIn := make(chan struct{})
	sub, err := e.nc.Subscribe(prefix+".*", func(m *nats.Msg) {
		if m.Subject == reqSubj {
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
		if seen[r.RequestID] {
			return
		}
		seen[r.RequestID] = true
		lastResult = now
		if r.Status != "deleted" {
			res.failed++
		}
		if len(seen) == s.n {
			close(allIn)
		}
	})
	if err != nil {
		res.err = err
		return res
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)
	if err := e.nc.Flush(); err != nil {
		res.err = err
		return res
	}

	cpu0 := make([]float64, len(procs))
	for i, p := range procs {
		cpu0[i], _ = cpuSeconds(p.pid())
	}
	self0, _ := cpuSeconds(os.Getpid())
	machine0, _, _ := machineTicks()

	// Watch the daemons' cap and calls in flight.
	scrapeStop := make(chan struct{})
	var scrapeWG sync.WaitGroup
	t0 := time.Now()
	res.t0 = t0
	if s.scrape && s.kind == "daemon" {
		for i, p := range procs {
			scrapeWG.Go(func() {
				tick := time.NewTicker(50 * time.Millisecond)
				defer tick.Stop()
				for {
					m, err := testkit.ScrapeMetrics(ctx, p.httpURL+"/metrics")
					if err == nil {
						capNow, _ := m.Sum("integration_deleter_concurrency_cap")
						inFlight, _ := m.Sum("integration_deleter_kombo_calls_in_flight")
						mu.Lock()
						res.samples = append(res.samples, sample{t: time.Since(t0).Seconds(), replica: i,
							cap: capNow, inFlight: inFlight})
						mu.Unlock()
					}
					select {
					case <-scrapeStop:
						return
					case <-tick.C:
					}
				}
			})
		}
	}

	// Change the fake's concurrency limit at the phases' times.
	var shiftErr error // under mu
	if len(s.phases) > 0 {
		res.phaseAt = []float64{0}
		scrapeWG.Go(func() {
			for _, ph := range s.phases[1:] {
				select {
				case <-scrapeStop:
					return
				case <-time.After(time.Until(t0.Add(ph.at))):
				}
				err := fake.Update(func(o *kombotest.Options) { o.ConcurrencyLimit = ph.limit })
				at := time.Since(t0).Seconds()
				mu.Lock()
				if err != nil {
					shiftErr = fmt.Errorf("set the fake's limit to %d: %w", ph.limit, err)
				} else {
					res.phaseAt = append(res.phaseAt, at)
				}
				mu.Unlock()
			}
		})
	}

	// Publish N requests as fast as JetStream takes them.
	for i := range s.n {
		data := fmt.Appendf(nil, `{"integration_id":"personio:bench-%06d","request_id":"%s-%06d","requested_by":"bench","reason":"benchmark"}`, i, tag, i)
		if _, err := e.js.PublishAsync(reqSubj, data); err != nil {
			res.err = fmt.Errorf("publish: %w", err)
			close(scrapeStop)
			scrapeWG.Wait()
			return res
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		res.err = errors.New("publishing timed out")
	}

	timeout := s.timeout
	select {
	case <-allIn:
	case <-time.After(timeout):
		if res.err == nil {
			res.err = fmt.Errorf("timed out after %s", timeout)
		}
	case <-ctx.Done():
		res.err = ctx.Err()
	}
	mu.Lock()
	res.results = len(seen)
	end := lastResult
	mu.Unlock()
	if end.IsZero() {
		end = time.Now()
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
		// Everything busy on the machine but the measured processes and the bench (NATS, fake).
		res.otherLoad = max(0, (machine1-machine0)-(self1-self0)-res.cpuTotal()) / wall
	}
	close(scrapeStop)
	scrapeWG.Wait()
	if shiftErr != nil {
		res.err = errors.Join(res.err, shiftErr)
	}

	// Every result stored exactly once? (A subscriber may see the last results a moment
	// before the stream has stored them.)
	ictx, icancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer icancel()
	for deadline := time.Now().Add(3 * time.Second); ; {
		info, err := str.Info(ictx, jetstream.WithSubjectFilter(prefix+".*"))
		if err != nil {
			res.err = errors.Join(res.err, fmt.Errorf("stream info: %w", err))
			break
		}
		res.stored = info.State.Subjects[delSubj] + info.State.Subjects[failSubj]
		if res.stored >= uint64(s.n) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	res.stats = fake.Stats()
	res.calls = calls
	mu.Unlock()
	if res.err == nil && res.stored != uint64(s.n) {
		res.err = fmt.Errorf("%d results stored for %d requests", res.stored, s.n)
	}
	return res
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
