// Command demo runs integration-deleter end to end on one machine with nothing but Go:
// the fake Kombo and the daemon with its embedded NATS server, all in this process. It
// publishes a mixed batch of requests, shows the concurrency cap adapting while they are
// processed, an operator's pause, a protected customer and an expectation that fails, and
// prints a table of the outcomes. It is what `make demo` runs.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/control"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

// request is one line of the demo batch.
type request struct {
	kind    string // what it shows
	payload string // raw event
	reqID   string
}

func batch() []request {
	var rs []request
	add := func(kind, id string) {
		reqID := fmt.Sprintf("demo-%02d", len(rs)+1)
		body, _ := json.Marshal(map[string]string{"integration_id": id, "request_id": reqID,
			"requested_by": "make demo", "reason": kind})
		rs = append(rs, request{kind: kind, payload: string(body), reqID: reqID})
	}
	for i := range 4 {
		add("plain delete", fmt.Sprintf("personio:demo%04d", i))
	}
	for i := range 2 {
		add("not found", fmt.Sprintf("missing:gone%02d", i))
	}
	add("invalid input", "invalid:bad-id")
	add("protected", protectedID)
	body, _ := json.Marshal(map[string]any{"integration_id": "personio:demo-expect", "request_id": "demo-expect",
		"requested_by": "make demo", "expect": map[string]string{"tool": "workday"}})
	rs = append(rs, request{kind: "expect tool=workday", payload: string(body), reqID: "demo-expect"})
	for i := range 2 {
		add("flaky (2×500)", fmt.Sprintf("flaky:hris%02d", i))
	}
	rs = append(rs,
		request{kind: "malformed event", payload: `{"integration_id": 42, "request_id": "demo-bad-1"}`, reqID: "demo-bad-1"},
		request{kind: "malformed event", payload: `not json at all`, reqID: ""}, // id from the stream sequence
	)
	for i := range 50 {
		add("burst", fmt.Sprintf("bamboohr:burst%02d", i))
	}
	return rs
}

// The demo's script: Kombo's concurrency limit, lowered and raised back after so many
// results, and the daemon's own maximum.
const (
	fakeLimit  = 4 // Kombo's concurrency limit at first
	fakeLower  = 2 // … after it lowers it mid-run
	daemonMax  = 8
	lowerAfter = 10              // results
	raiseAfter = 35              // results: Kombo's limit is back to fakeLimit
	pauseAfter = 45              // results: an operator pauses the consumer …
	pauseFor   = 2 * time.Second // … and resumes it after this
)

// protectedID is the integration an operator protected before the batch.
const protectedID = "acme:renewed-customer"

// run runs the demo until its batch is processed and the daemon has shut down, or ctx
// ends (SIGINT, SIGTERM).
func run(ctx context.Context, out io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	logFile, err := os.CreateTemp("", "integration-deleter-demo-*.log")
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))

	// The fake Kombo: 150 ms per call, at most fakeLimit calls at once (like a small
	// integration's concurrency limit), over real HTTP on loopback.
	fake := kombotest.New(kombotest.Options{APIKey: "ks_demo_key", Latency: 150 * time.Millisecond,
		LatencyJitter: 50 * time.Millisecond, ConcurrencyLimit: fakeLimit})
	komboURL, stopFake, err := kombotest.Serve("127.0.0.1:0", fake)
	if err != nil {
		return err
	}
	defer stopFake()
	defer fake.Close() // runs first: calls that wait end at once
	natsAddr, err := testkit.FreeAddr()
	if err != nil {
		return err
	}
	cfg, err := demoConfig("nats://"+natsAddr, komboURL)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "integration-deleter demo: embedded NATS at %s, fake Kombo at %s\n", cfg.NATSURL, komboURL)
	fmt.Fprintf(out, "fake Kombo: 150±50 ms per call, concurrency limit %d (lowered to %d after %d results, back to %d after %d); daemon: KOMBO_MAX_CONCURRENCY=%d\n",
		fakeLimit, fakeLower, lowerAfter, fakeLimit, raiseAfter, daemonMax)
	fmt.Fprintf(out, "daemon logs: %s\n\n", logFile.Name())

	d, err := startDaemon(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.stop() // after a failure; the clean stop is below
	if err := process(ctx, out, cfg, fake, d.url); err != nil {
		return err
	}
	if err := d.stop(); err != nil {
		return fmt.Errorf("daemon shutdown: %w", err)
	}
	fmt.Fprintln(out, "daemon shut down cleanly (stop pulling → finish calls → drain NATS → stop HTTP).")
	return nil
}

// demoConfig is the daemon's default configuration with the NATS server embedded in the
// daemon (NATS_EMBEDDED, as for local use), listening on natsURL, and the fake Kombo at
// komboURL; short backoffs, so that the flaky requests are done quickly.
func demoConfig(natsURL, komboURL string) (*config.Config, error) {
	cfg := config.Default()
	cfg.KomboAPIKey = "ks_demo_key"
	cfg.KomboBaseURL = komboURL
	cfg.KomboMaxConcurrency = daemonMax
	cfg.KomboBackoffInitial = 200 * time.Millisecond
	cfg.KomboBackoffMax = 2 * time.Second
	cfg.NATSURL = natsURL
	cfg.NATSEmbedded = true
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	return cfg, cfg.Validate()
}

// runningDaemon is daemon.Run going on in the background.
type runningDaemon struct {
	url    string // of its HTTP server
	cancel context.CancelFunc
	done   chan error
	err    error // what Run returned, once done is drained
	ended  bool
}

// startDaemon runs the daemon and waits until it is ready.
func startDaemon(ctx context.Context, cfg *config.Config, log *slog.Logger) (*runningDaemon, error) {
	dctx, cancel := context.WithCancel(ctx)
	d := &runningDaemon{cancel: cancel, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		d.done <- daemon.Run(dctx, cfg, daemon.Options{Version: "demo", Logger: log,
			OnListen: func(a string) { addr <- a }})
	}()
	select {
	case a := <-addr:
		d.url = "http://" + a
	case err := <-d.done:
		cancel()
		return nil, fmt.Errorf("daemon stopped at start: %w", err)
	case <-time.After(15 * time.Second):
		d.stop()
		return nil, errors.New("daemon did not start")
	}
	gone := func() error {
		select {
		case err := <-d.done:
			d.err, d.ended = err, true
			return fmt.Errorf("daemon stopped at start: %w", err)
		default:
			return nil
		}
	}
	if err := testkit.WaitReady(ctx, d.url+"/readyz", 15*time.Second, gone); err != nil {
		d.stop()
		return nil, fmt.Errorf("daemon not ready: %w", err)
	}
	return d, nil
}

// stop ends the daemon's context and returns what Run returned.
func (d *runningDaemon) stop() error {
	d.cancel()
	if !d.ended {
		d.err, d.ended = <-d.done, true
	}
	return d.err
}

// process publishes the batch, follows the cap on /metrics while it is processed, lowers
// and raises Kombo's limit on the way, and prints the outcomes.
func process(ctx context.Context, out io.Writer, cfg *config.Config, fake *kombotest.Fake, metricsURL string) error {
	nc, js, err := testkit.ConnectJetStream(cfg.NATSURL)
	if err != nil {
		return err
	}
	defer nc.Close()
	results, stopResults, err := watchResults(ctx, js, cfg)
	if err != nil {
		return err
	}
	defer stopResults()

	if err := protect(ctx, js, cfg); err != nil {
		return err
	}
	fmt.Fprintf(out, "protected %s (integration-deleter protect add): a request for it fails DELETER.PROTECTED, no call\n", protectedID)
	fmt.Fprintf(out, "  t= 0.0s  cap=%s (before the batch)\n", gauge(ctx, metricsURL, "integration_deleter_concurrency_cap"))
	reqs := batch()
	kinds, err := publish(ctx, js, cfg, reqs)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "published %d requests; the cap follows the Concurrency-Limit and Concurrency-Remaining Kombo states:\n", len(reqs))
	start := time.Now()
	op := &operator{js: js, cfg: cfg, fake: fake, out: out}
	got, err := follow(ctx, out, results, len(reqs), fake, metricsURL, op)
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	printTable(out, got, kinds)
	op.report()
	st := fake.Stats()
	fmt.Fprintf(out, "\n%d requests → %d results in %.1fs. Kombo saw %d DELETE calls (%d rejected for concurrency, at most %d in flight at once).\n",
		len(reqs), len(got), elapsed.Seconds(), st.Deletes, st.RejectedConcurrency, st.MaxInFlight)
	return nil
}

// watchResults delivers every result stored on the stream.
func watchResults(ctx context.Context, js jetstream.JetStream, cfg *config.Config) (<-chan testkit.Result, func(), error) {
	oc, err := js.OrderedConsumer(ctx, cfg.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.DeletedSubject, cfg.FailedSubject}})
	if err != nil {
		return nil, nil, err
	}
	results := make(chan testkit.Result, 256)
	cc, err := oc.Consume(func(m jetstream.Msg) {
		var r testkit.Result
		if json.Unmarshal(m.Data(), &r) == nil {
			results <- r
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return results, cc.Stop, nil
}

// publish publishes the batch and returns what each request shows, by request id.
func publish(ctx context.Context, js jetstream.JetStream, cfg *config.Config, reqs []request) (map[string]string, error) {
	kinds := map[string]string{}
	for _, r := range reqs {
		ack, err := js.Publish(ctx, cfg.RequestSubject, []byte(r.payload))
		if err != nil {
			return nil, err
		}
		if r.reqID == "" {
			r.reqID = fmt.Sprintf("%s-%d", cfg.StreamName, ack.Sequence)
		}
		kinds[r.reqID] = r.kind
	}
	return kinds, nil
}

// follow collects n results, printing the cap and the calls in flight as they change, and
// lowers then raises Kombo's concurrency limit after lowerAfter and raiseAfter results.
func follow(ctx context.Context, out io.Writer, results <-chan testkit.Result, n int, fake *kombotest.Fake,
	metricsURL string, op *operator,
) (map[string]testkit.Result, error) {
	got := map[string]testkit.Result{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(90 * time.Second)
	start, last := time.Now(), ""
	for len(got) < n {
		select {
		case r := <-results:
			if _, seen := got[r.RequestID]; seen {
				continue
			}
			got[r.RequestID] = r
			switch len(got) {
			case lowerAfter:
				fake.SetConcurrencyLimit(fakeLower)
				fmt.Fprintf(out, "  Kombo lowers its concurrency limit to %d: calls beyond it are refused, the cap follows\n", fakeLower)
			case raiseAfter:
				fake.SetConcurrencyLimit(fakeLimit)
				fmt.Fprintf(out, "  Kombo raises its concurrency limit back to %d: the cap follows it up\n", fakeLimit)
			case pauseAfter:
				if err := op.pause(ctx); err != nil {
					return nil, err
				}
			}
		case <-op.resumeDue():
			if err := op.resume(ctx); err != nil {
				return nil, err
			}
		case <-tick.C:
			state := fmt.Sprintf("cap=%s  in flight=%s  results=%d/%d  rejected by Kombo=%d",
				gauge(ctx, metricsURL, "integration_deleter_concurrency_cap"),
				gauge(ctx, metricsURL, "integration_deleter_kombo_calls_in_flight"), len(got), n, fake.Stats().RejectedConcurrency)
			if state != last {
				fmt.Fprintf(out, "  t=%4.1fs  %s\n", time.Since(start).Seconds(), state)
				last = state
			}
		case <-deadline:
			return nil, fmt.Errorf("only %d of %d results arrived", len(got), n)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return got, nil
}

// gauge reads the unlabelled metric name on the daemon's /metrics; "?" when it cannot.
func gauge(ctx context.Context, metricsURL, name string) string {
	m, err := testkit.ScrapeMetrics(ctx, metricsURL+"/metrics")
	if err != nil {
		return "?"
	}
	v, ok := m.Sum(name)
	if !ok {
		return "?"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func printTable(out io.Writer, got map[string]testkit.Result, kinds map[string]string) {
	ids := make([]string, 0, len(got))
	for id := range got {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REQUEST\tKIND\tINTEGRATION\tRESULT\tATTEMPTS\tCODE / NOTE")
	summary := map[string]int{}
	for _, id := range ids {
		r := got[id]
		note := ""
		result := r.Status
		switch {
		case r.Error != nil:
			note = r.Error.Code + ": " + truncate(r.Error.Message, 60)
		case r.NotFound != nil && *r.NotFound:
			result, note = "deleted", "not_found=true"
		}
		summary[kinds[id]+" → "+result]++
		if kinds[id] == "burst" && r.Status == "deleted" && r.Attempts == 1 {
			continue // the table shows the interesting burst lines only
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", id, kinds[id], truncate(r.IntegrationID, 24), result, r.Attempts, note)
	}
	tw.Flush()
	fmt.Fprintln(out, "\n(burst requests deleted at the first attempt are left out of the table above)")
	keys := make([]string, 0, len(summary))
	for k := range summary {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(out, "  %-32s %d\n", k, summary[k])
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// protect protects protectedID, as `integration-deleter protect add` does.
func protect(ctx context.Context, js jetstream.JetStream, cfg *config.Config) error {
	p, err := control.OpenProtect(ctx, js, cfg.ProtectBucket, cfg.StreamReplicas, true)
	if err != nil {
		return err
	}
	return p.Add(ctx, control.Protection{Pattern: protectedID, Reason: "customer renewed", By: "make demo", AddedAt: time.Now()})
}

// operator pauses the consumer mid-run and resumes it pauseFor later, as `integration-deleter
// pause` and `resume` do, and says what Kombo saw meanwhile.
type operator struct {
	js                jetstream.JetStream
	cfg               *config.Config
	fake              *kombotest.Fake
	out               io.Writer
	pausedAt, resumed time.Time
	due               <-chan time.Time
}

func (o *operator) pause(ctx context.Context) error {
	if _, err := control.Pause(ctx, o.js, o.cfg.LedgerBucket, o.cfg.StreamName, o.cfg.ConsumerName,
		"demo: an operator looks at something", "make demo", time.Time{}); err != nil {
		return err
	}
	o.pausedAt, o.due = time.Now(), time.After(pauseFor)
	fmt.Fprintf(o.out, "  an operator pauses the consumer (integration-deleter pause): no DELETE starts on any replica; calls in flight finish\n")
	return nil
}

// resumeDue is ready when the pause has lasted pauseFor (never before the pause).
func (o *operator) resumeDue() <-chan time.Time { return o.due }

func (o *operator) resume(ctx context.Context) error {
	o.due = nil
	resuming := time.Now() // the daemon may resume before Resume returns here
	if _, err := control.Resume(ctx, o.js, o.cfg.LedgerBucket, o.cfg.StreamName, o.cfg.ConsumerName); err != nil {
		return err
	}
	o.resumed = resuming
	fmt.Fprintf(o.out, "  … and resumes it after %s (integration-deleter resume)\n", pauseFor)
	return nil
}

// report says how many DELETEs Kombo saw start during the pause: in its first second
// (calls already granted a slot when it began), and after it.
func (o *operator) report() {
	if o.pausedAt.IsZero() || o.resumed.IsZero() {
		return
	}
	var first, later int
	for _, c := range o.fake.Calls() {
		switch {
		case c.Method != "DELETE" || c.Start.Before(o.pausedAt) || !c.Start.Before(o.resumed):
		case c.Start.Before(o.pausedAt.Add(time.Second)):
			first++
		default:
			later++
		}
	}
	fmt.Fprintf(o.out, "  paused %.1fs by an operator: %d DELETE calls started in its first second, %d after it\n",
		o.resumed.Sub(o.pausedAt).Seconds(), first, later)
}
