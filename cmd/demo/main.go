// Command demo runs integration-deleter end to end on one machine with nothing but Go:
// an embedded NATS server, the fake Kombo, and the daemon, all in this process. It
// publishes a mixed batch of requests, shows the concurrency cap adapting while they are
// processed, and prints a table of the outcomes. It is what `make demo` runs.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		stop()
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

func run(ctx context.Context, out io.Writer) error {
	const (
		fakeLimit  = 4 // Kombo's concurrency limit at first
		fakeLower  = 2 // … after it lowers it mid-run
		daemonMax  = 8
		lowerAfter = 10 // results
		raiseAfter = 35 // results: Kombo's limit is back to fakeLimit
	)
	logFile, err := os.CreateTemp("", "integration-deleter-demo-*.log")
	if err != nil {
		return err
	}
	defer logFile.Close()

	// The fake Kombo: 150 ms per call, at most fakeLimit calls at once (like a small
	// integration's concurrency limit), over real HTTP on loopback.
	fake := kombotest.New(kombotest.Options{APIKey: "ks_demo_key", Latency: 150 * time.Millisecond,
		LatencyJitter: 50 * time.Millisecond, ConcurrencyLimit: fakeLimit})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fakeSrv := &http.Server{Handler: fake, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = fakeSrv.Serve(ln) }()
	defer fakeSrv.Close()
	defer fake.Close()

	log := slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))
	emb, err := daemon.StartEmbedded("nats://127.0.0.1:0", "", log)
	if err != nil {
		return err
	}
	defer emb.Shutdown()

	cfg := config.Default()
	cfg.KomboAPIKey = "ks_demo_key"
	cfg.KomboBaseURL = "http://" + ln.Addr().String() + "/v1"
	cfg.KomboMaxConcurrency = daemonMax
	cfg.KomboBackoffInitial = 200 * time.Millisecond
	cfg.KomboBackoffMax = 2 * time.Second
	cfg.NATSURL = emb.ClientURL()
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	if err := cfg.Validate(); err != nil {
		return err
	}

	fmt.Fprintf(out, "integration-deleter demo: embedded NATS at %s, fake Kombo at %s\n", emb.ClientURL(), cfg.KomboBaseURL)
	fmt.Fprintf(out, "fake Kombo: 150±50 ms per call, concurrency limit %d (lowered to %d after %d results, back to %d after %d); daemon: KOMBO_MAX_CONCURRENCY=%d\n",
		fakeLimit, fakeLower, lowerAfter, fakeLimit, raiseAfter, daemonMax)
	fmt.Fprintf(out, "daemon logs: %s\n\n", logFile.Name())

	dctx, stopDaemon := context.WithCancel(ctx)
	defer stopDaemon()
	httpAddr := make(chan string, 1)
	daemonDone := make(chan error, 1)
	go func() {
		daemonDone <- daemon.Run(dctx, cfg, daemon.Options{Version: "demo", Logger: log,
			OnListen: func(a string) { httpAddr <- a }})
	}()
	var metricsURL string
	select {
	case a := <-httpAddr:
		metricsURL = "http://" + a
	case err := <-daemonDone:
		return fmt.Errorf("daemon stopped at start: %w", err)
	case <-time.After(15 * time.Second):
		return errors.New("daemon did not start")
	}
	if err := waitReady(ctx, metricsURL); err != nil {
		return err
	}

	nc, err := nats.Connect(emb.ClientURL())
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	oc, err := js.OrderedConsumer(ctx, cfg.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{cfg.DeletedSubject, cfg.FailedSubject}})
	if err != nil {
		return err
	}
	results := make(chan consumer.Result, 256)
	cc, err := oc.Consume(func(m jetstream.Msg) {
		var r consumer.Result
		if json.Unmarshal(m.Data(), &r) == nil {
			results <- r
		}
	})
	if err != nil {
		return err
	}
	defer cc.Stop()

	m0 := scrape(metricsURL)
	fmt.Fprintf(out, "  t= 0.0s  cap=%s (before the batch)\n", m0["integration_deleter_concurrency_cap"])
	reqs := batch()
	kinds := map[string]string{}
	start := time.Now()
	for _, r := range reqs {
		ack, err := js.Publish(ctx, cfg.RequestSubject, []byte(r.payload))
		if err != nil {
			return err
		}
		if r.reqID == "" {
			r.reqID = fmt.Sprintf("%s-%d", cfg.StreamName, ack.Sequence)
		}
		kinds[r.reqID] = r.kind
	}
	fmt.Fprintf(out, "published %d requests; the cap follows the Concurrency-Limit and Concurrency-Remaining Kombo states:\n", len(reqs))

	got := map[string]consumer.Result{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(90 * time.Second)
	lastLine := ""
	lowered, raised := false, false
	for len(got) < len(reqs) {
		select {
		case r := <-results:
			got[r.RequestID] = r
			if !lowered && len(got) >= lowerAfter {
				lowered = true
				fake.SetConcurrencyLimit(fakeLower)
				fmt.Fprintf(out, "  Kombo lowers its concurrency limit to %d: calls beyond it are refused, the cap follows\n", fakeLower)
			}
			if !raised && len(got) >= raiseAfter {
				raised = true
				fake.SetConcurrencyLimit(fakeLimit)
				fmt.Fprintf(out, "  Kombo raises its concurrency limit back to %d: the cap follows it up\n", fakeLimit)
			}
		case <-tick.C:
			m := scrape(metricsURL)
			line := fmt.Sprintf("  t=%4.1fs  cap=%s  in flight=%s  results=%d/%d  rejected by Kombo=%d",
				time.Since(start).Seconds(), m["integration_deleter_concurrency_cap"],
				m["integration_deleter_kombo_calls_in_flight"], len(got), len(reqs), fake.Stats().RejectedConcurrency)
			if line[10:] != lastLine {
				fmt.Fprintln(out, line)
				lastLine = line[10:]
			}
		case <-deadline:
			return fmt.Errorf("only %d of %d results arrived", len(got), len(reqs))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	elapsed := time.Since(start)
	printTable(out, got, kinds)

	st := fake.Stats()
	fmt.Fprintf(out, "\n%d requests → %d results in %.1fs. Kombo saw %d DELETE calls (%d rejected for concurrency, at most %d in flight at once).\n",
		len(reqs), len(got), elapsed.Seconds(), st.Deletes, st.RejectedConcurrency, st.MaxInFlight)

	stopDaemon()
	if err := <-daemonDone; err != nil {
		return fmt.Errorf("daemon shutdown: %w", err)
	}
	fmt.Fprintln(out, "daemon shut down cleanly (stop pulling → finish calls → drain NATS → stop HTTP).")
	return nil
}

func printTable(out io.Writer, got map[string]consumer.Result, kinds map[string]string) {
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

func waitReady(ctx context.Context, base string) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return errors.New("daemon did not become ready")
}

// scrape reads the unlabelled samples of /metrics.
func scrape(base string) map[string]string {
	m := map[string]string{}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || strings.Contains(line, "{") {
			continue
		}
		if name, val, ok := strings.Cut(line, " "); ok {
			if f, err := strconv.ParseFloat(val, 64); err == nil {
				val = strconv.FormatFloat(f, 'f', -1, 64)
			}
			m[name] = val
		}
	}
	return m
}
