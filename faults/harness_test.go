package faults

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/kombo-ops/integration-deleter/internal/testkit"
	"github.com/kombo-ops/integration-deleter/kombo/kombotest"
)

// apiKey is the key the fake expects and the daemon sends.
const apiKey = "ks_faults_9Qz4rT7wX2vB8nL5"

// ---------------------------------------------------------------------------------------
// NATS

// natsServer is an embedded JetStream server on a fixed port and store, so that it can be
// stopped and started again as the same server.
type natsServer struct {
	t    *testing.T
	opts *server.Options
	srv  *server.Server
}

// startNATS starts a JetStream server on a free loopback port with its own store; mod, when
// set, changes the options first (TLS, authentication, MaxPayload).
func startNATS(t *testing.T, mod func(*server.Options)) *natsServer {
	t.Helper()
	o := &server.Options{
		ServerName: "faults", Host: "127.0.0.1", Port: testkit.FreePort(t),
		JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
	}
	if mod != nil {
		mod(o)
	}
	n := &natsServer{t: t, opts: o}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	s, err := server.NewServer(n.opts.Clone())
	if err != nil {
		n.t.Fatalf("nats-server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		n.t.Fatalf("nats-server on port %d did not start", n.opts.Port)
	}
	n.srv = s
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// url is where clients connect (nats://127.0.0.1:PORT).
func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// connect returns the test's own client connection; it reconnects for ever.
func (n *natsServer) connect(extra ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	n.t.Helper()
	opts := append([]nats.Option{nats.Name("faults"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100 * time.Millisecond)}, extra...)
	return testkit.JetStream(n.t, n.url(), opts...)
}

// createStream creates the stream as a team owning it would (the daemon then only creates
// its consumer), with a duplicate window the daemon's configuration below respects.
func createStream(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: testkit.StreamName, Subjects: []string{"integration.delete.>"}, Storage: jetstream.FileStorage,
		Duplicates: 5 * time.Minute,
	})
	if err != nil {
		t.Fatalf("create stream: %v", err)
	}
}

// ---------------------------------------------------------------------------------------
// requests and results

// request is one delete request the suite publishes.
type request struct {
	ID            string // request_id and Nats-Msg-Id
	IntegrationID string
}

// requests returns n requests with ids "<prefix>-00001"… for integrations "<prefix>:00001"….
func requests(prefix string, n int) []request {
	out := make([]request, n)
	for i := range out {
		out[i] = request{ID: fmt.Sprintf("%s-%05d", prefix, i+1), IntegrationID: fmt.Sprintf("%s:%05d", prefix, i+1)}
	}
	return out
}

func ids(reqs []request) []string {
	out := make([]string, len(reqs))
	for i, r := range reqs {
		out[i] = r.ID
	}
	return out
}

// publish stores the requests in the stream and waits for every PubAck.
func publish(t *testing.T, js jetstream.JetStream, reqs []request) {
	t.Helper()
	futures := make([]jetstream.PubAckFuture, 0, len(reqs))
	for _, r := range reqs {
		body, _ := json.Marshal(map[string]string{"integration_id": r.IntegrationID, "request_id": r.ID,
			"requested_by": "faults", "reason": t.Name()})
		m := nats.NewMsg(testkit.RequestSubject)
		m.Data = body
		m.Header.Set(jetstream.MsgIDHeader, r.ID)
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatalf("publish %s: %v", r.ID, err)
		}
		futures = append(futures, f)
	}
	timeout := time.After(30 * time.Second)
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatalf("publish %s: %v", reqs[i].ID, err)
		case <-timeout:
			t.Fatalf("publish: no PubAck for %s within 30s", reqs[i].ID)
		}
	}
}

// publishRaw stores one raw request event with headers and waits for its PubAck.
func publishRaw(t *testing.T, js jetstream.JetStream, data []byte, hdr map[string]string) {
	t.Helper()
	m := nats.NewMsg(testkit.RequestSubject)
	m.Data = data
	for k, v := range hdr {
		m.Header.Set(k, v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(ctx, m); err != nil {
		t.Fatalf("publish %v: %v", hdr, err)
	}
}

// result is a stored result event, with where and how it was stored.
type result struct {
	testkit.Result
	subject string
	raw     []byte
	msgID   string
}

// streamCounts returns how many requests and results the stream holds.
func streamCounts(ctx context.Context, js jetstream.JetStream) (requests, results int, err error) {
	s, err := js.Stream(ctx, testkit.StreamName)
	if err != nil {
		return 0, 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter("integration.delete.>"))
	if err != nil {
		return 0, 0, err
	}
	subj := info.State.Subjects
	return int(subj[testkit.RequestSubject]), int(subj[testkit.DeletedSubject] + subj[testkit.FailedSubject]), nil
}

// storedResults reads every result stored in the stream.
func storedResults(ctx context.Context, js jetstream.JetStream) ([]result, error) {
	_, want, err := streamCounts(ctx, js)
	if err != nil || want == 0 {
		return nil, err
	}
	oc, err := js.OrderedConsumer(ctx, testkit.StreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{testkit.DeletedSubject, testkit.FailedSubject},
	})
	if err != nil {
		return nil, err
	}
	var out []result
	for len(out) < want {
		batch, err := oc.Fetch(min(want-len(out), 1000), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			var r result
			if err := json.Unmarshal(m.Data(), &r.Result); err != nil {
				return nil, fmt.Errorf("result on %s is not JSON: %v: %q", m.Subject(), err, m.Data())
			}
			r.subject, r.raw, r.msgID = m.Subject(), m.Data(), m.Headers().Get(jetstream.MsgIDHeader)
			out = append(out, r)
		}
		if batch.Error() != nil && !errors.Is(batch.Error(), nats.ErrTimeout) {
			return nil, batch.Error()
		}
		if got == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	return out, nil
}

// tally is what the suite counts at the end of a case.
type tally struct {
	in, stored, lost, dup, stray int
	byID                         map[string][]result
	missing                      []string // request ids without a result (the first few)
}

// count reads the stream and counts the results of the requests with ids want.
func count(t *testing.T, js jetstream.JetStream, want []string) tally {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	in, _, err := streamCounts(ctx, js)
	if err != nil {
		t.Fatalf("read the stream: %v", err)
	}
	res, err := storedResults(ctx, js)
	if err != nil {
		t.Fatalf("read the results: %v", err)
	}
	return tallyOf(in, res, want)
}

func tallyOf(in int, res []result, want []string) tally {
	tl := tally{in: in, stored: len(res), byID: map[string][]result{}}
	for _, r := range res {
		tl.byID[r.RequestID] = append(tl.byID[r.RequestID], r)
	}
	wanted := map[string]bool{}
	for _, id := range want {
		wanted[id] = true
		switch n := len(tl.byID[id]); {
		case n == 0:
			tl.lost++
			if len(tl.missing) < 5 {
				tl.missing = append(tl.missing, id)
			}
		case n > 1:
			tl.dup++
		}
	}
	for id := range tl.byID {
		if !wanted[id] {
			tl.stray++
		}
	}
	return tl
}

// waitDone polls until every request in want has a stored result and the consumer holds
// nothing (no pending, no unacknowledged message), so that no later result can come; it then
// returns the final tally. It fails the test at the deadline, reporting the tally so far.
func waitDone(t *testing.T, js jetstream.JetStream, want []string, timeout time.Duration) tally {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, results, err := streamCounts(ctx, js)
		done := false
		if err == nil && results >= len(want) {
			var res []result
			if res, err = storedResults(ctx, js); err == nil {
				in, _, _ := streamCounts(ctx, js)
				if tl := tallyOf(in, res, want); tl.lost == 0 && settled(ctx, js) {
					done = true
				}
			}
		}
		cancel()
		if done {
			return count(t, js, want)
		}
		if time.Now().After(deadline) {
			tl := count(t, js, want)
			t.Fatalf("not done after %s: %d of %d requests have no result (e.g. %v), %d duplicates; consumer settled: %v",
				timeout, tl.lost, len(want), tl.missing, tl.dup, settled(context.Background(), js))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// settled reports whether the durable consumer has nothing pending or unacknowledged.
func settled(ctx context.Context, js jetstream.JetStream) bool {
	c, err := js.Consumer(ctx, testkit.StreamName, testkit.ConsumerName)
	if err != nil {
		return false
	}
	info, err := c.Info(ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

// checkTally fails t when a request was lost, has more than one result, or a result belongs
// to no request; it checks every result's subject and Nats-Msg-Id.
func checkTally(t *testing.T, tl tally, n int) {
	t.Helper()
	if tl.in != n {
		t.Errorf("requests in the stream: got %d, want %d", tl.in, n)
	}
	if tl.lost != 0 {
		t.Errorf("lost: %d requests have no stored result (e.g. %v)", tl.lost, tl.missing)
	}
	if tl.dup != 0 {
		t.Errorf("duplicates: %d requests have more than one stored result", tl.dup)
	}
	if tl.stray != 0 {
		t.Errorf("%d results belong to no request of this case", tl.stray)
	}
	for id, rs := range tl.byID {
		for _, r := range rs {
			if want := "result-" + id; r.msgID != want {
				t.Errorf("result of %s has Nats-Msg-Id %q, want %q", id, r.msgID, want)
			}
			if (r.subject == testkit.DeletedSubject) != (r.Status == "deleted") {
				t.Errorf("result of %s with status %q stored on %s", id, r.Status, r.subject)
			}
		}
	}
}

// outcomes counts the results by status and code ("deleted", "deleted/not_found",
// "failed/CODE").
func outcomes(tl tally) map[string]int {
	out := map[string]int{}
	for _, rs := range tl.byID {
		for _, r := range rs {
			k := r.Status
			if r.WasNotFound() {
				k += "/not_found"
			}
			if r.Error != nil {
				k += "/" + r.Error.Code
			}
			out[k]++
		}
	}
	return out
}

func formatCounts(m map[string]int) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// requireAllDeleted fails t for each request whose result is not "deleted".
func requireAllDeleted(t *testing.T, tl tally) {
	t.Helper()
	bad := 0
	for id, rs := range tl.byID {
		for _, r := range rs {
			if r.Status != "deleted" {
				bad++
				if bad <= 5 {
					t.Errorf("request %s: got %s", id, r.raw)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d results are not deleted (%s)", bad, formatCounts(outcomes(tl)))
	}
}

// resultCount returns how many results the stream holds (-1 when it cannot be read).
func resultCount(js jetstream.JetStream) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, n, err := streamCounts(ctx, js)
	if err != nil {
		return -1
	}
	return n
}

// ---------------------------------------------------------------------------------------
// the fake Kombo

// newFake starts the fake Kombo in-process on a loopback port, expecting the suite's key.
func newFake(t *testing.T, o kombotest.Options) (*kombotest.Fake, string) {
	t.Helper()
	o.APIKey = apiKey
	if o.Seed == 0 {
		o.Seed = int64(seed%1e9) + 1
	}
	return kombotest.NewServer(t, o)
}

// deletesPerRequest is the fake's DELETE count divided by n.
func deletesPerRequest(f *kombotest.Fake, n int) float64 {
	if n == 0 {
		return 0
	}
	return float64(f.Stats().Deletes) / float64(n)
}

// ---------------------------------------------------------------------------------------
// the daemon process

// baseEnv is the daemon's configuration in the suite: short waits so that each case stays
// short, a duplicate window that covers KOMBO_RETRY_MAX_ELAPSED + 2×ACK_WAIT, and no fuse
// (the cases make up to 2000 DELETE calls; the default DELETE_FUSE 1000/1h would trip);
// the fuse's cases set DELETE_FUSE.
func baseEnv(natsURL, komboURL string) map[string]string {
	return map[string]string{
		"DELETE_FUSE":             "off",
		"KOMBO_API_KEY":           apiKey,
		"KOMBO_BASE_URL":          komboURL,
		"KOMBO_TIMEOUT":           "2s",
		"KOMBO_MAX_CONCURRENCY":   "16",
		"KOMBO_MAX_ATTEMPTS":      "10",
		"KOMBO_RETRY_MAX_ELAPSED": "1m",
		"KOMBO_BACKOFF_INITIAL":   "20ms",
		"KOMBO_BACKOFF_MAX":       "500ms",
		"AUTH_PROBE_INTERVAL":     "1s",
		"NATS_URL":                natsURL,
		"ACK_WAIT":                "2s",
		"DUPLICATE_WINDOW":        "5m",
		"HTTP_ADDR":               "127.0.0.1:0",
		"SHUTDOWN_TIMEOUT":        "10s",
		"LOG_LEVEL":               "info",
		"LOG_FORMAT":              "json",
	}
}

// daemon is one integration-deleter process.
type daemon struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	out   *output // stdout and stderr, as written
	addr  string  // host:port of /healthz, /readyz, /metrics
	done  chan struct{}
	state *os.ProcessState
}

// startDaemon starts the daemon binary with exactly the environment env (nothing inherited)
// and waits until it listens for HTTP; it does not wait for readiness. The process is killed
// at the end of the test whatever happens.
func startDaemon(t *testing.T, name string, env map[string]string) *daemon {
	t.Helper()
	d := &daemon{t: t, name: name, out: newOutput(), done: make(chan struct{})}
	d.cmd = exec.Command(daemonBin())
	for _, k := range slices.Sorted(maps.Keys(env)) {
		d.cmd.Env = append(d.cmd.Env, k+"="+env[k])
	}
	d.cmd.Stdout = d.out
	d.cmd.Stderr = d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		_ = d.cmd.Wait()
		d.state = d.cmd.ProcessState
		close(d.done)
	}()
	t.Cleanup(func() {
		d.kill()
		d.saveLog()
	})
	select {
	case d.addr = <-d.out.addr:
	case <-d.done:
		t.Fatalf("%s exited at start (%s):\n%s", name, d.state, d.out.tail(40))
	case <-time.After(30 * time.Second):
		t.Fatalf("%s does not listen for HTTP after 30s:\n%s", name, d.out.tail(40))
	}
	return d
}

// runToExit runs the daemon binary with exactly the environment env and args, and returns its
// exit code and output; it fails t when the process still runs after timeout (and kills it).
func runToExit(t *testing.T, env map[string]string, timeout time.Duration, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, daemonBin(), args...)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("the daemon still ran after %s; output:\n%s", timeout, out)
	}
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run the daemon: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool { return testkit.Closed(d.done) }

// kill sends SIGKILL and waits for the process to end.
func (d *daemon) kill() {
	if d.exited() {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// signal sends sig to the process.
func (d *daemon) signal(sig os.Signal) {
	d.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.t.Fatalf("signal %s: %v", d.name, err)
	}
}

// wait waits up to timeout for the process to end and returns its exit code, or fails.
func (d *daemon) wait(timeout time.Duration) int {
	d.t.Helper()
	select {
	case <-d.done:
		return d.state.ExitCode()
	case <-time.After(timeout):
		d.t.Fatalf("%s still runs after %s:\n%s", d.name, timeout, d.out.tail(40))
		return -1
	}
}

// get GETs path on the daemon's HTTP server and returns status and body (0 when it does not
// answer).
func (d *daemon) get(path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.addr+path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReady polls /readyz until it answers 200, failing when the process ends first.
func (d *daemon) waitReady(timeout time.Duration) {
	d.t.Helper()
	err := testkit.WaitReady(context.Background(), "http://"+d.addr+"/readyz", timeout, func() error {
		if d.exited() {
			return fmt.Errorf("exited (%s)", d.state)
		}
		return nil
	})
	if err != nil {
		d.t.Fatalf("%s not ready: %v\n%s", d.name, err, d.out.tail(40))
	}
}

// metric returns the sum of the samples of a Prometheus metric whose labels include each of
// labels (e.g. `outcome="deleted"`; none for all); 0 when /metrics does not answer.
func (d *daemon) metric(name string, labels ...string) float64 {
	m, _ := testkit.ScrapeMetrics(context.Background(), "http://"+d.addr+"/metrics")
	sum, _ := m.Sum(name, labels...)
	return sum
}

// saveLog writes the process's output into FAULTS_LOG_DIR, when set, and its tail into the
// test log when the test failed.
func (d *daemon) saveLog() {
	if dir := os.Getenv("FAULTS_LOG_DIR"); dir != "" {
		name := strings.NewReplacer("/", "_", " ", "_").Replace(d.t.Name()) + "-" + d.name + ".log"
		_ = os.MkdirAll(dir, 0o755)
		_ = os.WriteFile(filepath.Join(dir, name), d.out.bytes(), 0o644)
	}
	if d.t.Failed() {
		d.t.Logf("last lines of %s (%s):\n%s", d.name, d.state, d.out.tail(30))
	}
}

// output collects a process's output and finds the HTTP address it logs at start.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []byte
	addr    chan string
	found   bool
}

func newOutput() *output { return &output{addr: make(chan string, 1)} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(p)
	if o.found {
		return len(p), nil
	}
	o.partial = append(o.partial, p...)
	for {
		i := bytes.IndexByte(o.partial, '\n')
		if i < 0 {
			break
		}
		line := o.partial[:i]
		o.partial = o.partial[i+1:]
		var l struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal(line, &l) == nil && strings.HasPrefix(l.Msg, "serving /healthz") && l.Addr != "" {
			o.found = true
			o.partial = nil
			o.addr <- l.Addr
			break
		}
	}
	return len(p), nil
}

func (o *output) bytes() []byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	return bytes.Clone(o.buf.Bytes())
}

func (o *output) String() string { return string(o.bytes()) }

// tail returns the last n lines.
func (o *output) tail(n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(o.bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// logLines returns the JSON log lines whose msg contains substr.
func (o *output) logLines(substr string) []map[string]any {
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(o.bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) != nil {
			continue
		}
		if msg, _ := l["msg"].(string); strings.Contains(msg, substr) {
			out = append(out, l)
		}
	}
	return out
}
