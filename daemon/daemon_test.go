package daemon_test

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
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/config"
	"github.com/kombo-ops/integration-deleter/consumer"
	"github.com/kombo-ops/integration-deleter/daemon"
	"github.com/kombo-ops/integration-deleter/internal/ledger"
	"github.com/kombo-ops/integration-deleter/internal/natstest"
	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

const (
	apiKey         = "ks_live_d43m0nT35tK3y_never_log_me"
	streamName     = "INTEGRATION_DELETE"
	requestSubject = "integration.delete.requested"
	deletedSubject = "integration.delete.deleted"
	failedSubject  = "integration.delete.failed"
	traceID        = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceparent    = "00-" + traceID + "-00f067aa0ba902b7-01"
	tracestate     = "rojo=00f067aa0ba902b7"
)

// testConfig is the default configuration pointed at a NATS server and a fake Kombo, with
// short intervals so that tests are quick.
func testConfig(natsURL, komboURL string) *config.Config {
	cfg := config.Default()
	cfg.KomboAPIKey = apiKey
	cfg.KomboBaseURL = komboURL
	cfg.KomboTimeout = 5 * time.Second
	cfg.KomboBackoffInitial = 10 * time.Millisecond
	cfg.KomboBackoffMax = 50 * time.Millisecond
	cfg.AuthProbeInterval = 50 * time.Millisecond
	cfg.NATSURL = natsURL
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.LogLevel = "debug"
	return cfg
}

// logBuffer collects the daemon's log lines; safe for concurrent use.
type logBuffer struct{ testkit.SyncBuffer }

// lines returns the JSON log lines decoded.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// running is a daemon.Run going on in the background.
type running struct {
	t      *testing.T
	addr   string
	logs   *logBuffer
	cancel context.CancelFunc
	done   chan error
	http   *http.Client
}

// start runs the daemon with cfg and waits until its HTTP server listens. The test's
// cleanup stops it. listen, when given, makes the HTTP listener.
func start(t *testing.T, cfg *config.Config, listen ...func(network, address string) (net.Listener, error)) *running {
	t.Helper()
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	addrs := make(chan string, 1)
	r := &running{t: t, logs: logs, cancel: cancel, done: make(chan error, 1),
		http: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	o := daemon.Options{
		Version:  "test",
		Logger:   slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnListen: func(addr string) { addrs <- addr },
	}
	for _, l := range listen {
		o = daemon.WithListen(o, l)
	}
	go func() { r.done <- daemon.Run(ctx, cfg, o) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			t.Logf("daemon logs:\n%s", logs.String())
		}
	})
	select {
	case r.addr = <-addrs:
	case err := <-r.done:
		close(r.done)
		t.Fatalf("Run returned before listening: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the daemon did not listen within 15s")
	}
	return r
}

// stop cancels Run's context and returns what Run returned; later calls return nil.
func (r *running) stop() error {
	r.t.Helper()
	return testkit.StopRun(r.t, r.cancel, r.done, 15*time.Second)
}

// get GETs path on the daemon's HTTP server.
func (r *running) get(path string) (int, string, error) {
	resp, err := r.http.Get("http://" + r.addr + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitStatus polls path until it answers status, and returns the body.
func (r *running) waitStatus(path string, status int, timeout time.Duration) string {
	r.t.Helper()
	var body string
	testkit.WaitFor(r.t, timeout, fmt.Sprintf("%s answering %d", path, status), func() bool {
		code, b, err := r.get(path)
		body = b
		return err == nil && code == status
	})
	return body
}

// metrics scrapes /metrics.
func (r *running) metrics() testkit.Metrics {
	r.t.Helper()
	m, err := testkit.ScrapeMetrics(context.Background(), "http://"+r.addr+"/metrics")
	if err != nil {
		r.t.Fatalf("scrape /metrics: %v", err)
	}
	return m
}

// connect is the test's own connection to NATS, as another service's.
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	_, js := testkit.JetStream(t, url)
	return js
}

// createStream creates the stream on subjects, as a team that owns it would.
func createStream(t *testing.T, js jetstream.JetStream, subjects ...string) jetstream.Stream {
	t.Helper()
	stream, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: streamName, Subjects: subjects})
	if err != nil {
		t.Fatal(err)
	}
	return stream
}

// createConsumer creates the daemon's durable consumer on stream, filtered on filter.
func createConsumer(t *testing.T, stream jetstream.Stream, filter string) {
	t.Helper()
	if _, err := stream.CreateConsumer(context.Background(), jetstream.ConsumerConfig{Durable: "integration-deleter",
		AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: filter}); err != nil {
		t.Fatal(err)
	}
}

// waitBound waits until the daemon has created the stream, so that requests are stored.
func waitBound(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	testkit.WaitFor(t, 10*time.Second, "the daemon's consumer", func() bool {
		_, err := js.Consumer(context.Background(), streamName, "integration-deleter")
		return err == nil
	})
}

// publish stores a request event with headers.
func publish(t *testing.T, js jetstream.JetStream, body string, hdr map[string]string) {
	t.Helper()
	m := nats.NewMsg(requestSubject)
	m.Data = []byte(body)
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	if _, err := js.PublishMsg(context.Background(), m); err != nil {
		t.Fatal(err)
	}
}

// stored is a result as stored in the stream.
type stored struct {
	subject string
	header  nats.Header
	result  consumer.Result
}

// waitResult polls the stream until a result for requestID is stored and returns it.
func waitResult(t *testing.T, js jetstream.JetStream, requestID string) stored {
	t.Helper()
	var found []stored
	testkit.WaitFor(t, 15*time.Second, "the result of "+requestID, func() bool {
		found = results(t, js, requestID)
		return len(found) > 0
	})
	if len(found) != 1 {
		t.Errorf("%d results stored for %s, want 1", len(found), requestID)
	}
	return found[0]
}

// results reads the results stored for requestID.
func results(t *testing.T, js jetstream.JetStream, requestID string) []stored {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, streamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []stored
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != deletedSubject && m.Subject != failedSubject {
			continue
		}
		var r consumer.Result
		if err := json.Unmarshal(m.Data, &r); err != nil {
			t.Fatalf("result at seq %d is not JSON: %v: %s", seq, err, m.Data)
		}
		if r.RequestID == requestID {
			out = append(out, stored{subject: m.Subject, header: m.Header, result: r})
		}
	}
	return out
}

// embeddedURL reads the embedded server's client URL from the daemon's log.
func embeddedURL(t *testing.T, logs *logBuffer) string {
	t.Helper()
	for _, l := range logs.lines(t) {
		if l["msg"] == "embedded NATS server started" {
			if u, ok := l["url"].(string); ok {
				return u
			}
		}
	}
	t.Fatalf("the log does not say where the embedded NATS server listens:\n%s", logs.String())
	return ""
}

// traceIDOf returns the trace-id field of a W3C traceparent.
func traceIDOf(tp string) string {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[1]
}

func TestEndToEnd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		embedded bool
	}{
		{name: "external NATS"},
		{name: "embedded NATS", embedded: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
			var cfg *config.Config
			if tt.embedded {
				cfg = testConfig("nats://127.0.0.1:0", base)
				cfg.NATSEmbedded = true
				cfg.NATSEmbeddedDir = t.TempDir()
			} else {
				cfg = testConfig(natstest.Start(t).ClientURL(), base)
			}
			d := start(t, cfg)
			natsURL := cfg.NATSURL
			if tt.embedded {
				natsURL = embeddedURL(t, d.logs)
			}
			js := connect(t, natsURL)

			if code, body, err := d.get("/healthz"); err != nil || code != http.StatusOK {
				t.Errorf("GET /healthz = %d %q %v, want 200", code, body, err)
			}
			d.waitStatus("/readyz", http.StatusOK, 10*time.Second)
			waitBound(t, js)

			publish(t, js, `{"integration_id":"personio:CBNMt7dSNCzBdnRTx87dev4E","request_id":"e2e-1","requested_by":"offboarding","reason":"churn"}`,
				map[string]string{"traceparent": traceparent, "tracestate": tracestate})
			got := waitResult(t, js, "e2e-1")

			if got.subject != deletedSubject {
				t.Errorf("result stored on %s, want %s", got.subject, deletedSubject)
			}
			if id := got.header.Get(jetstream.MsgIDHeader); id != "result-e2e-1" {
				t.Errorf("result Nats-Msg-Id = %q, want %q", id, "result-e2e-1")
			}
			if tid := traceIDOf(got.header.Get("traceparent")); tid != traceID {
				t.Errorf("result traceparent = %q, want trace id %s kept", got.header.Get("traceparent"), traceID)
			}
			notFound := false
			want := consumer.Result{RequestID: "e2e-1", IntegrationID: "personio:CBNMt7dSNCzBdnRTx87dev4E", Status: "deleted",
				NotFound: &notFound, Attempts: 1, RequestedBy: "offboarding", Reason: "churn"}
			if diff := cmp.Diff(got.result, want, cmpopts.IgnoreFields(consumer.Result{}, "CompletedAt")); diff != "" {
				t.Errorf("result mismatch (-got +want):\n%s", diff)
			}
			if at, err := time.Parse(time.RFC3339, got.result.CompletedAt); err != nil || !strings.HasSuffix(got.result.CompletedAt, "Z") ||
				time.Since(at) > time.Minute {
				t.Errorf("completed_at = %q, want RFC 3339 UTC with Z, now (%v)", got.result.CompletedAt, err)
			}

			calls := fake.CallsFor("personio:CBNMt7dSNCzBdnRTx87dev4E")
			if len(calls) != 1 {
				t.Fatalf("Kombo got %d DELETEs, want 1", len(calls))
			}
			c := calls[0]
			if c.RawURI != "/v1/integrations/personio:CBNMt7dSNCzBdnRTx87dev4E" {
				t.Errorf("DELETE %s, want /v1/integrations/personio:CBNMt7dSNCzBdnRTx87dev4E", c.RawURI)
			}
			for name, want := range map[string]string{
				"Authorization": "Bearer [redacted]",
				"Content-Type":  "application/json",
				"Accept":        "application/json",
				"User-Agent":    "integration-deleter/test",
				"Tracestate":    tracestate,
			} {
				if got := c.Header.Get(name); got != want {
					t.Errorf("Kombo call header %s = %q, want %q", name, got, want)
				}
			}
			if tid := traceIDOf(c.Header.Get("traceparent")); tid != traceID {
				t.Errorf("Kombo call traceparent = %q, want trace id %s kept", c.Header.Get("traceparent"), traceID)
			}
			if c.Body != "{}" {
				t.Errorf("Kombo call body %q, want {}", c.Body)
			}

			if err := d.stop(); err != nil {
				t.Errorf("Run() = %v after cancel, want nil", err)
			}
			if _, _, err := d.get("/healthz"); err == nil {
				t.Error("the HTTP server still answers after Run returned")
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	cfg := testConfig(natstest.Start(t).ClientURL(), base)
	d := start(t, cfg)
	js := connect(t, cfg.NATSURL)
	waitBound(t, js)

	// Before any request: the cap is the configured maximum, nothing in flight.
	before := d.metrics()
	for _, m := range []struct {
		name string
		want float64
	}{
		{"integration_deleter_concurrency_cap", float64(cfg.KomboMaxConcurrency)},
		{"integration_deleter_kombo_calls_in_flight", 0},
		{"integration_deleter_redeliveries_total", 0},
	} {
		if got, ok := before.Sum(m.name); !ok || got != m.want {
			t.Errorf("before any request %s = %v (present %v), want %v", m.name, got, ok, m.want)
		}
	}

	// One plain delete, one that fails twice (retries), one whose key is rejected once
	// (pause, nak, redelivery).
	fake.Script("personio:auth", kombotest.AuthInvalid())
	publish(t, js, `{"integration_id":"personio:ok","request_id":"m-ok"}`, nil)
	publish(t, js, `{"integration_id":"flaky:x","request_id":"m-flaky"}`, nil)
	publish(t, js, `{"integration_id":"personio:auth","request_id":"m-auth"}`, nil)
	for _, id := range []string{"m-ok", "m-flaky", "m-auth"} {
		if r := waitResult(t, js, id); r.result.Status != "deleted" {
			t.Errorf("%s: %+v", id, r.result)
		}
	}
	var m testkit.Metrics
	testkit.WaitFor(t, 10*time.Second, "3 deleted requests counted", func() bool {
		m = d.metrics()
		n, _ := m.Sum("integration_deleter_requests_total", `outcome="deleted"`)
		return n == 3
	})

	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"integration_deleter_requests_total", []string{`outcome="deleted"`}, 3},
		{"integration_deleter_requests_total", []string{`outcome="failed"`}, 0},
		{"integration_deleter_kombo_calls_total", []string{`status="200"`, `code=""`}, 3},
		{"integration_deleter_kombo_calls_total", []string{`status="500"`, `code="` + kombo.CodeUnknownError + `"`}, 2},
		{"integration_deleter_kombo_calls_total", []string{`status="401"`, `code="` + kombo.CodeAuthenticationInvalid + `"`}, 1},
		{"integration_deleter_kombo_call_duration_seconds_count", nil, 6},
		{"integration_deleter_kombo_calls_in_flight", nil, 0},
		{"integration_deleter_concurrency_cap", nil, float64(cfg.KomboMaxConcurrency)},
		{"integration_deleter_retries_total", []string{`reason="transient"`}, 2},
		{"integration_deleter_retries_total", []string{`reason="rate_limit"`}, 0},
		{"integration_deleter_redeliveries_total", nil, 1},
		{"integration_deleter_paused", nil, 0},
	}
	for _, tt := range tests {
		series := tt.name + "{" + strings.Join(tt.labels, ",") + "}"
		t.Run(series, func(t *testing.T) {
			got, ok := m.Sum(tt.name, tt.labels...)
			if !ok {
				t.Fatalf("%s is not exported", series)
			}
			if got != tt.want {
				t.Errorf("%s = %v, want %v", series, got, tt.want)
			}
		})
	}
	if _, ok := m.Sum("integration_deleter_kombo_call_duration_seconds_bucket", `le="+Inf"`); !ok {
		t.Error("kombo_call_duration_seconds has no buckets: it is not a histogram")
	}
	if _, ok := m.Sum("go_goroutines"); !ok {
		t.Error("the default registry has no Go collector")
	}
}

func TestReadyzWhileKeyRejected(t *testing.T) {
	t.Parallel()
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	fake.SetRejectKey(true)
	cfg := testConfig(natstest.Start(t).ClientURL(), base)
	d := start(t, cfg)
	js := connect(t, cfg.NATSURL)
	waitBound(t, js)

	publish(t, js, `{"integration_id":"personio:waits","request_id":"k-1"}`, nil)
	var body string
	testkit.WaitFor(t, 10*time.Second, "/readyz saying paused", func() bool {
		code, b, err := d.get("/readyz")
		body = b
		return err == nil && code == http.StatusServiceUnavailable && strings.Contains(b, "paused")
	})
	if !strings.Contains(body, "API key") {
		t.Errorf("/readyz body %q does not say the API key is rejected", body)
	}
	if code, _, err := d.get("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("GET /healthz while paused = %d %v, want 200", code, err)
	}
	testkit.WaitFor(t, 10*time.Second, "the key check at start and two probes", func() bool { return fake.Stats().CheckAPIKey >= 3 })
	if s := fake.Stats(); s.Deletes != 0 {
		t.Errorf("a paused daemon made %d DELETEs", s.Deletes)
	}
	if r := results(t, js, "k-1"); len(r) != 0 {
		t.Errorf("a paused daemon stored results %+v", r)
	}
	if n, _ := d.metrics().Sum("integration_deleter_paused"); n != 1 {
		t.Errorf("integration_deleter_paused = %v while paused, want 1", n)
	}

	fake.SetRejectKey(false)
	d.waitStatus("/readyz", http.StatusOK, 10*time.Second)
	if r := waitResult(t, js, "k-1"); r.result.Status != "deleted" {
		t.Errorf("after resuming: %+v", r.result)
	}
}

func TestReadyzDuringShutdown(t *testing.T) {
	t.Parallel()
	const latency = 1500 * time.Millisecond
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey, Latency: latency})
	cfg := testConfig(natstest.Start(t).ClientURL(), base)
	d := start(t, cfg)
	js := connect(t, cfg.NATSURL)
	waitBound(t, js)
	d.waitStatus("/readyz", http.StatusOK, 10*time.Second)

	publish(t, js, `{"integration_id":"personio:slow","request_id":"s-1"}`, nil)
	testkit.WaitFor(t, 10*time.Second, "the call in flight", func() bool { return fake.Stats().InFlight == 1 })
	d.cancel()

	// The HTTP server answers until Run is about to return, so a 503 seen here was seen
	// while the call was still in flight (or finishing).
	body := d.waitStatus("/readyz", http.StatusServiceUnavailable, latency)
	if !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz during shutdown = %q, want it to say shutting down", body)
	}
	select {
	case err := <-d.done:
		t.Fatalf("Run returned (%v) before /readyz was checked", err)
	default:
	}
	if code, _, err := d.get("/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("GET /healthz during shutdown = %d %v, want 200", code, err)
	}
	if err := d.stop(); err != nil {
		t.Errorf("Run() = %v, want nil after a clean shutdown", err)
	}
	// The call in flight was finished and its result stored before Run returned.
	if r := results(t, js, "s-1"); len(r) != 1 || r[0].result.Status != "deleted" {
		t.Errorf("after shutdown the request in flight has results %+v, want one deleted", r)
	}
	if calls := fake.CallsFor("personio:slow"); len(calls) != 1 || calls[0].Status != http.StatusOK {
		t.Errorf("Kombo calls %+v, want one answered 200", calls)
	}
}

func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	const natsPassword = "n4ts_p4ssw0rd_never_log_me"
	fake, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
	s := natstest.Start(t, func(o *server.Options) { o.Username, o.Password = "deleter", natsPassword })
	u := strings.Replace(s.ClientURL(), "nats://", "nats://deleter:"+natsPassword+"@", 1)
	cfg := testConfig(u, base)
	d := start(t, cfg)
	js := connect(t, u)
	waitBound(t, js)

	// A proxy that echoes the request, key included, then a rate limit (logged at debug),
	// then a rejected key, then success.
	fake.Script("personio:echo",
		kombotest.Raw(http.StatusBadGateway, "text/plain",
			"upstream error; request was: DELETE /v1/integrations/personio:echo Authorization: Bearer "+apiKey),
		kombotest.Answer{Status: http.StatusTooManyRequests, Code: kombo.CodeRateLimitExceeded,
			Header: http.Header{"Retry-After-Ms": {"20"}}},
		kombotest.AuthInvalid())
	publish(t, js, `{"integration_id":"personio:echo","request_id":"leak-1"}`, nil)
	publish(t, js, `{"integration_id":"invalid:x","request_id":"leak-2"}`, nil)
	waitResult(t, js, "leak-1")
	waitResult(t, js, "leak-2")
	if err := d.stop(); err != nil {
		t.Errorf("Run() = %v", err)
	}

	logs := d.logs.String()
	for _, want := range []string{`"msg":"starting integration-deleter"`, `"level":"DEBUG"`, `"request_id":"leak-1"`, "[redacted]"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log has no %s: the scenario did not log what it should", want)
		}
	}
	for _, secret := range []string{apiKey, natsPassword} {
		if strings.Contains(logs, secret) {
			for _, l := range strings.Split(logs, "\n") {
				if strings.Contains(l, secret) {
					t.Errorf("a secret is logged: %s", l)
				}
			}
		}
	}
}

func TestRunFails(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		setup  func(t *testing.T, cfg *config.Config, natsURL string)
		wantIs error
		wantIn []string
	}{
		{
			name:   "provisioning off and no stream",
			setup:  func(_ *testing.T, cfg *config.Config, _ string) { cfg.JetStreamProvision = false },
			wantIs: consumer.ErrMissing,
			wantIn: []string{streamName},
		},
		{
			name: "provisioning off and no consumer",
			setup: func(t *testing.T, cfg *config.Config, natsURL string) {
				cfg.JetStreamProvision = false
				createStream(t, connect(t, natsURL), "integration.delete.>")
			},
			wantIs: consumer.ErrMissing,
			wantIn: []string{"integration-deleter", streamName},
		},
		{
			name: "provisioning off and no ledger bucket",
			setup: func(t *testing.T, cfg *config.Config, natsURL string) {
				cfg.JetStreamProvision = false
				createConsumer(t, createStream(t, connect(t, natsURL), "integration.delete.>"), "integration.delete.requested")
			},
			wantIs: ledger.ErrMissing,
			wantIn: []string{"INTEGRATION_DELETE_LEDGER"},
		},
		{
			name: "ledger forgets before the stream",
			setup: func(t *testing.T, cfg *config.Config, natsURL string) {
				js := connect(t, natsURL)
				if _, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: cfg.LedgerBucket, TTL: time.Hour}); err != nil {
					t.Fatal(err)
				}
			},
			wantIs: ledger.ErrUnusable,
			wantIn: []string{"INTEGRATION_DELETE_LEDGER", "1h0m0s"},
		},
		{
			name: "consumer filtered wider than the request subject",
			setup: func(t *testing.T, cfg *config.Config, natsURL string) {
				createConsumer(t, createStream(t, connect(t, natsURL), "integration.delete.>"), "integration.delete.>")
			},
			wantIn: []string{"REQUEST_SUBJECT", "integration.delete.>"},
		},
		{
			name: "no stream stores the results",
			setup: func(t *testing.T, cfg *config.Config, natsURL string) {
				createStream(t, connect(t, natsURL), "integration.delete.requested")
			},
			wantIn: []string{"DELETED_SUBJECT", "integration.delete.deleted"},
		},
		{
			name: "NATS unreachable",
			setup: func(t *testing.T, cfg *config.Config, _ string) {
				cfg.NATSURL = "nats://127.0.0.1:" + strconv.Itoa(testkit.FreePort(t))
			},
			wantIn: []string{"NATS"},
		},
		{
			name: "HTTP_ADDR in use",
			setup: func(t *testing.T, cfg *config.Config, _ string) {
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
				cfg.HTTPAddr = ln.Addr().String()
			},
			wantIn: []string{"HTTP_ADDR"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, base := kombotest.NewServer(t, kombotest.Options{APIKey: apiKey})
			natsURL := natstest.Start(t).ClientURL()
			cfg := testConfig(natsURL, base)
			tt.setup(t, cfg, natsURL)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			err := daemon.Run(ctx, cfg, daemon.Options{})
			if err == nil {
				t.Fatal("Run() = nil, want an error")
			}
			if ctx.Err() != nil {
				t.Fatalf("Run() returned %v only after its context ended", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Run() = %v, want errors.Is %v", err, tt.wantIs)
			}
			for _, want := range tt.wantIn {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Run() = %q, want it to name %s", err, want)
				}
			}
		})
	}
}
